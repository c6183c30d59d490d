"""One trained fold for notebooks 04 and 05: its t-SNE, its Grad-CAM gallery, lesion masks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from ctlib.data import read_grayscale
from ctlib.explain.cam import CamResult, explain_image
from ctlib.explain.features import (
    embed_tsne,
    extract_features,
    fold_split,
    select_outcomes,
    separation_scores,
)
from ctlib.explain.inputs import load_trained
from ctlib.runfiles import read_predictions


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
    feats = extract_features(
        model, points, info["arch"], batch_size=batch_size, progress=progress, cache=cache
    )
    embedding = embed_tsne(feats.features, perplexity=perplexity, seed=seed, max_iter=max_iter)
    label = pd.to_numeric(points["label"], errors="coerce")
    predicted = (points["prob"] >= info["threshold"]).astype(float)
    points = points.assign(
        x=embedding[:, 0],
        y=embedding[:, 1],
        misclassified=points["prob"].notna() & (predicted != label),
    )
    train = (points["split"] == "train").to_numpy()
    test = (points["split"] == "test").to_numpy()
    held_out = ~train
    patients = points["patient_id"].astype("string").reset_index(drop=True)
    train_index = np.flatnonzero(train)

    def same_patient(a: np.ndarray, b: np.ndarray) -> pd.Series:  # NA where a patient is unknown
        return (
            patients.iloc[a].reset_index(drop=True) == patients.iloc[b].reset_index(drop=True)
        ).astype("boolean")

    near = train_index[_nearest(feats.features[train], feats.features[held_out])]
    points["nearest_train"] = pd.Series(pd.NA, index=points.index, dtype="string")
    points.loc[held_out, "nearest_train"] = points["path"].to_numpy()[near]
    points["same_patient"] = pd.Series(pd.NA, index=points.index, dtype="boolean")
    points.loc[held_out, "same_patient"] = same_patient(near, np.flatnonzero(held_out)).to_numpy()
    rows = []
    for part, chosen in (("train", train), ("test", test)):
        table = separation_scores(
            feats.features[chosen], label[chosen], embedding[chosen], seed=seed
        )
        table.insert(0, "images", part)
        for space, x in (("features", feats.features), ("t-SNE", embedding)):
            if part == "test" and train.any() and test.any():
                nearest = train_index[_nearest(x[train], x[test])]
                right = label.to_numpy()[nearest] == label.to_numpy()[test]
                same = same_patient(nearest, np.flatnonzero(test))
                table.loc[table["space"] == space, "nearest_train_same_class"] = right.mean()
                table.loc[table["space"] == space, "nearest_train_same_patient"] = (
                    float(same.mean()) if same.notna().all() else np.nan
                )
        rows.append(table)
    scores = pd.concat(rows, ignore_index=True)
    return FoldEmbedding(
        points=points, scores=scores, arch=info["arch"], threshold=float(info["threshold"])
    )


GALLERY_OUTCOMES = ("tp", "tn", "fp", "fn")
"""The paper's Fig. 13-16 in one: correctly and wrongly classified slices of each class."""


@dataclass(frozen=True)
class FoldGallery:
    """Grad-CAM of a fold's test slices, by outcome (:func:`fold_gallery`).

    Attributes:
        items: outcome (``"tp"``, ``"tn"``, ``"fp"``, ``"fn"``) -> ``(path, image, result)``
            per slice shown, surest first for correct outcomes, most wrong first for errors;
            an outcome the fold has none of maps to an empty list.
        shown: one row per slice shown: ``outcome``, ``path``, ``label``, ``prob``,
            ``method``, ``target`` (the class explained), ``padding_share``; and one row per
            outcome with its count among the fold's test images (``n_outcome``).
        arch: the architecture.
        n_test: the fold's test images.
    """

    items: dict[str, list[tuple[Path, np.ndarray, CamResult]]]
    shown: pd.DataFrame
    arch: str
    n_test: int


def fold_gallery(
    fold_folder: str | os.PathLike[str],
    *,
    n: int = 4,
    method: str = "gradcam",
    outcomes: tuple[str, ...] = GALLERY_OUTCOMES,
) -> FoldGallery:
    """The paper's Grad-CAM galleries (Fig. 13-16) for one trained fold of a runs folder.

    For each outcome, the ``n`` test slices the fold's network is surest about (correct
    outcomes) or most wrong about (errors), from its saved ``predictions.csv``, each explained
    for the class the network predicted, as the paper's galleries are.

    Args:
        fold_folder: ``<runs>/<dataset>/<protocol>/<run>/fold<k>`` with ``model.pt``.
        n: slices per outcome.
        method: a CAM method (:data:`ctlib.explain.CAM_METHODS`).
        outcomes: which of ``tp``, ``tn``, ``fp``, ``fn``, in the figure's order.

    Raises:
        FileNotFoundError: the folder has no ``model.pt`` or no ``predictions.csv`` (a fold
            imported from ``results/`` carries no network: train it on this machine).
    """
    folder = Path(fold_folder)
    for name in ("model.pt", "predictions.csv"):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} is missing: a Grad-CAM gallery needs a fold trained on this "
                "machine (python -m ctlib cv ... --only-folds k); exported results carry "
                "no network."
            )
    model, info = load_trained(folder / "model.pt")
    test = read_predictions(folder / "predictions.csv", locate=folder.parents[2].name)
    threshold = float(info["threshold"])
    items: dict[str, list[tuple[Path, np.ndarray, CamResult]]] = {}
    rows = []
    for outcome in outcomes:
        every = select_outcomes(test, outcome, None, threshold)
        rows.append({"outcome": outcome, "n_outcome": len(every)})
        items[outcome] = []
        for _, row in every.head(n).iterrows():
            image = read_grayscale(row["path"])
            result = explain_image(
                model,
                image,
                info["arch"],
                method,
                None,
                canvas=tuple(info["canvas"]),
                threshold=threshold,
            )
            items[outcome].append((Path(row["path"]), image, result))
            rows.append(
                {
                    "outcome": outcome,
                    "path": str(row["path"]),
                    "label": int(row["label"]),
                    "prob": float(row["prob"]),
                    "cam_prob": result.prob,
                    "method": result.method,
                    "target": result.target,
                    "padding_share": result.padding_share,
                }
            )
    return FoldGallery(items=items, shown=pd.DataFrame(rows), arch=info["arch"], n_test=len(test))


def lesion_masks(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``mask_path`` column: each synthetic slice's lesion mask, NaN elsewhere.

    The synthetic set keeps the mask of ``<set>/images/<name>.png`` in
    ``<set>/masks/<name>.png`` (:func:`ctlib.data.synthetic.write_synthetic`), so a fold's
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
