"""The classroom: exercises labelled and solved, commands that work, students' copies, and a
pre-flight after which the lessons train nothing (the instructor's schedule: test_schedule.py)."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import nbformat
import pytest

from ctlib.cli import build_parser
from ctlib.notebook import get_mode
from ctlib.notebook.lessons import LESSON_RUNS, lesson_runs
from ctlib.ops.notebooks.exercises import LABEL
from ctlib.ops.notebooks.run import run_notebooks
from ctlib.ops.notebooks.student import is_solution, student_copies
from ctlib.ops.workshop import prepare_workshop

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _exercises(nb: nbformat.NotebookNode) -> list[tuple[int, object, list]]:
    """``(number, exercise cell, its solution cells)`` in order."""
    found = []
    for cell in nb.cells:
        if "exercise" in cell.metadata.get("tags", []):
            match = LABEL.match(cell.source)
            assert match, f"exercise without a label: {cell.source[:80]!r}"
            found.append((int(match.group(1)), cell, []))
        elif is_solution(cell):
            assert found, "a solution before any exercise"
            found[-1][2].append(cell)
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_exercise_is_labelled_and_has_a_hidden_solution(path: Path) -> None:
    exercises = _exercises(_read(path))
    assert exercises, f"{path.name} has no exercise"
    assert [n for n, _, _ in exercises] == list(range(1, len(exercises) + 1))
    for number, _, solutions in exercises:
        assert solutions, f"{path.name}: exercise {number} has no solution"
        for cell in solutions:
            assert cell.metadata.get("jupyter", {}).get("source_hidden") is True
            first = cell.source.splitlines()[0]
            assert f"Solution {number}" in first, f"{path.name}: {first!r} opens no solution line"
            needs = cell.metadata.get("ctlib", {}).get("needs")
            if cell.cell_type == "code":
                # a solution that needs a GPU or the real data says so, and skips out loud
                assert (needs is not None) == ("runs_here(" in cell.source), first


def test_the_label_pattern_refuses_an_unlabelled_exercise() -> None:
    assert LABEL.match("**Exercise 2** `[CPU · 5 min]` Do this.")
    assert LABEL.match("**Exercise 4** `[GPU · 2 h · real data]` Do that.")
    assert not LABEL.match("**Exercise 3** Do this.")
    assert not LABEL.match("**Exercise 3** `[TPU · 5 min]` Do this.")


def test_the_kit_has_its_36_exercises() -> None:
    counts = {p.stem[:2]: len(_exercises(_read(p))) for p in NOTEBOOKS}
    assert sum(counts.values()) == 36, counts


def _commands(text: str, program: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"`(" + re.escape(program) + r" [^`]*)`", text)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_ctlib_command_in_a_notebook_is_complete_and_parses(path: Path) -> None:
    parser = build_parser()
    for cell in _read(path).cells:
        for command in _commands(cell.source, "python -m ctlib"):
            assert "..." not in command and "…" not in command, f"incomplete: {command}"
            words = shlex.split(command)[3:]
            if words and words[0].startswith("."):  # python -m ctlib.notebook ...
                continue
            parser.parse_args(words)  # exits (a failed test) if the CLI refuses it


def _dotted_names(text: str) -> set[str]:
    return {m.group(0) for m in re.finditer(r"(?<![\w/.])ctlib(?:\.[A-Za-z_]\w*)+", text)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_ctlib_name_a_notebook_mentions_exists(path: Path) -> None:
    missing = []
    for cell in _read(path).cells:
        for name in _dotted_names(cell.source):
            parts = name.split(".")
            for k in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:k]))
                except ImportError:
                    continue
                try:
                    for attribute in parts[k:]:
                        obj = getattr(obj, attribute)
                except AttributeError:
                    missing.append(name)
                break
    assert missing == []


def test_students_copies_hold_no_solution_and_no_output(tmp_path: Path) -> None:
    written = student_copies(NOTEBOOKS, tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    for teacher, student in zip(NOTEBOOKS, written, strict=True):
        copy = _read(student)
        assert not any(is_solution(c) for c in copy.cells)
        assert all(not c.get("outputs") for c in copy.cells if c.cell_type == "code")
        assert sum("exercise" in c.metadata.get("tags", []) for c in copy.cells) == len(
            _exercises(_read(teacher))
        )
        assert any(is_solution(c) for c in _read(teacher).cells), "the teacher's copy keeps them"
        # a cell to answer in under each exercise, the introduction saying so, no test markers
        for index, cell in enumerate(copy.cells):
            if "exercise" in cell.metadata.get("tags", []):
                answer = copy.cells[index + 1]
                assert answer.cell_type == "code" and answer.metadata["tags"] == ["answer"]
        text = "\n".join(c.source for c in copy.cells)
        assert "worked solution, collapsed" not in text and "NBVAL_" not in text
        assert "an empty cell for your answer" in text


@pytest.mark.student
def test_students_copies_run_in_quick_mode(tmp_path: Path) -> None:
    """The copies learners get run through (opt-in: .ci/run runs it after the notebooks, whose
    quick runs the copies reuse)."""
    # the pre-flight first (it trains only what is missing): then the copies only read, and
    # two can run at once without both training one fold
    prepare_workshop(get_mode(), rehearse=False, progress=False)
    copies = student_copies(NOTEBOOKS, tmp_path / "student")
    report = run_notebooks(copies, tmp_path / "run", workers=2)
    print(report[["notebook", "seconds"]].to_string(index=False))  # CI's log keeps the times
    assert (report["error"] == "").all(), report[report["error"] != ""].to_string()


def _run_training_cells(path: Path, namespace: dict) -> None:
    """Run a notebook's parameters, imports and mode cells, then its cells up to the one that
    trains (or finds) its networks, as the notebook would."""
    cells = [c for c in _read(path).cells if c.cell_type == "code"][1:]  # not Colab's set-up
    for cell in cells:
        exec(compile(cell.source, f"{path.name}", "exec"), namespace)  # noqa: S102
        if "ensure_results(" in cell.source or "trained_fold(" in cell.source:
            return
    raise AssertionError(f"{path.name} has no training cell")


@pytest.mark.slow
def test_after_the_preflight_notebooks_03_to_05_train_nothing(monkeypatch) -> None:
    """The pre-flight trains what the notebooks would (into the quick output folder they use,
    which the notebook tests then reuse); afterwards their training cells only read."""
    mode = get_mode()
    assert mode.quick, "the kit's tests run in quick mode"
    report = prepare_workshop(mode, rehearse=False, progress=False)
    assert set(report["step"]) == {"data", "train"}
    assert len(report[report["step"] == "train"]) == len(LESSON_RUNS) == len(lesson_runs(mode))
    again = prepare_workshop(mode, rehearse=False, progress=False)
    assert again.loc[again["step"] == "train", "note"].str.startswith("0 fold(s) trained").all()

    import ctlib.cv

    def no_training(*args, **kwargs):
        raise AssertionError("a notebook trained after the pre-flight")

    monkeypatch.setattr(ctlib.cv, "fit", no_training)
    for stem in ("03_cross_validation", "04_tsne", "05_gradcam"):
        _run_training_cells(ROOT / "notebooks" / f"{stem}.ipynb", {"__name__": "__main__"})


@pytest.mark.parametrize("choice", ["quick", "full"])
def test_the_workshop_plan_is_sound_in_both_modes_and_a_dry_run_says_so(
    choice: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from ctlib.cli import main
    from ctlib.notebook.lessons import plan_problems
    from ctlib.notebook.mode import get_mode

    assert plan_problems(get_mode(choice, gpu=False)) == []
    monkeypatch.setenv("CTLIB_QUICK", "1" if choice == "quick" else "0")
    monkeypatch.setattr("ctlib.ops.workshop.run_cv", _never_trains)
    assert main(["prepare-workshop", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "the plan is sound" in out and "05_gradcam" in out
    if choice == "full":  # notebook 05 asks for the paper's folds on SARS-CoV-2 CT in full mode
        assert re.search(r"05_gradcam\s+sars-cov-2-ct\s+resnet101\s+paper", out)


def _never_trains(*args: object, **kwargs: object) -> None:
    raise AssertionError("the plan's check must come before any training")


def test_a_plan_with_a_protocol_its_data_set_cannot_give_stops_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ctlib.notebook import lessons
    from ctlib.notebook.mode import get_mode
    from ctlib.ops.workshop import prepare_workshop

    full = get_mode("full", gpu=False)
    bad = lessons.LessonRun("05_gradcam", "explain", "patient", (0,),
                            ("synthetic", "efficientnet_lite0"), ("sars-cov-2-ct", "resnet101"),
                            "explains")  # fmt: skip
    (problem,) = lessons.plan_problems(full, (bad,))
    assert "sars-cov-2-ct has no patient IDs" in problem
    monkeypatch.setattr(lessons, "LESSON_RUNS", (*lessons.LESSON_RUNS, bad))
    monkeypatch.setattr("ctlib.ops.workshop.plan_problems",
                        lambda mode: lessons.plan_problems(mode, lessons.LESSON_RUNS))  # fmt: skip
    monkeypatch.setattr("ctlib.ops.workshop.run_cv", _never_trains)
    with pytest.raises(ValueError, match="cannot run: 05_gradcam: resnet101 on sars-cov-2-ct"):
        prepare_workshop(full, rehearse=False, progress=False)
