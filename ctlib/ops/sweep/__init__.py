"""The paper's full Table 2 grid -- every (data set, architecture, fold) -- on GPUs or SLURM.

:mod:`~ctlib.ops.sweep.grid` (the cells, the data check), :mod:`~ctlib.ops.sweep.figures`
(the GPU figures file; standard library only), :mod:`~ctlib.ops.sweep.cost` (hours per cell),
:mod:`~ctlib.ops.sweep.local` and :mod:`~ctlib.ops.sweep.slurm` (the executors),
:mod:`~ctlib.ops.sweep.process` (a cell as a process group), :mod:`~ctlib.ops.sweep.command`
(``python -m ctlib sweep``). How it all works: "The sweep" in ``docs/DEVELOPERS.md``.

The public names are importable from here, each loaded on first use: importing
``ctlib.ops.sweep.figures`` needs neither torch nor submitit.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each public name and the module that holds it.
_HOMES = {
    "Grid": "grid",
    "Task": "grid",
    "check_data": "grid",
    "plan_tasks": "grid",
    "GPU_FIGURES_ENV": "figures",
    "GPU_FIGURE_COLUMNS": "figures",
    "gpu_figures_path": "figures",
    "measured_on_gpu": "figures",
    "packing_memory_gib": "figures",
    "COSTS_FILE": "cost",
    "cell_costs": "cost",
    "estimate_cost": "cost",
    "longest_first": "cost",
    "read_gpu_figures": "cost",
    "write_costs": "cost",
    "CellOutcome": "local",
    "Slot": "local",
    "gpu_memory_gib": "local",
    "local_slots": "local",
    "run_local": "local",
    "schedule_preview": "local",
    "visible_gpus": "local",
    "CellGroup": "slurm",
    "CellJob": "slurm",
    "SlurmOptions": "slurm",
    "slurm_executor": "slurm",
    "slurm_queued": "slurm",
    "submit_array": "slurm",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # lazy: a name's module loads when the name is first used (torch, pandas, submitit)
    module = importlib.import_module(f"{__name__}.{_HOMES[name]}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
