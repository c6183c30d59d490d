"""Explaining trained networks: features and t-SNE, Grad-CAM mapped back, CAMs scored.

The paper's Sec. 5 in four parts, each a few pure functions:

**Predictions on any image** (Fig. 15/16): :func:`predict_files`, :func:`explain_files`.

**Features and t-SNE** (Fig. 11/12): :func:`extract_features` runs a trained network over a
data set and returns the pooled penultimate features (what the head sees) and the network's
probabilities, cached on disk under ``ctlib.paths.cache_dir()/features`` keyed by a hash of
the weights, the canvas and the image files; :func:`embed_tsne` embeds them with
scikit-learn's t-SNE; :func:`separation_scores` puts a number on "well separated"
(cross-validated k-NN accuracy and silhouette score, in the feature space and in the
embedding). ``ctlib.plots.plot_tsne`` draws train/test x COVID/non-COVID in four colours with
misclassified test images marked.

**Grad-CAM** (Fig. 13-16): :func:`gradcam` (heat map only) and :func:`explain_image`
(a :class:`CamResult`) take the *original* 2-D uint8 image. The image is drawn on the
network's canvas (:func:`ctlib.canvas.fit_to_canvas`), the CAM is computed there with
pytorch-grad-cam on the registry's layer (``spec.cam_layer``; any other can be named), and
the map is cut out through the placement box and resized to the original image. The share
of the heat that fell on the padding, which the mapped-back map no longer shows, is
reported as ``padding_share``. Methods: ``"gradcam"`` (default), ``"gradcam++"``,
``"hirescam"``, ``"scorecam"``, ``"eigencam"``, ``"layercam"`` (see :data:`CAM_METHODS`).

Heat-map scale: pytorch-grad-cam scales each *canvas* map to [0, 1]. The mapped-back map
keeps that scale, so its maximum is below 1 when the canvas maximum lay on the padding:
an overlay then looks weak exactly when the network looked elsewhere.

CAM hygiene (see the field notes): CAMs are computed in float32 with autocast disabled and
gradients enabled (also inside ``torch.no_grad()``); the hooks are released by
pytorch-grad-cam's context manager even when something fails; the model's train/eval
mode is restored (pytorch-grad-cam leaves it in eval mode) and the parameter gradients
its backward pass leaves behind are cleared. Targets of a one-logit network are
pytorch-grad-cam's ``BinaryClassifierOutputTarget``: 1 (COVID, the logit) or 0 (non-COVID,
minus the logit); ``target=None`` explains the predicted class. For a
``feature_extraction`` model (frozen backbone) the input is given ``requires_grad`` so
that the target layer's activations carry gradients.

**CAMs scored** -- not only shown. On the synthetic set, where lesion masks are known,
:func:`score_cams` measures for each method:

* *pointing game* (Zhang et al. 2018): the heat map's maximum lies inside a lesion, with a
  tolerance of ``tolerance`` pixels of the original image (default 15: the peak may be at
  most 15 px from the nearest lesion pixel, i.e. inside the mask dilated by a disc of
  radius 15). Baselines, exact rather than sampled: the chance that a uniformly random
  peak scores, over the whole image and over the body only (:func:`pointing_baseline`);
* *heat share in lesions* (energy-based pointing game, Wang et al. 2020): the sum of the
  heat inside the lesion mask over the sum of all heat on the image, against the lesion's
  share of the image area (what a flat map would give);
* *sanity check* (Adebayo et al. 2018): the maps of the trained network are compared with
  those of the same architecture with randomised weights (:func:`randomized_copy`: full
  re-initialisation by default, or a cascade from the head down); Spearman's rank
  correlation (over the whole image, and over the body only) and SSIM between the two
  maps should be low. A method whose maps barely
  change when the weights are destroyed explains the image, not the network.

On real data (no lesion masks), :func:`heat_location` reports the share of heat on the
padding and outside the body (:func:`body_mask`: Otsu threshold, largest connected
component, holes filled).

**For the notebooks** (04 t-SNE, 05 Grad-CAM): :func:`trained_fold` finds a trained fold
or trains a missing one with a given recipe; :func:`fold_tsne` makes the t-SNE of a fold
with its separation scores and where each test image's nearest training image lies (same
class? same patient?); :func:`lesion_masks` adds the synthetic lesion masks to a frame of
slices.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ctlib.canvas import Box, box_to_image, fit_to_canvas, padding_mask
from ctlib.data import IMAGE_SUFFIXES, CTDataset, ImageReadError, read_grayscale
from ctlib.transforms import normalize

__all__ = [
    "CAM_METHODS",
    "CamResult",
    "FeatureSet",
    "FoldEmbedding",
    "body_mask",
    "cam_layer_choices",
    "canvas_cams",
    "embed_tsne",
    "energy_in_mask",
    "expand_image_paths",
    "explain_files",
    "explain_image",
    "extract_features",
    "feature_cache_key",
    "fold_split",
    "fold_tsne",
    "gradcam",
    "heat_location",
    "lesion_masks",
    "load_trained",
    "markdown_table",
    "pointing_baseline",
    "pointing_game",
    "predict_files",
    "randomized_copy",
    "score_cams",
    "select_outcomes",
    "separation_scores",
    "spearman",
    "ssim",
    "summarize_cam_scores",
    "trained_fold",
]

log = logging.getLogger(__name__)

# key: (pytorch_grad_cam class name, display name)
CAM_METHODS: dict[str, tuple[str, str]] = {
    "gradcam": ("GradCAM", "Grad-CAM"),
    "gradcam++": ("GradCAMPlusPlus", "Grad-CAM++"),
    "hirescam": ("HiResCAM", "HiResCAM"),
    "scorecam": ("ScoreCAM", "Score-CAM"),
    "eigencam": ("EigenCAM", "Eigen-CAM"),
    "layercam": ("LayerCAM", "LayerCAM"),
}
"""The CAM methods offered: key -> (pytorch-grad-cam class, display name)."""

_METHOD_ALIASES = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++"}
FEATURE_CACHE_VERSION = 1
"""Bump when the features computed for the same inputs change (invalidates the cache)."""


# --------------------------------------------------------------------------- inputs


def expand_image_paths(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, and the image files inside given folders (sorted, not recursive)."""
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            paths += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                            and not p.name.startswith("."))
        elif path.exists():
            paths.append(path)
        else:
            raise FileNotFoundError(f"{str(path)!r} does not exist.")
    if not paths:
        raise FileNotFoundError(f"No image files found in {[str(i) for i in items]}.")
    return paths


def load_trained(checkpoint: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict]:
    """A trained model from a ``model.pt`` and what its run says about it.

    The canvas and threshold are also set on the model (``model.ctlib_canvas``,
    ``model.ctlib_threshold``), where :func:`explain_image` and :func:`extract_features`
    find them when no canvas is passed.

    Returns:
        ``(model, info)`` where ``info`` holds ``arch``, ``canvas`` (from the run's
        ``config.json`` beside the file if present, else the architecture's), ``mean``,
        ``std`` and ``threshold``.
    """
    from ctlib.models import get_spec, load_checkpoint

    path = Path(checkpoint)
    model = load_checkpoint(path).eval()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    spec = get_spec(raw["arch"])
    info = {"arch": spec.name, "canvas": spec.canvas, "mean": spec.mean, "std": spec.std,
            "threshold": float(raw.get("extra", {}).get("threshold", 0.5))}
    config = path.parent / "config.json"
    if config.is_file():
        canvas = json.loads(config.read_text()).get("train", {}).get("canvas")
        if canvas:
            info["canvas"] = tuple(canvas)
    model.ctlib_canvas = tuple(info["canvas"])
    model.ctlib_threshold = info["threshold"]
    return model, info


def _probabilities(logits: torch.Tensor) -> torch.Tensor:
    """P(COVID) from one logit (sigmoid) or two (softmax, class 1)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, 1]


@torch.no_grad()
def predict_files(
    files: Sequence[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str],
    *,
    canvas: tuple[int, int] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Probability of COVID and the label for any PNG/JPEG files (or folders of them).

    Unreadable files are reported in the ``error`` column, not raised, so one bad file
    does not stop a folder.
    """
    model, info = load_trained(checkpoint)
    size = tuple(canvas) if canvas else info["canvas"]
    rows = []
    for path in tqdm(expand_image_paths(files), desc="predict", disable=not progress, unit="img"):
        try:
            image = read_grayscale(path)
        except ImageReadError as error:
            rows.append({"file": str(path), "prob": float("nan"), "label": "", "error": error.reason})
            continue
        x = normalize(fit_to_canvas(image, size)[0], info["mean"], info["std"]).unsqueeze(0)
        prob = float(_probabilities(model(x))[0])
        rows.append({"file": str(path), "prob": prob,
                     "label": "COVID" if prob >= info["threshold"] else "non-COVID", "error": ""})
    return pd.DataFrame(rows)


def _frame_of(data: CTDataset | pd.DataFrame | Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """A frame with at least ``path`` (and ``label``, NaN where unknown) from any image source."""
    if isinstance(data, CTDataset):
        frame = data.frame
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        frame = pd.DataFrame({"path": [str(p) for p in expand_image_paths(list(data))]})
    if "path" not in frame.columns:
        raise ValueError(f"Expected a frame with a 'path' column, got columns "
                         f"{list(frame.columns)}.")
    frame = frame.reset_index(drop=True)
    if "label" not in frame.columns:
        frame = frame.assign(label=np.nan)
    return frame


def _resolve(model: nn.Module, arch: str | None, canvas: tuple[int, int] | None):  # -> (spec, size)
    from ctlib.models import _spec_of

    spec = _spec_of(model, arch)
    size = canvas if canvas is not None else getattr(model, "ctlib_canvas", None) or spec.canvas
    return spec, (int(size[0]), int(size[1]))


def _device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


# --------------------------------------------------------------------------- features


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


def feature_cache_key(model: nn.Module, paths: Sequence[str], arch: str | None = None,
                      canvas: tuple[int, int] | None = None) -> str:
    """The cache key of :func:`extract_features`: weights, architecture, canvas, image files."""
    spec, size = _resolve(model, arch, canvas)
    payload = json.dumps({"version": FEATURE_CACHE_VERSION, "arch": spec.name, "canvas": size,
                          "mean": spec.mean, "std": spec.std, "state": _state_hash(model),
                          "files": _files_signature(paths)})
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _compute_features(model: nn.Module, paths: Sequence[str], spec: Any, size: tuple[int, int],
                      batch_size: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Features and probabilities, batch by batch (one forward pass gives both)."""
    from ctlib.models import _submodule

    layer = _submodule(model, spec.cam_layer, spec)
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        captured.append(output.float().mean(dim=(2, 3)) if output.dim() == 4 else output.flatten(1))

    device = _device(model)
    was_training = model.training
    model.eval()
    features, probs = [], []
    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            starts = range(0, len(paths), batch_size)
            for start in tqdm(starts, desc=f"features {spec.name}", unit="batch",
                              disable=not progress):
                batch = [normalize(fit_to_canvas(read_grayscale(p), size)[0], spec.mean, spec.std)
                         for p in paths[start:start + batch_size]]
                captured.clear()
                logits = model(torch.stack(batch).to(device))
                if len(captured) != 1:
                    raise RuntimeError(f"{spec.cam_layer!r} ran {len(captured)} times in one "
                                       "forward pass; expected once.")
                features.append(captured[0].cpu().numpy())
                probs.append(_probabilities(logits).cpu().numpy())
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
    from ctlib.paths import cache_dir

    spec, size = _resolve(model, arch, canvas)
    frame = _frame_of(data)
    paths = frame["path"].astype(str).tolist()
    labels = pd.to_numeric(frame["label"], errors="coerce").to_numpy(dtype=np.float32)
    key = feature_cache_key(model, paths, spec.name, size)
    folder = Path(cache_folder) if cache_folder is not None else cache_dir() / "features"
    file = folder / f"{spec.name}-{key}.npz"
    if cache and file.is_file():
        with np.load(file, allow_pickle=False) as stored:
            if stored["paths"].tolist() == paths:
                log.info("features of %d images read from %s", len(paths), file)
                return FeatureSet(stored["features"], stored["probs"], paths, labels, spec.name,
                                  key, from_cache=True)
        log.warning("%s does not match its key; computing again", file)
    features, probs = _compute_features(model, paths, spec, size, batch_size, progress)
    if cache:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{file.stem}.tmp{os.getpid()}.npz"
        np.savez(tmp, features=features, probs=probs, paths=np.array(paths, dtype=str))
        os.replace(tmp, file)
    return FeatureSet(features, probs, paths, labels, spec.name, key, from_cache=False)


def embed_tsne(features: np.ndarray, *, perplexity: float = 30.0, seed: int = 0,
               max_iter: int = 1000, pca_components: int | None = 50,
               init: str = "pca") -> np.ndarray:
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
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise ValueError(f"embed_tsne expects an (N, D) array with N >= 3, got shape {x.shape}.")
    if not 0 < perplexity < len(x):
        raise ValueError(f"perplexity must be in (0, N={len(x)}), got {perplexity}; use a smaller "
                         "one (e.g. N/4) for small sets.")
    if pca_components is not None and x.shape[1] > pca_components and len(x) > pca_components:
        x = PCA(n_components=pca_components, random_state=seed).fit_transform(x)
    tsne = TSNE(n_components=2, perplexity=perplexity, random_state=seed, max_iter=max_iter,
                init=init, learning_rate="auto")
    return tsne.fit_transform(x).astype(np.float32)


def separation_scores(features: np.ndarray, labels: Sequence[float],
                      embedding: np.ndarray | None = None, *, k: int = 5, n_splits: int = 5,
                      seed: int = 0) -> pd.DataFrame:
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
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    y = np.asarray(labels, dtype=float)
    keep = ~np.isnan(y)
    y = y[keep].astype(int)
    counts = np.bincount(y, minlength=2)
    if len(counts) != 2 or counts.min() < 2:
        raise ValueError(f"separation_scores needs two classes with >= 2 images each; got counts "
                         f"{counts.tolist()} for labels 0/1.")
    folds = min(n_splits, int(counts.min()))
    spaces = {"features": np.asarray(features)[keep]}
    if embedding is not None:
        spaces["t-SNE"] = np.asarray(embedding)[keep]
    rows = []
    for name, x in spaces.items():
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        neighbours = min(k, len(y) - len(y) // folds - 1)
        scores = cross_val_score(KNeighborsClassifier(n_neighbors=neighbours), x, y, cv=cv)
        rows.append({"space": name, "knn_accuracy": float(scores.mean()),
                     "knn_std": float(scores.std()), "silhouette": float(silhouette_score(x, y)),
                     "k": neighbours, "folds": folds, "n": len(y)})
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
        raise FileNotFoundError(f"{folder} is no fold folder of ctlib.cv.run_cv (expected "
                                f"<out>/<dataset>/<protocol>/<arch>/fold<k> with {folds_file}).")
    folds = pd.read_csv(folds_file, dtype={"fold": str, "patient_id": "string"})
    k = folder.name[len("fold"):]
    official = set(folds["fold"].unique()) <= {"train", "val", "test"}
    split = folds["fold"] if official else np.where(folds["fold"] == k, "test", "train")
    frame = folds.assign(split=split).drop(columns="fold")
    predictions = folder / "predictions.csv"
    if predictions.is_file():
        probs = pd.read_csv(predictions).set_index("path")["prob"]
        frame["prob"] = frame["path"].map(probs).astype(float)
    else:
        frame["prob"] = np.nan
    return frame


def select_outcomes(predictions: pd.DataFrame, outcome: str, n: int | None = None,
                    threshold: float = 0.5) -> pd.DataFrame:
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
    masks = {"tp": (label == 1) & (predicted == 1), "tn": (label == 0) & (predicted == 0),
             "fp": (label == 0) & (predicted == 1), "fn": (label == 1) & (predicted == 0)}
    masks["correct"] = masks["tp"] | masks["tn"]
    masks["misclassified"] = masks["fp"] | masks["fn"]
    if outcome not in masks:
        raise ValueError(f"Unknown outcome {outcome!r}; choose from {sorted(masks)}.")
    chosen = frame[masks[outcome]]
    wrongness = (chosen["prob"] - chosen["label"].astype(float)).abs()
    ascending = outcome in ("tp", "tn", "correct")
    chosen = chosen.assign(_order=wrongness).sort_values("_order", ascending=ascending,
                                                         kind="stable")
    chosen = chosen.drop(columns="_order")
    return chosen if n is None else chosen.head(n)


# --------------------------------------------------------------------------- CAM


@dataclass(frozen=True)
class CamResult:
    """A class activation map of one image, on the canvas and mapped back.

    Attributes:
        heatmap: ``(H, W)`` float32 in [0, 1], the original image's shape.
        canvas_heatmap: ``(canvas_h, canvas_w)`` float32 in [0, 1], as the network saw it.
        box: the image's placement box on the canvas.
        prob: the network's P(COVID).
        target: the class explained (1 COVID, 0 non-COVID).
        method: the CAM method's key (see :data:`CAM_METHODS`).
        layer: the target layer's dotted name.
        padding_share: the share of the canvas heat that lies on padding (NaN if the map
            is all zero).
        arch: the architecture.
        threshold: probability from which the network says COVID.
    """

    heatmap: np.ndarray
    canvas_heatmap: np.ndarray
    box: Box
    prob: float
    target: int
    method: str
    layer: str
    padding_share: float
    arch: str
    threshold: float = 0.5

    @property
    def predicted(self) -> int:
        """The predicted class (1 COVID, 0 non-COVID)."""
        return int(self.prob >= self.threshold)

    @property
    def method_name(self) -> str:
        """The method's display name, e.g. ``Grad-CAM++``."""
        return CAM_METHODS[self.method][1]


def _method_key(method: str) -> str:
    key = str(method).strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    key = _METHOD_ALIASES.get(key, key)
    if key not in CAM_METHODS:
        raise ValueError(f"Unknown CAM method {method!r}; choose from {list(CAM_METHODS)}.")
    return key


def _layer_module(model: nn.Module, spec: Any,
                  layer: str | nn.Module | None) -> tuple[nn.Module, str]:
    from ctlib.models import _submodule, _unwrap_module

    if layer is None:
        return _submodule(model, spec.cam_layer, spec), spec.cam_layer
    if isinstance(layer, nn.Module):
        names = {id(m): n for n, m in _unwrap_module(model).named_modules()}
        if id(layer) not in names:
            raise ValueError("The layer given is not a module of this model.")
        return layer, names[id(layer)]
    try:
        return _unwrap_module(model).get_submodule(layer), layer
    except AttributeError as err:
        raise ValueError(f"{spec.name!r} has no layer {layer!r}; see cam_layer_choices(model) "
                         f"(default: {spec.cam_layer!r}).") from err


def _targets(target: int | Sequence[int] | None, probs: torch.Tensor, threshold: float,
             num_outputs: int) -> tuple[list[int], list[Any]]:
    from pytorch_grad_cam.utils.model_targets import (
        BinaryClassifierOutputTarget,
        ClassifierOutputTarget,
    )

    n = len(probs)
    if target is None:
        classes = [int(p >= threshold) for p in probs.tolist()]
    elif isinstance(target, (int, np.integer)):
        classes = [int(target)] * n
    else:
        classes = [int(t) for t in target]
    if len(classes) != n or any(c not in (0, 1) for c in classes):
        raise ValueError(f"target must be None (the predicted class), 1 (COVID), 0 (non-COVID) or "
                         f"one of those per image; got {target!r} for {n} image(s).")
    maker = BinaryClassifierOutputTarget if num_outputs == 1 else ClassifierOutputTarget
    return classes, [maker(c) for c in classes]


def canvas_cams(
    model: nn.Module,
    x: torch.Tensor,
    arch: str | None = None,
    method: str = "gradcam",
    target: int | Sequence[int] | None = None,
    layer: str | nn.Module | None = None,
    *,
    threshold: float | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """CAMs of a normalised batch on its canvas: the core that the other functions wrap.

    Args:
        model: a kit-built network (one logit, or two).
        x: ``(N, 3, H, W)`` normalised canvases (:func:`ctlib.transforms.normalize`).
        arch: registry name; defaults to ``model.ctlib_arch``.
        method: a key of :data:`CAM_METHODS` (case and dashes ignored: ``"Grad-CAM++"`` works).
        target: None (the predicted class), 1 (COVID), 0 (non-COVID), or one per image.
        layer: dotted name or module of the target layer; default ``spec.cam_layer``.
        threshold: for ``target=None``; default ``model.ctlib_threshold`` or 0.5.
        batch_size: Score-CAM's batch of masked inputs.
        progress: show Score-CAM's own progress bars (silenced otherwise).

    Returns:
        ``(maps, probs, targets)``: ``(N, H, W)`` float32 maps scaled to [0, 1] per image,
        ``(N,)`` probabilities and the classes explained.
    """
    import pytorch_grad_cam

    from ctlib.models import _spec_of

    spec = _spec_of(model, arch)
    key = _method_key(method)
    module, _ = _layer_module(model, spec, layer)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"canvas_cams expects a (N, 3, H, W) batch, got shape {tuple(x.shape)}.")
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        raise ValueError("CAMs are computed in float32; this model has other parameter dtypes. "
                         "Pass a float32 copy: copy.deepcopy(model).float().")
    threshold = float(threshold if threshold is not None
                      else getattr(model, "ctlib_threshold", 0.5))
    device = _device(model)
    was_training = model.training
    cam_class = getattr(pytorch_grad_cam, CAM_METHODS[key][0])
    x = x.detach().to(device=device, dtype=torch.float32).clone().requires_grad_(True)
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())
    try:
        with torch.enable_grad(), torch.autocast(device.type, enabled=False):
            model.eval()
            with torch.no_grad():
                logits = model(x)
            probs = _probabilities(logits).cpu()
            classes, targets = _targets(target, probs, threshold, logits.shape[1])
            with cam_class(model=model, target_layers=[module]) as cam:
                cam.batch_size = batch_size  # read by Score-CAM only
                try:
                    with quiet:
                        maps = cam(input_tensor=x, targets=targets)
                except IndexError as err:  # the context manager would swallow an IndexError
                    raise RuntimeError(f"{CAM_METHODS[key][1]} failed on "
                                       f"{type(module).__name__}: {err}") from err
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0)
    return np.clip(maps, 0.0, 1.0), probs.numpy().astype(np.float32), classes


def _share(heat: np.ndarray, mask: np.ndarray) -> float:
    total = float(heat.sum(dtype=np.float64))
    return float(heat[mask].sum(dtype=np.float64) / total) if total > 0 else float("nan")


def explain_image(
    model: nn.Module,
    image: np.ndarray,
    arch: str | None = None,
    method: str = "gradcam",
    target: int | None = None,
    layer: str | nn.Module | None = None,
    *,
    canvas: tuple[int, int] | None = None,
    threshold: float | None = None,
) -> CamResult:
    """A CAM of an original image: computed on the canvas, mapped back through the box.

    Args:
        model: a kit-built network.
        image: the original 2-D uint8 image (e.g. :func:`ctlib.data.read_grayscale`).
        arch: registry name; defaults to ``model.ctlib_arch``.
        method: see :data:`CAM_METHODS`.
        target: None (the predicted class), 1 (COVID) or 0 (non-COVID).
        layer: target layer; default ``spec.cam_layer``.
        canvas: ``(width, height)``; defaults to ``model.ctlib_canvas``, else Table 1's.
        threshold: for the predicted class; default ``model.ctlib_threshold`` or 0.5.

    Returns:
        A :class:`CamResult`.
    """
    spec, size = _resolve(model, arch, canvas)
    canvas_img, box = fit_to_canvas(image, size)
    x = normalize(canvas_img, spec.mean, spec.std).unsqueeze(0)
    threshold = float(threshold if threshold is not None
                      else getattr(model, "ctlib_threshold", 0.5))
    _, layer_name = _layer_module(model, spec, layer)
    maps, probs, classes = canvas_cams(model, x, spec.name, method, target, layer,
                                       threshold=threshold)
    canvas_map = maps[0]
    heatmap = np.clip(box_to_image(canvas_map, box, image.shape), 0.0, 1.0).astype(np.float32)
    return CamResult(heatmap=heatmap, canvas_heatmap=canvas_map, box=box, prob=float(probs[0]),
                     target=classes[0], method=_method_key(method), layer=layer_name,
                     padding_share=_share(canvas_map, padding_mask(size, box)), arch=spec.name,
                     threshold=threshold)


def gradcam(model: nn.Module, image: np.ndarray, arch: str | None = None, method: str = "gradcam",
            target: int | None = None, *, layer: str | nn.Module | None = None,
            canvas: tuple[int, int] | None = None) -> np.ndarray:
    """The heat map of an original image: ``(H, W)`` float32 in [0, 1], the image's shape.

    A pure function (the model's mode and weights are left as they were); see
    :func:`explain_image` for the arguments and for what else is known about the map.

    Example:
        >>> heat = gradcam(model, read_grayscale("slice.png"), "resnet18")  # doctest: +SKIP
        >>> heat.shape == image.shape                                      # doctest: +SKIP
        True
    """
    return explain_image(model, image, arch, method, target, layer, canvas=canvas).heatmap


def cam_layer_choices(model: nn.Module, arch: str | None = None,
                      canvas: tuple[int, int] | None = None, n: int = 4) -> list[str]:
    """Layers worth a CAM: ``spec.cam_layer`` first, then the ends of earlier stages.

    One dry forward pass (no gradients) records the size of each module's feature map. For
    each finer resolution than the CAM layer's, nearest first, the shallowest module
    producing it (the fewest dots in its name; of those, the last to run) is offered, e.g.
    ``layer3``, ``layer2``, ``layer1`` in a ResNet, ``Mixed_6e`` in InceptionV3. Modules of
    the head, containers of the CAM layer and modules run more than once are left out.
    Hooks are removed afterwards.

    Returns:
        At most ``n`` dotted layer names, the default (``spec.cam_layer``) first.
    """
    from ctlib.models import _unwrap_module

    spec, size = _resolve(model, arch, canvas)
    inner = _unwrap_module(model)
    seen: dict[str, tuple[int, int]] = {}
    calls: dict[str, int] = {}
    handles = []

    def record(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in seen:
                seen[name] = (int(output.shape[2]), int(output.shape[3]))
        return hook

    for name, module in inner.named_modules():
        if name and not (name == spec.head or name.startswith(spec.head + ".")):
            handles.append(module.register_forward_hook(record(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size[1], size[0], device=_device(model)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if spec.cam_layer not in seen:
        return [spec.cam_layer]
    cam_area = seen[spec.cam_layer][0] * seen[spec.cam_layer][1]
    best: dict[tuple[int, int], tuple[int, int, str]] = {}  # hw -> (depth, -order, name)
    for order, (name, hw) in enumerate(seen.items()):
        if (calls.get(name, 0) != 1 or hw[0] * hw[1] <= cam_area
                or spec.cam_layer.startswith(name + ".")):
            continue
        key = (name.count("."), -order, name)
        if hw not in best or key < best[hw]:
            best[hw] = key
    finer = sorted(best, key=lambda hw: hw[0] * hw[1])
    return [spec.cam_layer] + [best[hw][2] for hw in finer][: n - 1]


def explain_files(
    files: Sequence[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str] | tuple[nn.Module, dict],
    method: str = "gradcam",
    target: int | None = None,
    *,
    canvas: tuple[int, int] | None = None,
    progress: bool = True,
) -> list[tuple[Path, np.ndarray, CamResult]]:
    """Predict and explain any PNG/JPEG files or folders (the paper's Fig. 15/16 test).

    Args:
        files: image files or folders of them.
        checkpoint: a ``model.pt``, or ``(model, info)`` from :func:`load_trained`.
        method: see :data:`CAM_METHODS`.
        target: None (the predicted class), 1 or 0.
        canvas: overrides the run's canvas.
        progress: progress bar.

    Returns:
        ``(path, image, result)`` per readable file; unreadable files are logged and skipped.
        Draw them with ``ctlib.plots.plot_cam_gallery``.
    """
    model, info = checkpoint if isinstance(checkpoint, tuple) else load_trained(checkpoint)
    size = tuple(canvas) if canvas else tuple(info["canvas"])
    out = []
    for path in tqdm(expand_image_paths(files), desc="explain", disable=not progress, unit="img"):
        try:
            image = read_grayscale(path)
        except ImageReadError as error:
            log.warning("skipped %s: %s", path, error.reason)
            continue
        out.append((path, image, explain_image(model, image, info["arch"], method, target,
                                               canvas=size, threshold=info["threshold"])))
    return out


# --------------------------------------------------------------------------- scoring


def pointing_game(heatmap: np.ndarray, mask: np.ndarray, tolerance: float = 15.0) -> bool:
    """Whether the heat map's maximum lies within ``tolerance`` pixels of the mask.

    Args:
        heatmap: 2-D map.
        mask: boolean mask of the same shape (e.g. the lesions).
        tolerance: pixels; 0 means the peak must lie on a mask pixel. Equivalent to testing
            the peak against the mask dilated by a disc of this radius.

    A flat map (no maximum) scores False; of tied maxima the first in row-major order counts.
    """
    from scipy import ndimage

    heatmap, mask = np.asarray(heatmap), np.asarray(mask, dtype=bool)
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ in shape.")
    if not mask.any() or not np.isfinite(heatmap).any() or np.nanmax(heatmap) <= np.nanmin(heatmap):
        return False
    peak = np.unravel_index(int(np.nanargmax(heatmap)), heatmap.shape)
    if tolerance <= 0:
        return bool(mask[peak])
    return bool(ndimage.distance_transform_edt(~mask)[peak] <= tolerance)


def pointing_baseline(mask: np.ndarray, tolerance: float = 15.0,
                      region: np.ndarray | None = None) -> float:
    """The chance that a uniformly random peak (in ``region``, default everywhere) scores.

    This is the exact expected pointing-game score of a random heat map: the share of the
    region's pixels within ``tolerance`` of the mask.
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    near = mask if tolerance <= 0 else ndimage.distance_transform_edt(~mask) <= tolerance
    if not mask.any():
        return 0.0
    region = np.ones_like(mask) if region is None else np.asarray(region, dtype=bool)
    return float(near[region].mean()) if region.any() else float("nan")


def energy_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heat (sum of the map) inside the mask; NaN for an all-zero map."""
    heatmap = np.clip(np.asarray(heatmap, dtype=np.float64), 0, None)
    mask = np.asarray(mask, dtype=bool)
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ in shape.")
    return _share(heatmap, mask)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation between two maps (NaN if either is constant)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"Maps of different sizes: {a.size} vs {b.size}.")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5) -> float:
    """Structural similarity of two maps (Wang et al. 2004; Gaussian window, sigma 1.5).

    The same as ``skimage.metrics.structural_similarity(a, b, data_range=data_range,
    gaussian_weights=True, use_sample_covariance=False)``, without the dependency.
    """
    from scipy import ndimage

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim expects two 2-D maps of one shape, got {a.shape} and {b.shape}.")
    truncate = 3.5  # skimage's window: radius 3.5 sigma, i.e. 11 px for sigma 1.5

    def blur(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, sigma=sigma, truncate=truncate, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
         / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
    pad = int(truncate * sigma + 0.5)
    return float(s[pad:-pad, pad:-pad].mean()) if min(s.shape) > 2 * pad else float(s.mean())


def randomized_copy(model: nn.Module, fraction: float = 1.0, seed: int = 0) -> nn.Module:
    """A copy of the model with the top ``fraction`` of its layers re-initialised.

    Adebayo et al. (2018)'s model-randomisation test. The modules holding parameters are
    taken in registration order (input to output for the kit's networks); the last
    ``ceil(fraction * count)`` of them are re-initialised with their own
    ``reset_parameters()`` (BatchNorm: weight 1, bias 0, running statistics reset). So
    ``fraction=1.0`` is the full re-initialisation and increasing fractions are the cascade
    from the head down. The original is not changed; the global random state is untouched.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    clone = copy.deepcopy(model)
    modules = [m for m in clone.modules() if any(True for _ in m.parameters(recurse=False))]
    count = math.ceil(fraction * len(modules))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in modules[len(modules) - count:]:
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.reset_running_stats()
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                for param in module.parameters(recurse=False):
                    nn.init.normal_(param, std=0.02)
    return clone


def body_mask(image: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """The body in a CT slice: threshold, largest connected component, holes filled.

    Args:
        image: 2-D uint8 image.
        threshold: grey level; None uses Otsu's threshold (computed by OpenCV).

    The lungs, dark but enclosed by the body, are filled in. Text or rulers in published
    figures are usually separate, smaller components and are dropped.
    """
    from scipy import ndimage

    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"body_mask expects a 2-D uint8 image, got {image.dtype} {image.shape}.")
    if threshold is None:
        threshold, _ = cv2.threshold(image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = image > threshold
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3)), iterations=2)
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    body = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(body)


def _mask_on_canvas(mask: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """An original-image mask drawn onto the canvas (nearest neighbour; padding False)."""
    out = np.zeros((size[1], size[0]), dtype=bool)
    scaled = cv2.resize(mask.astype(np.uint8), (box.width, box.height),
                        interpolation=cv2.INTER_NEAREST).astype(bool)
    out[box.y:box.y + box.height, box.x:box.x + box.width] = scaled
    return out


def _sample(frame: pd.DataFrame, max_images: int | None, seed: int) -> pd.DataFrame:
    if max_images is None or len(frame) <= max_images:
        return frame
    return frame.sample(n=max_images, random_state=seed).sort_index()


def score_cams(
    model: nn.Module,
    data: CTDataset | pd.DataFrame,
    arch: str | None = None,
    methods: Sequence[str] = ("gradcam", "gradcam++", "hirescam", "layercam", "eigencam"),
    *,
    canvas: tuple[int, int] | None = None,
    tolerance: float = 15.0,
    target: int = 1,
    randomize: float = 1.0,
    max_images: int | None = None,
    seed: int = 0,
    progress: bool = True,
    per_image: bool = False,
) -> pd.DataFrame:
    """Score CAM methods against known lesion masks (the synthetic set).

    Args:
        model: a trained network.
        data: the synthetic :class:`CTDataset` or a frame with ``path``, ``mask_path`` and
            ``label`` (e.g. the test fold's rows); COVID images with a non-empty mask are scored.
        arch: registry name; defaults to ``model.ctlib_arch``.
        methods: keys of :data:`CAM_METHODS`.
        canvas: defaults to ``model.ctlib_canvas``, else Table 1's.
        tolerance: pointing-game tolerance in original-image pixels.
        target: the class explained (1, COVID: where are the lesions?).
        randomize: ``fraction`` of :func:`randomized_copy` for the sanity check (1.0: full).
        max_images: score a random sample of at most this many images (``seed``).
        seed: for the sample and the randomised weights.
        progress: progress bar.
        per_image: return one row per image and method instead of the summary.

    Returns:
        The summary of :func:`summarize_cam_scores` (one row per method), or the per-image
        rows: ``pointing`` (hit), ``random_pointing``/``body_pointing`` (expected score of a
        uniformly random peak over the image/the body), ``energy`` (heat share in lesions),
        ``lesion_area`` (the lesions' share of the image: a flat map's energy),
        ``padding_share``, ``sanity_spearman`` and ``sanity_ssim`` (trained vs randomised
        map, whole image), ``sanity_spearman_body`` (the same inside :func:`body_mask` only:
        the black surround is cold in both maps for trivial reasons and inflates the
        whole-image correlation), ``random_net_pointing`` (the randomised network's
        pointing game), ``prob``.

    Score-CAM (``"scorecam"``) is not among the default methods: it runs one forward pass
    per channel of the CAM layer (1280 for EfficientNet-Lite0, about 1.5 min per image on
    one CPU core); score it on a sample (``max_images``).
    """
    spec, size = _resolve(model, arch, canvas)
    frame = _frame_of(data)
    if "mask_path" not in frame.columns:
        raise ValueError("score_cams needs lesion masks (a 'mask_path' column): use the "
                         "synthetic data set. For real data use heat_location().")
    has_mask = frame["mask_path"].notna() & (frame["mask_path"].astype(str) != "")
    frame = frame[(pd.to_numeric(frame["label"], errors="coerce") == 1) & has_mask]
    frame = _sample(frame, max_images, seed)
    if frame.empty:
        raise ValueError("No COVID images with lesion masks to score.")
    keys = [_method_key(m) for m in methods]
    control = randomized_copy(model, randomize, seed)
    rows = []
    for _, row in tqdm(list(frame.iterrows()), desc=f"score CAMs {spec.name}", unit="img",
                       disable=not progress):
        image = read_grayscale(row["path"])
        mask = read_grayscale(row["mask_path"]) > 127
        if not mask.any():
            continue
        body = body_mask(image)
        base = {"arch": spec.name, "path": row["path"],
                "random_pointing": pointing_baseline(mask, tolerance),
                "body_pointing": pointing_baseline(mask, tolerance, region=body),
                "lesion_area": float(mask.mean())}
        for key in keys:
            result = explain_image(model, image, spec.name, key, target, canvas=size)
            random_net = explain_image(control, image, spec.name, key, target, canvas=size)
            rows.append({**base, "method": key, "prob": result.prob,
                         "pointing": pointing_game(result.heatmap, mask, tolerance),
                         "energy": energy_in_mask(result.heatmap, mask),
                         "padding_share": result.padding_share,
                         "sanity_spearman": spearman(result.heatmap, random_net.heatmap),
                         "sanity_spearman_body": spearman(result.heatmap[body],
                                                          random_net.heatmap[body]),
                         "sanity_ssim": ssim(result.heatmap, random_net.heatmap),
                         "random_net_pointing": pointing_game(random_net.heatmap, mask, tolerance)})
    table = pd.DataFrame(rows)
    table.attrs.update({"tolerance": tolerance, "canvas": size, "randomize": randomize})
    return table if per_image else summarize_cam_scores(table)


def summarize_cam_scores(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture and method: the means of :func:`score_cams`' per-image rows."""
    columns = {"pointing": "pointing_game", "random_pointing": "random_baseline",
               "body_pointing": "body_baseline", "random_net_pointing": "random_net_pointing",
               "energy": "energy_in_lesions", "lesion_area": "lesion_area",
               "padding_share": "padding_share", "sanity_spearman": "sanity_spearman",
               "sanity_spearman_body": "sanity_spearman_body", "sanity_ssim": "sanity_ssim"}
    grouped = per_image.assign(pointing=per_image["pointing"].astype(float),
                               random_net_pointing=per_image["random_net_pointing"].astype(float))
    summary = grouped.groupby(["arch", "method"], sort=False)[list(columns)].mean()
    summary = summary.rename(columns=columns)
    summary["n_images"] = grouped.groupby(["arch", "method"], sort=False).size()
    summary = summary.reset_index()
    summary.insert(2, "method_name", summary["method"].map(lambda k: CAM_METHODS[k][1]))
    return summary


def heat_location(
    model: nn.Module,
    data: CTDataset | pd.DataFrame | Sequence[str | os.PathLike[str]],
    arch: str | None = None,
    methods: Sequence[str] = ("gradcam",),
    *,
    canvas: tuple[int, int] | None = None,
    target: int | None = None,
    max_images: int | None = 100,
    seed: int = 0,
    progress: bool = True,
    per_image: bool = False,
) -> pd.DataFrame:
    """Where the heat goes on real data: on the padding, outside the body.

    Shares are of the whole canvas heat: ``padding_share`` (on the padding),
    ``outside_body_share`` (on the padding or on the image outside :func:`body_mask`).
    ``outside_body_area`` is the canvas share outside the body: what a flat map would put
    there, the number to compare with.

    Returns:
        One row per architecture and method (means; ``n_images``), or per image with
        ``per_image=True``.
    """
    spec, size = _resolve(model, arch, canvas)
    frame = _sample(_frame_of(data), max_images, seed)
    keys = [_method_key(m) for m in methods]
    rows = []
    for path in tqdm(frame["path"].astype(str).tolist(), desc=f"heat location {spec.name}",
                     unit="img", disable=not progress):
        image = read_grayscale(path)
        body = body_mask(image)
        for key in keys:
            result = explain_image(model, image, spec.name, key, target, canvas=size)
            on_body = _mask_on_canvas(body, result.box, size)
            rows.append({"arch": spec.name, "method": key, "path": path, "prob": result.prob,
                         "padding_share": result.padding_share,
                         "outside_body_share": _share(result.canvas_heatmap, ~on_body),
                         "outside_body_area": float((~on_body).mean())})
    table = pd.DataFrame(rows)
    if per_image:
        return table
    summary = table.groupby(["arch", "method"], sort=False)[
        ["padding_share", "outside_body_share", "outside_body_area"]].mean()
    summary["n_images"] = table.groupby(["arch", "method"], sort=False).size()
    return summary.reset_index()


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A frame as a Markdown table (no extra dependency), numbers with ``digits`` decimals."""
    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "nan" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- notebooks 04 and 05


def trained_fold(
    results: str | os.PathLike[str],
    dataset: CTDataset | str,
    config: Any = None,
    *,
    arch: str | None = None,
    protocol: str = "patient",
    fold: int = 0,
    n_folds: int = 5,
    progress: bool = False,
) -> Path:
    """The folder of one trained fold, ``<results>/<dataset>/<protocol>/<run>/fold<k>``
    (``<run>``: ``config.run_name``, else ``arch``: e.g. ``efficientnet_lite0-scratch``).

    With a training recipe (``config``, a :class:`ctlib.train.TrainConfig`) a missing fold
    is trained first with :func:`ctlib.cv.run_cv` (``only_folds=[fold]``); a finished fold
    is reused and an interrupted one resumed, so a second call costs nothing. Without a
    recipe nothing is trained: a missing fold raises, naming the command that makes it.

    Args:
        results: the results folder.
        dataset: the :class:`ctlib.data.CTDataset` (needed to train), or its name.
        config: the training recipe, or None to only look for a finished fold.
        arch: the architecture, or the run's folder name (``resnet18-scratch``) when no
            recipe is given; defaults to ``config.arch``.
        protocol: ``"paper"``, ``"patient"`` or ``"official"`` (see :mod:`ctlib.cv`).
        fold: the test fold.
        n_folds: folds of the cross-validation.
        progress: progress bars while training.

    Raises:
        FileNotFoundError: the fold has no ``model.pt`` and there is no recipe to train it.
        ValueError: no architecture is named, or ``arch`` and ``config.arch`` differ.
    """
    from ctlib.cv import fold_dir, run_cv

    name = dataset if isinstance(dataset, str) else dataset.name
    if config is not None:
        if arch is not None and arch != config.arch:
            raise ValueError(f"arch={arch!r} but the recipe trains {config.arch!r}; pass one.")
        if isinstance(dataset, str):
            raise ValueError(f"To train, pass the data set itself, not its name {dataset!r} "
                             "(e.g. ctlib.data.load_dataset(name)).")
        arch = config.arch
        run_cv(dataset, config, protocol=protocol, n_folds=n_folds, only_folds=[fold],
               out=results, progress=progress)
    if arch is None:
        raise ValueError("Name the architecture: arch=... (or pass a training recipe).")
    run = config.run_name if config is not None else arch
    folder = fold_dir(results, name, protocol, run, fold)
    if not (folder / "model.pt").is_file():
        raise FileNotFoundError(
            f"No trained network in {str(folder)!r}. Train it first, e.g. `python -m ctlib cv "
            f"--dataset {name} --arch {arch} --protocol {protocol} --folds {n_folds} --out "
            f"{results}` (all folds; on a GPU), then run this again.")
    return folder


@dataclass(frozen=True)
class FoldEmbedding:
    """The t-SNE of one fold (:func:`fold_tsne`).

    Attributes:
        points: one row per image: :func:`fold_split`'s columns (``path``, ``label``,
            ``patient_id``, ``split``, ``prob``) and ``x``, ``y`` (the embedding),
            ``misclassified`` (test images the network got wrong), and for held-out images
            ``nearest_train`` (the closest training image in feature space) and
            ``same_patient`` (whether that is a slice of the same patient; NA where
            patients are unknown).
        scores: one row per image set (``train``, ``test``) and space (``features``,
            ``t-SNE``): :func:`separation_scores` within the set (``knn_accuracy``,
            ``knn_std``, ``silhouette``, ``n``) and, for the test images, how they sit among
            the training images: ``nearest_train_same_class`` (the label of the nearest
            training image is right: 1-NN accuracy from the training images) and
            ``nearest_train_same_patient``.
        arch: the architecture.
        threshold: the run's decision threshold.
    """

    points: pd.DataFrame
    scores: pd.DataFrame
    arch: str
    threshold: float


def _nearest(train: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index into ``train`` of the nearest row (Euclidean) of each row of ``query``."""
    from sklearn.neighbors import NearestNeighbors

    if len(query) == 0:
        return np.zeros(0, dtype=int)
    return NearestNeighbors(n_neighbors=1).fit(train).kneighbors(query)[1][:, 0]


def fold_tsne(
    fold_folder: str | os.PathLike[str],
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    max_iter: int = 1000,
    batch_size: int = 16,
    cache: bool = True,
    progress: bool = False,
) -> FoldEmbedding:
    """The paper's t-SNE (Fig. 11/12) of one fold: train and test images in its network's features.

    Loads the fold's ``model.pt`` (:func:`load_trained`), extracts the penultimate features
    of all its images (:func:`extract_features`, cached), embeds them jointly with
    :func:`embed_tsne` and scores the separation of the training images and of the test
    images apart (:func:`separation_scores`): the training images were optimised to be
    separable, the test images were not. Draw it with ``ctlib.plots.plot_tsne``.

    Args:
        fold_folder: ``<results>/<dataset>/<protocol>/<arch>/fold<k>`` (e.g. from
            :func:`trained_fold`).
        perplexity: t-SNE's perplexity (below the number of images).
        seed: t-SNE's and the k-NN folds' random state.
        max_iter: t-SNE's optimisation steps.
        batch_size: images per forward pass.
        cache: use the feature cache.
        progress: progress bars.

    Returns:
        A :class:`FoldEmbedding`.
    """
    folder = Path(fold_folder)
    model, info = load_trained(folder / "model.pt")
    points = fold_split(folder)
    feats = extract_features(model, points, info["arch"], batch_size=batch_size,
                             progress=progress, cache=cache)
    embedding = embed_tsne(feats.features, perplexity=perplexity, seed=seed, max_iter=max_iter)
    label = pd.to_numeric(points["label"], errors="coerce")
    predicted = (points["prob"] >= info["threshold"]).astype(float)
    points = points.assign(x=embedding[:, 0], y=embedding[:, 1],
                           misclassified=points["prob"].notna() & (predicted != label))
    train = (points["split"] == "train").to_numpy()
    test = (points["split"] == "test").to_numpy()
    held_out = ~train
    patients = points["patient_id"].astype("string").reset_index(drop=True)
    train_index = np.flatnonzero(train)

    def same_patient(a: np.ndarray, b: np.ndarray) -> pd.Series:  # NA where a patient is unknown
        return (patients.iloc[a].reset_index(drop=True)
                == patients.iloc[b].reset_index(drop=True)).astype("boolean")

    near = train_index[_nearest(feats.features[train], feats.features[held_out])]
    points["nearest_train"] = pd.Series(pd.NA, index=points.index, dtype="string")
    points.loc[held_out, "nearest_train"] = points["path"].to_numpy()[near]
    points["same_patient"] = pd.Series(pd.NA, index=points.index, dtype="boolean")
    points.loc[held_out, "same_patient"] = same_patient(near, np.flatnonzero(held_out)).to_numpy()
    rows = []
    for part, chosen in (("train", train), ("test", test)):
        table = separation_scores(feats.features[chosen], label[chosen], embedding[chosen],
                                  seed=seed)
        table.insert(0, "images", part)
        for space, x in (("features", feats.features), ("t-SNE", embedding)):
            if part == "test" and train.any() and test.any():
                nearest = train_index[_nearest(x[train], x[test])]
                right = label.to_numpy()[nearest] == label.to_numpy()[test]
                same = same_patient(nearest, np.flatnonzero(test))
                table.loc[table["space"] == space, "nearest_train_same_class"] = right.mean()
                table.loc[table["space"] == space, "nearest_train_same_patient"] = (
                    float(same.mean()) if same.notna().all() else np.nan)
        rows.append(table)
    scores = pd.concat(rows, ignore_index=True)
    return FoldEmbedding(points=points, scores=scores, arch=info["arch"],
                         threshold=float(info["threshold"]))


def lesion_masks(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``mask_path`` column: each synthetic slice's lesion mask, NaN elsewhere.

    The synthetic set keeps the mask of ``<set>/images/<name>.png`` in
    ``<set>/masks/<name>.png`` (:func:`ctlib.synthetic.write_synthetic`), so a fold's
    ``predictions.csv`` or :func:`fold_split` is enough for :func:`score_cams`, whichever
    synthetic set it came from. Images without such a mask (real data) get NaN. A frame
    that already has ``mask_path`` is returned as it is.
    """
    if "mask_path" in frame.columns:
        return frame

    def mask_of(path: Any) -> str | float:
        image = Path(str(path))
        mask = image.parent.parent / "masks" / image.name
        return str(mask) if image.parent.name == "images" and mask.is_file() else np.nan

    return frame.assign(mask_path=[mask_of(p) for p in frame["path"]])
