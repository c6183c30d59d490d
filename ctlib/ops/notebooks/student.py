"""The students' copies: each notebook without its worked solutions and without outputs:
``python -m ctlib.notebook student``."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctlib.notebook.checks import CHECK_CELLS

__all__ = [
    "ANSWER_TAG",
    "CHECK_TAG",
    "EXERCISE_TAG",
    "SOLUTION_TAG",
    "is_solution",
    "student_copies",
    "student_copy",
]

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"


def is_solution(cell: Any) -> bool:
    """Whether a notebook cell is a worked solution (tagged ``solution``)."""
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


#: what the teacher's copy says of the solutions, and what the learners' copy says instead
SOLUTIONS_SENTENCE = (
    "Below each exercise is a worked solution, collapsed: click the bar on its left (or *View → "
    "Expand All Code*) once you have tried. Solutions that need a GPU or the real data say so "
    "and are skipped in quick mode."
)
LEARNERS_SENTENCE = (
    "Under each exercise is an empty cell for your answer (add more with *b*); where the answer "
    "is a name or a number, a cell below it checks your `answer` and gives a hint if it is not "
    "right yet. The worked solutions are in your teacher's copy."
)
_SOLUTIONS = re.compile(r"\s+".join(map(re.escape, SOLUTIONS_SENTENCE.split())))
#: comment lines that steer the notebook tests, not the learner
TEST_MARKERS = ("# NBVAL_",)
ANSWER_TAG = "answer"
CHECK_TAG = "check"


def student_copy(path: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write ``path`` for learners: without its solution cells and without any outputs, an
    empty answer cell (tagged ``answer``) under each exercise, followed for an exercise with a
    computed answer by a cell that checks it (tagged ``check``), the exercises' introduction
    saying so, and the test markers (``# NBVAL_...``) left out.

    The teacher's copy (the committed notebook) is not changed. Returns the path written.
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
            kept = [line for line in cell.source.splitlines()
                    if not line.lstrip().startswith(TEST_MARKERS)]  # fmt: skip
            cell.source = "\n".join(kept)
        else:  # the sentence as the markdown wraps it
            cell.source = _SOLUTIONS.sub(LEARNERS_SENTENCE, cell.source)
        cells.append(cell)
        if EXERCISE_TAG in cell.metadata.get("tags", []):
            cells += _answer_cells(Path(path).name[:2], cell.source, nbformat)
    notebook.cells = cells
    for key in ("papermill", "widgets"):
        notebook.metadata.pop(key, None)
    target = Path(out) / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, target)
    return target


def _answer_cells(notebook: str, exercise_text: str, nbformat: Any) -> list[Any]:
    """The empty answer cell under an exercise, and for an exercise with a computed answer the
    cell that checks it (tagged ``check``: :mod:`ctlib.notebook.checks`)."""
    match = re.match(r"\*\*Exercise (\d+)\*\*", exercise_text)
    call = CHECK_CELLS.get((notebook, int(match.group(1)))) if match else None
    if call is None:
        answer = nbformat.v4.new_code_cell("# Your answer\n")
        answer.metadata["tags"] = [ANSWER_TAG]
        return [answer]
    answer = nbformat.v4.new_code_cell(
        "# Your answer: work it out here, then set `answer` and run the check below\nanswer = None"
    )
    answer.metadata["tags"] = [ANSWER_TAG]
    checking = nbformat.v4.new_code_cell(
        "# Check your answer: says right, or gives a hint (never the solution)\n"
        f"from ctlib.notebook.checks import check\n\n{call}"
    )
    checking.metadata["tags"] = [CHECK_TAG]
    return [answer, checking]


def student_copies(
    paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> list[Path]:
    """:func:`student_copy` of every notebook in ``paths`` into the folder ``out``."""
    return [student_copy(path, out) for path in paths]
