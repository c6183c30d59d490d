"""The leakage and shortcut audit on constructed cases whose answers are known."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from ctlib.audit import (
    hamming,
    metadata_baseline,
    metadata_features,
    near_duplicate_pairs,
    perceptual_hash,
    pseudo_patients,
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


def test_near_duplicates_across_folds_only() -> None:
    frame = pd.DataFrame({"path": ["a", "a2", "b", "b2"], "label": [1, 1, 0, 0]})
    hashes = np.array([perceptual_hash(_blob(0)), perceptual_hash(_blob(0)),
                       perceptual_hash(_blob(5)), perceptual_hash(_blob(5))], dtype=np.uint64)
    pairs = near_duplicate_pairs(frame, hashes, folds=[0, 1, 0, 0], max_distance=2)
    assert list(zip(pairs["path_a"], pairs["path_b"], strict=True)) == [("a", "a2")]  # b/b2 share a fold


def test_pseudo_patients_chain_same_size_look_alikes() -> None:
    frame = pd.DataFrame({"path": list("abcd"), "label": [1, 1, 1, 1],
                          "width": [100, 100, 100, 90], "height": [80, 80, 80, 80]})
    base = perceptual_hash(_blob(0))
    hashes = np.array([base, base ^ 0b111, base ^ 0b111111, base], dtype=np.uint64)
    groups = pseudo_patients(frame, hashes, max_distance=3)
    assert groups.iloc[0] == groups.iloc[1] == groups.iloc[2]  # chained: a-b-c
    assert groups.iloc[3] != groups.iloc[0]  # another size: another scan


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
