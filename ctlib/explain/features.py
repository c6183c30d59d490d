"""Penultimate features (cached on disk), t-SNE, separation scores, a fold's split.

See :mod:`ctlib.explain` for the overview (the paper's Fig. 11/12).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from torch import nn
from tqdm.auto import tqdm

from ctlib.canvas import fit_to_canvas
from ctlib.data import CTDataset, read_grayscale
from ctlib.explain.inputs import image_frame, model_device, spec_and_canvas
from ctlib.models import get_layer, probabilities
from ctlib.paths import cache_dir
from ctlib.runfiles import locate_images, read_folds, read_predictions
from ctlib.transforms import normalize

log = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = 1
"""Bump when the features computed for the same inputs change (invalidates the cache)."""


@dataclass(frozen=True)
class FeatureSet:
    """Penultimate features of a set of images, with what the network said about them.

    Attributes:
        features: ``(N, feature_dim)`` float32, the pooled output of ``spec.cam_layer``.
        probs: ``(N,)`` the network's P(COVID) for each image.
        paths: the image files, in order.
        labels: ``(N,)`` float labels (1 COVID, 0 non-COVID, NaN unknown).
        arch: the architecture.
        key: the cache key (hash of weights, canvas and image files).
        from_cache: whether the features were read from the cache.
    """

    features: np.ndarray
    probs: np.ndarray
    paths: list[str]
    labels: np.ndarray
    arch: str
    key: str
    from_cache: bool = False


def _state_hash(model: nn.Module) -> str:
    """sha256 of the model's state dict: names, dtypes, shapes and bytes of every tensor."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _files_signature(paths: Sequence[str]) -> list[list[Any]]:
    """Path, size and modification time of each file (a changed file changes the key)."""
    out = []
    for p in paths:
        stat = Path(p).stat()
        out.append([str(p), stat.st_size, stat.st_mtime_ns])
    return out


def feature_cache_key(
    model: nn.Module,
    paths: Sequence[str],
    arch: str | None = None,
    canvas: tuple[int, int] | None = None,
) -> str:
    """The cache key of :func:`extract_features`: weights, architecture, canvas, image files."""
    spec, size = spec_and_canvas(model, arch, canvas)
    payload = json.dumps(
        {
            "version": FEATURE_CACHE_VERSION,
            "arch": spec.name,
            "canvas": size,
            "mean": spec.mean,
            "std": spec.std,
            "state": _state_hash(model),
            "files": _files_signature(paths),
        }
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _compute_features(
    model: nn.Module,
    paths: Sequence[str],
    spec: Any,
    size: tuple[int, int],
    batch_size: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and probabilities, batch by batch (one forward pass gives both)."""
    layer = get_layer(model, spec.cam_layer, spec)
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        captured.append(output.float().mean(dim=(2, 3)) if output.dim() == 4 else output.flatten(1))

    device = model_device(model)
    was_training = model.training
    model.eval()
    features, probs = [], []
    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            starts = range(0, len(paths), batch_size)
            for start in tqdm(
                starts, desc=f"features {spec.name}", unit="batch", disable=not progress
            ):
                batch = [
                    normalize(fit_to_canvas(read_grayscale(p), size)[0], spec.mean, spec.std)
                    for p in paths[start : start + batch_size]
                ]
                captured.clear()
                logits = model(torch.stack(batch).to(device))
                if len(captured) != 1:
                    raise RuntimeError(
                        f"{spec.cam_layer!r} ran {len(captured)} times in one "
                        "forward pass; expected once."
                    )
                features.append(captured[0].cpu().numpy())
                probs.append(probabilities(logits).cpu().numpy())
    finally:
        handle.remove()
        model.train(was_training)
    if not features:
        return np.zeros((0, spec.feature_dim), np.float32), np.zeros(0, np.float32)
    return np.concatenate(features).astype(np.float32), np.concatenate(probs).astype(np.float32)


def extract_features(
    model: nn.Module,
    data: CTDataset | pd.DataFrame | Sequence[str | os.PathLike[str]],
    arch: str | None = None,
    *,
    canvas: tuple[int, int] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    cache: bool = True,
    cache_folder: str | os.PathLike[str] | None = None,
) -> FeatureSet:
    """Penultimate-layer features of every image, as in the paper's t-SNE (Fig. 11/12).

    Args:
        model: a network from :func:`ctlib.models.create_model` or :func:`load_trained`; it
            is run in eval mode (its mode is restored afterwards) and not changed.
        data: a :class:`ctlib.data.CTDataset`, a frame with ``path`` (and ``label``), or
            image files/folders.
        arch: registry name; defaults to ``model.ctlib_arch``.
        canvas: ``(width, height)``; defaults to ``model.ctlib_canvas`` (set by
            :func:`load_trained`), else the architecture's Table 1 canvas.
        batch_size: images per forward pass.
        progress: progress bar.
        cache: read and write the on-disk cache.
        cache_folder: where; default ``ctlib.paths.cache_dir()/features``.

    Returns:
        A :class:`FeatureSet`; ``features`` has shape ``(N, spec.feature_dim)``.

    Example:
        >>> model, info = load_trained("runs/synthetic/patient/efficientnet_lite0/fold0/model.pt")
        >>> split = fold_split("runs/synthetic/patient/efficientnet_lite0/fold0")
        >>> feats = extract_features(model, split)             # doctest: +SKIP
        >>> emb = embed_tsne(feats.features, perplexity=30, seed=0)  # doctest: +SKIP
    """
    spec, size = spec_and_canvas(model, arch, canvas)
    frame = image_frame(data)
    paths = frame["path"].astype(str).tolist()
    labels = pd.to_numeric(frame["label"], errors="coerce").to_numpy(dtype=np.float32)
    key = feature_cache_key(model, paths, spec.name, size)
    folder = Path(cache_folder) if cache_folder is not None else cache_dir() / "features"
    file = folder / f"{spec.name}-{key}.npz"
    if cache and file.is_file():
        with np.load(file, allow_pickle=False) as stored:
            if stored["paths"].tolist() == paths:
                log.info("features of %d images read from %s", len(paths), file)
                return FeatureSet(
                    stored["features"],
                    stored["probs"],
                    paths,
                    labels,
                    spec.name,
                    key,
                    from_cache=True,
                )
        log.warning("%s does not match its key; computing again", file)
    features, probs = _compute_features(model, paths, spec, size, batch_size, progress)
    if cache:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{file.stem}.tmp{os.getpid()}.npz"
        np.savez(tmp, features=features, probs=probs, paths=np.array(paths, dtype=str))
        os.replace(tmp, file)
    return FeatureSet(features, probs, paths, labels, spec.name, key, from_cache=False)


def embed_tsne(
    features: np.ndarray,
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    max_iter: int = 1000,
    pca_components: int | None = 50,
    init: str = "pca",
) -> np.ndarray:
    """Two-dimensional t-SNE embedding of features (scikit-learn's ``TSNE``).

    Args:
        features: ``(N, D)`` array.
        perplexity: t-SNE's perplexity; must be below N (5-50 is usual).
        seed: ``random_state`` of PCA and t-SNE: the same seed gives the same embedding.
            With ``init="pca"`` the start is deterministic, so the seed changes little or
            nothing; with ``init="random"`` it picks the random start.
        max_iter: optimisation steps (scikit-learn's ``max_iter``).
        pca_components: reduce to this many principal components first (usual practice:
            faster, less noise); ``None`` skips PCA.
        init: ``"pca"`` (scikit-learn's default: stable global layout) or ``"random"``.

    Returns:
        ``(N, 2)`` float32 embedding.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"embed_tsne expects an (N, D) array with N >= 3, got shape {x.shape}.")
    if not 0 < perplexity < len(x):
        raise ValueError(
            f"perplexity must be in (0, N={len(x)}), got {perplexity}; use a smaller "
            "one (e.g. N/4) for small sets."
        )
    if pca_components is not None and x.shape[1] > pca_components and len(x) > pca_components:
        x = PCA(n_components=pca_components, random_state=seed).fit_transform(x)
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        random_state=seed,
        max_iter=max_iter,
        init=init,
        learning_rate="auto",
    )
    return tsne.fit_transform(x).astype(np.float32)


def separation_scores(
    features: np.ndarray,
    labels: Sequence[float],
    embedding: np.ndarray | None = None,
    *,
    k: int = 5,
    n_splits: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """How well separated the classes are: a number for the t-SNE picture.

    * ``knn_accuracy``: accuracy of a k-nearest-neighbour classifier (Euclidean), stratified
      ``n_splits``-fold cross-validated; 0.5 is chance for balanced classes.
    * ``silhouette``: mean silhouette coefficient of the two classes (-1..1; > 0 means images
      are closer to their own class than to the other).

    Both for the raw features and, if given, the embedding (the embedding can exaggerate
    clusters; the raw-feature numbers are the honest ones).

    Returns:
        One row per space (``features``, ``t-SNE``) with ``knn_accuracy``, ``knn_std``,
        ``silhouette`` and ``n``.
    """
    y = np.asarray(labels, dtype=float)
    keep = ~np.isnan(y)
    y = y[keep].astype(int)
    counts = np.bincount(y, minlength=2)
    if len(counts) != 2 or counts.min() < 2:
        raise ValueError(
            f"separation_scores needs two classes with >= 2 images each; got counts "
            f"{counts.tolist()} for labels 0/1."
        )
    folds = min(n_splits, int(counts.min()))
    spaces = {"features": np.asarray(features)[keep]}
    if embedding is not None:
        spaces["t-SNE"] = np.asarray(embedding)[keep]
    rows = []
    for name, x in spaces.items():
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        neighbours = min(k, len(y) - len(y) // folds - 1)
        scores = cross_val_score(KNeighborsClassifier(n_neighbors=neighbours), x, y, cv=cv)
        rows.append(
            {
                "space": name,
                "knn_accuracy": float(scores.mean()),
                "knn_std": float(scores.std()),
                "silhouette": float(silhouette_score(x, y)),
                "k": neighbours,
                "folds": folds,
                "n": len(y),
            }
        )
    return pd.DataFrame(rows)


def fold_split(fold_folder: str | os.PathLike[str]) -> pd.DataFrame:
    """Train and test images of one fold of a results folder (for t-SNE and the explorer).

    Reads ``folds.csv`` one level up and the fold's ``predictions.csv``.

    Returns:
        A frame with ``path``, ``label``, ``patient_id``, ``split`` (``train``/``test``, or
        the official split's ``train``/``val``/``test``) and ``prob`` (the saved test
        probability; NaN for other images).
    """
    folder = Path(fold_folder)
    folds_file = folder.parent / "folds.csv"
    if not folds_file.is_file() or not folder.name.startswith("fold"):
        raise FileNotFoundError(
            f"{folder} is no fold folder of ctlib.cv.run_cv (expected "
            f"<out>/<dataset>/<protocol>/<arch>/fold<k> with {folds_file})."
        )
    recorded = read_folds(folds_file)  # paths as the training machine saw them
    folds = recorded.assign(path=locate_images(recorded["path"], folder.parents[2].name))
    gone = [p for p in folds["path"] if not os.path.exists(p)]
    if gone:
        raise FileNotFoundError(
            f"{len(gone)} of the {len(folds)} images of {folds_file} are no longer where the "
            f"run found them (e.g. {gone[0]}): the data set, or the cache holding the "
            "synthetic set, moved or was cleared. Put it back (CTLIB_DATA_DIR, CTLIB_CACHE_DIR), "
            f"or train the run again: delete {folder.parent} and run its training cell (or "
            "command) once more."
        )
    k = folder.name[len("fold") :]
    official = set(folds["fold"].unique()) <= {"train", "val", "test"}
    split = folds["fold"] if official else np.where(folds["fold"] == k, "test", "train")
    frame = folds.assign(split=split).drop(columns="fold")
    predictions = folder / "predictions.csv"
    if predictions.is_file():
        probs = read_predictions(predictions).set_index("path")["prob"]
        frame["prob"] = recorded["path"].map(probs).astype(float).to_numpy()
    else:
        frame["prob"] = np.nan
    return frame


def select_outcomes(
    predictions: pd.DataFrame, outcome: str, n: int | None = None, threshold: float = 0.5
) -> pd.DataFrame:
    """Rows of a predictions frame (``label``, ``prob``) with one outcome, surest first.

    Args:
        predictions: e.g. a fold's ``predictions.csv`` or :func:`fold_split` (test rows).
        outcome: ``"tp"``, ``"tn"``, ``"fp"``, ``"fn"``, ``"correct"`` or ``"misclassified"``.
        n: at most this many.
        threshold: probability from which a prediction is COVID.

    Correct predictions are ordered by confidence (highest first), errors by how wrong
    they are (most wrong first), as the paper's galleries show typical cases.
    """
    frame = predictions.dropna(subset=["label", "prob"])
    label = frame["label"].astype(int).to_numpy()
    predicted = (frame["prob"].to_numpy() >= threshold).astype(int)
    masks = {
        "tp": (label == 1) & (predicted == 1),
        "tn": (label == 0) & (predicted == 0),
        "fp": (label == 0) & (predicted == 1),
        "fn": (label == 1) & (predicted == 0),
    }
    masks["correct"] = masks["tp"] | masks["tn"]
    masks["misclassified"] = masks["fp"] | masks["fn"]
    if outcome not in masks:
        raise ValueError(f"Unknown outcome {outcome!r}; choose from {sorted(masks)}.")
    chosen = frame[masks[outcome]]
    wrongness = (chosen["prob"] - chosen["label"].astype(float)).abs()
    ascending = outcome in ("tp", "tn", "correct")
    chosen = chosen.assign(_order=wrongness).sort_values(
        "_order", ascending=ascending, kind="stable"
    )
    chosen = chosen.drop(columns="_order")
    return chosen if n is None else chosen.head(n)
