"""The synthetic CT set: determinism, honest masks, no size shortcut, atomic writing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctlib import synthetic
from ctlib.data import load_dataset
from ctlib.synthetic import SyntheticConfig, generate, load_mask, render_patient, write_synthetic

SMALL = SyntheticConfig(n_patients=6)


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) for x, y in zip(a, b, strict=True)
    )


def test_bit_identical_for_a_seed_and_order_free() -> None:
    assert _same(render_patient(SMALL, 3), render_patient(SMALL, 3))
    bigger = SyntheticConfig(n_patients=40)
    assert _same(render_patient(SMALL, 3), render_patient(bigger, 3))  # n does not matter
    other = SyntheticConfig(n_patients=6, seed=1)
    assert not _same(render_patient(SMALL, 3), render_patient(other, 3))


def test_written_sets_are_bit_identical(tmp_path: Path) -> None:
    a = write_synthetic(tmp_path / "a", SMALL, progress=False)
    b = write_synthetic(tmp_path / "b", SMALL, progress=False)
    assert len(a) == len(b) > 0
    for pa, pb in zip(a["path"], b["path"], strict=True):
        assert Path(pa).read_bytes() == Path(pb).read_bytes()


def test_masks_are_honest() -> None:
    slices = list(generate(SyntheticConfig(n_patients=12)))
    positives = [s for s in slices if s.label == 1]
    negatives = [s for s in slices if s.label == 0]
    assert positives and negatives
    for s in negatives:
        assert not s.mask.any()
    for s in positives:
        assert s.mask.any()
        assert s.lungs is not None and not (s.mask & ~s.lungs).any()  # lesions lie in the lungs
        lung_only = s.lungs & ~s.mask
        assert s.image[s.mask].mean() > s.image[lung_only].mean() + 10  # brighter than the lung


def test_counterfactual_pair_differs_only_in_lesions() -> None:
    with_lesions = render_patient(SMALL, 0, label=1)[0]
    without = render_patient(SMALL, 0, label=0)[0]
    assert with_lesions.image.shape == without.image.shape
    differ = with_lesions.image != without.image
    # outside the (blurred, noisy) lesion neighbourhood nothing changes
    grown = np.zeros_like(with_lesions.mask)
    ys, xs = np.nonzero(with_lesions.mask)
    assert len(ys)
    margin = 12
    for y, x in zip(ys, xs, strict=True):
        grown[max(0, y - margin): y + margin, max(0, x - margin): x + margin] = True
    assert differ.any() and not (differ & ~grown).any()


def test_no_size_shortcut() -> None:
    """Sizes come from streams that never see the label: same patient, same size, either label."""
    for index in range(8):
        a = render_patient(SMALL if index < 6 else SyntheticConfig(n_patients=8), index, label=0)
        b = render_patient(SMALL if index < 6 else SyntheticConfig(n_patients=8), index, label=1)
        assert [s.image.shape for s in a] == [s.image.shape for s in b]
    labels = [synthetic.patient_label(SyntheticConfig(n_patients=40), i) for i in range(40)]
    assert sum(labels) == 20  # balanced by patient


def test_write_reuses_and_refuses_another_config(tmp_path: Path) -> None:
    dest = tmp_path / "set"
    frame = write_synthetic(dest, SMALL, progress=False)
    assert {"path", "mask_path", "label", "patient_id", "slice_index", "width", "height",
            "lesion_pixels"} <= set(frame.columns)
    assert (frame.loc[frame["label"] == 0, "lesion_pixels"] == 0).all()
    assert (frame.loc[frame["label"] == 1, "lesion_pixels"] > 0).all()
    mask = load_mask(frame["mask_path"].iloc[0])
    assert mask.dtype == bool and mask.shape == (frame["height"].iloc[0], frame["width"].iloc[0])
    stamp = (dest / "labels.csv").stat().st_mtime_ns
    again = write_synthetic(dest, SMALL, progress=False)
    assert again.equals(frame) and (dest / "labels.csv").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError):
        write_synthetic(dest, SyntheticConfig(n_patients=7), progress=False)
    assert json.loads((dest / "config.json").read_text())  # untouched


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = synthetic._write_png

    def failing(path: Path, array: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        original(path, array)

    monkeypatch.setattr(synthetic, "_write_png", failing)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic(tmp_path / "set", SMALL, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_load_dataset_synthetic_frame(tmp_path: Path) -> None:
    ds = load_dataset("synthetic", tmp_path, synthetic=SMALL, progress=False)
    assert list(ds.frame.columns[:6]) == ["path", "label", "patient_id", "official_split", "width", "height"]
    assert ds.frame["patient_id"].notna().all() and ds.frame["official_split"].isna().all()
    assert ds.read_mask(0).shape == ds.read_image(0).shape
    assert isinstance(ds.summary(), pd.DataFrame)


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match="n_patients"):
        SyntheticConfig(n_patients=0)
    with pytest.raises(ValueError, match="seed"):
        SyntheticConfig(seed=-1)
    with pytest.raises(ValueError, match="patient_index"):
        render_patient(SMALL, 6)
