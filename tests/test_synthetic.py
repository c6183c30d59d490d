"""Tests of the synthetic CT data set (ctlib.data.synthetic): determinism, masks, balance,
no size shortcut, and the atomic, reusable folder written by ``write_synthetic``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctlib.data import load_dataset, synthetic
from ctlib.data.synthetic import (
    SYNTHETIC_VERSION,
    SyntheticConfig,
    generate,
    load_mask,
    patient_label,
    render_patient,
    write_synthetic,
)

SMALL = SyntheticConfig(n_patients=6)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


@pytest.fixture(scope="module")
def small_slices() -> list[synthetic.SyntheticSlice]:
    return list(generate(SMALL))


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    dest = tmp_path_factory.mktemp("synth") / "small"
    return dest, write_synthetic(dest, SMALL, progress=False)


# ----------------------------------------------------------------------------- determinism


def test_render_patient_is_bit_identical_across_calls() -> None:
    for index in range(SMALL.n_patients):
        first, second = render_patient(SMALL, index), render_patient(SMALL, index)
        assert len(first) == len(second)
        for a, b in zip(first, second, strict=True):
            assert a.image.dtype == np.uint8 and a.mask.dtype == bool
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_array_equal(a.mask, b.mask)
            assert (a.label, a.patient_id, a.slice_index) == (b.label, b.patient_id, b.slice_index)


def test_patient_does_not_depend_on_n_patients_or_order() -> None:
    big = SyntheticConfig(n_patients=50)
    for index in (0, 3, 5):
        small, large = render_patient(SMALL, index), render_patient(big, index)
        assert [s.label for s in small] == [s.label for s in large]
        for a, b in zip(small, large, strict=True):
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_array_equal(a.mask, b.mask)
    # Rendering in reverse order gives the same patients as the generator.
    reverse = [s for i in reversed(range(4)) for s in render_patient(SMALL, i)]
    forward = list(generate(SyntheticConfig(n_patients=4)))
    key = lambda s: (s.patient_id, s.slice_index)  # noqa: E731
    for a, b in zip(sorted(reverse, key=key), forward, strict=True):
        assert key(a) == key(b)
        np.testing.assert_array_equal(a.image, b.image)


def test_different_seeds_give_different_images() -> None:
    a = render_patient(SyntheticConfig(n_patients=2, seed=0), 0)[0].image
    b = render_patient(SyntheticConfig(n_patients=2, seed=1), 0)[0].image
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_slices_of_a_patient_share_the_frame_but_differ() -> None:
    config = SyntheticConfig(n_patients=10, slices_per_patient=(2, 3))
    slices = render_patient(config, 4)
    assert [s.slice_index for s in slices] == list(range(len(slices)))
    assert len({s.image.shape for s in slices}) == 1
    assert not np.array_equal(slices[0].image, slices[1].image)
    # Adjacent slices: the lungs move only a little (large overlap).
    overlap = (slices[0].lungs & slices[1].lungs).sum() / (slices[0].lungs | slices[1].lungs).sum()
    assert overlap > 0.7


# ----------------------------------------------------------------------------- content


def test_positive_masks_lie_in_the_lungs_and_negatives_are_empty(small_slices) -> None:
    assert {s.label for s in small_slices} == {0, 1}
    for s in small_slices:
        assert s.mask.shape == s.image.shape == s.lungs.shape
        if s.label == 0:
            assert not s.mask.any()
            continue
        assert s.mask.sum() >= 20
        assert not (s.mask & ~s.lungs).any()
        # Inside the body: well above the black background (corners of the frame).
        corners = s.image[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert corners.max() < 20
        assert s.image[s.mask].min() > corners.max()


def test_lesions_are_brighter_than_the_surrounding_lung(small_slices) -> None:
    checked = 0
    for s in small_slices:
        if s.label == 0:
            continue
        ring = _dilate(s.mask, 10) & ~_dilate(s.mask, 3) & s.lungs
        if ring.sum() < 20:
            continue
        assert s.image[s.mask].mean() > s.image[ring].mean() + 15
        assert s.image[s.mask].mean() > s.image[s.lungs & ~s.mask].mean() + 10
        checked += 1
    assert checked >= 3


def test_lung_and_tissue_intensities_are_ct_like(small_slices) -> None:
    for s in small_slices:
        healthy = s.lungs & ~_dilate(s.mask, 2)
        assert 10 < np.median(s.image[healthy]) < 55  # dark lungs
        assert s.image.max() >= 200  # bone
        body = _dilate(s.lungs, 6) & ~s.lungs  # soft tissue around the lungs
        assert np.median(s.image[body]) > 80


def test_vessels_are_bright_spots_in_both_classes(small_slices) -> None:
    for s in small_slices:
        healthy = s.lungs & ~_dilate(s.mask, 3)
        assert (s.image[healthy] > 100).sum() >= 5, (s.patient_id, s.label)


def test_counterfactual_pairs_differ_only_by_lesions() -> None:
    """Anatomy, size and noise are drawn without the label: the label only adds lesions."""
    for index in range(SMALL.n_patients):
        neg, pos = render_patient(SMALL, index, label=0), render_patient(SMALL, index, label=1)
        assert len(neg) == len(pos)
        for n, p in zip(neg, pos, strict=True):
            assert n.image.shape == p.image.shape
            assert not n.mask.any() and p.mask.any()
            np.testing.assert_array_equal(n.lungs, p.lungs)
            changed = n.image != p.image
            assert changed.any()
            assert not (changed & ~_dilate(p.lungs, 4)).any()
            assert not (changed & ~_dilate(p.mask, 12)).any()  # only near the lesions
            rise = p.image[p.mask].astype(float) - n.image[p.mask]
            assert rise.mean() > 25
    own = render_patient(SMALL, 0)
    forced = render_patient(SMALL, 0, label=own[0].label)
    np.testing.assert_array_equal(own[0].image, forced[0].image)


def test_mask_marks_where_the_lesion_raises_intensity_meaningfully() -> None:
    """Counterfactual pairs share the noise, so ``pos - neg`` is the lesion's rise."""
    for index in range(SMALL.n_patients):
        neg, pos = render_patient(SMALL, index, label=0), render_patient(SMALL, index, label=1)
        for n, p in zip(neg, pos, strict=True):
            rise = p.image.astype(int) - n.image
            # Inside the mask the rise is real (blur may soften it at the border) ...
            assert (rise[p.mask] >= SMALL.mask_threshold / 2).mean() > 0.95
            # ... and strong rises outside the mask are rare (the mask is not too tight).
            assert ((rise >= 2 * SMALL.mask_threshold) & ~p.mask).sum() < 0.02 * p.mask.sum()


def test_size_distribution_is_the_same_for_both_classes() -> None:
    config = SyntheticConfig(n_patients=400)
    rows = [
        (patient_label(config, i), synthetic._anatomy(config, i)) for i in range(config.n_patients)
    ]
    for attr in ("width", "height", "n_slices"):
        pos = np.mean([getattr(a, attr) for label, a in rows if label == 1])
        neg = np.mean([getattr(a, attr) for label, a in rows if label == 0])
        assert abs(pos - neg) < 0.1 * (pos + neg) / 2, (attr, pos, neg)
    widths = [a.width for _, a in rows]
    heights = [a.height for _, a in rows]
    aspects = [a.a / a.b for _, a in rows]
    assert config.width_range[0] <= min(widths) and max(widths) <= config.width_range[1]
    assert config.height_range[0] <= min(heights) and max(heights) <= config.height_range[1]
    assert max(widths) - min(widths) > 250 and max(heights) - min(heights) > 200
    assert min(aspects) < 1.1 and max(aspects) > 1.5


def test_classes_are_balanced_by_patient() -> None:
    config = SyntheticConfig(n_patients=40)
    labels = [patient_label(config, i) for i in range(config.n_patients)]
    assert sum(labels) == 20
    pairs = [(labels[i], labels[i + 1]) for i in range(0, 40, 2)]
    assert all(a + b == 1 for a, b in pairs)
    assert len(set(pairs)) == 2  # not a fixed alternation
    small = list(generate(SMALL))
    by_patient = {s.patient_id: s.label for s in small}
    assert sorted(by_patient) == [f"synth-{i:04d}" for i in range(6)]
    assert sum(by_patient.values()) == 3
    counts = pd.Series([s.patient_id for s in small]).value_counts()
    assert counts.between(*SMALL.slices_per_patient).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_patients": 0},
        {"seed": -1},
        {"slices_per_patient": (3, 1)},
        {"width_range": (10, 20)},
        {"lesion_contrast": (90.0, 40.0)},
        {"mask_threshold": 50.0},
    ],
)
def test_bad_config_is_refused_with_the_field_name(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SyntheticConfig(**kwargs)


def test_render_patient_refuses_bad_index_and_label() -> None:
    with pytest.raises(ValueError, match="outside 0..5"):
        render_patient(SMALL, 6)
    with pytest.raises(ValueError, match="label"):
        render_patient(SMALL, 0, label=2)


# ----------------------------------------------------------------------------- write_synthetic


def test_write_synthetic_files_and_frame(written, small_slices) -> None:
    dest, frame = written
    assert list(frame.columns) == synthetic.FRAME_COLUMNS
    assert len(frame) == len(small_slices)
    for column in ("label", "slice_index", "width", "height", "lesion_pixels"):
        assert pd.api.types.is_integer_dtype(frame[column]), column
    for column in ("path", "mask_path", "patient_id"):
        assert pd.api.types.is_string_dtype(frame[column]), column
    assert set(frame["label"]) == {0, 1}
    for row, s in zip(frame.itertuples(), small_slices, strict=True):
        assert Path(row.path).is_absolute() and Path(row.mask_path).is_absolute()
        assert Path(row.path).parent == dest / "images"
        assert Path(row.path).name == f"{s.patient_id}_s{s.slice_index}.png"
        image = np.asarray(Image.open(row.path))
        np.testing.assert_array_equal(image, s.image)
        mask = load_mask(row.mask_path)
        np.testing.assert_array_equal(mask, s.mask)
        assert set(np.unique(np.asarray(Image.open(row.mask_path)))) <= {0, 255}
        assert (row.width, row.height) == (image.shape[1], image.shape[0])
        assert row.lesion_pixels == mask.sum()
        assert (row.lesion_pixels > 0) == (row.label == 1)
    stored = json.loads((dest / "config.json").read_text())
    assert stored["version"] == SYNTHETIC_VERSION
    assert stored["config"]["n_patients"] == SMALL.n_patients
    relative = pd.read_csv(dest / "labels.csv")
    assert relative["path"].str.startswith("images/").all()


def test_write_synthetic_is_reproducible_across_folders(tmp_path: Path, written) -> None:
    _, first = written
    second = write_synthetic(tmp_path / "again", SMALL, progress=False)
    assert len(first) == len(second)
    for a, b in zip(first.itertuples(), second.itertuples(), strict=True):
        assert Path(a.path).read_bytes() == Path(b.path).read_bytes()
        assert Path(a.mask_path).read_bytes() == Path(b.mask_path).read_bytes()


def test_write_synthetic_reuses_an_existing_folder(written, monkeypatch) -> None:
    dest, frame = written
    stamps = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}

    def refuse(*args, **kwargs):
        raise AssertionError("regenerated although the folder matches")

    monkeypatch.setattr(synthetic, "render_patient", refuse)
    again = write_synthetic(dest, SMALL, progress=False)
    pd.testing.assert_frame_equal(frame, again)
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == stamps


@pytest.mark.parametrize(
    "other", [SyntheticConfig(n_patients=6, seed=1), SyntheticConfig(n_patients=7)]
)
def test_write_synthetic_refuses_a_different_config(written, other: SyntheticConfig) -> None:
    dest, _ = written
    before = (dest / "config.json").read_bytes()
    with pytest.raises(ValueError, match="different configuration") as err:
        write_synthetic(dest, other, progress=False)
    assert "another folder" in str(err.value) and "delete" in str(err.value)
    assert (dest / "config.json").read_bytes() == before  # untouched


def test_write_synthetic_refuses_foreign_or_incomplete_folders(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not ours")
    with pytest.raises(ValueError, match="not a complete synthetic data set"):
        write_synthetic(foreign, SMALL, progress=False)

    dest = tmp_path / "broken"
    frame = write_synthetic(dest, SyntheticConfig(n_patients=2), progress=False)
    Path(frame["path"].iloc[0]).unlink()
    with pytest.raises(ValueError, match="incomplete"):
        write_synthetic(dest, SyntheticConfig(n_patients=2), progress=False)


def test_write_synthetic_accepts_an_empty_folder(tmp_path: Path) -> None:
    dest = tmp_path / "empty"
    dest.mkdir()
    frame = write_synthetic(dest, SyntheticConfig(n_patients=2), progress=False)
    assert (dest / "config.json").is_file() and len(frame) >= 2


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_nothing_behind(tmp_path: Path, monkeypatch, error) -> None:
    calls = {"n": 0}
    real = synthetic._write_png

    def flaky(path: Path, array: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise error("disk full (simulated)")
        real(path, array)

    monkeypatch.setattr(synthetic, "_write_png", flaky)
    dest = tmp_path / "synth"
    with pytest.raises(error):
        write_synthetic(dest, SMALL, progress=False)
    assert calls["n"] == 5
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []  # no temp folder either

    monkeypatch.setattr(synthetic, "_write_png", real)  # the next run starts cleanly
    frame = write_synthetic(dest, SMALL, progress=False)
    assert len(frame) == len(list(generate(SMALL)))


def test_load_dataset_synthetic_frame(tmp_path: Path) -> None:
    """The data module serves this set like the real ones (with masks)."""
    ds = load_dataset("synthetic", tmp_path, synthetic=SMALL, progress=False)
    first = ["path", "label", "patient_id", "official_split", "width", "height"]
    assert list(ds.frame.columns[:6]) == first
    assert ds.frame["patient_id"].notna().all() and ds.frame["official_split"].isna().all()
    assert ds.read_mask(0).shape == ds.read_image(0).shape
    assert isinstance(ds.summary(), pd.DataFrame)
