"""Figures: what a person would rather look at than read.

Every function returns a :class:`matplotlib.figure.Figure` and draws nothing on
screen by itself; :func:`save_figure` writes one atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib

if not os.environ.get("DISPLAY") and "MPLBACKEND" not in os.environ and "ipykernel" not in os.environ.get("_", ""):
    matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from ctlib.canvas import fit_to_canvas  # noqa: E402
from ctlib.data import CTDataset  # noqa: E402

__all__ = ["plot_canvases", "save_figure"]

CLASS_NAMES = {1: "COVID", 0: "non-COVID"}


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Save ``figure`` to ``path`` (folders made, written atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
    os.replace(tmp, path)
    return path


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

    The placement box is outlined in each canvas: everything outside it is padding.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for label in (1, 0):
        index = np.flatnonzero(dataset.frame["label"].to_numpy(dtype=float) == label)
        if len(index):
            rows += [(int(i), label) for i in rng.choice(index, min(n_images, len(index)), replace=False)]
    if not rows:
        raise ValueError(f"Data set {dataset.name!r} has no labelled images to draw.")
    columns = 2 + len(sizes)
    figure, axes = plt.subplots(len(rows), columns, figsize=(2.3 * columns, 2.0 * len(rows)),
                                squeeze=False)
    for r, (index, label) in enumerate(rows):
        image = dataset.read_image(index)
        h, w = image.shape
        panels = [(image, f"original {w}×{h}", None),
                  (cv2.resize(image, (square, square), interpolation=cv2.INTER_AREA),
                   f"squashed {square}×{square}", None)]
        for name, size in sizes.items():
            canvas, box = fit_to_canvas(image, size)
            panels.append((canvas, f"{name} {size[0]}×{size[1]}", box))
        for c, (panel, title, box) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=8)
            if box is not None:
                ax.add_patch(Rectangle((box.x - 0.5, box.y - 0.5), box.width, box.height,
                                       fill=False, edgecolor="tab:orange", linewidth=1))
        axes[r, 0].set_ylabel(CLASS_NAMES.get(label, "?"), fontsize=9)
    figure.suptitle(f"{dataset.name}: aspect-preserving canvases (orange: the image, rest: padding)",
                    fontsize=10)
    figure.tight_layout()
    return figure


def canvas_sizes(names: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``{display name: canvas}`` for registry names, from :mod:`ctlib.models`."""
    from ctlib.models import get_spec

    return {get_spec(n).display_name: get_spec(n).canvas for n in names}
