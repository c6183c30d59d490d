"""The exercises of the numbered notebooks as data: each one's label (CPU/GPU, minutes, real
data) and its worked solution's cells, and, from a notebook papermill has executed, how long
each solution ran (the measured side of a label: ``benchmarks/bench_exercises.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from ctlib.ops.notebooks.student import is_solution

__all__ = ["LABEL", "Exercise", "exercise_times", "read_exercises"]

#: ``**Exercise 3** `[CPU · 5 min · real data]``` at the start of an exercise cell
LABEL = re.compile(r"^\*\*Exercise (\d+)\*\* `\[(CPU|GPU) · (\d+) (min|h)( · real data)?\]`")


@dataclass
class Exercise:
    """One exercise: its number, label and solution cells (their indices in the notebook)."""

    number: int
    device: str
    minutes: int
    real_data: bool
    text: str
    solution_cells: list[int] = field(default_factory=list)
    needs: str | None = None  # what a solution says it needs (a GPU, the real data), if any


def read_exercises(nb: Any) -> list[Exercise]:
    """The exercises of a notebook (a path or a notebook node), in order.

    Raises:
        ValueError: an exercise cell without a valid label, or a solution before any exercise.
    """
    if isinstance(nb, (str, Path)):
        nb = nbformat.read(nb, as_version=4)
    found: list[Exercise] = []
    for index, cell in enumerate(nb.cells):
        if "exercise" in cell.metadata.get("tags", []):
            match = LABEL.match(cell.source)
            if not match:
                raise ValueError(f"an exercise without a label: {cell.source[:80]!r}")
            number, device, amount, unit, real = match.groups()
            minutes = int(amount) * (60 if unit == "h" else 1)
            found.append(Exercise(int(number), device, minutes, bool(real), cell.source))
        elif is_solution(cell):
            if not found:
                raise ValueError(f"a solution before any exercise: {cell.source[:80]!r}")
            found[-1].solution_cells.append(index)
            needs = cell.metadata.get("ctlib", {}).get("needs")
            found[-1].needs = found[-1].needs or needs
    return found


def exercise_times(executed: str | Path) -> pd.DataFrame:
    """Per exercise of a notebook papermill executed: its label and how long its solution's code
    cells ran (papermill's ``duration`` of each cell), ``skipped`` when a solution needs what
    the run did not have (its ``runs_here`` check printed the reason)."""
    nb = nbformat.read(executed, as_version=4)
    rows = []
    for exercise in read_exercises(nb):
        code = [nb.cells[i] for i in exercise.solution_cells if nb.cells[i].cell_type == "code"]
        seconds = sum(float(c.metadata.get("papermill", {}).get("duration") or 0) for c in code)
        printed = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
        rows.append(
            {
                "notebook": Path(executed).name,
                "exercise": exercise.number,
                "device": exercise.device,
                "label_minutes": exercise.minutes,
                "real_data": exercise.real_data,
                "solution_seconds": round(seconds, 1),
                "skipped": "Skipped in quick mode" in printed,
                "needs": exercise.needs or "",
            }
        )
    return pd.DataFrame(rows)
