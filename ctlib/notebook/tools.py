"""Tooling for the notebooks themselves (not for learners): run them headless, strip outputs,
write the students' copies.

``python -m ctlib.notebook run|strip|student|pages|colab ...`` (see :mod:`ctlib.notebook.__main__`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ctlib.notebook.folders import output_dir

__all__ = [
    "CHECK_MARK",
    "EXERCISE_TAG",
    "SOLUTION_TAG",
    "is_checked",
    "is_solution",
    "run_notebooks",
    "strip_outputs",
    "student_copies",
    "student_copy",
]


def run_notebooks(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    kernel: str | None = None,
) -> pd.DataFrame:
    """Execute notebooks headless with papermill; executed copies go to ``out``.

    Returns one row per notebook: ``notebook``, ``seconds``, ``output``, ``error`` (empty if
    it ran through). A failing notebook does not stop the others; the caller decides.
    """
    import papermill  # lazy: in the notebooks extra, not the core dependencies

    target = Path(out) if out is not None else output_dir()
    target.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in map(Path, paths):
        started = time.perf_counter()
        destination = target / path.name
        error = ""
        try:
            papermill.execute_notebook(
                str(path),
                str(destination),
                parameters=dict(parameters or {}),
                kernel_name=kernel,
                cwd=str(path.parent),
                progress_bar=False,
            )
        except Exception as exc:  # a failing cell: PapermillExecutionError (ename, evalue)
            name = getattr(exc, "ename", type(exc).__name__)
            lines = str(getattr(exc, "evalue", exc)).strip().splitlines()
            error = f"{name}: {lines[-1] if lines else ''}"
        rows.append(
            {
                "notebook": path.name,
                "seconds": round(time.perf_counter() - started, 1),
                "output": str(destination),
                "error": error,
            }
        )
    return pd.DataFrame(rows)


CHECK_MARK = "NBVAL_CHECK_OUTPUT"


def is_checked(source: str) -> bool:
    """Whether a cell's source carries nbval's ``# NBVAL_CHECK_OUTPUT`` marker (a comment line
    holding only the marker, as nbval requires)."""
    return any(
        line.strip().startswith("#") and line.strip().lstrip("#").strip() == CHECK_MARK
        for line in source.splitlines()
    )


def strip_outputs(
    path: str | os.PathLike[str], executed: str | os.PathLike[str] | None = None
) -> int:
    """Remove outputs and execution counts from a notebook, except in checked cells.

    Cells marked ``# NBVAL_CHECK_OUTPUT`` keep their outputs (nbval compares against them)
    and, as nbval requires, an execution count: their position among the code cells, so
    that the file does not change from run to run. With ``executed`` (a run of the same
    notebook, e.g. papermill's copy), they take that run's outputs instead. Returns the
    number of checked cells. Writes only on change.

    Raises:
        ValueError: ``executed`` lacks a checked cell of ``path`` (matched by source).
    """
    import nbformat  # lazy: in the notebooks extra, not the core dependencies

    notebook = nbformat.read(path, as_version=4)
    fresh: dict[str, list[Any]] = {}
    if executed is not None:
        run = nbformat.read(executed, as_version=4)
        fresh = {
            c.source: c.outputs for c in run.cells if c.cell_type == "code" and is_checked(c.source)
        }
    before = nbformat.writes(notebook)
    checked = 0
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        cell.execution_count = None
        if is_checked(cell.source):
            checked += 1
            cell.execution_count = number  # nbval skips reference cells without a count
            if executed is not None:
                if cell.source not in fresh:
                    raise ValueError(
                        f"{executed} has no run of the checked cell {cell.source[:60]!r}."
                    )
                cell.outputs = fresh[cell.source]
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = None
        else:
            cell.outputs = []
        cell.metadata.pop("execution", None)
        for key in ("papermill", "scrolled", "collapsed"):
            cell.metadata.pop(key, None)
    for key in ("papermill", "widgets"):
        notebook.metadata.pop(key, None)
    after = nbformat.writes(notebook)
    if after != before:
        Path(path).write_text(after + ("" if after.endswith("\n") else "\n"), encoding="utf-8")
    return checked


SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"


def is_solution(cell: Any) -> bool:
    """Whether a notebook cell is a worked solution (tagged ``solution``)."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def student_copy(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write ``path`` without its solution cells and without any outputs, for learners.

    The teacher's copy (the committed notebook) is not changed. Each exercise keeps a line
    saying that its solution is with the instructor. Returns the path written.
    """
    import nbformat  # lazy: in the notebooks extra, not the core dependencies

    notebook = nbformat.read(path, as_version=4)
    cells = []
    for cell in notebook.cells:
        if is_solution(cell):
            continue
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if EXERCISE_TAG in cell.metadata.get("tags", []):
            cell.source = (
                cell.source.rstrip() + "\n\n*(Worked solution: in the instructor's copy.)*"
            )
        cells.append(cell)
    notebook.cells = cells
    for key in ("papermill", "widgets"):
        notebook.metadata.pop(key, None)
    target = Path(out) / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target


def student_copies(
    paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> list[Path]:
    """:func:`student_copy` of every notebook in ``paths`` into the folder ``out``."""
    return [student_copy(path, out) for path in paths]
