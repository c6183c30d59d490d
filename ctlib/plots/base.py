"""What every figure shares: the backend, saving, PNG bytes, a grid of image panels."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

# Without a display (CI, a server) and outside a kernel, draw off-screen; a notebook's
# inline backend and an explicit MPLBACKEND are left alone.
if (
    not os.environ.get("DISPLAY")
    and "MPLBACKEND" not in os.environ
    and "ipykernel" not in os.environ.get("_", "")
):
    matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ctlib.files import atomic_write  # noqa: E402

__all__ = ["figure_png", "image_grid", "save_figure"]


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    """Save ``figure`` to ``path`` (folders made, written atomically) and return the path."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=dpi, bbox_inches="tight"))


def figure_png(figure: Figure, dpi: int = 100, close: bool = True) -> bytes:
    """The figure as PNG bytes (e.g. for ``ipywidgets.Image.value``); closes it by default."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(figure)
    return buffer.getvalue()


def image_grid(
    rows: int, columns: int, width: float = 2.3, height: float = 2.1
) -> tuple[Figure, np.ndarray]:
    """A figure of ``rows`` x ``columns`` image panels (each ``width`` x ``height`` inches),
    without ticks; ``axes`` is always 2-D."""
    figure, axes = plt.subplots(
        rows, columns, figsize=(width * columns, height * rows), squeeze=False
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return figure, axes
