"""Figures of the data: canvases per architecture (Table 1), sizes, examples, augmentations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ctlib.canvas import fit_to_canvas
from ctlib.data import CLASS_NAMES, CTDataset
from ctlib.models import get_spec
from ctlib.plots.base import image_grid
from ctlib.plots.palette import CT_CMAP, IMAGE_BOX, INK, REFERENCE_LINE
from ctlib.study.paper import canvas_columns
from ctlib.transforms import CanvasDataset

__all__ = [
    "canvas_sizes",
    "plot_augmentations",
    "plot_canvases",
    "plot_examples",
    "plot_sizes",
    "plot_slices",
]


def plot_canvases(
    dataset: CTDataset,
    sizes: dict[str, tuple[int, int]],
    *,
    n_images: int = 3,
    seed: int = 0,
    square: int = 224,
) -> Figure:
    """Original slices, a plain square resize, and the paper's canvases side by side.

    Args:
        dataset: the data set to draw from (``n_images`` per class, chosen with ``seed``).
        sizes: canvas ``(width, height)`` per label, e.g. ``{"ResNet18": (349, 253)}``.
        n_images: images per class.
        seed: which images.
        square: side of the naive square resize shown for contrast.

    The placement box is outlined in each canvas (dashed, black on white, so that it shows on
    any slice): everything outside it is padding.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for label in (1, 0):
        index = np.flatnonzero(dataset.frame["label"].to_numpy(dtype=float) == label)
        if len(index):
            rows += [
                (int(i), label) for i in rng.choice(index, min(n_images, len(index)), replace=False)
            ]
    if not rows:
        raise ValueError(f"Data set {dataset.name!r} has no labelled images to draw.")
    columns = 2 + len(sizes)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(2.3 * columns, 2.0 * len(rows)), squeeze=False
    )
    for r, (index, label) in enumerate(rows):
        image = dataset.read_image(index)
        h, w = image.shape
        panels = [
            (image, f"original {w}×{h}", None),
            (
                cv2.resize(image, (square, square), interpolation=cv2.INTER_AREA),
                f"squashed {square}×{square}",
                None,
            ),
        ]
        for name, size in sizes.items():
            canvas, box = fit_to_canvas(image, size)
            panels.append((canvas, f"{name} {size[0]}×{size[1]}", box))
        for c, (panel, title, box) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, cmap=CT_CMAP, vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
            if box is not None:
                for colour, style in ((IMAGE_BOX, "-"), (INK, (0, (3, 3)))):
                    ax.add_patch(
                        Rectangle(
                            (box.x - 0.5, box.y - 0.5),
                            box.width,
                            box.height,
                            fill=False,
                            edgecolor=colour,
                            linestyle=style,
                            linewidth=1,
                        )
                    )
        axes[r, 0].set_ylabel(CLASS_NAMES.get(label, "?"), fontsize=9)
    figure.suptitle(
        f"{dataset.name}: aspect-preserving canvases (dashed box: the image, rest: padding)",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def canvas_sizes(names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``{display name: canvas}`` for registry names, from :mod:`ctlib.models`."""
    return {get_spec(n).display_name: get_spec(n).canvas for n in names}


def plot_sizes(
    frames: Mapping[str, pd.DataFrame], canvases: Mapping[str, tuple[int, int]] | None = None
) -> Figure:
    """Image sizes (width against height), one panel per data set, and the aspect ratios of
    all of them.

    The dashed lines mark the canvases' aspect ratios: an image on such a line fills its
    canvas; the further off, the more padding. The data sets are told apart by panel and line
    style, not by colour (each colour of :mod:`ctlib.plots.palette` means something else).
    """
    canvases = canvases if canvases is not None else canvas_columns()
    figure, axes = plt.subplots(1, len(frames) + 1, figsize=(4.4 * (len(frames) + 1), 4))
    *sizes, right = axes
    top = max(int(f["width"].max()) for f in frames.values())
    ceiling = max(int(f["height"].max()) for f in frames.values())
    lines = ("-", "--", ":", "-.")
    for k, (ax, (name, frame)) in enumerate(zip(sizes, frames.items(), strict=True)):
        ax.scatter(frame["width"], frame["height"], s=6, color=INK, alpha=0.3, linewidths=0)
        for w, h in canvases.values():
            ax.plot([0, top], [0, top * h / w], "--", lw=0.8, color=REFERENCE_LINE)
        ax.set(xlim=(0, top * 1.03), ylim=(0, ceiling * 1.03), xlabel="width (px)",
               ylabel="height (px)", title=f"{name}: image sizes ({len(frame)})")  # fmt: skip
        right.hist(frame["width"] / frame["height"], bins=40, histtype="step", color=INK,
                   linestyle=lines[k % len(lines)], linewidth=1.2, label=name)  # fmt: skip
    high = right.get_ylim()[1]
    for k, (w, h) in enumerate(sorted(canvases.values(), key=lambda c: c[0] / c[1])):
        right.axvline(w / h, ls="--", lw=0.8, color=REFERENCE_LINE)
        right.text(w / h, high * (0.97 - 0.09 * k), f" {w}×{h}", va="top", fontsize=7)
    right.set(
        xlabel="aspect ratio width / height",
        ylabel="images",
        title="aspect ratios (dashed: the paper's canvases)",
    )
    right.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_examples(dataset: CTDataset, n_per_class: int = 4, seed: int = 0) -> Figure:
    """Example slices per class, as the paper's Fig. 7 and Fig. 8 show them."""
    rng = np.random.default_rng(seed)
    labels = dataset.frame["label"].to_numpy(dtype=float)
    figure, axes = image_grid(2, n_per_class, 2.4, 2.3)
    for row, (label, cls) in enumerate(CLASS_NAMES.items()):
        index = np.flatnonzero(labels == label)
        chosen = (
            rng.choice(index, min(n_per_class, len(index)), replace=False) if len(index) else []
        )
        for col, i in enumerate(chosen):
            image = dataset.read_image(int(i))
            axes[row, col].imshow(image, cmap=CT_CMAP, vmin=0, vmax=255)
            axes[row, col].set_title(f"{image.shape[1]}×{image.shape[0]}", fontsize=8)
        axes[row, 0].set_ylabel(cls)
    figure.suptitle(f"{dataset.name}: example slices per class", fontsize=10)
    figure.tight_layout()
    return figure


def plot_augmentations(
    dataset: CTDataset,
    index: int = 0,
    size: tuple[int, int] = (349, 253),
    n: int = 7,
    seed: int = 0,
) -> Figure:
    """One slice on its canvas and ``n`` draws of the paper's training augmentations."""
    items = CanvasDataset(dataset.frame.iloc[[index]], size, train=True, seed=seed)
    figure, axes = image_grid(2, (n + 2) // 2, 2.8, 2.2)
    panels = [(items.canvas(0)[0], "canvas, not augmented")]
    for epoch in range(n):
        items.set_epoch(epoch)
        panels.append((items.augmented(0), f"epoch {epoch + 1}"))
    for ax, (image, title) in zip(axes.flat, panels, strict=False):
        ax.imshow(image, cmap=CT_CMAP, vmin=0, vmax=255)
        ax.set_title(title, fontsize=8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    figure.suptitle(
        "crop, blur (p = 0.25), noise, brightness/contrast, flip: a new draw every epoch",
        fontsize=10,
    )
    figure.tight_layout()
    return figure


def plot_slices(images: Sequence[np.ndarray], titles: Sequence[str], panel: float = 3.0) -> Figure:
    """Slices side by side, each with its title (e.g. a test image and its nearest training
    image).

    Args:
        images: 2-D uint8 images (:func:`ctlib.data.read_grayscale`).
        titles: one per image.
        panel: width of each panel in inches.
    """
    if not images or len(images) != len(titles):
        raise ValueError(
            f"plot_slices needs one title per image and at least one image; got {len(images)} "
            f"images and {len(titles)} titles."
        )
    figure, axes = image_grid(1, len(images), panel, panel)
    for ax, image, title in zip(axes[0], images, titles, strict=True):
        ax.imshow(image, cmap=CT_CMAP, vmin=0, vmax=255)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    figure.tight_layout()
    return figure
