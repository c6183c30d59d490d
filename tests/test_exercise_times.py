"""Exercise labels are measured, and nothing an exercise asks for writes into the repository.

* Every exercise has a row in ``results/lessons/exercise_times.csv`` (written by
  ``benchmarks/bench_exercises.py``: each worked solution's quick-mode run time), and no label
  promises fewer minutes than its solution ran there.
* Every ``python -m ctlib`` command an exercise or its solution asks the learner to run keeps
  its outputs out of the tracked folders (its defaults included: ``heat`` writes to
  ``results/explain`` unless told otherwise).
"""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from ctlib.cli import build_parser
from ctlib.ops.notebooks.exercises import read_exercises

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TIMES = ROOT / "results" / "lessons" / "exercise_times.csv"
MEASURE = "python benchmarks/bench_exercises.py --out results/lessons"

#: the repository's tracked folders and files a command must not write into
TRACKED = {"results", "figures", "ctlib", "docs", "data", "notebooks", "tests", "scripts",
           "benchmarks", "README.md", "pyproject.toml"}  # fmt: skip
#: the options through which a command writes
WRITES = ("out", "figures", "csv", "readme", "stage")


def _labels() -> pd.DataFrame:
    rows = [
        {"notebook": path.name, "exercise": e.number, "device": e.device, "minutes": e.minutes}
        for path in NOTEBOOKS
        for e in read_exercises(path)
    ]
    return pd.DataFrame(rows)


def test_every_exercise_has_a_measured_run_time() -> None:
    times = pd.read_csv(TIMES)
    labels = _labels()
    merged = labels.merge(times, on=["notebook", "exercise"], how="left", indicator=True)
    missing = merged[merged["_merge"] == "left_only"]
    assert missing.empty, f"not measured (run `{MEASURE}`):\n{missing[['notebook', 'exercise']]}"


def test_no_label_promises_less_time_than_its_solution_took() -> None:
    times = pd.read_csv(TIMES)
    merged = _labels().merge(times, on=["notebook", "exercise"])
    measured = merged[~merged["skipped"].astype(bool)]
    assert len(measured) >= 25, "most solutions run in quick mode"
    short = measured[
        measured["minutes"] < measured["solution_seconds"].map(lambda s: math.ceil(s / 60))
    ]
    assert short.empty, (
        "labels shorter than their solution's quick-mode run (raise the label, or make the "
        f"solution lighter; then `{MEASURE}`):\n{short.to_string()}"
    )


def _commands(cell_source: str) -> list[str]:
    found = re.findall(r"`(python -m ctlib [^`]*)`", cell_source)
    found += re.findall(r"^\s*!(python -m ctlib .*)$", cell_source, flags=re.M)
    return [c for c in found if not c.startswith("python -m ctlib.")]


def writes_into_tracked(command: str) -> list[str]:
    """The tracked places ``command`` would write into, its defaults included."""
    args = build_parser().parse_args(shlex.split(command)[3:])
    places = []
    for name in WRITES:
        value = getattr(args, name, None)
        if isinstance(value, str) and Path(value).parts and Path(value).parts[0] in TRACKED:
            places.append(f"--{name} {value}")
    return places


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_exercise_command_writes_into_a_tracked_folder(path: Path) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    bad = []
    for exercise in read_exercises(nb):
        cells = [exercise.text] + [nb.cells[i].source for i in exercise.solution_cells]
        for command in (c for source in cells for c in _commands(source)):
            places = writes_into_tracked(command)
            if places:
                bad.append(f"exercise {exercise.number}: `{command}` writes {places}")
    assert not bad, "\n".join(bad)


def _scripts(cell_source: str) -> list[str]:
    """``python benchmarks/...`` and ``python scripts/...`` commands in backticks."""
    return re.findall(r"`(python (?:benchmarks|scripts)/\S+\.py[^`]*)`", cell_source)


def script_problems(command: str) -> list[str]:
    """Options the script does not have, and output options that point into tracked folders."""
    words = shlex.split(command)
    source = (ROOT / words[1]).read_text()
    problems = [f"{w} is not an option of {words[1]}" for w in words[2:]
                if w.startswith("--") and f'"{w}"' not in source]  # fmt: skip
    for option, value in zip(words[2:], words[3:], strict=False):
        if option.lstrip("-") in (*WRITES, "results") and Path(value).parts[0] in TRACKED:
            problems.append(f"{option} {value} writes into a tracked folder")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_script_an_exercise_runs_exists_and_writes_outside_the_repository(
    path: Path,
) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    bad = [
        f"exercise {e.number}: `{command}`: {problem}"
        for e in read_exercises(nb)
        for source in [e.text] + [nb.cells[i].source for i in e.solution_cells]
        for command in _scripts(source)
        for problem in script_problems(command)
    ]
    assert not bad, "\n".join(bad)


def test_the_check_catches_a_command_that_writes_into_results() -> None:
    assert script_problems("python benchmarks/score_cams.py --seed 3 --results results")
    assert script_problems("python benchmarks/score_cams.py --seed 3 --out results/x")
    assert not script_problems("python benchmarks/score_cams.py --seed 3 --out outputs/x")
    assert writes_into_tracked("python -m ctlib table results --csv results/mine.csv")
    assert writes_into_tracked("python -m ctlib heat runs --dataset covid19-ct")  # its default
    assert not writes_into_tracked("python -m ctlib table results --csv outputs/mine.csv")
