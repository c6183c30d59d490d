"""A leakage and shortcut audit: what else, besides lung lesions, could give 99 %?

Three questions a reader of the paper should ask, each answered with a number:

1. **Near-duplicates across folds.** Under the image-level protocol, slices of one scan
   (often nearly identical neighbours) land in both training and test folds.
   :func:`perceptual_hashes` and :func:`near_duplicate_pairs` count image pairs that
   look alike (a DCT perceptual hash within a small Hamming distance) and sit on both
   sides of a split.
2. **Pseudo-patients.** SARS-CoV-2 CT publishes no patient IDs (the paper says 120
   patients for 2482 slices). Slices of one scan share their pixel size and look alike,
   so :func:`pseudo_patients` groups images of the same size whose hashes chain together
   -- connected components of a similarity graph -- and reports how the groups compare
   with the published patient count.
3. **Metadata shortcuts.** :func:`metadata_features` describes each file without looking
   at the lungs (file size, width, height, aspect ratio, format, intensity statistics,
   share of black border) and :func:`metadata_baseline` trains a simple classifier on
   that alone under the same folds. Far above 50 % means the labels can be read off the
   file, not the anatomy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ctlib.data import CTDataset, read_grayscale

__all__ = [
    "hamming",
    "metadata_baseline",
    "metadata_features",
    "near_duplicate_pairs",
    "perceptual_hash",
    "perceptual_hashes",
    "pseudo_patients",
]


def perceptual_hash(image: np.ndarray, size: int = 8) -> int:
    """A DCT perceptual hash (pHash) of a 2-D uint8 image as a ``size * size``-bit integer.

    The image is resized to 32 x 32, transformed with a 2-D DCT, and the top-left
    ``size x size`` low frequencies (without the DC term's influence on the median)
    are thresholded at their median. Robust to rescaling, mild blur and re-encoding.
    """
    if image.ndim != 2:
        raise ValueError(f"perceptual_hash expects a 2-D image, got shape {image.shape}.")
    small = cv2.resize(image.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    dct = cv2.dct(small)[:size, :size]
    bits = (dct > np.median(dct.ravel()[1:])).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return int(bin(a ^ b).count("1"))


def perceptual_hashes(paths: Sequence[str | os.PathLike[str]], progress: bool = True) -> np.ndarray:
    """pHash of every file, as an array of unsigned 64-bit integers."""
    def one(path: str | os.PathLike[str]) -> int:
        return perceptual_hash(read_grayscale(path))

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        values = list(tqdm(pool.map(one, paths), total=len(paths), desc="hash", unit="img",
                           disable=not progress))
    return np.array(values, dtype=np.uint64)


def _pairwise_hamming(hashes: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances of 64-bit hashes (n x n uint8; fine for a few thousand)."""
    x = hashes[:, None] ^ hashes[None, :]
    bytes_ = x.view(np.uint8).reshape(len(hashes), len(hashes), 8)
    return np.unpackbits(bytes_, axis=2).sum(axis=2).astype(np.uint8)


def near_duplicate_pairs(
    frame: pd.DataFrame,
    hashes: np.ndarray,
    folds: Sequence[object] | np.ndarray,
    *,
    max_distance: int = 6,
) -> pd.DataFrame:
    """Image pairs within ``max_distance`` bits whose members lie in different folds.

    Under k-fold CV every fold is a test fold once, so any such pair means that, for
    some fold, a near-copy of a test image was in the training set.

    Returns:
        One row per pair: ``path_a, path_b, distance, fold_a, fold_b, label_a, label_b``.
    """
    folds = np.asarray(folds)
    distances = _pairwise_hamming(np.asarray(hashes, dtype=np.uint64))
    i, j = np.nonzero(np.triu(distances <= max_distance, k=1))
    cross = folds[i] != folds[j]
    i, j = i[cross], j[cross]
    labels = frame["label"].to_numpy()
    paths = frame["path"].to_numpy()
    return pd.DataFrame({
        "path_a": paths[i], "path_b": paths[j], "distance": distances[i, j].astype(int),
        "fold_a": folds[i], "fold_b": folds[j], "label_a": labels[i], "label_b": labels[j],
    })


def pseudo_patients(frame: pd.DataFrame, hashes: np.ndarray, *, max_distance: int = 12) -> pd.Series:
    """Group slices that probably come from one scan: same pixel size, chained look-alikes.

    Two images are linked when they have the same width and height and their
    perceptual hashes differ by at most ``max_distance`` bits (and the same label:
    a scan has one diagnosis); groups are the connected components. A group ID is
    ``"<label>-<width>x<height>-<k>"``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(frame)
    hashes = np.asarray(hashes, dtype=np.uint64)
    key = (frame["label"].astype(str) + "-" + frame["width"].astype(str) + "x"
           + frame["height"].astype(str)).to_numpy()
    rows, cols = [], []
    for value in np.unique(key):
        members = np.flatnonzero(key == value)
        if len(members) < 2:
            continue
        distances = _pairwise_hamming(hashes[members])
        a, b = np.nonzero(np.triu(distances <= max_distance, k=1))
        rows += members[a].tolist()
        cols += members[b].tolist()
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    ids = pd.Series(component, index=frame.index)
    names = {c: f"{key[np.flatnonzero(component == c)[0]]}-{c}" for c in np.unique(component)}
    return ids.map(names).rename("pseudo_patient")


def metadata_features(dataset: CTDataset | pd.DataFrame, progress: bool = True) -> pd.DataFrame:
    """Per image, what the file says without the anatomy.

    Columns: ``file_bytes, width, height, aspect, is_png, mean, std, black_share``
    (share of pixels below 10, i.e. the black surround), ``bytes_per_pixel``.
    """
    frame = dataset.frame if isinstance(dataset, CTDataset) else dataset

    def one(path: str) -> dict[str, float]:
        image = read_grayscale(path)
        with open(path, "rb") as handle:
            head = handle.read(8)
        size = Path(path).stat().st_size
        return {"file_bytes": float(size), "width": float(image.shape[1]),
                "height": float(image.shape[0]), "aspect": image.shape[1] / image.shape[0],
                "is_png": float(head.startswith(b"\x89PNG")), "mean": float(image.mean()),
                "std": float(image.std()), "black_share": float(np.mean(image < 10)),
                "bytes_per_pixel": size / image.size}

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        rows = list(tqdm(pool.map(one, frame["path"]), total=len(frame), desc="metadata",
                         unit="img", disable=not progress))
    return pd.DataFrame(rows, index=frame.index)


def metadata_baseline(
    features: pd.DataFrame,
    labels: Sequence[int] | np.ndarray,
    folds: Sequence[object] | np.ndarray,
    *,
    columns: Sequence[str] | None = None,
    model: str = "forest",
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy of a classifier that sees only metadata, under the given folds.

    Args:
        features: from :func:`metadata_features`.
        labels: 1 = COVID.
        folds: a test-fold id per row (as from :func:`ctlib.cv.make_folds`).
        columns: which feature columns (default: all).
        model: ``"forest"`` (random forest, 300 trees) or ``"logistic"`` (standardised
            logistic regression).
        seed: the classifier's seed.

    Returns:
        One row per fold: ``fold, accuracy, n`` (and the mean over folds in
        ``.attrs["mean_accuracy"]``).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = features[list(columns)] if columns is not None else features
    y = np.asarray(labels, dtype=int)
    folds = np.asarray(folds)
    rows = []
    for fold in pd.unique(folds):
        test = folds == fold
        if model == "forest":
            clf = RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1)
        elif model == "logistic":
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        else:
            raise ValueError(f"model must be 'forest' or 'logistic', got {model!r}.")
        clf.fit(x[~test], y[~test])
        rows.append({"fold": fold, "accuracy": float(np.mean(clf.predict(x[test]) == y[test])),
                     "n": int(test.sum())})
    result = pd.DataFrame(rows)
    result.attrs["mean_accuracy"] = float(result["accuracy"].mean())
    return result
