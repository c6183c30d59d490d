"""The students' copies: each notebook without its worked solutions and without outputs:
``python -m ctlib.notebook student``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["EXERCISE_TAG", "SOLUTION_TAG", "is_solution", "student_copies", "student_copy"]

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
