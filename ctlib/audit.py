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
    "PSEUDO_GROUPS_PER_LABEL",
    "build_pseudo_patients",
    "calibrate_threshold",
    "check_pseudo_patients",
    "cluster_scans",
    "grouping_agreement",
    "hamming",
    "imagenet_features",
    "metadata_baseline",
    "metadata_features",
    "near_duplicate_pairs",
    "nearest_other_fold",
    "pairwise_hamming",
    "patient_leak",
    "perceptual_hash",
    "perceptual_hashes",
    "pseudo_patient_file",
    "with_pseudo_patients",
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


def perceptual_hashes(paths: Sequence[str | os.PathLike[str]], size: int = 16,
                      progress: bool = True) -> np.ndarray:
    """pHash bits of every file: a boolean array ``(n, size * size)``."""
    def one(path: str | os.PathLike[str]) -> np.ndarray:
        return _dct_bits(read_grayscale(path), size)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        values = list(tqdm(pool.map(one, paths), total=len(paths), desc="hash", unit="img",
                           disable=not progress))
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
    pairs = pd.DataFrame({
        "path_a": paths[i], "path_b": paths[j], "distance": distances[i, j].astype(int),
        "fold_a": folds[i], "fold_b": folds[j], "label_a": labels[i], "label_b": labels[j],
    })
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
    return pd.DataFrame({"index": np.arange(len(x)), "neighbour": neighbour,
                         "similarity": similarity[np.arange(len(x)), neighbour]})


def calibrate_threshold(scores: np.ndarray, same_patient: np.ndarray, precision: float = 0.95,
                        higher_is_closer: bool = True) -> float:
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


def imagenet_features(frame: pd.DataFrame, *, arch: str = "efficientnet_lite0",
                      canvas: tuple[int, int] = (224, 162), progress: bool = True) -> np.ndarray:
    """Penultimate features of an ImageNet-pretrained network (no fine-tuning) per image:
    a generic "how alike do two slices look" descriptor, cached like
    :func:`ctlib.explain.extract_features`."""
    from ctlib.explain import extract_features
    from ctlib.models import create_model
    from ctlib.train import seed_everything

    seed_everything(0)  # the (unused) head's initial weights, so the cache key is stable
    model = create_model(arch, pretrained=True, progress=progress).eval()
    return extract_features(model, frame, arch, canvas=canvas, progress=progress).features


def cluster_scans(features: np.ndarray, labels: Sequence[int] | np.ndarray,
                  groups_per_label: int | dict[int, int]) -> np.ndarray:
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
    from sklearn.cluster import AgglomerativeClustering

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
    from sklearn.metrics import adjusted_rand_score, homogeneity_completeness_v_measure

    pseudo, true = np.asarray(pseudo).astype(str), np.asarray(true).astype(str)
    homogeneity, completeness, _ = homogeneity_completeness_v_measure(true, pseudo)
    return {"ari": float(adjusted_rand_score(true, pseudo)), "homogeneity": float(homogeneity),
            "completeness": float(completeness)}


def patient_leak(folds: Sequence[object] | np.ndarray, patients: Sequence[object]) -> float:
    """Share of images whose patient also has an image in another fold -- i.e. in the
    training set when the image is tested. 0 for a patient-level split."""
    frame = pd.DataFrame({"fold": np.asarray(folds).astype(str),
                          "patient": np.asarray(patients).astype(str)})
    folds_per_patient = frame.groupby("patient")["fold"].nunique()
    return float(frame["patient"].map(folds_per_patient).gt(1).mean())


def pseudo_patient_file(name: str) -> Path:
    """``data/<name>.pseudo_patients.csv``: the shipped pseudo-patient groups."""
    from ctlib.data import manifest_path

    return manifest_path(name).with_suffix(".pseudo_patients.csv")


#: Pseudo-patients per label: the SARS-CoV-2 CT authors report 60 patients per class.
PSEUDO_GROUPS_PER_LABEL = 60


def build_pseudo_patients(dataset: CTDataset, groups_per_label: int = PSEUDO_GROUPS_PER_LABEL,
                          *, progress: bool = True) -> pd.DataFrame:
    """Pseudo-patient groups of a data set: :func:`cluster_scans` on
    :func:`imagenet_features`. Returns ``relpath, pseudo_patient`` (what
    ``data/<name>.pseudo_patients.csv`` holds).

    Checked on COVID19-CT, whose patients are known (``python -m ctlib audit
    pseudo-patients covid19-ct --check``): see :func:`check_pseudo_patients`.
    """
    features = imagenet_features(dataset.frame, progress=progress)
    groups = cluster_scans(features, dataset.frame["label"].to_numpy(dtype=int), groups_per_label)
    frame = dataset.frame
    keys = frame["relpath"] if "relpath" in frame else frame["path"].astype(str)
    return pd.DataFrame({"relpath": keys.to_numpy(), "pseudo_patient": groups})


def check_pseudo_patients(dataset: CTDataset, groups_per_label: int = PSEUDO_GROUPS_PER_LABEL,
                          *, n_folds: int = 5, seed: int = 0, progress: bool = True) -> dict[str, float]:
    """How much patient leakage grouping by pseudo-patients removes, on a data set whose
    patients are known: the share of images whose patient sits in another fold too
    under the image-level folds, the pseudo-patient folds and the true patient folds,
    and the groups' agreement with the patients (:func:`grouping_agreement`)."""
    from ctlib.cv import make_folds

    frame = dataset.frame
    if "patient_id" not in frame or frame["patient_id"].isna().any():
        raise ValueError(f"{dataset.name} has no patient IDs to check pseudo-patients against.")
    groups = build_pseudo_patients(dataset, groups_per_label, progress=progress)["pseudo_patient"]
    patients = frame["patient_id"].astype(str).to_numpy()
    grouped = frame.assign(pseudo_patient=groups.to_numpy())
    leak = {f"leak_{protocol.replace('-', '_')}": patient_leak(
        make_folds(grouped, protocol, n_folds, seed).to_numpy(), patients)
        for protocol in ("paper", "pseudo-patient", "patient")}
    return {**leak, **grouping_agreement(groups, patients), "groups": float(groups.nunique()),
            "patients": float(len(set(patients)))}


def with_pseudo_patients(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The data set's table with a ``pseudo_patient`` column from the shipped groups.

    Raises:
        FileNotFoundError: no groups ship for this data set (build them with
            ``python -m ctlib audit pseudo-patients <name>``).
        ValueError: an image of the table has no group (the data changed).
    """
    path = pseudo_patient_file(name)
    if not path.is_file():
        raise FileNotFoundError(f"No pseudo-patient groups for {name!r} ({path} is missing); build "
                                f"them with `python -m ctlib audit pseudo-patients {name}`.")
    groups = pd.read_csv(path, dtype=str).set_index("relpath")["pseudo_patient"]
    mapped = frame["relpath"].map(groups)
    if mapped.isna().any():
        missing = frame.loc[mapped.isna(), "relpath"].head(3).tolist()
        raise ValueError(f"{mapped.isna().sum()} images have no group in {path} (e.g. {missing}); "
                         f"rebuild it with `python -m ctlib audit pseudo-patients {name}`.")
    return frame.assign(pseudo_patient=mapped.to_numpy())


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
