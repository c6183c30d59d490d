"""Answers a learner can check: every check says right to the worked solution's answer and
gives a hint (not the answer) to a typical wrong one; the students' copies carry them."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pandas as pd
import pytest

from ctlib.notebook import committed_results, get_mode
from ctlib.notebook.checks import CHECK_CELLS, CHECKS, check, expected_answer
from ctlib.ops.notebooks.exercises import read_exercises
from ctlib.ops.notebooks.student import CHECK_TAG, student_copy
from ctlib.recipes import recipe, schedule_table
from ctlib.results import collect_results
from ctlib.study.describe import size_frames

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}


def _frames():
    """As notebook 01 holds them: the paper's two data sets (from the shipped manifests) and
    the synthetic set, whose spread is wider but which is not one of the paper's."""
    from ctlib.data import load_dataset

    return size_frames(["sars-cov-2-ct", "covid19-ct"], load_dataset("synthetic", progress=False))


def _summary() -> pd.DataFrame:
    """Notebook 05's section-7 summary, in miniature: ROAD per method and the baselines."""
    from ctlib.explain.faithfulness import RANDOM_MAP

    road = {"Grad-CAM": 0.20, "LayerCAM": 0.12, RANDOM_MAP: 0.01,
            "randomised network (Grad-CAM)": 0.25}  # fmt: skip
    return pd.DataFrame({"road": road})


@functools.cache  # computed once for the sixteen cases
def _cases():
    """(notebook, exercise, what the check is given, the solution's answer, a wrong answer)."""
    frames = _frames()
    config = recipe("lesson", mode=get_mode("quick"), epochs=8)
    drops = [int(span.split("–")[0]) for span in schedule_table(config).index[1:]]
    paper = {n: f for n, f in frames.items() if n != "synthetic"}
    spread = {n: (f["width"] / f["height"]).quantile([0.05, 0.95]) for n, f in paper.items()}
    widest = max(spread, key=lambda n: spread[n].iloc[1] - spread[n].iloc[0])
    per_patient = frames["covid19-ct"].groupby("patient_id").size()
    committed = collect_results(committed_results())
    reference = SimpleNamespace(name="covid19-ct"), SimpleNamespace(arch="efficientnet_lite0")
    folds = [  # folds 0 and 1 of the committed reference, read as a learner's run folder
        json.loads(
            (
                committed_results()
                / "covid19-ct/paper/efficientnet_lite0"
                / f"fold{k}"
                / "metrics.json"
            ).read_text()
        )["accuracy"]
        for k in (0, 1)
    ]
    image_level = committed.query("dataset == 'covid19-ct' and protocol == 'paper'")
    means = image_level.pivot_table(index="arch", values="accuracy").squeeze().nlargest(3)
    return [
        ("01", 1, {"frames": frames}, widest, "synthetic"),
        ("01", 4, {"frames": frames}, per_patient.mean(), len(frames["covid19-ct"]) / 2),
        (
            "02",
            2,
            {"out": committed_results(), "dataset": reference[0], "config": reference[1]},
            100 * abs(folds[1] - folds[0]),
            100 * (folds[1] - folds[0]) if folds[1] < folds[0] else 0.0,
        ),
        ("02", 3, {"config": config}, drops, [50, 70, 80, 90]),
        (
            "03",
            1,
            {"committed": committed},
            100 * (means.iloc[0] - means.iloc[1]),
            100 * (means.iloc[0] - means.iloc[2]),  # the gap to the third
        ),
        ("03", 4, {}, None, -1.0),
        ("05", 8, {"summary": _summary()}, "Grad-CAM", "LayerCAM"),
        ("06", 6, {"results": committed_results()}, None, 0.0),
        ("06", 7, {"results": committed_results()}, None, [0.0, 0.0]),
    ]


@pytest.fixture(scope="module")
def tsne_fold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained fold as notebook 04 reads one: a small synthetic set (about 60 slices, so
    that a perplexity of 50 fits), one epoch of ShuffleNet from random initialisation."""
    from ctlib.cv import trained_fold
    from ctlib.data import load_dataset
    from ctlib.data.synthetic import SyntheticConfig
    from ctlib.train import TrainConfig

    root = tmp_path_factory.mktemp("tsne")
    data = load_dataset(
        "synthetic", root / "data", synthetic=SyntheticConfig(n_patients=24), progress=False
    )
    config = TrainConfig(
        arch="shufflenet", pretrained=False, epochs=1, batch_size=8, canvas=(64, 48)
    )
    return trained_fold(root / "runs", data, config, n_folds=2)


def _fold_cases(folder: Path) -> list[tuple]:
    """The checks that need a trained fold (notebook 04's, and notebook 05's on one slice)."""
    from ctlib.data import read_grayscale
    from ctlib.explain import fold_split, load_trained

    model, info = load_trained(folder / "model.pt")
    image = read_grayscale(fold_split(folder)["path"].iloc[0])
    return [
        ("04", 1, {"folder": folder, "seed": 0}, "t-SNE", "features"),
        ("04", 2, {"folder": folder, "perplexity": 30.0, "seed": 0}, None, 0.0),
        ("05", 3, {"model": model, "info": info, "image": image}, "gradcam", "eigencam"),
    ]


def _seed_case(tmp_path: Path) -> tuple:
    """05.5 on the committed CAM scores (no run of the learner's yet), by the solution's route."""
    import pandas as pd

    scores = ["test_accuracy", "pointing_game", "energy_in_lesions"]
    files = sorted((committed_results() / "explain").glob("cam_scores_*.csv"))
    raw = pd.concat(pd.read_csv(f) for f in files)
    spread = raw.groupby("method_name")[scores].agg(["mean", "std"])
    widest = spread.xs("std", axis=1, level=1).max().idxmax()
    given = {"committed": committed_results() / "explain", "yours": tmp_path / "cam-score"}
    return ("05", 5, given, widest, next(s for s in scores if s != widest))


@functools.cache
def _verdict_case() -> tuple:
    """03.5 on the committed runs: none is one of the paper's rows, so none can flip."""
    return ("03", 5, {"committed": collect_results(committed_results())}, 0, 2)


def _loss_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """02.1 on a run at the paper's rate, where notebook 02 keeps it (a quick output folder
    of its own here), its history written as fit writes it."""
    from ctlib.cv import fold_dir
    from ctlib.notebook import results_dir
    from ctlib.notebook.mode import get_mode

    monkeypatch.setenv("CTLIB_OUTPUT_DIR", str(tmp_path))
    mode = get_mode("quick")
    config = recipe("lesson", mode=mode, epochs=3)
    slow = recipe("lesson", config.arch, mode=mode, epochs=3, lr=3e-4, seed=config.seed)
    folder = fold_dir(results_dir(mode, slow), "synthetic", "paper", slow.run_name, 0)
    folder.mkdir(parents=True)
    losses = [0.70, 0.69, 0.66]
    history = [{"epoch": e + 1, "seconds": 1.0, "train_loss": v} for e, v in enumerate(losses)]
    (folder / "history.json").write_text(json.dumps(history))
    given = {"mode": mode, "dataset": SimpleNamespace(name="synthetic"), "config": config,
             "fold": 0}  # fmt: skip
    return ("02", 1, given, losses[0] - losses[-1], 0.0)


@functools.cache
def _patient_case() -> tuple:
    """03.2 on the committed COVID19-CT runs: the patient-level run beside the image-level."""
    committed = collect_results(committed_results())
    image = committed.query("protocol == 'paper' and arch == 'efficientnet_lite0'")
    image = image[image["dataset"] == "covid19-ct"]["accuracy"].mean()
    patient = committed.query("protocol == 'patient'")["accuracy"].mean()
    given = {"results": committed, "patient": committed_results()}
    return ("03", 2, given, 100 * (image - patient), 0.0)


@pytest.mark.parametrize("case", range(16))
def test_each_check_says_right_to_the_solution_and_hints_at_a_wrong_answer(
    case, capsys, request, tmp_path, monkeypatch
) -> None:
    cases = [*_cases(), _patient_case(), _verdict_case(), _loss_case(tmp_path, monkeypatch),
             _seed_case(tmp_path)]  # fmt: skip
    if case >= len(cases):  # they need a trained fold
        cases += _fold_cases(request.getfixturevalue("tsne_fold"))
    notebook, exercise, given, right, wrong = cases[case]
    if right is None:  # the solution's own arithmetic, as its cell does it
        right = expected_answer(notebook, exercise, **given)
        if notebook == "03":  # the solution: DenseNet201's mean minus DenseNet169's
            from ctlib.study.paper import paper_table

            rows = paper_table().loc["covid19-ct"].droplevel("protocol")["accuracy_mean"]
            assert right == pytest.approx(rows["densenet201"] - rows["densenet169"])
    assert check(notebook, exercise, right, **given)
    assert "Right" in capsys.readouterr().out
    assert not check(notebook, exercise, wrong, **given)
    out = capsys.readouterr().out
    assert "Hint:" in out and str(expected_answer(notebook, exercise, **given)) not in out


def test_a_check_whose_run_is_missing_says_what_to_train(tmp_path: Path, capsys) -> None:
    """02.2 before fold 1 is trained: not yet, and how to get it (no traceback)."""
    import shutil

    source = committed_results() / "covid19-ct/paper/efficientnet_lite0"
    shutil.copytree(source / "fold0", tmp_path / "covid19-ct/paper/efficientnet_lite0/fold0")
    given = {
        "out": tmp_path,
        "dataset": SimpleNamespace(name="covid19-ct"),
        "config": SimpleNamespace(arch="efficientnet_lite0"),
    }
    assert not check("02", 2, 1.0, **given)
    assert "set FOLD = 1" in capsys.readouterr().out


def test_external_losses_are_the_solutions_arithmetic() -> None:
    """06.7's expected answer, by the solution's route: own folds' mean minus the external."""
    from ctlib.study.honest import external_frame

    frame = external_frame(committed_results())
    losses = expected_answer("06", 7, results=committed_results())
    assert len(losses) == len(frame) == 2
    for loss, row in zip(losses, frame.itertuples(), strict=True):
        assert loss == pytest.approx(100 * (row.train_cv_accuracy.mean() - row.accuracy))
        assert loss > 0, "a network loses accuracy on the other data set"


def test_an_unset_answer_asks_for_one_and_an_unknown_exercise_is_named(capsys) -> None:
    assert not check("03", 4, None)
    assert "Set `answer`" in capsys.readouterr().out
    with pytest.raises(ValueError, match="Exercise 3 of notebook 01 has no check"):
        check("01", 3, "arrows")


def test_every_checked_exercise_exists_is_computed_and_its_solution_asserts_the_check() -> None:
    assert set(CHECK_CELLS) == set(CHECKS)
    for notebook, exercise in CHECKS:
        nb = nbformat.read(NOTEBOOKS[notebook], as_version=4)
        (found,) = [e for e in read_exercises(nb) if e.number == exercise]
        code = "\n".join(nb.cells[i].source for i in found.solution_cells)
        # the worked solution passes its own check when the notebook runs (nbval)
        assert f'assert check("{notebook}", {exercise},' in code, (notebook, exercise)


def test_the_students_copy_carries_a_check_cell_under_each_checked_exercise(tmp_path) -> None:
    for notebook, path in NOTEBOOKS.items():
        copy = nbformat.read(student_copy(path, tmp_path), as_version=4)
        checks = [c for c in copy.cells if CHECK_TAG in c.metadata.get("tags", [])]
        expected = sorted(e for n, e in CHECKS if n == notebook)
        assert len(checks) == len(expected), notebook
        for cell, exercise in zip(checks, expected, strict=True):
            assert f'check("{notebook}", {exercise}, answer' in cell.source
            assert "Solution" not in cell.source
