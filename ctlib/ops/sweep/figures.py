"""The GPU figures: what ``benchmarks/gpu_check.py`` measures per architecture, and where the
sweep finds that file. Standard library only, so that a bare GPU machine can write the file
(``docs/DEVELOPERS.md``, "The sweep", says how the figures cost the grid).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["GPU_FIGURES_ENV", "GPU_FIGURE_COLUMNS", "gpu_figures_path"]

#: The environment variable naming the GPU figures file when ``--gpu-figures`` is not given.
GPU_FIGURES_ENV = "CTLIB_GPU_FIGURES"
# benchmarks/gpu_check.csv of the repository (this file is ctlib/ops/sweep/figures.py)
_REPO_GPU_FIGURES = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_check.csv"

#: The columns ``benchmarks/gpu_check.py`` writes, one row per architecture.
GPU_FIGURE_COLUMNS = (
    "arch",
    "canvas_width",
    "canvas_height",
    "batch_size",
    "precision",
    "channels_last",
    "data_path",
    "images_per_s",
    "data_wait_share",
    "optimizer_share",
    "peak_memory_gib",
    "gpu",
    "torch",
    "measured_at",
)


def gpu_figures_path(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The GPU figures file to cost the grid from: ``path`` if given, else
    ``$CTLIB_GPU_FIGURES``, else ``benchmarks/gpu_check.csv`` beside the package if it exists,
    else None (the FLOP guess is used).

    Raises:
        FileNotFoundError: ``path`` or ``$CTLIB_GPU_FIGURES`` names no file.
    """
    for value, origin in (
        (path, "--gpu-figures"),
        (os.environ.get(GPU_FIGURES_ENV), "$" + GPU_FIGURES_ENV),
    ):
        if value is not None and str(value).strip():
            chosen = Path(str(value).strip()).expanduser()
            if not chosen.is_file():
                raise FileNotFoundError(
                    f"{origin} names {str(chosen)!r}, which is not a file. Write it with "
                    "`python benchmarks/gpu_check.py` on the GPU, or leave it out to cost "
                    "the grid from the FLOP guess."
                )
            return chosen
    return _REPO_GPU_FIGURES if _REPO_GPU_FIGURES.is_file() else None
