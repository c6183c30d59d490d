"""The GPU figures: what ``benchmarks/gpu_check.py`` measures per architecture, and where the
sweep finds that file. Standard library only, so that a bare GPU machine can write the file
(``docs/DEVELOPERS.md``, "The sweep", says how the figures cost the grid).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "GPU_FIGURES_ENV",
    "GPU_FIGURE_COLUMNS",
    "gpu_figures_path",
    "measured_on_gpu",
    "packing_memory_gib",
]

#: The environment variable naming the GPU figures file when ``--gpu-figures`` is not given.
GPU_FIGURES_ENV = "CTLIB_GPU_FIGURES"
# benchmarks/gpu_check.csv of the repository (this file is ctlib/ops/sweep/figures.py)
_REPO_GPU_FIGURES = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_check.csv"

#: The columns ``benchmarks/gpu_check.py`` writes, one row per architecture. Files written
#: before ``peak_reserved_gib``, ``startup_s``, ``checkpoint_s``, ``sync_debug`` and ``device``
#: existed are read as they are (the cost model assumes the start-up and checkpoint terms):
#: :func:`packing_memory_gib` falls back to ``peak_memory_gib``, :func:`measured_on_gpu` to
#: the ``gpu`` name.
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
    "peak_reserved_gib",
    "startup_s",
    "checkpoint_s",
    "sync_debug",
    "device",
    "gpu",
    "torch",
    "measured_at",
)


def gpu_figures_path(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The GPU figures file to cost the grid from: ``path`` if given, else
    ``$CTLIB_GPU_FIGURES``, else ``benchmarks/gpu_check.csv`` beside the package if it exists,
    else None (the estimate is used).

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
                    "the grid from the estimate."
                )
            return chosen
    return _REPO_GPU_FIGURES if _REPO_GPU_FIGURES.is_file() else None


def measured_on_gpu(row: Mapping[str, object]) -> bool:
    """Whether a row of the GPU figures was measured on a CUDA GPU, and so may cost the grid.

    By its ``device`` column (``"cuda"``, ``"cuda:1"``; ``"cpu"`` for the script's CPU
    example) where the row has one; a file written before that column existed names the
    machine in ``gpu`` instead, which the script wrote as ``"CPU ..."`` on the CPU.
    """
    device = _text(row.get("device"))
    if device:
        return device.split(":")[0].lower() == "cuda"
    return not _text(row.get("gpu")).upper().startswith("CPU")


def packing_memory_gib(figures: Mapping[str, Mapping[str, object]]) -> dict[str, float]:
    """GiB of GPU memory a cell of each architecture takes, to decide how many share a GPU.

    ``figures`` maps each architecture to its row (``DataFrame.to_dict("index")`` of
    :func:`~ctlib.ops.sweep.cost.read_gpu_figures`). The peak *reserved* by PyTorch's caching
    allocator (``peak_reserved_gib``, ``torch.cuda.max_memory_reserved``) is what a cell holds
    on the GPU, and is used where the row has it; a file written before that column existed
    gives the peak *allocated* (``peak_memory_gib``), which is less. An architecture with
    neither (or no finite, positive value) is left out: its memory is unknown.
    """
    memory = {}
    for arch, row in figures.items():
        for column in ("peak_reserved_gib", "peak_memory_gib"):
            value = _gib(row.get(column))
            if value is not None:
                memory[str(arch)] = value
                break
    return memory


def _text(value: object) -> str:
    """A cell as text: empty for a missing one (None, NaN, pandas' NA, blank)."""
    text = "" if value is None else str(value).strip()
    return "" if text.lower() in ("nan", "<na>", "none") else text


def _gib(value: object) -> float | None:
    """A memory cell as a positive number of GiB, or None where it is missing or not one."""
    try:
        number = float(_text(value) or "nan")
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None
