"""The leakage and shortcut audit on constructed cases whose answers are known."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ctlib.data import pseudo_patient_file, with_pseudo_patients
from ctlib.study.audit import (
    calibrate_threshold,
    cluster_scans,
    grouping_agreement,
    hamming,
    metadata_baseline,
    metadata_features,
    near_duplicate_pairs,
    nearest_other_fold,
    pairwise_hamming,
    patient_leak,
    perceptual_hash,
    perceptual_hashes,
)


def _blob(seed: int, shape: tuple[int, int] = (120, 160)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.uniform(0, 255, shape).astype(np.float32), (0, 0), 8)
    image = (image - image.min()) / (image.max() - image.min()) * 255
    return image.astype(np.uint8)


def test_phash_is_robust_to_rescaling_and_separates_different_images() -> None:
    a = _blob(0)
    resized = cv2.resize(a, (320, 240), interpolation=cv2.INTER_CUBIC)
    noisy = np.clip(a + np.random.default_rng(1).normal(0, 3, a.shape), 0, 255).astype(np.uint8)
    assert hamming(perceptual_hash(a), perceptual_hash(resized)) <= 4
    assert hamming(perceptual_hash(a), perceptual_hash(noisy)) <= 4
    assert hamming(perceptual_hash(a), perceptual_hash(_blob(2))) >= 16


def test_256_bit_hash_is_finer_than_64(tmp_path: Path) -> None:
    a, b = _blob(0), _blob(0)
    b[:40, :50] = 255 - b[:40, :50]  # one corner changed
    paths = []
    for name, image in (("a", a), ("b", b), ("c", _blob(3))):
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(image).save(paths[-1])
    bits = perceptual_hashes(paths, size=16, progress=False)
    assert bits.shape == (3, 256) and bits.dtype == bool
    d = pairwise_hamming(bits)
    assert d[0, 0] == 0 and d[0, 1] == d[1, 0]
    assert d[0, 1] < d[0, 2]  # an edited copy is closer than another image
    # the matrix product agrees with counting bits one by one
    assert d[0, 2] == int(np.sum(bits[0] != bits[2]))
    with pytest.raises(ValueError, match="2-D"):
        perceptual_hash(np.zeros((4, 4, 3), np.uint8))


def test_near_duplicates_across_folds_only() -> None:
    frame = pd.DataFrame(
        {"path": ["a", "a2", "b", "b2"], "label": [1, 1, 0, 0], "patient_id": ["p", "p", "q", "r"]}
    )
    rows = [
        np.array([int(c) for c in f"{perceptual_hash(_blob(s)):064b}"], bool) for s in (0, 0, 5, 5)
    ]
    pairs = near_duplicate_pairs(frame, np.array(rows), folds=[0, 1, 0, 0], max_distance=2)
    assert list(zip(pairs["path_a"], pairs["path_b"], strict=True)) == [
        ("a", "a2")
    ]  # b/b2 share a fold
    assert pairs["same_patient"].tolist() == [True]


def test_nearest_other_fold_skips_own_fold() -> None:
    features = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99]])
    nearest = nearest_other_fold(features, folds=[0, 0, 1, 1])
    # 0's closest is 1, but that is its own fold: the neighbour must come from fold 1
    assert nearest["neighbour"].tolist() == [3, 3, 1, 1]
    assert np.all(nearest["similarity"] < 0.2)


def test_calibrate_threshold() -> None:
    scores = np.array([0.99, 0.98, 0.95, 0.90, 0.80, 0.70])
    same = np.array([1, 1, 1, 0, 0, 0], bool)
    assert calibrate_threshold(scores, same, 0.95) == 0.95
    assert calibrate_threshold(scores, same, 0.75) == 0.90  # 3 of 4 pass
    assert calibrate_threshold(-scores, same, 0.95, higher_is_closer=False) == -0.95
    assert np.isnan(calibrate_threshold(scores, ~same, 0.95))


def test_cluster_scans_recovers_planted_scans_and_keeps_labels_apart() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 32))
    scan = np.repeat(np.arange(6), 10)
    features = centres[scan] + 0.05 * rng.normal(size=(60, 32))
    labels = (scan >= 3).astype(int)
    groups = cluster_scans(features, labels, 3)
    assert grouping_agreement(groups, scan)["ari"] == pytest.approx(1.0)
    assert all(g.startswith(f"{y}-") for g, y in zip(groups, labels, strict=True))
    too_few = cluster_scans(features, labels, 1)
    agreement = grouping_agreement(too_few, scan)
    assert agreement["completeness"] == pytest.approx(1.0) and agreement["homogeneity"] < 0.7


def test_patient_leak() -> None:
    assert patient_leak([0, 1, 0, 1], ["a", "a", "b", "c"]) == 0.5
    assert patient_leak([0, 0, 1, 1], ["a", "a", "b", "b"]) == 0.0


def test_shipped_pseudo_patients_cover_sars(data_root: Path) -> None:
    from ctlib.data import load_dataset

    assert pseudo_patient_file("sars-cov-2-ct").is_file()
    frame = with_pseudo_patients(load_dataset("sars-cov-2-ct", data_root).frame, "sars-cov-2-ct")
    assert frame["pseudo_patient"].notna().all()
    assert frame["pseudo_patient"].nunique() == 120  # 60 per class, as the authors report
    # a group holds one diagnosis
    assert (frame.groupby("pseudo_patient")["label"].nunique() == 1).all()
    with pytest.raises(FileNotFoundError, match="audit pseudo-patients"):
        with_pseudo_patients(frame, "covid19-ct")
    with pytest.raises(ValueError, match="no group"):
        with_pseudo_patients(frame.assign(relpath="COVID/new.png"), "sars-cov-2-ct")


def test_metadata_baseline_finds_a_planted_shortcut(tmp_path: Path) -> None:
    rows = []
    for i in range(40):
        label = i % 2
        image = _blob(i, (100, 100) if label else (100, 140))  # the shortcut: size
        path = tmp_path / f"{i}.png"
        Image.fromarray(image).save(path)
        rows.append({"path": str(path), "label": label})
    frame = pd.DataFrame(rows)
    features = metadata_features(frame, progress=False)
    folds = np.arange(40) % 4
    shortcut = metadata_baseline(features, frame["label"], folds, columns=["aspect"])
    assert shortcut.attrs["mean_accuracy"] == 1.0
    blind = metadata_baseline(features, frame["label"], folds, columns=["mean", "std"])
    assert blind.attrs["mean_accuracy"] < 0.9
