"""One trained fold for notebooks 04 and 05: find or train it, its t-SNE, lesion masks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from ctlib.explain.features import embed_tsne, extract_features, fold_split, separation_scores
from ctlib.explain.inputs import load_trained


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
