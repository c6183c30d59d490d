"""The leakage and shortcut audit: what else, besides lung lesions, could give 99 %?

Four questions, each answered with a number in ``results/audit/<dataset>.json``
(:func:`audit_dataset`, :func:`write_audit`): near-duplicates across folds, look-alikes in
training, pseudo-patients for SARS-CoV-2 CT (:func:`build_pseudo_patients`), and metadata
shortcuts (:func:`metadata_baseline`), all under the folds the networks were tested on. See
docs/DEVELOPERS.md, *The audit*.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from sklearn.cluster import AgglomerativeClustering
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, homogeneity_completeness_v_measure
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from ctlib.cv import make_folds
from ctlib.data import CTDataset, read_grayscale, with_pseudo_patients
from ctlib.explain import extract_features
from ctlib.models import create_model
from ctlib.runtime import seed_everything

__all__ = [
    "COSINE_MIN",
    "HASH_MAX_DISTANCE",
    "PSEUDO_GROUPS_PER_LABEL",
    "audit_dataset",
    "build_pseudo_patients",
    "calibrate_threshold",
    "check_pseudo_patients",
    "cluster_scans",
    "grouping_agreement",
    "hamming",
    "imagenet_features",
    "load_audits",
    "metadata_baseline",
    "metadata_features",
    "near_duplicate_examples",
    "near_duplicate_pairs",
    "nearest_other_fold",
    "pairwise_hamming",
    "patient_leak",
    "perceptual_hash",
    "perceptual_hashes",
    "write_audit",
]


def _dct_bits(image: np.ndarray, size: int) -> np.ndarray:
    if image.ndim != 2:
        raise ValueError(f"perceptual_hash expects a 2-D image, got shape {image.shape}.")
    if size < 2:
        raise ValueError(f"hash size must be >= 2, got {size}.")
    side = 4 * size  # 8 x 8 bits from a 32 x 32 thumbnail, 16 x 16 from 64 x 64
    small = cv2.resize(image.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)
    dct = cv2.dct(small)[:size, :size]
    return (dct > np.median(dct.ravel()[1:])).ravel()


def perceptual_hash(image: np.ndarray, size: int = 8) -> int:
    """A DCT perceptual hash (pHash) of a 2-D uint8 image as a ``size * size``-bit integer.

    The image is resized to ``4 size x 4 size``, transformed with a 2-D DCT, and the
    top-left ``size x size`` low frequencies are thresholded at their median (the DC
    term left out of the median). Robust to rescaling, mild blur and re-encoding.
    ``size=8`` is the classic 64-bit pHash; ``size=16`` (256 bits) tells apart the
    similar-looking slices of different scans that 64 bits lump together.
    """
    bits = _dct_bits(image, size)
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return int(bin(a ^ b).count("1"))


def perceptual_hashes(
    paths: Sequence[str | os.PathLike[str]], size: int = 16, progress: bool = True
) -> np.ndarray:
    """pHash bits of every file: a boolean array ``(n, size * size)``."""

    def one(path: str | os.PathLike[str]) -> np.ndarray:
        return _dct_bits(read_grayscale(path), size)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        values = list(
            tqdm(
                pool.map(one, paths),
                total=len(paths),
                desc="hash",
                unit="img",
                disable=not progress,
            )
        )
    return np.array(values, dtype=bool).reshape(len(values), size * size)


def pairwise_hamming(bits: np.ndarray) -> np.ndarray:
    """All-pairs Hamming distances of hash bit rows (``(n, bits)`` bool) as ``(n, n)`` int."""
    x = np.asarray(bits, dtype=np.float32)
    return np.rint(x @ (1 - x).T + (1 - x) @ x.T).astype(np.int32)


def near_duplicate_pairs(
    frame: pd.DataFrame,
    hashes: np.ndarray,
    folds: Sequence[object] | np.ndarray,
    *,
    max_distance: int = 24,
) -> pd.DataFrame:
    """Image pairs within ``max_distance`` bits whose members lie in different folds.

    Under k-fold CV every fold is a test fold once, so any such pair means that, for
    some fold, a near-copy of a test image was in the training set.

    Args:
        frame: the data set's table (``path``, ``label``; ``patient_id`` if known).
        hashes: from :func:`perceptual_hashes` (any hash size).
        folds: a fold id per row.
        max_distance: the largest Hamming distance counted as a near-duplicate (24 of
            256 bits by default, see :func:`calibrate_distance`).

    Returns:
        One row per pair: ``path_a, path_b, distance, fold_a, fold_b, label_a, label_b``
        and ``same_patient`` (True/False where patient IDs are known, else <NA>).
    """
    folds = np.asarray(folds)
    distances = pairwise_hamming(hashes)
    i, j = np.nonzero(np.triu(distances <= max_distance, k=1))
    cross = folds[i] != folds[j]
    i, j = i[cross], j[cross]
    labels = frame["label"].to_numpy()
    paths = frame["path"].to_numpy()
    pairs = pd.DataFrame(
        {
            "path_a": paths[i],
            "path_b": paths[j],
            "distance": distances[i, j].astype(int),
            "fold_a": folds[i],
            "fold_b": folds[j],
            "label_a": labels[i],
            "label_b": labels[j],
        }
    )
    pairs["same_patient"] = _same_patient(frame, i, j)
    return pairs


def _same_patient(frame: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> pd.Series:
    if "patient_id" not in frame or frame["patient_id"].isna().any():
        return pd.Series(pd.NA, index=range(len(i)), dtype="boolean")
    ids = frame["patient_id"].astype(str).to_numpy()
    return pd.Series(ids[i] == ids[j], dtype="boolean")


def nearest_other_fold(features: np.ndarray, folds: Sequence[object] | np.ndarray) -> pd.DataFrame:
    """For each image, its most similar image in *another* fold (cosine similarity).

    Under k-fold CV the other folds are exactly the training set of the image's test
    fold, so this is "the closest thing the network saw in training".

    Returns:
        ``index`` (row of the image), ``neighbour`` (row of its nearest neighbour in
        another fold) and ``similarity`` (cosine, -1..1).
    """
    x = np.asarray(features, dtype=np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    folds = np.asarray(folds)
    similarity = x @ x.T
    similarity[folds[:, None] == folds[None, :]] = -np.inf
    neighbour = np.argmax(similarity, axis=1)
    return pd.DataFrame(
        {
            "index": np.arange(len(x)),
            "neighbour": neighbour,
            "similarity": similarity[np.arange(len(x)), neighbour],
        }
    )


def calibrate_threshold(
    scores: np.ndarray,
    same_patient: np.ndarray,
    precision: float = 0.95,
    higher_is_closer: bool = True,
) -> float:
    """The loosest threshold at which pairs that pass are same-patient pairs with at least
    ``precision`` (measured where patient IDs are known, e.g. on COVID19-CT).

    Args:
        scores: one closeness score per pair (cosine similarity, or minus a distance).
        same_patient: whether each pair's images come from one patient.
        precision: the share of passing pairs that must be same-patient.
        higher_is_closer: ``False`` for distances.

    Returns:
        The threshold (pairs with ``score >= threshold`` pass; ``<=`` for distances).
        ``nan`` if no threshold reaches the precision.
    """
    s = np.asarray(scores, dtype=float) * (1 if higher_is_closer else -1)
    same = np.asarray(same_patient, dtype=bool)
    order = np.argsort(-s, kind="stable")
    hits = np.cumsum(same[order]) / np.arange(1, len(s) + 1)
    ok = np.flatnonzero(hits >= precision)
    if len(ok) == 0:
        return float("nan")
    # the last position where precision still holds, at a value boundary
    value = s[order][ok[-1]]
    return float(value if higher_is_closer else -value)


def imagenet_features(
    frame: pd.DataFrame,
    *,
    arch: str = "efficientnet_lite0",
    canvas: tuple[int, int] = (224, 162),
    progress: bool = True,
) -> np.ndarray:
    """Penultimate features of an ImageNet-pretrained network (no fine-tuning) per image:
    a generic "how alike do two slices look" descriptor, cached like
    :func:`ctlib.explain.extract_features`."""

    seed_everything(0)  # the (unused) head's initial weights, so the cache key is stable
    model = create_model(arch, pretrained=True, progress=progress).eval()
    return extract_features(model, frame, arch, canvas=canvas, progress=progress).features


def cluster_scans(
    features: np.ndarray, labels: Sequence[int] | np.ndarray, groups_per_label: int | dict[int, int]
) -> np.ndarray:
    """Pseudo-patients: cluster look-alike slices, separately per label (a scan has one
    diagnosis), with Ward linkage on L2-normalised features.

    Args:
        features: one row per image, e.g. from :func:`imagenet_features`.
        labels: 1 = COVID.
        groups_per_label: clusters per label (e.g. 60, the SARS-CoV-2 CT authors' 60
            patients per class), or a dict label -> clusters.

    Returns:
        A group name per image, ``"<label>-<k>"``.
    """
    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    labels = np.asarray(labels, dtype=int)
    out = np.empty(len(x), dtype=object)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        k = groups_per_label[label] if isinstance(groups_per_label, dict) else groups_per_label
        k = int(min(max(k, 1), len(members)))
        if k == 1:
            ids = np.zeros(len(members), dtype=int)
        else:
            ids = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x[members])
        out[members] = [f"{label}-{i}" for i in ids]
    return out


def grouping_agreement(pseudo: Sequence[object], true: Sequence[object]) -> dict[str, float]:
    """How well derived groups match true patients: adjusted Rand index, homogeneity
    (each group holds one patient) and completeness (each patient in one group), 0..1."""
    pseudo, true = np.asarray(pseudo).astype(str), np.asarray(true).astype(str)
    homogeneity, completeness, _ = homogeneity_completeness_v_measure(true, pseudo)
    return {
        "ari": float(adjusted_rand_score(true, pseudo)),
        "homogeneity": float(homogeneity),
        "completeness": float(completeness),
    }


def patient_leak(folds: Sequence[object] | np.ndarray, patients: Sequence[object]) -> float:
    """Share of images whose patient also has an image in another fold -- i.e. in the
    training set when the image is tested. 0 for a patient-level split."""
    frame = pd.DataFrame(
        {"fold": np.asarray(folds).astype(str), "patient": np.asarray(patients).astype(str)}
    )
    folds_per_patient = frame.groupby("patient")["fold"].nunique()
    return float(frame["patient"].map(folds_per_patient).gt(1).mean())


#: Pseudo-patients per label: the SARS-CoV-2 CT authors report 60 patients per class.
PSEUDO_GROUPS_PER_LABEL = 60


def build_pseudo_patients(
    dataset: CTDataset, groups_per_label: int = PSEUDO_GROUPS_PER_LABEL, *, progress: bool = True
) -> pd.DataFrame:
    """Pseudo-patient groups of a data set: :func:`cluster_scans` on
    :func:`imagenet_features`. Returns ``relpath, pseudo_patient`` (what
    ``ctlib/data/manifests/<name>.pseudo_patients.csv`` holds).

    Checked on COVID19-CT, whose patients are known (``python -m ctlib audit
    pseudo-patients covid19-ct --check``): see :func:`check_pseudo_patients`.
    """
    features = imagenet_features(dataset.frame, progress=progress)
    groups = cluster_scans(features, dataset.frame["label"].to_numpy(dtype=int), groups_per_label)
    frame = dataset.frame
    keys = frame["relpath"] if "relpath" in frame else frame["path"].astype(str)
    return pd.DataFrame({"relpath": keys.to_numpy(), "pseudo_patient": groups})


def check_pseudo_patients(
    dataset: CTDataset,
    groups_per_label: int = PSEUDO_GROUPS_PER_LABEL,
    *,
    n_folds: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """How much patient leakage grouping by pseudo-patients removes, on a data set whose
    patients are known: the share of images whose patient sits in another fold too
    under the image-level folds, the pseudo-patient folds and the true patient folds,
    and the groups' agreement with the patients (:func:`grouping_agreement`)."""

    frame = dataset.frame
    if "patient_id" not in frame or frame["patient_id"].isna().any():
        raise ValueError(f"{dataset.name} has no patient IDs to check pseudo-patients against.")
    groups = build_pseudo_patients(dataset, groups_per_label, progress=progress)["pseudo_patient"]
    patients = frame["patient_id"].astype(str).to_numpy()
    grouped = frame.assign(pseudo_patient=groups.to_numpy())
    leak = {
        f"leak_{protocol.replace('-', '_')}": patient_leak(
            make_folds(grouped, protocol, n_folds, seed).to_numpy(), patients
        )
        for protocol in ("paper", "pseudo-patient", "patient")
    }
    return {
        **leak,
        **grouping_agreement(groups, patients),
        "groups": float(groups.nunique()),
        "patients": float(len(set(patients))),
    }


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
        return {
            "file_bytes": float(size),
            "width": float(image.shape[1]),
            "height": float(image.shape[0]),
            "aspect": image.shape[1] / image.shape[0],
            "is_png": float(head.startswith(b"\x89PNG")),
            "mean": float(image.mean()),
            "std": float(image.std()),
            "black_share": float(np.mean(image < 10)),
            "bytes_per_pixel": size / image.size,
        }

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        rows = list(
            tqdm(
                pool.map(one, frame["path"]),
                total=len(frame),
                desc="metadata",
                unit="img",
                disable=not progress,
            )
        )
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
        rows.append(
            {
                "fold": fold,
                "accuracy": float(np.mean(clf.predict(x[test]) == y[test])),
                "n": int(test.sum()),
            }
        )
    result = pd.DataFrame(rows)
    result.attrs["mean_accuracy"] = float(result["accuracy"].mean())
    return result


#: Near-duplicate: 256-bit pHashes at most this many bits apart. On COVID19-CT (patients
#: known) the pairs this close across folds are same-patient pairs (see the audit JSON).
HASH_MAX_DISTANCE = 24


#: A "look-alike in training": cosine similarity of ImageNet EfficientNet-Lite0 features at
#: least this high. Calibrated on COVID19-CT: from 0.92 on, >= 95 % of an image's nearest
#: other-fold neighbours are slices of the same patient (``calibration`` in the JSON).
COSINE_MIN = 0.92


def _grouped_protocol(dataset: CTDataset) -> str | None:
    frame = dataset.frame
    if "patient_id" in frame and frame["patient_id"].notna().all():
        return "patient"
    if "pseudo_patient" in frame:
        return "pseudo-patient"
    return None


def _identical_pairs(frame: pd.DataFrame, folds: np.ndarray) -> int:
    """Pairs of pixel-identical images (same decoded-pixel hash) in different folds."""
    if "pixel_sha256" not in frame:
        return 0
    count = 0
    for _, members in frame.assign(fold=folds).groupby("pixel_sha256")["fold"]:
        values = members.to_numpy()
        count += sum(
            int(values[i] != values[j])
            for i in range(len(values))
            for j in range(i + 1, len(values))
        )
    return count


def audit_dataset(
    dataset: CTDataset,
    *,
    n_folds: int = 5,
    seed: int = 0,
    cosine_min: float = COSINE_MIN,
    progress: bool = True,
) -> dict[str, Any]:
    """Leakage and shortcut numbers of one data set, under the image-level folds of the
    paper and the grouped folds (patients, or pseudo-patients where none are published).

    The folds are :func:`ctlib.cv.make_folds`' with the same seed as the training runs,
    so the numbers describe exactly the splits the networks were tested on.
    """

    if dataset.name == "sars-cov-2-ct" and "pseudo_patient" not in dataset.frame:
        dataset = replace(dataset, frame=with_pseudo_patients(dataset.frame, dataset.name))
    frame = dataset.frame
    labels = frame["label"].to_numpy(dtype=int)
    features = imagenet_features(frame, progress=progress)
    hashes = perceptual_hashes(frame["path"], size=16, progress=progress)
    metadata = metadata_features(frame, progress=progress)
    report: dict[str, Any] = {
        "dataset": dataset.name,
        "images": int(len(frame)),
        "covid": int(labels.sum()),
        "non_covid": int((1 - labels).sum()),
        "hash_bits": 256,
        "hash_max_distance": HASH_MAX_DISTANCE,
        "cosine_min": cosine_min,
        "protocols": {},
    }
    grouped = _grouped_protocol(dataset)
    for protocol in ["paper"] + ([grouped] if grouped else []):
        folds = make_folds(frame, protocol, n_folds, seed).to_numpy()
        pairs = near_duplicate_pairs(frame, hashes, folds, max_distance=HASH_MAX_DISTANCE)
        nearest = nearest_other_fold(features, folds)
        close = nearest["similarity"].to_numpy() >= cosine_min
        neighbour_labels = labels[nearest["neighbour"].to_numpy()]
        forest = metadata_baseline(metadata, labels, folds, seed=seed)
        size_only = metadata_baseline(
            metadata, labels, folds, seed=seed, columns=["width", "height", "aspect", "file_bytes"]
        )
        entry = {
            "identical_pairs": _identical_pairs(frame, folds),
            "near_duplicate_pairs": int(len(pairs)),
            "near_duplicate_images": int(len(set(pairs["path_a"]) | set(pairs["path_b"]))),
            "lookalike_images": int(close.sum()),
            "lookalike_share": float(close.mean()),
            "lookalike_same_label": float(np.mean(neighbour_labels[close] == labels[close]))
            if close.any()
            else float("nan"),
            "nearest_neighbour_accuracy": float(np.mean(neighbour_labels == labels)),
            "metadata_accuracy": forest.attrs["mean_accuracy"],
            "metadata_accuracy_std": float(forest["accuracy"].std(ddof=1)),
            "size_only_accuracy": size_only.attrs["mean_accuracy"],
        }
        if "patient_id" in frame and frame["patient_id"].notna().all():
            entry["patient_leak"] = patient_leak(folds, frame["patient_id"].astype(str))
            same = pairs["same_patient"].astype(bool)
            entry["near_duplicate_same_patient"] = (
                float(same.mean()) if len(pairs) else float("nan")
            )
            patients = frame["patient_id"].astype(str).to_numpy()
            neighbour_same = patients == patients[nearest["neighbour"].to_numpy()]
            entry["lookalike_same_patient"] = (
                float(neighbour_same[close].mean()) if close.any() else float("nan")
            )
        report["protocols"][protocol] = entry
    if "patient_id" in frame and frame["patient_id"].notna().all():
        folds = make_folds(frame, "paper", n_folds, seed).to_numpy()
        nearest = nearest_other_fold(features, folds)
        patients = frame["patient_id"].astype(str).to_numpy()
        same = patients == patients[nearest["neighbour"].to_numpy()]
        report["calibration"] = {
            "cosine_at_95_precision": calibrate_threshold(nearest["similarity"], same, 0.95),
            "note": "the lowest cosine similarity from which >= 95 % of images' nearest "
            "other-fold neighbours are the same patient (image-level folds)",
        }
        report["pseudo_patient_check"] = check_pseudo_patients(dataset, progress=progress)
    if "pseudo_patient" in frame:
        sizes = frame["pseudo_patient"].value_counts()
        report["pseudo_patients"] = {
            "groups": int(len(sizes)),
            "median_size": float(sizes.median()),
            "min_size": int(sizes.min()),
            "max_size": int(sizes.max()),
        }
    return report


def write_audit(
    dataset: CTDataset, out: str | os.PathLike[str] = "results/audit", **kwargs: Any
) -> Path:
    """:func:`audit_dataset` written to ``<out>/<dataset>.json``."""
    report = audit_dataset(dataset, **kwargs)
    path = Path(out) / f"{dataset.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return path


def load_audits(results: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every ``<results>/audit/<dataset>.json``, by data set name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(results).glob("audit/*.json"))}


def near_duplicate_examples(
    dataset: CTDataset,
    *,
    protocol: str = "paper",
    n: int = 4,
    n_folds: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """The closest cross-fold image pairs (256-bit pHash) under a protocol's folds: what a
    "near-duplicate across folds" looks like. Sorted by distance, at most ``n`` rows."""

    frame = dataset.frame
    if protocol == "pseudo-patient" and "pseudo_patient" not in frame:
        frame = with_pseudo_patients(frame, dataset.name)
    folds = make_folds(frame, protocol, n_folds, seed).to_numpy()
    hashes = perceptual_hashes(frame["path"], size=16, progress=progress)
    pairs = near_duplicate_pairs(frame, hashes, folds, max_distance=HASH_MAX_DISTANCE)
    return pairs.sort_values("distance", kind="stable").head(n).reset_index(drop=True)
