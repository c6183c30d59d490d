"""The instructor's two plans (docs/INSTRUCTOR.md) are built from the lessons: each block names
sections that are headings of its notebook and exercises that exist there, whose labelled
minutes (read from the notebooks, never typed here) fit in the block's exercise time, and the
blocks add up to the plan's length."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from ctlib.ops.notebooks.exercises import LABEL  # an exercise label, its minutes captured

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "INSTRUCTOR.md"
NOTEBOOKS = {p.stem[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
COLUMNS = ["block", "minutes", "notebook", "sections", "exercises to pick", "exercise minutes"]
PLANS = {"Schedule: a 3-hour workshop": 180, "Schedule: a 90-minute session": 90}
#: the least time notebook 06, the workshop's message, gets in each plan (issue #27)
HONEST_MINUTES = {"Schedule: a 3-hour workshop": 30, "Schedule: a 90-minute session": 20}


def plan(text: str, section: str) -> list[dict[str, str]]:
    """The rows of the table under ``## <section>``, as dicts keyed by the header's columns."""
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in body.splitlines() if line.strip().startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rows = cells[0], cells[2:]
    assert header == COLUMNS, f"{section}: columns {header}, expected {COLUMNS}"
    return [dict(zip(header, row, strict=True)) for row in rows]


def headings(path: Path) -> set[str]:
    """Every heading of a notebook's markdown, without its ``#``s."""
    cells = nbformat.read(path, as_version=4).cells
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    return {m.strip() for m in re.findall(r"^#{1,4} (.+)$", text, re.M)}


def exercises(path: Path) -> dict[int, tuple[str, int, bool]]:
    """Exercise number -> (CPU or GPU, labelled minutes, needs the real data), from the
    notebook's cells tagged ``exercise``."""
    found = {}
    for cell in nbformat.read(path, as_version=4).cells:
        if "exercise" in cell.metadata.get("tags", []):
            match = LABEL.match(cell.source)
            assert match, f"{path.name}: an exercise without a label: {cell.source[:60]!r}"
            number, device, amount, unit, real = match.groups()
            minutes = int(amount) * (60 if unit == "h" else 1)
            found[int(number)] = (device, minutes, bool(real))
    return found


def block_problems(row: dict[str, str]) -> list[str]:
    """What is wrong with one block of a plan (an empty list when nothing is)."""
    name = f"block {row['block']}"
    problems = []
    minutes, budget = int(row["minutes"]), int(row["exercise minutes"])
    if not 0 <= budget <= minutes:
        problems.append(f"{name}: {budget} exercise minutes in a block of {minutes}")
    number = re.match(r"(\d\d)\b", row["notebook"])
    picked = [int(n) for n in re.findall(r"\d+", row["exercises to pick"])]
    if number is None:
        if picked or budget:
            problems.append(f"{name}: exercises picked, but no notebook named")
        return problems
    path = NOTEBOOKS.get(number.group(1))
    if path is None:
        return [f"{name}: no notebook {number.group(1)}"]
    titles = re.findall(r"\*([^*]+)\*", row["sections"])
    if not titles:
        problems.append(f"{name}: no section of {path.name} named (in *italics*)")
    known = headings(path)
    problems += [f"{name}: {path.name} has no heading {t!r}" for t in titles if t not in known]
    labels = exercises(path)
    problems += [f"{name}: {path.name} has no exercise {n}" for n in picked if n not in labels]
    chosen = [labels[n] for n in picked if n in labels]
    problems += [
        f"{name}: {path.name}'s exercise {n} needs a GPU or the real data"
        for n, (device, _, real) in zip(picked, chosen, strict=False)
        if device != "CPU" or real
    ]
    labelled = sum(m for _, m, _ in chosen)
    if labelled > budget:
        problems.append(
            f"{name}: the exercises picked are labelled {labelled} min, the block gives {budget}"
        )
    return problems


@pytest.mark.parametrize("section", PLANS)
def test_the_plan_is_built_from_the_lessons(section: str) -> None:
    rows = plan(GUIDE.read_text(), section)
    assert [int(r["block"]) for r in rows] == list(range(1, len(rows) + 1))
    assert [p for row in rows for p in block_problems(row)] == []
    assert sum(int(r["minutes"]) for r in rows) == PLANS[section]
    honest = sum(int(r["minutes"]) for r in rows if r["notebook"].startswith("06"))
    assert honest >= HONEST_MINUTES[section], f"notebook 06 gets {honest} min"
    assert "docs/slides/paper-in-ten-minutes.md" in rows[0]["sections"], "the talk opens it"


def test_the_3_hour_plan_teaches_every_notebook() -> None:
    rows = plan(GUIDE.read_text(), "Schedule: a 3-hour workshop")
    assert {r["notebook"][:2] for r in rows} >= set(NOTEBOOKS)


def test_a_block_is_refused_for_each_kind_of_mistake() -> None:
    good = {
        "block": "2",
        "minutes": "20",
        "notebook": "01 data exploration",
        "sections": "*2 · Counts, classes and patients*",
        "exercises to pick": "1",
        "exercise minutes": "10",
    }
    assert block_problems(good) == []
    wrong = {
        "sections": "*2 · Counts and classes*",  # not a heading of notebook 01
        "exercises to pick": "1, 99",  # no exercise 99
        "exercise minutes": "25",  # more than the block
        "notebook": "07 nothing",
    }
    for column, value in wrong.items():
        assert block_problems({**good, column: value}), f"a wrong {column} went unnoticed"
    labelled = exercises(NOTEBOOKS["01"])[1][1]
    short = {**good, "exercise minutes": str(labelled - 1)}
    assert any("labelled" in p for p in block_problems(short)), "too many minutes picked"
    gpu = next(n for n, (device, _, _) in exercises(NOTEBOOKS["02"]).items() if device == "GPU")
    on_gpu = {**good, "notebook": "02", "sections": "*1 · The recipe*",
              "exercises to pick": str(gpu), "exercise minutes": "20"}  # fmt: skip
    assert any("GPU" in p for p in block_problems(on_gpu)), "a GPU exercise picked"
