"""Tests for ctlib.data.fetch (download) against a real HTTP server on 127.0.0.1.

A session fixture builds a mirror of the upstream files from the real data sets (zips with the
upstream member layout, plus the loose meta files) and serves it with ThreadingHTTPServer.
The handler can cut a response short, ignore Range requests, stall, or serve other bytes for
a path, so interrupted transfers, resumes and hostile archives are exercised for real; the
network call itself is never mocked. Only kagglehub (not installed here) is replaced by a
stand-in module where the Kaggle branch is tested.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import socket
import stat
import sys
import threading
import time
import types
import zipfile
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from PIL import Image

from ctlib.data import REAL_DATASETS, download, plan_download
from ctlib.data import fetch as dl
from ctlib.data.fetch import MIRROR_ENV, SOURCES, mirror_url
from ctlib.data.verify import VerificationReport
from ctlib.errors import DataVerificationError, DownloadError, UnsafeArchiveError

COMMIT = "1b912a4ba27b4548103a598b169e939d0b933806"
UCSD = "UCSD-AI4H/COVID-CT/raw/master"
COVID_ZIP = f"{UCSD}/Images-processed/CT_COVID.zip"
NONCOVID_ZIP = f"{UCSD}/Images-processed/CT_NonCOVID.zip"
XLSX = f"{UCSD}/COVID-CT-MetaInfo.xlsx"
SARS_ZIP = f"dwaipayan05/CovCNN-WebApp/archive/{COMMIT}.zip"
SARS_TOP = f"CovCNN-WebApp-{COMMIT}/"
N_SMALL_COVID19 = 12  # images per class in the "small" mirror
N_SMALL_SARS = 20
realdata = pytest.mark.realdata


def _real_data_dir() -> Path:
    env = os.environ.get("CTLIB_DATA_DIR", "").strip()
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "shared" / "data"


# ---------------------------------------------------------------------------- mirror tree


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def _build_covid19(base: Path, real: Path, n: int | None) -> dict[str, Path]:
    """Upstream layout of UCSD-AI4H/COVID-CT under ``base``; returns {dataset path: original}."""
    expected: dict[str, Path] = {}
    ucsd = base / UCSD
    (ucsd / "Images-processed").mkdir(parents=True)
    for cls in ("CT_COVID", "CT_NonCOVID"):
        files = _files(real / "covid19-ct" / cls)[:n]
        archive = ucsd / "Images-processed" / f"{cls}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(f"{cls}/", b"")
            for f in files:
                zf.write(f, f"{cls}/{f.name}")
                expected[f"{cls}/{f.name}"] = f
            # macOS debris as found in archives zipped on a Mac: must be skipped
            zf.writestr(f"{cls}/.DS_Store", b"\0junk")
            zf.writestr(f"__MACOSX/{cls}/._{files[0].name}", b"\0junk")
    meta = real / "covid19-ct" / "meta"
    for rel in ("COVID-CT-MetaInfo.xlsx", "NonCOVID-CT-MetaInfo.csv"):
        shutil.copyfile(meta / rel, ucsd / rel)
        expected[f"meta/{rel}"] = meta / rel
    for cls in ("COVID", "NonCOVID"):
        (ucsd / "Data-split" / cls).mkdir(parents=True)
        for split in ("train", "val", "test"):
            rel = f"Data-split/{cls}/{split}CT_{cls}.txt"
            shutil.copyfile(meta / rel, ucsd / rel)
            expected[f"meta/{rel}"] = meta / rel
    return expected


def _build_sars(base: Path, real: Path, n: int) -> dict[str, Path]:
    """A GitHub-style archive of CovCNN-WebApp holding ``n`` images per class."""
    expected: dict[str, Path] = {}
    archive = base / SARS_ZIP
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(SARS_TOP, b"")
        zf.writestr(SARS_TOP + "README.md", b"# CovCNN-WebApp\n")
        zf.writestr(SARS_TOP + "WebApp/manage.py", b"print('not data')\n")
        # AppleDouble debris that a "*/Dataset/COVID/" prefix would otherwise match
        zf.writestr("__MACOSX/Dataset/COVID/._Covid (1).png", b"\0junk")
        zf.writestr(SARS_TOP + "Dataset/non-COVID/.DS_Store", b"\0junk")
        for cls in ("COVID", "non-COVID"):
            for f in _files(real / "sars-cov-2-ct" / cls)[:n]:
                zf.write(f, f"{SARS_TOP}Dataset/{cls}/{f.name}")
                expected[f"{cls}/{f.name}"] = f
    return expected


# ---------------------------------------------------------------------------- server


@dataclass
class _State:
    root: Path
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut: dict[str, list[int]] = field(default_factory=dict)  # path -> [bytes to send, times]
    honour_range: bool = True
    overrides: dict[str, bytes] = field(default_factory=dict)
    stall: set[str] = field(default_factory=set)

    def reset(self) -> None:
        self.requests.clear()
        self.cut.clear()
        self.overrides.clear()
        self.stall.clear()
        self.honour_range = True

    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        st = self.server.state
        path = unquote(urlsplit(self.path).path)
        rng = self.headers.get("Range")
        st.requests.append((path, rng))
        data = st.overrides.get(path)
        if data is None:
            file = (st.root / path.lstrip("/")).resolve()
            if not file.is_relative_to(st.root) or not file.is_file():
                self.send_error(404)
                return
            data = file.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if_range = self.headers.get("If-Range")
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", rng.strip()) if rng and st.honour_range else None
        if if_range is not None and if_range != etag:  # changed since: send it all (RFC 9110)
            match = None
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes" if st.honour_range else "none")
        self.end_headers()
        cut = st.cut.get(path)
        if cut and cut[1] > 0:  # announce everything, send part, hang up
            cut[1] -= 1
            self.wfile.write(body[: cut[0]])
            self.wfile.flush()
            self.close_connection = True
            return
        if path in st.stall:
            self.wfile.write(body[:100])
            self.wfile.flush()
            time.sleep(1.0)
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # clients that hang up (timeouts) are part of the tests


@dataclass
class Mirror:
    base: str  # http://127.0.0.1:PORT
    state: _State
    covid19_full: dict[str, Path]
    covid19_small: dict[str, Path]
    sars_small: dict[str, Path]

    def url(self, tree: str) -> str:
        return f"{self.base}/{tree}"


@pytest.fixture(scope="session")
def mirror_server(tmp_path_factory: pytest.TempPathFactory) -> Mirror:
    real = _real_data_dir()
    if not ((real / "covid19-ct").is_dir() and (real / "sars-cov-2-ct").is_dir()):
        pytest.skip(
            f"real data sets not found at {real}: set CTLIB_DATA_DIR to the folder holding "
            "covid19-ct/ and sars-cov-2-ct/ (../shared/data in CI)"
        )
    root = tmp_path_factory.mktemp("mirror").resolve()
    full = _build_covid19(root / "full", real, None)
    small = _build_covid19(root / "small", real, N_SMALL_COVID19)
    sars = _build_sars(root / "small", real, N_SMALL_SARS)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = _State(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Mirror(f"http://127.0.0.1:{server.server_address[1]}", server.state, full, small, sars)
    server.shutdown()
    server.server_close()


@pytest.fixture
def mirror(mirror_server: Mirror) -> Mirror:
    mirror_server.state.reset()
    return mirror_server


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No mirror from the environment, no real kagglehub, no backoff sleeps."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import fails as if not installed
    monkeypatch.setattr(dl, "_BACKOFF_S", 0.0)


# ---------------------------------------------------------------------------- helpers


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_dataset(folder: Path, expected: dict[str, Path], n_pixels: int = 6) -> None:
    """Exactly the expected files, byte-identical; a sample decoded and pixel-identical."""
    got = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert got == set(expected)
    for rel, original in expected.items():
        assert _sha(folder / rel) == _sha(original), rel
    images = sorted(r for r in expected if r.lower().endswith((".png", ".jpg", ".jpeg")))
    for rel in images[:: max(1, len(images) // n_pixels)]:
        with Image.open(folder / rel) as a, Image.open(expected[rel]) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b)), rel


def _assert_clean(dest: Path, *names: str) -> None:
    """Only the data set folders in ``dest``: no .part, temp or cache leftovers."""
    assert sorted(p.name for p in dest.iterdir()) == sorted(names)
    assert not list(dest.rglob("*.part"))


def _zip_bytes(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def _fake_kagglehub(
    monkeypatch: pytest.MonkeyPatch, *, result: Path | None = None, error: Exception | None = None
) -> list[str]:
    calls: list[str] = []

    def dataset_download(handle: str, *args: object, **kwargs: object) -> str:
        calls.append(handle)
        if error is not None:
            raise error
        return str(result)

    module = types.ModuleType("kagglehub")
    module.dataset_download = dataset_download  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kagglehub", module)
    return calls


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- downloads


@realdata
def test_covid19_ct_full_download_matches_originals(mirror: Mirror, tmp_path: Path) -> None:
    out = download("covid19-ct", tmp_path, mirror=mirror.url("full"), progress=False, verify=False)
    assert out == tmp_path / "covid19-ct"
    assert len(list((out / "CT_COVID").iterdir())) == 349
    assert len(list((out / "CT_NonCOVID").iterdir())) == 397
    _assert_dataset(out, mirror.covid19_full, n_pixels=20)
    _assert_clean(tmp_path, "covid19-ct")


@realdata
def test_sars_download_via_env_mirror_takes_only_dataset_folders(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MIRROR_ENV, mirror.url("small") + "/")
    out = download("sars-cov-2-ct", tmp_path, progress=False, verify=False)
    _assert_dataset(out, mirror.sars_small)  # no README.md / WebApp/ from the archive
    assert mirror.state.paths() == [f"/small/{SARS_ZIP}"]
    _assert_clean(tmp_path, "sars-cov-2-ct")


@realdata
def test_verify_runs_real_verify_dataset_on_full_covid19_ct(mirror: Mirror, tmp_path: Path) -> None:
    out = download("covid19-ct", tmp_path, mirror=mirror.url("full"), progress=False, verify=True)
    _assert_dataset(out, mirror.covid19_full, n_pixels=2)


@realdata
def test_verify_hook_checks_staged_copy_before_it_lands(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, Path, set[str], bool]] = []

    def verify_dataset(name: str, root: Path, **options: object) -> VerificationReport:
        assert options == {"progress": False, "strict": False}
        files = {
            p.relative_to(Path(root) / name).as_posix()
            for p in (Path(root) / name).rglob("*")
            if p.is_file()
        }
        seen.append((name, Path(root), files, (tmp_path / name).exists()))
        return VerificationReport(name, Path(root) / name, len(files))  # all well

    monkeypatch.setattr(dl, "verify_dataset", verify_dataset)
    out = download("covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False)
    [(name, root, files, landed_before)] = seen
    assert name == "covid19-ct" and files == set(mirror.covid19_small)
    assert root.parent == tmp_path and root != tmp_path and not landed_before
    assert not root.exists()  # staging removed
    _assert_dataset(out, mirror.covid19_small)


@realdata
def test_failed_verification_discards_the_download_and_the_next_call_fetches_anew(
    mirror: Mirror, tmp_path: Path
) -> None:
    # the "small" mirror serves a few images of each class: a real verification against
    # the shipped manifest finds the rest missing
    with pytest.raises(DataVerificationError) as caught:
        download("covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False)
    message = str(caught.value)
    assert "missing" in message and "did not pass verification" in message
    assert "python -m ctlib download covid19-ct --no-verify" in message, "the CLI's flag"
    assert "force=True" not in message, "a force would only unpack the same archives again"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no data set, no cached archives"
    first = mirror.state.paths()
    assert first, "the archives were fetched"
    with pytest.raises(DataVerificationError):
        download("covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False)
    assert mirror.state.paths() == first + first, "the second call fetched every file again"
    out = download("covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False, verify=False)
    _assert_dataset(out, mirror.covid19_small)


# ---------------------------------------------------------------------------- interruptions


@realdata
@pytest.mark.parametrize("honour_range", [True, False], ids=["resume", "restart"])
def test_interrupted_transfer_then_second_call_completes(
    mirror: Mirror, tmp_path: Path, honour_range: bool
) -> None:
    path = f"/small/{COVID_ZIP}"
    mirror.state.cut[path] = [10_000, 1]
    mirror.state.honour_range = honour_range
    with pytest.raises(DownloadError, match=r"CT_COVID\.zip.*closed after 10000") as info:
        download(
            "covid19-ct",
            tmp_path,
            mirror=mirror.url("small"),
            progress=False,
            verify=False,
            retries=0,
        )
    assert "next call resumes it" in str(info.value)
    part = tmp_path / ".downloads" / "covid19-ct" / "CT_COVID.zip.part"
    assert part.stat().st_size == 10_000
    assert not (tmp_path / "covid19-ct").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".downloads"]
    assert sorted(p.name for p in part.parent.iterdir()) == [part.name, part.name + ".etag"]

    out = download(
        "covid19-ct",
        tmp_path,
        mirror=mirror.url("small"),
        progress=False,
        verify=False,
        retries=0,
        keep_archives=True,
    )
    zip_requests = [r for r in mirror.state.requests if r[0] == path]
    assert zip_requests == [(path, None), (path, "bytes=10000-")]
    served = (mirror.state.root / "small" / COVID_ZIP).read_bytes()
    assert (tmp_path / ".downloads" / "covid19-ct" / "CT_COVID.zip").read_bytes() == served
    _assert_dataset(out, mirror.covid19_small)
    assert not list(tmp_path.rglob("*.part"))


@realdata
def test_file_changed_upstream_before_resume_is_fetched_whole(
    mirror: Mirror, tmp_path: Path
) -> None:
    path = f"/small/{COVID_ZIP}"
    mirror.state.cut[path] = [10_000, 1]
    with pytest.raises(DownloadError, match="closed after 10000"):
        download(
            "covid19-ct",
            tmp_path,
            mirror=mirror.url("small"),
            progress=False,
            verify=False,
            retries=0,
        )
    changed = _zip_bytes([("CT_COVID/new.png", b"a new upstream version")])
    mirror.state.overrides[path] = changed
    out = download(
        "covid19-ct",
        tmp_path,
        mirror=mirror.url("small"),
        progress=False,
        verify=False,
        retries=0,
        keep_archives=True,
    )
    [first, second] = [r for r in mirror.state.requests if r[0] == path]
    assert second == (path, "bytes=10000-")  # asked to resume, If-Range made it send everything
    assert (tmp_path / ".downloads" / "covid19-ct" / "CT_COVID.zip").read_bytes() == changed
    assert (out / "CT_COVID" / "new.png").read_bytes() == b"a new upstream version"
    assert not list(tmp_path.rglob("*.etag"))


@realdata
def test_retry_inside_one_call_resumes(
    mirror: Mirror, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = f"/small/{NONCOVID_ZIP}"
    mirror.state.cut[path] = [5_000, 1]
    with caplog.at_level(logging.WARNING, logger="ctlib.data.fetch"):
        out = download(
            "covid19-ct",
            tmp_path,
            mirror=mirror.url("small"),
            progress=False,
            verify=False,
            retries=1,
        )
    zip_requests = [r for r in mirror.state.requests if r[0] == path]
    assert zip_requests == [(path, None), (path, "bytes=5000-")]
    assert "Retrying" in caplog.text
    _assert_dataset(out, mirror.covid19_small)
    _assert_clean(tmp_path, "covid19-ct")


@realdata
def test_stalled_server_times_out(mirror: Mirror, tmp_path: Path) -> None:
    mirror.state.stall.add(f"/small/{COVID_ZIP}")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="timed out"):
        download(
            "covid19-ct",
            tmp_path,
            mirror=mirror.url("small"),
            progress=False,
            verify=False,
            retries=0,
            timeout=0.2,
        )
    assert time.monotonic() - start < 5
    assert not (tmp_path / "covid19-ct").exists()


@realdata
def test_bad_archive_is_dropped_and_other_downloads_reused(mirror: Mirror, tmp_path: Path) -> None:
    bad = f"/small/{NONCOVID_ZIP}"
    mirror.state.overrides[bad] = b"this is not a zip file " * 100
    with pytest.raises(DownloadError, match="CT_NonCOVID.zip is not a valid zip"):
        download("covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False, verify=False)
    cache = tmp_path / ".downloads" / "covid19-ct"
    assert (cache / "CT_COVID.zip").is_file() and not (cache / "CT_NonCOVID.zip").exists()
    assert not (tmp_path / "covid19-ct").exists()

    mirror.state.reset()
    out = download("covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False, verify=False)
    assert mirror.state.paths() == [bad]  # everything else came from .downloads
    _assert_dataset(out, mirror.covid19_small)
    _assert_clean(tmp_path, "covid19-ct")


@realdata
@pytest.mark.parametrize("sha_ok", [True, False], ids=["match", "mismatch"])
def test_sha256_and_size_are_checked_when_known(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sha_ok: bool
) -> None:
    original = mirror.covid19_small["meta/COVID-CT-MetaInfo.xlsx"]
    pinned = tuple(
        replace(s, sha256=_sha(original) if sha_ok else "0" * 64, size=original.stat().st_size)
        if s.filename == "COVID-CT-MetaInfo.xlsx"
        else s
        for s in SOURCES["covid19-ct"]
    )
    monkeypatch.setitem(SOURCES, "covid19-ct", pinned)
    if sha_ok:
        out = download(
            "covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False, verify=False
        )
        _assert_dataset(out, mirror.covid19_small)
        return
    pattern = r"COVID-CT-MetaInfo\.xlsx.*sha256 [0-9a-f]{64}, expected 0{64}"
    with pytest.raises(DownloadError, match=pattern):
        download("covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False, verify=False)
    assert not (tmp_path / "covid19-ct").exists()
    assert not list(tmp_path.rglob("*.part"))
    assert not list(tmp_path.rglob("COVID-CT-MetaInfo.xlsx"))


# ---------------------------------------------------------------------------- hostile archives


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@realdata
@pytest.mark.parametrize("kind", ["dotdot", "nested-dotdot", "absolute", "symlink"])
def test_archive_members_escaping_dest_are_refused(
    mirror: Mirror, tmp_path: Path, kind: str
) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    outside.mkdir()
    member = {
        "dotdot": "../evil.png",
        "nested-dotdot": "CT_COVID/../../evil.png",
        "absolute": str(outside / "evil.png"),
        "symlink": "CT_COVID/evil.png",
    }[kind]
    info = _symlink_info(member) if kind == "symlink" else zipfile.ZipInfo(member)
    payload = str(outside / "evil.png").encode() if kind == "symlink" else b"evil"
    mirror.state.overrides[f"/small/{COVID_ZIP}"] = _zip_bytes(
        [("CT_COVID/ok.png", b"fine"), (info, payload)]
    )
    with pytest.raises(UnsafeArchiveError) as err:
        download("covid19-ct", dest, mirror=mirror.url("small"), progress=False, verify=False)
    assert repr(member) in str(err.value)
    assert not list(tmp_path.rglob("evil.png")) and not list(tmp_path.rglob("ok.png"))
    assert not (dest / "covid19-ct").exists()
    assert sorted(p.name for p in dest.iterdir()) == [".downloads"]  # no staging left
    assert not (dest / ".downloads" / "covid19-ct" / "CT_COVID.zip").exists(), "not kept"
    assert "the next call downloads it again" in str(err.value)


def _refused_then_fetched_anew(mirror: Mirror, dest: Path, match: str) -> None:
    """The refused archive is gone from the cache: with the mirror mended, the next call
    fetches it again and lands the data set."""
    with pytest.raises(UnsafeArchiveError, match=match) as err:
        download("covid19-ct", dest, mirror=mirror.url("small"), progress=False, verify=False)
    assert "CT_COVID.zip" in str(err.value) and "the next call downloads it again" in str(err.value)
    assert not (dest / "covid19-ct").exists() and not list(dest.rglob("*.png"))
    assert not (dest / ".downloads" / "covid19-ct" / "CT_COVID.zip").exists()
    mirror.state.reset()
    out = download("covid19-ct", dest, mirror=mirror.url("small"), progress=False, verify=False)
    assert f"/small/{COVID_ZIP}" in mirror.state.paths()
    _assert_dataset(out, mirror.covid19_small)


@realdata
def test_a_zip_bomb_is_refused_before_anything_is_unpacked(mirror: Mirror, tmp_path: Path) -> None:
    bomb = b"\0" * (dl.MAX_MEMBER_BYTES + 1)  # 64 MiB of zeros: 65 KB compressed
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("CT_COVID/ok.png", b"fine")
        zf.writestr("CT_COVID/bomb.png", bomb)
    assert len(buf.getvalue()) < 1 << 20
    mirror.state.overrides[f"/small/{COVID_ZIP}"] = buf.getvalue()
    _refused_then_fetched_anew(mirror, tmp_path, r"'CT_COVID/bomb\.png'.*MAX_MEMBER_BYTES")


@realdata
@pytest.mark.parametrize(
    ("limit", "value", "match"),
    [("MAX_ARCHIVE_BYTES", 10_000, "limit for one archive"), ("MAX_ARCHIVE_MEMBERS", 5, "entries")],
)
def test_an_archive_over_its_total_or_member_count_limit_is_refused(
    mirror: Mirror,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    limit: str,
    value: int,
    match: str,
) -> None:
    """The small mirror's CT_COVID.zip (12 images, well over 10 KB) against lowered limits."""
    monkeypatch.setattr(dl, limit, value)
    with pytest.raises(UnsafeArchiveError, match=f"{match}.*{limit}"):
        download("covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False, verify=False)
    assert not (tmp_path / "covid19-ct").exists()
    assert not (tmp_path / ".downloads" / "covid19-ct" / "CT_COVID.zip").exists()


@realdata
def test_a_download_with_a_file_the_manifest_does_not_list_is_refused(
    mirror: Mirror, tmp_path: Path
) -> None:
    """Every listed image intact, one more beside them: refused, not moved into place."""
    full = mirror.state.root / "full" / COVID_ZIP
    buf = io.BytesIO()
    with zipfile.ZipFile(full) as src, zipfile.ZipFile(buf, "w") as out:
        for info in src.infolist():
            out.writestr(info, src.read(info))
        out.writestr("CT_COVID/stray.png", b"not in the manifest")
    mirror.state.overrides[f"/full/{COVID_ZIP}"] = buf.getvalue()
    with pytest.raises(DataVerificationError) as caught:
        download("covid19-ct", tmp_path, mirror=mirror.url("full"), progress=False)
    message = str(caught.value)
    assert "1 extra (not in the manifest): CT_COVID/stray.png" in message
    assert "ignored" not in message and "fetches them anew" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing moved in, nothing cached"


# ---------------------------------------------------------------------------- present / force


@realdata
def test_present_dataset_is_not_downloaded_again_unless_forced(
    mirror: Mirror, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = download(
        "covid19-ct",
        tmp_path,
        mirror=mirror.url("small"),
        progress=False,
        verify=False,
        keep_archives=True,
    )
    (out / "marker.txt").write_text("from the first download")
    mirror.state.reset()
    with caplog.at_level(logging.INFO, logger="ctlib.data.fetch"):
        again = download(
            "covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False, verify=False
        )
    assert again == out and mirror.state.requests == []
    assert "already at" in caplog.text and (out / "marker.txt").exists()

    forced = download(
        "covid19-ct", tmp_path, mirror=mirror.url("small"), progress=False, verify=False, force=True
    )
    assert forced == out  # force fetched everything again, ignoring the kept archives
    assert sorted(mirror.state.paths()) == sorted(
        f"/small/{UCSD}/" + s.url.split("/raw/master/")[1] for s in SOURCES["covid19-ct"]
    )
    _assert_dataset(out, mirror.covid19_small)  # the marker is gone: the folder was replaced
    _assert_clean(tmp_path, "covid19-ct")


# ---------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name, pattern",
    [
        (
            "covid-ct",
            r"Unknown data set 'covid-ct'; known: covid19-ct, sars-cov-2-ct\. "
            r"Did you mean 'covid19-ct'\?",
        ),
        ("mnist", r"Unknown data set 'mnist'; known: covid19-ct, sars-cov-2-ct\.$"),
        ("synthetic", r"generated locally.*ctlib\.data\.load_dataset\('synthetic'\)"),
    ],
)
def test_bad_names_raise_value_error_before_touching_disk(
    tmp_path: Path, name: str, pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern):
        download(name, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_sources_table_covers_the_upstream_layout() -> None:
    assert set(SOURCES) == set(REAL_DATASETS)
    for name, sources in SOURCES.items():
        for s in sources:
            assert s.kind in ("zip", "file", "kaggle") and s.members, (name, s)
            assert s.provider == ("kaggle" if s.kind == "kaggle" else "github"), s
            assert s.url.startswith("https://"), s
    covid = {dst for s in SOURCES["covid19-ct"] for _, dst in s.members}
    assert covid == {
        "CT_COVID/",
        "CT_NonCOVID/",
        "meta/COVID-CT-MetaInfo.xlsx",
        "meta/NonCOVID-CT-MetaInfo.csv",
    } | {
        f"meta/Data-split/{c}/{sp}CT_{c}.txt"
        for c in ("COVID", "NonCOVID")
        for sp in ("train", "val", "test")
    }
    assert [s.provider for s in SOURCES["sars-cov-2-ct"]] == ["kaggle", "github"]
    assert COMMIT in SOURCES["sars-cov-2-ct"][1].url


def test_mirror_url_replaces_scheme_and_host() -> None:
    url = "https://github.com/UCSD-AI4H/COVID-CT/raw/master/Images-processed/CT_COVID.zip"
    assert mirror_url(url, None) == url
    assert (
        mirror_url(url, "http://127.0.0.1:9/cache/")
        == "http://127.0.0.1:9/cache/UCSD-AI4H/COVID-CT/raw/master/Images-processed/CT_COVID.zip"
    )
    assert mirror_url("https://h.example/a/b.zip?x=1", "http://m") == "http://m/a/b.zip?x=1"


# ---------------------------------------------------------------------------- kaggle / fallback


def test_plan_without_kagglehub_uses_github_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # as if not installed (also autouse)
    plan = plan_download("sars-cov-2-ct")
    assert plan.providers == ("github",)
    assert plan.skipped == (("kaggle", "kagglehub is not installed (pip install kagglehub)"),)
    assert plan_download("covid19-ct").providers == ("github",)


def test_plan_with_kagglehub_prefers_kaggle_unless_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_kagglehub(monkeypatch, result=Path("/nonexistent"))
    assert plan_download("sars-cov-2-ct").providers == ("kaggle", "github")
    plan = plan_download("sars-cov-2-ct", mirror="http://127.0.0.1:1")
    assert plan.providers == ("github",)
    assert "mirror is set" in dict(plan.skipped)["kaggle"]


@realdata
@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_kaggle_download_is_copied_into_layout(
    mirror: Mirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nested: bool
) -> None:
    kaggle_root = tmp_path / "kagglehub-cache"
    base = kaggle_root / "sarscov2-ctscan-dataset" if nested else kaggle_root
    for rel, original in mirror.sars_small.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, base / rel)
    (base / "COVID" / ".DS_Store").write_bytes(b"\0")
    calls = _fake_kagglehub(monkeypatch, result=kaggle_root)
    dest = tmp_path / "dest"
    out = download("sars-cov-2-ct", dest, progress=False, verify=False)
    assert calls == ["plameneduardo/sarscov2-ctscan-dataset"]
    assert mirror.state.requests == []
    _assert_dataset(out, mirror.sars_small)
    _assert_clean(dest, "sars-cov-2-ct")


@realdata
def test_kaggle_failure_falls_back_to_github(
    mirror: Mirror,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = _fake_kagglehub(monkeypatch, error=PermissionError("403 Forbidden: no credentials"))
    kaggle, github = SOURCES["sars-cov-2-ct"]
    local = replace(github, url=f"{mirror.url('small')}/{SARS_ZIP}")  # the table is data
    monkeypatch.setitem(SOURCES, "sars-cov-2-ct", (kaggle, local))
    with caplog.at_level(logging.WARNING, logger="ctlib.data.fetch"):
        out = download("sars-cov-2-ct", tmp_path, progress=False, verify=False)
    assert calls == ["plameneduardo/sarscov2-ctscan-dataset"]
    assert "kaggle failed" in caplog.text and "403 Forbidden" in caplog.text
    _assert_dataset(out, mirror.sars_small)


@pytest.mark.parametrize("via", ["mirror", "no-kagglehub"])
def test_message_when_every_source_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    port = _closed_port()
    mirror = None
    if via == "mirror":
        mirror = f"http://127.0.0.1:{port}/cache"
        tried = f"{mirror}/{SARS_ZIP}"
    else:  # no mirror, kagglehub absent, GitHub unreachable (pointed at a closed port)
        kaggle, github = SOURCES["sars-cov-2-ct"]
        tried = f"http://127.0.0.1:{port}/{SARS_ZIP}"
        monkeypatch.setitem(SOURCES, "sars-cov-2-ct", (kaggle, replace(github, url=tried)))
    with pytest.raises(DownloadError) as err:
        download("sars-cov-2-ct", tmp_path, mirror=mirror, progress=False, verify=False, retries=0)
    text = str(err.value)
    assert f"Could not download {tried} after 1 attempt(s)" in text
    assert "ConnectionRefusedError" in text
    assert "mirror is set" in text if via == "mirror" else "kagglehub is not installed" in text
    for needle in (
        "pip install kagglehub",
        "kaggle.json",
        "~/.kaggle",
        "KAGGLE_USERNAME",
        "KAGGLE_KEY",
        f"download {tried}",
        f"Dataset/COVID/ to {tmp_path / 'sars-cov-2-ct' / 'COVID'}",
        f"Dataset/non-COVID/ to {tmp_path / 'sars-cov-2-ct' / 'non-COVID'}",
    ):
        assert needle in text, needle
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing fetched, no staging left
