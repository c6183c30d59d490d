"""Figures of what a network learned: t-SNE (Fig. 11/12) and Grad-CAM (Fig. 13-16)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ctlib.data import CLASS_NAMES
from ctlib.explain import CamResult, FoldGallery
from ctlib.plots.palette import CAM_CMAP, CT_CMAP, INK, TSNE_COLOURS

__all__ = [
    "TSNE_COLOURS",
    "heat_overlay",
    "plot_cam",
    "plot_cam_gallery",
    "plot_outcome_gallery",
    "plot_tsne",
]


def plot_tsne(
    embedding: np.ndarray,
    labels: Sequence[float],
    split: Sequence[str],
    *,
    misclassified: Sequence[bool] | None = None,
    title: str | None = None,
    size: float = 6.0,
) -> Figure:
    """A t-SNE embedding in four colours, as the paper's Fig. 11/12: the class's colour
    (:data:`~ctlib.plots.palette.TSNE_COLOURS`), strong for training images, light for test.

    Args:
        embedding: ``(N, 2)`` from :func:`ctlib.explain.embed_tsne`.
        labels: 1 COVID, 0 non-COVID per point.
        split: ``"train"`` or ``"test"`` per point (other values, e.g. ``"val"``, are drawn
            as test).
        misclassified: per point; misclassified test images get an ink ring (their own
            colour stays visible: it is the true class).
        title: figure title.
        size: figure side in inches.
    """
    embedding = np.asarray(embedding, dtype=float)
    labels = np.asarray(labels, dtype=float)
    split = np.where(np.asarray(split, dtype=str) == "train", "train", "test")
    if (
        embedding.ndim != 2
        or embedding.shape[1] != 2
        or not len(embedding) == len(labels) == len(split)
    ):
        raise ValueError(
            f"plot_tsne expects an (N, 2) embedding with N labels and splits; got "
            f"{embedding.shape}, {len(labels)}, {len(split)}."
        )
    figure, ax = plt.subplots(figsize=(size, size))
    for (part, label), colour in TSNE_COLOURS.items():
        chosen = (split == part) & (labels == label)
        if chosen.any():
            ax.scatter(
                embedding[chosen, 0],
                embedding[chosen, 1],
                s=14 if part == "train" else 22,
                c=colour,
                label=f"{part} {CLASS_NAMES[label]} ({int(chosen.sum())})",
                edgecolors="none" if part == "train" else INK,
                linewidths=0 if part == "train" else 0.4,
                alpha=0.9,
            )
    if misclassified is not None:
        wrong = np.asarray(misclassified, dtype=bool) & (split == "test")
        if wrong.any():
            ax.scatter(
                embedding[wrong, 0],
                embedding[wrong, 1],
                marker="o",
                s=110,
                facecolors="none",
                edgecolors=INK,
                linewidths=1.6,
                label=f"misclassified test ({int(wrong.sum())})",
            )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.legend(loc="best", fontsize=8, framealpha=0.8)
    ax.set_title(title or "t-SNE of penultimate-layer features", fontsize=10)
    figure.tight_layout()
    return figure


def heat_overlay(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = CAM_CMAP
) -> np.ndarray:
    """A heat map blended over a grayscale image: ``(H, W, 3)`` uint8 RGB.

    Args:
        image: 2-D uint8 image.
        heatmap: map of the image's shape, values in [0, 1].
        alpha: opacity of the heat (0: image only, 1: heat only). The heat's own value scales
            the opacity too, so cold regions show the image.
        cmap: a matplotlib colour map (default: the kit's CAM map,
            :data:`~ctlib.plots.palette.CAM_CMAP`).
    """
    if image.ndim != 2 or heatmap.shape != image.shape:
        raise ValueError(
            f"heat_overlay expects a 2-D image and a map of its shape, got "
            f"{image.shape} and {heatmap.shape}."
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    heat = np.clip(np.nan_to_num(heatmap.astype(np.float32)), 0.0, 1.0)
    colours = plt.get_cmap(cmap)(heat)[..., :3].astype(np.float32)
    gray = np.repeat((image.astype(np.float32) / 255.0)[..., None], 3, axis=2)
    weight = alpha * (0.25 + 0.75 * heat)[..., None]
    return np.round((1.0 - weight) * gray * 255.0 + weight * colours * 255.0).astype(np.uint8)


def _cam_caption(result: CamResult) -> str:
    predicted = CLASS_NAMES[result.predicted]
    return (
        f"P(COVID) = {result.prob:.3f} → {predicted}\n{result.method_name} for "
        f"{CLASS_NAMES[result.target]}, heat on padding {result.padding_share:.1%}"
    )


def plot_cam(
    image: np.ndarray,
    result: CamResult,
    *,
    alpha: float = 0.5,
    title: str | None = None,
    panel: float = 4.0,
) -> Figure:
    """Original image, heat map and overlay with the prediction (Fig. 13/14 style).

    Args:
        image: the original 2-D uint8 image.
        result: from :func:`ctlib.explain.explain_image`.
        alpha: overlay opacity.
        title: figure title (e.g. the file name).
        panel: width of each panel in inches (readable when saved at 100 dpi).
    """
    h, w = image.shape
    figure, axes = plt.subplots(1, 3, figsize=(3 * panel, panel * h / w + 0.9), squeeze=False)
    axes = axes[0]
    axes[0].imshow(image, cmap=CT_CMAP, vmin=0, vmax=255)
    axes[0].set_title(f"original {w}×{h}", fontsize=10)
    shown = axes[1].imshow(result.heatmap, cmap=CAM_CMAP, vmin=0, vmax=1)
    axes[1].set_title(f"{result.method_name} on {result.layer}", fontsize=10)
    # a colour bar exactly as tall as the heat map (one made with ax= is as tall as the
    # axes box and runs into the titles beside it)
    figure.colorbar(shown, cax=axes[1].inset_axes([1.03, 0.0, 0.045, 1.0]))
    axes[2].imshow(heat_overlay(image, result.heatmap, alpha))
    axes[2].set_title(_cam_caption(result), fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


def plot_cam_gallery(
    items: Sequence[tuple[np.ndarray, CamResult, str]],
    *,
    columns: int = 4,
    alpha: float = 0.5,
    panel: float = 3.2,
    title: str | None = None,
) -> Figure:
    """A gallery of overlays, e.g. true positives or false negatives (Fig. 13-16).

    Args:
        items: ``(image, result, caption)`` per image; e.g. from
            :func:`ctlib.explain.explain_files` as ``[(img, r, p.name) for p, img, r in out]``.
        columns: overlays per row.
        alpha: overlay opacity.
        panel: width of each panel in inches.
        title: figure title.
    """
    if not items:
        raise ValueError("plot_cam_gallery needs at least one (image, result, caption).")
    columns = max(1, min(columns, len(items)))
    rows = math.ceil(len(items) / columns)
    figure, axes = plt.subplots(
        rows, columns, squeeze=False, figsize=(columns * panel, rows * (panel * 0.8 + 0.6))
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image, result, caption) in zip(axes.ravel(), items):
        ax.imshow(heat_overlay(image, result.heatmap, alpha))
        ax.set_title(
            f"{caption}\nP(COVID) {result.prob:.2f} · heat for "
            f"{CLASS_NAMES[result.target]} · pad {result.padding_share:.0%}",
            fontsize=8,
        )
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


_OUTCOME_TITLES = {
    "tp": "true positives: COVID slices found",
    "tn": "true negatives: non-COVID slices cleared",
    "fp": "false positives: non-COVID slices called COVID",
    "fn": "false negatives: COVID slices missed",
}


def plot_outcome_gallery(
    gallery: FoldGallery,
    *,
    title: str | None = None,
    alpha: float = 0.5,
    panel: float = 2.1,
) -> Figure:
    """The paper's Grad-CAM galleries (Fig. 13-16) in one figure: a row per outcome.

    Each slice is shown twice, as it is and with its heat map, the class explained being
    the one the network predicted. Correct outcomes show the network's surest slices,
    errors its most wrong ones; each row says how many of the fold's test slices it has.

    Args:
        gallery: from :func:`ctlib.explain.fold_gallery`.
        title: figure title.
        alpha: overlay opacity.
        panel: width of each panel in inches.
    """
    outcomes = list(gallery.items)
    if not outcomes:
        raise ValueError("plot_outcome_gallery needs a gallery with at least one outcome.")
    per_row = max([len(v) for v in gallery.items.values()] + [1])
    counts = gallery.shown.dropna(subset=["n_outcome"]).set_index("outcome")["n_outcome"]
    # laid out by hand, in inches: a heading band, then per slice a caption band over a box
    # of panel x 0.8 panel (slices keep their aspect inside it); pairs sit closer than slices
    gap, pair_gap, margin = 0.06, 0.22, 0.1
    box_w, box_h, caption, heading, top = panel, 0.8 * panel, 0.3, 0.32, 0.62 if title else 0.1
    width = 2 * margin + per_row * 2 * box_w + per_row * gap + (per_row - 1) * pair_gap
    row_h = heading + caption + box_h
    height = top + len(outcomes) * row_h + margin
    figure = plt.figure(figsize=(width, height))
    for row, outcome in enumerate(outcomes):
        items = gallery.items[outcome]
        count = int(counts.get(outcome, len(items)))
        y_heading = height - top - row * row_h
        figure.text(
            margin / width,
            (y_heading - 0.08) / height,
            f"{_OUTCOME_TITLES.get(outcome, outcome)}: {count} of {gallery.n_test} test slices",
            fontsize=10,
            fontweight="bold",
            va="top",
        )
        if not items:
            figure.text(
                margin / width,
                (y_heading - heading - caption) / height,
                "none in this fold",
                fontsize=9,
                va="top",
                style="italic",
            )
        y = (y_heading - heading - caption - box_h) / height
        for column, (path, image, result) in enumerate(items):
            x = margin + column * (2 * box_w + gap + pair_gap)
            for k, (shown, text) in enumerate(
                (
                    (image, Path(path).name[:26]),
                    (
                        heat_overlay(image, result.heatmap, alpha),
                        f"P(COVID) {result.prob:.2f} · pad {result.padding_share:.0%}",
                    ),
                )
            ):
                ax = figure.add_axes(
                    ((x + k * (box_w + gap)) / width, y, box_w / width, box_h / height)
                )
                ax.imshow(shown, cmap=CT_CMAP if shown.ndim == 2 else None, vmin=0, vmax=255)
                ax.set_title(text, fontsize=7, pad=2)
                ax.axis("off")
    if title:
        figure.suptitle(title, fontsize=11, y=1 - 0.08 / height, va="top")
    return figure
