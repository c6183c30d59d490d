"""Download the two real data sets (the paper's Sec. 3) from their public sources.

:func:`download` fetches a data set and lays it out as the data layer reads it
(``data/README.md``); where the files come from is data (:data:`SOURCES`), not code. Transfers
resume and retry, archives are extracted out of sight and verified before the data set appears,
and unsafe archive members are refused. ``CTLIB_DOWNLOAD_MIRROR`` replaces the host of every
GitHub URL. See docs/DEVELOPERS.md, *Downloads (data.fetch)*.
"""

from __future__ import annotations

import contextlib
import difflib
import http.client
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from pathlib import Path, PurePosixPath
from typing import Literal, NoReturn
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from ctlib import __version__
from ctlib.data.registry import REAL_DATASETS
from ctlib.data.verify import verify_dataset
from ctlib.errors import DataVerificationError, DownloadError, UnsafeArchiveError
from ctlib.files import sha256_file
from ctlib.paths import data_dir

__all__ = [
    "MIRROR_ENV",
    "SOURCES",
    "DownloadError",
    "DownloadPlan",
    "Source",
    "UnsafeArchiveError",
    "download",
    "kagglehub_status",
    "mirror_url",
    "plan_download",
]

logger = logging.getLogger(__name__)

MIRROR_ENV = "CTLIB_DOWNLOAD_MIRROR"

_USER_AGENT = f"ctlib/{__version__} (+https://github.com/UCSD-AI4H/COVID-CT)"
_CHUNK = 1 << 16
_BACKOFF_S = 1.0  # first retry waits this long, then 2x, 4x, ...
_RETRY_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
_SKIP_NAMES = frozenset({".DS_Store", "Thumbs.db"})

# Limits on what an archive may unpack (a zip bomb is refused, not extracted). The largest
# image of the two data sets is 1.3 MB and both together are under 200 MB in 3228 images
# (the shipped manifests); the limits leave a wide margin and still stop a bomb early.
#: bytes one extracted member may hold (about 50 times the largest image)
MAX_MEMBER_BYTES = 64 << 20
#: bytes one archive may unpack in all (about 10 times both data sets)
MAX_ARCHIVE_BYTES = 2 << 30
#: entries an archive may list (a GitHub repository archive holding the images included)
MAX_ARCHIVE_MEMBERS = 100_000
_SKIP_DIRS = frozenset({"__MACOSX"})


@dataclass(frozen=True)
class Source:
    """One place a part of a data set comes from.

    Attributes:
        url: where to fetch it. For ``kind="kaggle"`` the data set's Kaggle page; its last two
            path parts are the ``owner/slug`` handle given to ``kagglehub``.
        kind: ``"zip"`` (an archive to extract), ``"file"`` (a single file to place) or
            ``"kaggle"`` (fetched with ``kagglehub.dataset_download``).
        members: pairs ``(where in the source, where in the data set folder)``. For a zip, a
            member-path prefix (a folder, ending in ``/``); a leading ``*/`` matches the one
            top-level folder that GitHub archives add. For a file, its name and its path in the
            data set. For Kaggle, a folder of the download (searched for if nested).
        provider: sources with the same provider are fetched together; a data set's providers
            are alternatives, tried in table order.
        sha256: expected checksum of the downloaded file, or None when unknown or unstable.
        size: expected size in bytes, or None when unknown or unstable.
    """

    url: str
    kind: Literal["zip", "file", "kaggle"]
    members: tuple[tuple[str, str], ...]
    provider: str = "github"
    sha256: str | None = None
    size: int | None = None

    @property
    def filename(self) -> str:
        """The file name the download is stored under in ``<dest>/.downloads/<name>/``."""
        return PurePosixPath(urlsplit(self.url).path).name

    @property
    def kaggle_handle(self) -> str:
        """``owner/slug`` for a Kaggle source (the last two parts of its URL path)."""
        return "/".join(PurePosixPath(urlsplit(self.url).path).parts[-2:])


# UCSD-AI4H/COVID-CT (Zhao et al. 2020), branch master, laid out as its README says: the
# images in Images-processed/CT_COVID.zip and CT_NonCOVID.zip (each holding one top-level
# folder of the same name), the official split lists in Data-split/{COVID,NonCOVID}/, and the
# two meta tables at the repository root. GitHub serves raw files from a branch, so their
# bytes change when upstream commits; no checksums are pinned. Each image is checked after
# the download by ctlib.data.verify_dataset (pixel hashes), which is the check that matters.
_UCSD_REF = "master"
_UCSD = f"https://github.com/UCSD-AI4H/COVID-CT/raw/{_UCSD_REF}/"

# The SARS-CoV-2 CT-scan data set (Soares et al. 2020) lives on Kaggle; the public GitHub
# mirror the shared copy was taken from is dwaipayan05/CovCNN-WebApp at this commit (later
# commits moved the images to Git LFS). GitHub builds archive zips on the fly, so their bytes
# (timestamps, order) are not stable and no checksum can be pinned.
_COVCNN_COMMIT = "1b912a4ba27b4548103a598b169e939d0b933806"


def _split_file(cls: str, split: str) -> Source:
    name = f"{split}CT_{cls}.txt"
    return Source(
        _UCSD + f"Data-split/{cls}/{name}", "file", ((name, f"meta/Data-split/{cls}/{name}"),)
    )


SOURCES: dict[str, tuple[Source, ...]] = {
    "covid19-ct": (
        Source(_UCSD + "Images-processed/CT_COVID.zip", "zip", (("CT_COVID/", "CT_COVID/"),)),
        Source(
            _UCSD + "Images-processed/CT_NonCOVID.zip", "zip", (("CT_NonCOVID/", "CT_NonCOVID/"),)
        ),
        Source(
            _UCSD + "COVID-CT-MetaInfo.xlsx",
            "file",
            (("COVID-CT-MetaInfo.xlsx", "meta/COVID-CT-MetaInfo.xlsx"),),
        ),
        Source(
            _UCSD + "NonCOVID-CT-MetaInfo.csv",
            "file",
            (("NonCOVID-CT-MetaInfo.csv", "meta/NonCOVID-CT-MetaInfo.csv"),),
        ),
        *(
            _split_file(cls, split)
            for cls in ("COVID", "NonCOVID")
            for split in ("train", "val", "test")
        ),
    ),
    "sars-cov-2-ct": (
        Source(
            "https://www.kaggle.com/datasets/plameneduardo/sarscov2-ctscan-dataset",
            "kaggle",
            (("COVID/", "COVID/"), ("non-COVID/", "non-COVID/")),
            provider="kaggle",
        ),
        Source(
            f"https://github.com/dwaipayan05/CovCNN-WebApp/archive/{_COVCNN_COMMIT}.zip",
            "zip",
            (("*/Dataset/COVID/", "COVID/"), ("*/Dataset/non-COVID/", "non-COVID/")),
        ),
    ),
}


@dataclass(frozen=True)
class DownloadPlan:
    """Which providers ``download`` will try for a data set, and why others are left out.

    Attributes:
        name: the data set.
        providers: providers to try, in order.
        skipped: pairs ``(provider, reason)`` for providers that will not be tried.
    """

    name: str
    providers: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------- public helpers


def mirror_url(url: str, mirror: str | None) -> str:
    """Replace ``scheme://host`` of ``url`` with the ``mirror`` base URL (unchanged if None).

    Example:
        >>> mirror_url("https://github.com/UCSD-AI4H/COVID-CT/raw/master/x.zip",
        ...            "http://127.0.0.1:8000/m")
        'http://127.0.0.1:8000/m/UCSD-AI4H/COVID-CT/raw/master/x.zip'
    """
    if not mirror:
        return url
    parts = urlsplit(url)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return mirror.rstrip("/") + rest


def kagglehub_status() -> str | None:
    """None if ``kagglehub`` can be used; otherwise why not, in words a user can act on."""
    try:
        import kagglehub  # noqa: F401  (only checking that it is there)  # lazy: an optional extra (pip install -e ".[kaggle]")
    except ImportError:
        return "kagglehub is not installed (pip install kagglehub)"
    return None


def plan_download(name: str, mirror: str | None = None) -> DownloadPlan:
    """Decide which providers to try for ``name``, in order.

    Kaggle is tried only when ``kagglehub`` is importable and no mirror is set (a mirror serves
    the GitHub paths only). GitHub is always tried.

    Args:
        name: one of ``REAL_DATASETS``.
        mirror: the mirror base URL in effect, if any.
    """
    _check_name(name)
    providers: list[str] = []
    skipped: list[tuple[str, str]] = []
    for provider in dict.fromkeys(s.provider for s in SOURCES[name]):
        why_not = None
        if provider == "kaggle":
            if mirror:
                why_not = f"a mirror is set ({mirror}); mirrors serve the GitHub sources only"
            else:
                why_not = kagglehub_status()
        if why_not is None:
            providers.append(provider)
        else:
            skipped.append((provider, why_not))
    return DownloadPlan(name, tuple(providers), tuple(skipped))


# ---------------------------------------------------------------------------- download


def download(
    name: str,
    dest: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    force: bool = False,
    progress: bool = True,
    verify: bool = True,
    keep_archives: bool = False,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """Download a data set and lay it out like the shared copy; return its folder.

    Args:
        name: ``"covid19-ct"`` or ``"sars-cov-2-ct"`` (see ``ctlib.data.REAL_DATASETS``).
        dest: folder that will hold ``<name>/``; default ``ctlib.paths.data_dir()``.
        mirror: base URL replacing ``scheme://host`` of the GitHub URLs (default: the
            ``CTLIB_DOWNLOAD_MIRROR`` environment variable). With a mirror, Kaggle is skipped.
        force: fetch again even if ``<dest>/<name>`` exists (it is replaced only once the new
            copy is complete).
        progress: show tqdm progress bars.
        verify: check every image with ``ctlib.data.verify_dataset`` before the data set is
            moved into place.
        keep_archives: keep the downloaded files in ``<dest>/.downloads/<name>/`` afterwards.
        timeout: seconds a connection may stall before the attempt counts as failed.
        retries: further attempts per file after a failed one (with exponential backoff).

    Returns:
        ``Path(dest) / name``.

    Raises:
        ValueError: unknown ``name``, or ``"synthetic"`` (made locally, nothing to download).
        DownloadError: no source worked; the message lists what was tried and the manual steps.
        UnsafeArchiveError: an archive member would be written outside the destination.

    Example:
        >>> root = download("sars-cov-2-ct", "data")  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
        ['COVID', 'non-COVID']
    """
    _check_name(name)
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    root = data_dir(dest)
    if root.exists() and not root.is_dir():
        raise DownloadError(f"{root} is a file, not a folder: give --dest (dest=) a folder.")
    target = root / name
    if _is_present(target) and not force:
        logger.info(
            "%s is already at %s; not downloading it again (--force or force=True fetches it anew; "
            "ctlib.data.verify_dataset checks it)",
            name,
            target,
        )
        return target
    if target.exists() and not target.is_dir():
        raise DownloadError(f"{target} exists and is not a folder; move it away and try again")
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV, "").strip() or None

    plan = plan_download(name, mirror)
    for provider, why in plan.skipped:
        logger.info("%s: not trying %s: %s", name, provider, why)
    root.mkdir(parents=True, exist_ok=True)
    cache = root / ".downloads" / name
    if force and cache.exists():
        _remove_tree(cache)

    failures: list[tuple[str, str]] = list(plan.skipped)
    staging_root = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
    staged = staging_root / name
    try:
        last_error: DownloadError | None = None
        for provider in plan.providers:
            sources = tuple(s for s in SOURCES[name] if s.provider == provider)
            if staged.exists():
                _remove_tree(staged)
            staged.mkdir()
            try:
                _stage(
                    sources,
                    staged,
                    cache,
                    mirror=mirror,
                    progress=progress,
                    timeout=timeout,
                    retries=retries,
                )
            except UnsafeArchiveError:
                raise
            except DownloadError as exc:
                logger.warning("%s: %s failed: %s", name, provider, exc)
                failures.append((provider, str(exc)))
                last_error = exc
                continue
            break
        else:
            raise DownloadError(_failure_message(name, root, mirror, failures)) from last_error
        if verify:
            _verify(name, staging_root, cache, progress=progress)
        _swap_into_place(staged, target)
    finally:
        _remove_tree(staging_root)
        _remove_empty_dir(cache)  # a failed run that fetched nothing leaves no trace
        _remove_empty_dir(cache.parent)
    if not keep_archives:
        _remove_tree(cache)
        _remove_empty_dir(cache.parent)
    logger.info("%s is ready at %s", name, target)
    return target


# ---------------------------------------------------------------------------- internals


def _check_name(name: str) -> None:
    if name in REAL_DATASETS:
        return
    if name == "synthetic":
        raise ValueError(
            "'synthetic' is generated locally and needs no download; use "
            "ctlib.data.load_dataset('synthetic')."
        )
    close = difflib.get_close_matches(str(name), REAL_DATASETS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown data set {name!r}; known: {', '.join(sorted(REAL_DATASETS))}.{hint}")


def _is_present(target: Path) -> bool:
    return target.is_dir() and any(target.iterdir())


def _stage(
    sources: Iterable[Source],
    staged: Path,
    cache: Path,
    *,
    mirror: str | None,
    progress: bool,
    timeout: float,
    retries: int,
) -> None:
    """Fetch every source (reusing complete files in ``cache``), then place them in ``staged``."""
    sources = tuple(sources)
    fetched: dict[Source, Path] = {}
    for source in sources:
        if source.kind in ("zip", "file"):
            url = mirror_url(source.url, mirror)
            fetched[source] = _fetch(
                url,
                cache / source.filename,
                size=source.size,
                sha256=source.sha256,
                progress=progress,
                timeout=timeout,
                retries=retries,
            )
    for source in sources:
        if source.kind == "kaggle":
            _place_kaggle(source, staged)
        elif source.kind == "zip":
            _extract_zip(fetched[source], source.members, staged, progress=progress)
        elif source.kind == "file":
            path = fetched[source]
            ((_, rel),) = source.members
            out = _inside(staged, rel)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)
        else:
            raise ValueError(
                f"Source {source.url} has unknown kind {source.kind!r}; "
                "expected 'zip', 'file' or 'kaggle'"
            )


def _fetch(
    url: str,
    path: Path,
    *,
    size: int | None,
    sha256: str | None,
    progress: bool,
    timeout: float,
    retries: int,
) -> Path:
    """Download ``url`` to ``path`` via ``path.part``, resuming and retrying; return ``path``."""
    if path.is_file():
        problem = _check_file(path, size, sha256)
        if problem is None:
            logger.info("Using %s, downloaded earlier", path)
            return path
        logger.warning("Downloading %s again: the earlier copy %s", url, problem)
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    last: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            delay = _BACKOFF_S * 2 ** (attempt - 1)
            logger.warning(
                "Retrying %s in %.1f s (attempt %d of %d) after: %s",
                url,
                delay,
                attempt + 1,
                retries + 1,
                last,
            )
            time.sleep(delay)
        try:
            _stream(url, part, progress=progress, timeout=timeout)
            break
        except urllib.error.HTTPError as exc:
            last = exc
            if exc.code == 416:  # our Range is past the end: the .part is unusable
                part.unlink(missing_ok=True)
                _validator_file(part).unlink(missing_ok=True)
            elif exc.code not in _RETRY_HTTP:
                raise DownloadError(f"{url} answered HTTP {exc.code} ({exc.reason})") from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, cut transfers
            last = exc
    else:
        kept = (
            f"; the partial file {part} is kept and the next call resumes it"
            if part.exists()
            else ""
        )
        raise DownloadError(
            f"Could not download {url} after {retries + 1} attempt(s): {_describe(last)}{kept}"
        ) from last
    _validator_file(part).unlink(missing_ok=True)
    problem = _check_file(part, size, sha256)
    if problem is not None:
        part.unlink()
        raise DownloadError(
            f"Downloaded {url} but the file {problem}; it was deleted. "
            "The source may have changed upstream; try a mirror or report it."
        )
    os.replace(part, path)
    return path


class _IncompleteTransfer(OSError):
    """The connection closed before all announced bytes arrived."""


def _stream(url: str, part: Path, *, progress: bool, timeout: float) -> None:
    """One attempt: append to ``part`` from where it stops (HTTP Range), or start it over."""
    offset = part.stat().st_size if part.exists() else 0
    validator = _validator_file(part)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
        if validator.is_file():  # the server sends everything anew if the file changed meanwhile
            request.add_header("If-Range", validator.read_text())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if offset and response.status == 206:
            start = _range_start(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink()
                raise _IncompleteTransfer(
                    f"server resumed at byte {start}, not {offset}; restarting"
                )
            mode = "ab"
            logger.info("Resuming %s at byte %d", url, offset)
        else:
            if offset:
                logger.info("%s does not resume downloads; starting it over", url)
            offset, mode = 0, "wb"
            _save_validator(validator, response.headers)
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        written = 0
        with (
            open(part, mode) as fh,
            tqdm(
                total=None if expected is None else offset + expected,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=PurePosixPath(part.name).stem,
                disable=not progress,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        if expected is not None and written < expected:
            raise _IncompleteTransfer(
                f"connection closed after {offset + written} of {offset + expected} bytes"
            )


def _validator_file(part: Path) -> Path:
    return part.with_name(part.name + ".etag")


def _save_validator(validator: Path, headers: Message) -> None:
    """Remember a strong ETag (or Last-Modified) for ``If-Range`` when resuming, or forget it."""
    etag = headers.get("ETag", "")
    value = etag if etag and not etag.startswith("W/") else headers.get("Last-Modified", "")
    if value:
        validator.write_text(value)
    else:
        validator.unlink(missing_ok=True)


def _range_start(content_range: str) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", content_range)
    return int(match.group(1)) if match else None


def _check_file(path: Path, size: int | None, sha256: str | None) -> str | None:
    """None if ``path`` has the expected size and checksum (where known), else what is wrong."""
    if size is not None and path.stat().st_size != size:
        return f"has {path.stat().st_size} bytes, expected {size}"
    if sha256 is not None:
        digest = sha256_file(path)
        if digest != sha256.lower():
            return f"has sha256 {digest}, expected {sha256}"
    return None


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return f"{type(exc.reason).__name__}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    """Why writing this member could escape the destination, or None if it cannot."""
    name = info.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' in the path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def _skipped_member(name: str) -> bool:
    parts = name.split("/")
    return (
        bool(_SKIP_DIRS.intersection(parts))
        or parts[-1] in _SKIP_NAMES
        or parts[-1].startswith("._")
    )  # AppleDouble resource forks


def _match_prefix(name: str, prefix: str) -> str | None:
    """The rest of ``name`` after ``prefix`` (``*/`` = any top-level folder), or None."""
    if prefix.startswith("*/"):
        top, sep, name = name.partition("/")
        if not sep:
            return None
        prefix = prefix[2:]
    return name[len(prefix) :] if name.startswith(prefix) else None


def _inside(root: Path, rel: str) -> Path:
    """``root / rel``, refusing anything that resolves outside ``root``."""
    out = (root / rel).resolve()
    if not out.is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"{rel!r} would be written outside {root}")
    return out


def _extract_zip(
    archive: Path, members: tuple[tuple[str, str], ...], staged: Path, *, progress: bool
) -> None:
    """Extract the mapped folders of ``archive`` into ``staged``; refuse unsafe archives.

    Refused (:class:`UnsafeArchiveError`, the archive deleted so that the next call fetches
    it anew): a member that would be written outside ``staged``; more than
    :data:`MAX_ARCHIVE_MEMBERS` entries; a member over :data:`MAX_MEMBER_BYTES` or, all
    together, over :data:`MAX_ARCHIVE_BYTES` once unpacked, checked on the sizes the
    archive declares before anything is written and again on the bytes actually unpacked.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ARCHIVE_MEMBERS:
                _refuse(archive, f"it lists {len(infos)} entries, over the limit of "
                        f"{MAX_ARCHIVE_MEMBERS} (MAX_ARCHIVE_MEMBERS)")  # fmt: skip
            for info in infos:
                reason = _unsafe_reason(info)
                if reason is not None:
                    _refuse(archive, f"member {info.filename!r} would be written outside "
                            f"the destination ({reason})")  # fmt: skip
            counts = dict.fromkeys((prefix for prefix, _ in members), 0)
            todo: list[tuple[zipfile.ZipInfo, Path]] = []
            for info in infos:
                if info.is_dir() or _skipped_member(info.filename):
                    continue
                for prefix, dest in members:
                    rest = _match_prefix(info.filename, prefix)
                    if rest:
                        todo.append((info, _inside(staged, dest + rest)))
                        counts[prefix] += 1
                        break
            empty = [prefix for prefix, n in counts.items() if n == 0]
            if empty:
                tops = sorted({i.filename.split("/")[0] for i in infos})[:10]
                raise DownloadError(
                    f"{archive.name} has no files under {', '.join(empty)}; its top-level "
                    f"entries are {tops}. The upstream layout may have changed."
                )
            declared = 0
            for info, _ in todo:  # what the archive says, before a byte is written
                _check_sizes(archive, info.filename, info.file_size, declared + info.file_size)
                declared += info.file_size
            total = 0
            for info, out in tqdm(
                todo, desc=f"extract {archive.name}", unit="file", disable=not progress
            ):
                out.parent.mkdir(parents=True, exist_ok=True)
                written = 0
                with zf.open(info) as src, open(out, "wb") as dst:
                    while chunk := src.read(1 << 20):  # what it unpacks to, which may differ
                        written += len(chunk)
                        total += len(chunk)
                        _check_sizes(archive, info.filename, written, total)
                        dst.write(chunk)
    except zipfile.BadZipFile as exc:
        archive.unlink(missing_ok=True)
        raise DownloadError(
            f"{archive.name} is not a valid zip ({exc}); it was deleted so that "
            "the next call downloads it again"
        ) from exc


def _check_sizes(archive: Path, member: str, size: int, total: int) -> None:
    """Refuse ``archive`` if ``member`` unpacks to more than :data:`MAX_MEMBER_BYTES` or
    the archive so far to more than :data:`MAX_ARCHIVE_BYTES`."""
    if size > MAX_MEMBER_BYTES:
        _refuse(archive, f"member {member!r} unpacks to more than {MAX_MEMBER_BYTES} bytes, "
                "the limit for one file (MAX_MEMBER_BYTES)")  # fmt: skip
    if total > MAX_ARCHIVE_BYTES:
        _refuse(archive, f"it unpacks to more than {MAX_ARCHIVE_BYTES} bytes, the limit "
                "for one archive (MAX_ARCHIVE_BYTES)")  # fmt: skip


def _refuse(archive: Path, why: str) -> NoReturn:
    """Delete a refused archive (the next call fetches it anew) and say so."""
    archive.unlink(missing_ok=True)
    raise UnsafeArchiveError(
        f"Refusing {archive.name}: {why}. Nothing from it was moved into place, and it was "
        "deleted: the next call downloads it again. If it came from a mirror "
        f"(--mirror or {MIRROR_ENV}), the mirror serves a bad file: fix it or drop it first."
    )


def _place_kaggle(source: Source, staged: Path) -> None:
    """Fetch with ``kagglehub`` and copy the mapped class folders into ``staged``."""
    import kagglehub  # lazy: optional dependency (pip install -e ".[kaggle]")

    handle = source.kaggle_handle
    try:
        downloaded = Path(kagglehub.dataset_download(handle))
    except Exception as exc:  # kagglehub has no common error type; the cause is chained
        raise DownloadError(
            f"kagglehub could not download {handle}: {type(exc).__name__}: {exc}"
        ) from exc
    for folder, dest in source.members:
        src = _find_folder(downloaded, folder.strip("/"))
        out = _inside(staged, dest)
        out.mkdir(parents=True, exist_ok=True)
        for file in sorted(src.iterdir()):
            if file.is_file() and not file.is_symlink() and not _skipped_member(file.name):
                shutil.copyfile(file, out / file.name)


def _find_folder(root: Path, name: str) -> Path:
    """``root/name``, or the shallowest folder called ``name`` below ``root``."""
    if (root / name).is_dir():
        return root / name
    found = sorted(
        (p for p in root.rglob(name) if p.is_dir() and "__MACOSX" not in p.parts),
        key=lambda p: len(p.parts),
    )
    if not found:
        raise DownloadError(
            f"The Kaggle download at {root} has no folder {name!r}; "
            "its layout may have changed upstream."
        )
    return found[0]


def _verify(name: str, staging_root: Path, cache: Path, *, progress: bool) -> None:
    """Run ``ctlib.data.verify_dataset`` on the staged copy before it is moved into place.

    A copy that fails is not moved into place, and the downloaded files it came from are
    deleted, so that the next call fetches them anew instead of unpacking the same bad
    archives again. A fresh download must hold exactly the manifest's images: a file the
    manifest does not list fails it too (a local copy's extra files are only reported).
    """
    report = verify_dataset(name, root=staging_root, progress=progress, strict=False)
    if report.ok and not report.extra:
        logger.info("%s verified: %s", name, report)
        return
    _remove_tree(cache)
    fix = (
        f"  Nothing was moved into place, and the downloaded files were deleted: running "
        f"python -m ctlib download {name} again fetches them anew (a mirror that serves "
        f"other files needs fixing first). To keep a copy that fails verification anyway: "
        f"python -m ctlib download {name} --no-verify (in Python: "
        f"ctlib.data.download({name!r}, verify=False))."
    )
    raise DataVerificationError(
        f"The downloaded copy of {name!r} did not pass verification.\n"
        + report.message(fix=fix, extra_refused=True),
        report,
    )


def _swap_into_place(staged: Path, target: Path) -> None:
    """Move ``staged`` to ``target``; an existing ``target`` is replaced only after that works."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(target, old)
    try:
        os.replace(staged, target)
    except OSError:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        _remove_tree(old)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return

    def _log(func, p, exc):  # noqa: ANN001 (shutil callback)
        error = exc if isinstance(exc, BaseException) else exc[1]  # onexc / onerror
        logger.warning("Could not remove %s: %s", p, error)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_log)
    else:
        shutil.rmtree(path, onerror=_log)


def _remove_empty_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or gone: both fine
        path.rmdir()


def _failure_message(
    name: str, root: Path, mirror: str | None, failures: list[tuple[str, str]]
) -> str:
    """What was tried, why each failed, and how to get the data by hand."""
    lines = [f"Could not download {name!r}. Tried:"]
    lines += [f"  - {provider}: {why}" for provider, why in failures]
    lines.append("To fix it, do one of:")
    target = root / name
    for i, provider in enumerate(dict.fromkeys(s.provider for s in SOURCES[name]), start=1):
        sources = [s for s in SOURCES[name] if s.provider == provider]
        if provider == "kaggle":
            handle = sources[0].kaggle_handle
            lines.append(
                f"  {i}. pip install kagglehub, and put kaggle.json (from "
                "https://www.kaggle.com/settings) in ~/.kaggle/ or set "
                f"KAGGLE_USERNAME and KAGGLE_KEY, then call download({name!r}) again "
                f"without a mirror (Kaggle data set {handle}, {sources[0].url})."
            )
            continue
        lines.append(
            f"  {i}. Fetch the files by hand (or check your connection or the mirror, and retry):"
        )
        for source in sources:
            url = mirror_url(source.url, mirror)
            also = f" (upstream: {source.url})" if url != source.url else ""
            if source.kind == "zip":
                for prefix, dest in source.members:
                    shown = prefix.replace("*/", "<top folder>/", 1)
                    lines.append(
                        f"     - download {url}{also} and unpack its {shown} to {target / dest}"
                    )
            else:
                ((_, rel),) = source.members
                lines.append(f"     - download {url}{also} to {target / rel}")
    return "\n".join(lines)
