"""Strip a notebook's outputs before a commit, keeping those nbval checks:
``python -m ctlib.notebook strip``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["CHECK_MARK", "is_checked", "strip_outputs"]

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
