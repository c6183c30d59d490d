"""The data layer: registry, reading every kind of bad or odd file, manifests, verification."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctlib import data
from ctlib.data import load_dataset, load_folder, pixel_hash, read_grayscale, verify_dataset
from ctlib.errors import DataError, DataVerificationError, ImageReadError

# --------------------------------------------------------------------------- reading


def _save(path: Path, image: Image.Image, fmt: str | None = None) -> Path:
    image.save(path, format=fmt)
    return path


@pytest.fixture()
def gray() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(37, 53), dtype=np.uint8)


def test_gray_png_roundtrip(tmp_path: Path, gray: np.ndarray) -> None:
    path = _save(tmp_path / "g.png", Image.fromarray(gray))
    assert np.array_equal(read_grayscale(path), gray)


def test_gray_rgb_and_opaque_rgba_are_exact(tmp_path: Path, gray: np.ndarray) -> None:
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full(gray.shape + (1,), 255, np.uint8)], axis=2)
    assert np.array_equal(read_grayscale(_save(tmp_path / "rgb.png", Image.fromarray(rgb))), gray)
    assert np.array_equal(read_grayscale(_save(tmp_path / "rgba.png", Image.fromarray(rgba))), gray)


def test_alpha_is_composited_over_black(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # transparent -> black
    rgba[0, 1, 3] = 128  # half -> about 100
    out = read_grayscale(_save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA")))
    assert out[0, 0] == 0 and abs(int(out[0, 1]) - 100) <= 1 and out[3, 3] == 200
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    assert read_grayscale(_save(tmp_path / "la.png", la))[0, 0] == 0


def test_true_colour_uses_luma(tmp_path: Path) -> None:
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    out = read_grayscale(_save(tmp_path / "c.png", Image.fromarray(rgb)))
    assert out[0, 0] == 76 and out[0, 1] == 150  # 0.299 * 255, 0.587 * 255


def test_palette_and_cmyk(tmp_path: Path, gray: np.ndarray) -> None:
    rgb = Image.fromarray(np.repeat(gray[..., None], 3, axis=2))
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    expected = np.asarray(palette.convert("L"))
    assert np.array_equal(read_grayscale(_save(tmp_path / "p.png", palette)), expected)
    cmyk = rgb.convert("CMYK")
    out = read_grayscale(_save(tmp_path / "k.jpg", cmyk, "JPEG"))
    assert out.shape == gray.shape and np.abs(out.astype(int) - gray).mean() < 12


def test_sixteen_bit_is_stretched(tmp_path: Path) -> None:
    values = np.array([[0, 1000], [2000, 4000]], np.uint16)
    out = read_grayscale(_save(tmp_path / "s.png", Image.fromarray(values)))
    assert out.dtype == np.uint8 and out.tolist() == [[0, 64], [128, 255]]
    small = np.array([[0, 10], [20, 255]], np.uint16)  # already 0..255: kept
    assert (
        read_grayscale(_save(tmp_path / "t.png", Image.fromarray(small))).tolist() == small.tolist()
    )


def test_jpeg_inside_png_name(tmp_path: Path, gray: np.ndarray) -> None:
    path = tmp_path / "fake.png"
    Image.fromarray(gray).save(path, format="JPEG", quality=95)
    out = read_grayscale(path)
    assert out.shape == gray.shape and np.abs(out.astype(int) - gray).mean() < 10


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"this is not an image", "not an image"),
        ("truncated", "truncated or corrupt"),
    ],
)
def test_bad_files_name_the_file(
    tmp_path: Path, gray: np.ndarray, content: object, match: str
) -> None:
    path = tmp_path / "bad.png"
    if content == "truncated":
        buffer = io.BytesIO()
        Image.fromarray(gray).save(buffer, format="PNG")
        content = buffer.getvalue()[: len(buffer.getvalue()) // 2]
    path.write_bytes(content)  # type: ignore[arg-type]
    with pytest.raises(ImageReadError, match=match) as info:
        read_grayscale(path)
    assert "bad.png" in str(info.value)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        read_grayscale(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_grayscale(tmp_path)


def test_pixel_hash_depends_on_shape_and_pixels() -> None:
    a = np.zeros((2, 3), np.uint8)
    assert pixel_hash(a) != pixel_hash(np.zeros((3, 2), np.uint8))
    b = a.copy()
    b[1, 2] = 1
    assert pixel_hash(a) != pixel_hash(b) and pixel_hash(a) == pixel_hash(a.copy())


# --------------------------------------------------------------------------- registry


def test_unknown_dataset_suggests() -> None:
    with pytest.raises(ValueError, match="did you mean|Did you mean"):
        load_dataset("covid-ct")
    assert set(data.list_datasets()) == {"synthetic", "covid19-ct", "sars-cov-2-ct"}


def test_manifests_shape() -> None:
    for name, counts in (("covid19-ct", {1: 349, 0: 397}), ("sars-cov-2-ct", {1: 1252, 0: 1229})):
        manifest = data.read_manifest(name)
        assert manifest["label"].value_counts().to_dict() == counts
        assert manifest["relpath"].is_unique
        assert manifest["pixel_sha256"].str.fullmatch(r"[0-9a-f]{64}").all()
        assert data.dataset_info(name).expected == counts


# --------------------------------------------------------------------------- layout errors


def _mini_copy(data_root: Path, dest: Path, per_class: int = 5) -> Path:
    """A small copy of covid19-ct (real files) in ``dest/covid19-ct``."""
    folder = dest / "covid19-ct"
    for cls in ("CT_COVID", "CT_NonCOVID"):
        (folder / cls).mkdir(parents=True)
        for path in sorted((data_root / "covid19-ct" / cls).iterdir())[:per_class]:
            shutil.copy(path, folder / cls / path.name)
    return folder


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"download\('covid19-ct'"):
        load_dataset("covid19-ct", tmp_path)


def test_missing_class_folder(tmp_path: Path) -> None:
    (tmp_path / "covid19-ct" / "CT_COVID").mkdir(parents=True)
    with pytest.raises(DataError, match=r"CT_NonCOVID.\] of .covid19-ct. missing"):
        load_dataset("covid19-ct", tmp_path)


def test_empty_and_nested_class_folder(tmp_path: Path) -> None:
    for cls in ("CT_COVID", "CT_NonCOVID"):
        (tmp_path / "covid19-ct" / cls).mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        load_dataset("covid19-ct", tmp_path)
    (tmp_path / "covid19-ct" / "CT_COVID" / "CT_COVID").mkdir()
    with pytest.raises(DataError, match="one level too deep"):
        load_dataset("covid19-ct", tmp_path)


def test_incomplete_copy_lists_missing_files(tmp_path: Path, data_root: Path) -> None:
    _mini_copy(data_root, tmp_path)
    with pytest.raises(DataVerificationError, match=r"736 missing") as info:
        load_dataset("covid19-ct", tmp_path)
    assert len(info.value.report.missing) == 736 and "Fix:" in str(info.value)


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_covid19_ct_loads_with_patients_and_split(data_root: Path) -> None:
    ds = load_dataset("covid19-ct", data_root, progress=False)
    frame = ds.frame
    assert frame["label"].value_counts().to_dict() == {0: 397, 1: 349}
    assert frame["patient_id"].notna().all()
    assert frame.groupby("label")["patient_id"].nunique().to_dict() == {0: 171, 1: 213}
    split = frame.groupby(["label", "official_split"]).size().to_dict()
    assert split == {
        (1, "train"): 191,
        (1, "val"): 60,
        (1, "test"): 98,
        (0, "train"): 234,
        (0, "val"): 58,
        (0, "test"): 105,
    }
    # no patient in two official splits
    assert (frame.groupby("patient_id")["official_split"].nunique() == 1).all()
    # our reading of the upstream meta tables agrees with the table derived in shared/
    derived = pd.read_csv(data_root / "covid19-ct" / "meta" / "patient_ids.csv")
    merged = frame.merge(derived, left_on="relpath", right_on="file", suffixes=("", "_ref"))
    assert len(merged) == 746
    assert (merged["patient_id"] == merged["patient_id_ref"]).all()
    assert (merged["official_split"] == merged["official_split_ref"]).all()
    assert all(Path(p).is_file() for p in frame["path"].head(20))


@pytest.mark.realdata
def test_sars_loads_without_patients(data_root: Path) -> None:
    ds = load_dataset("sars-cov-2-ct", data_root, progress=False)
    assert ds.frame["label"].value_counts().to_dict() == {1: 1252, 0: 1229}
    assert ds.frame["patient_id"].isna().all()
    sizes = pd.read_csv(data_root / "sars-cov-2-ct" / "FILES.csv").set_index("path")
    assert (
        (ds.frame.set_index("relpath")[["width", "height"]] == sizes[["width", "height"]])
        .all()
        .all()
    )
    summary = ds.summary()
    assert summary.loc["COVID", "images"] == 1252


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["covid19-ct", "sars-cov-2-ct"])
def test_full_verification_of_real_sets(data_root: Path, name: str) -> None:
    report = verify_dataset(name, data_root, progress=False)
    assert report.ok and not report.missing and not report.altered
    ds = load_dataset(name, data_root, verify="full", progress=False)  # stamped: fast
    image = ds.read_image(0)
    assert pixel_hash(image) == ds.frame["pixel_sha256"].iloc[0]


@pytest.mark.realdata
def test_verification_finds_missing_extra_altered_undecodable(
    tmp_path: Path, data_root: Path
) -> None:
    src = data_root / "covid19-ct"
    folder = tmp_path / "covid19-ct"
    for cls in ("CT_COVID", "CT_NonCOVID"):
        (folder / cls).mkdir(parents=True)
        for path in (src / cls).iterdir():
            os.symlink(path, folder / cls / path.name)
    names = sorted(os.listdir(folder / "CT_COVID"))
    missing, altered, broken, empty = names[:4]
    (folder / "CT_COVID" / missing).unlink()
    # altered: same size, a few pixels changed, re-saved
    image = read_grayscale(src / "CT_COVID" / altered)
    image[:3, :3] ^= 0xFF
    (folder / "CT_COVID" / altered).unlink()
    Image.fromarray(image).save(folder / "CT_COVID" / altered, format="PNG")
    # truncated and empty files
    raw = (src / "CT_COVID" / broken).read_bytes()
    (folder / "CT_COVID" / broken).unlink()
    (folder / "CT_COVID" / broken).write_bytes(raw[: len(raw) // 3])
    (folder / "CT_COVID" / empty).unlink()
    (folder / "CT_COVID" / empty).write_bytes(b"")
    # an extra file and an extra non-image
    Image.fromarray(image).save(folder / "CT_NonCOVID" / "extra.png")
    (folder / "CT_NonCOVID" / "notes.txt").write_text("not an image")

    report = verify_dataset("covid19-ct", tmp_path, strict=False, progress=False)
    assert report.missing == [f"CT_COVID/{missing}"]
    assert report.altered == [f"CT_COVID/{altered}"]
    assert sorted(report.undecodable) == sorted([f"CT_COVID/{broken}", f"CT_COVID/{empty}"])
    assert report.extra == ["CT_NonCOVID/extra.png", "CT_NonCOVID/notes.txt"], (
        "all, not only images"
    )
    assert "2 extra (not in the manifest, ignored)" in report.message()
    assert "empty" in report.reasons[f"CT_COVID/{empty}"]
    with pytest.raises(DataVerificationError, match="altered"):
        verify_dataset("covid19-ct", tmp_path, progress=False)


@pytest.mark.realdata
def test_re_encoded_copy_still_verifies(tmp_path: Path, data_root: Path) -> None:
    """A copy whose bytes differ but whose pixels are the same passes (pixel hash)."""
    src = data_root / "covid19-ct"
    folder = tmp_path / "covid19-ct"
    for cls in ("CT_COVID", "CT_NonCOVID"):
        (folder / cls).mkdir(parents=True)
        for path in (src / cls).iterdir():
            os.symlink(path, folder / cls / path.name)
    name = "CT_NonCOVID/" + sorted(p.name for p in (src / "CT_NonCOVID").glob("*.png"))[0]
    target = folder / name
    target.unlink()
    with Image.open(src / name) as original:
        original.convert("RGB").save(target, format="PNG", compress_level=1)  # other bytes
    assert target.read_bytes() != (src / name).read_bytes()
    assert verify_dataset("covid19-ct", tmp_path, progress=False).ok


# --------------------------------------------------------------------------- any folder


def test_load_folder_skips_bad_files_with_a_summary(tmp_path: Path, gray: np.ndarray) -> None:
    for cls in ("COVID", "non-COVID"):
        (tmp_path / cls).mkdir()
        Image.fromarray(gray).save(tmp_path / cls / "ok.png")
    (tmp_path / "COVID" / "empty.png").write_bytes(b"")
    (tmp_path / "COVID" / "readme.txt").write_text("hello")
    (tmp_path / "non-COVID" / ".DS_Store").write_bytes(b"\0")
    ds = load_folder(tmp_path, progress=False)
    assert sorted(ds.frame["label"].tolist()) == [0, 1]
    reasons = dict(
        zip(ds.skipped["path"].map(lambda p: Path(p).name), ds.skipped["reason"], strict=True)
    )
    assert set(reasons) == {"empty.png", "readme.txt"}
    assert "empty" in reasons["empty.png"]


def test_load_folder_unlabelled_and_missing_class(tmp_path: Path, gray: np.ndarray) -> None:
    Image.fromarray(gray).save(tmp_path / "a.png")
    ds = load_folder(tmp_path, progress=False)
    assert len(ds) == 1 and ds.frame["label"].isna().all()
    with pytest.raises(DataError, match="positive.*missing|missing"):
        load_folder(tmp_path, {"positive": 1, "negative": 0}, progress=False)
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="No readable image"):
        load_folder(tmp_path, progress=False)
