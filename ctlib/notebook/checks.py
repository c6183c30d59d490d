"""Answers a learner can check: ``check(notebook, exercise, answer, ...)`` says *right* or gives a
hint, never the solution.

Each check recomputes the expected value from what the learner's own notebook holds (its mode,
its data, its results: passed in by name, e.g. ``frames=frames``), never from a number typed
here, so it is right in quick and full mode, with and without the real data. The students'
copies carry one check cell (tagged ``check``) under each computed exercise's answer cell
(:data:`CHECK_CELLS`); the written exercises keep their model answers in the teacher's copy.

Example:
    >>> from ctlib.notebook.checks import check
    >>> check("03", 4, 1.2)  # doctest: +SKIP
    Not yet. Hint: subtract DenseNet169's mean accuracy from DenseNet201's ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = ["CHECKS", "CHECK_CELLS", "Check", "check", "expected_answer"]


@dataclass(frozen=True)
class Check:
    """One exercise's check: how to recompute its answer, how to compare, what to hint."""

    expected: Callable[..., Any]
    hint: str
    tolerance: float = 0.0  # for numbers: the largest difference still right

    def agrees(self, answer: Any, expected: Any) -> bool:
        if isinstance(expected, str):
            return str(answer).strip().lower() == expected.lower()
        if isinstance(expected, (list, tuple)):
            try:
                if all(isinstance(e, int) for e in expected):  # e.g. epochs
                    return [int(a) for a in answer] == list(expected)
                return len(answer) == len(expected) and all(
                    math.isclose(float(a), float(e), abs_tol=self.tolerance)
                    for a, e in zip(answer, expected, strict=True)
                )
            except (TypeError, ValueError):
                return False
        try:
            return math.isclose(float(answer), float(expected), abs_tol=self.tolerance)
        except (TypeError, ValueError):
            return False


def _widest_spread(frames: dict[str, pd.DataFrame]) -> str:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.data import REAL_DATASETS

    spread = {  # the paper's data sets only: the notebook's frames hold the synthetic set too
        name: (f["width"] / f["height"]).quantile([0.05, 0.95]).diff().iloc[-1]
        for name, f in frames.items()
        if name in REAL_DATASETS
    }
    return max(spread, key=spread.get)


def _images_per_patient(frames: dict[str, pd.DataFrame]) -> float:
    return float(frames["covid19-ct"].groupby("patient_id").size().mean())


def _loss_fall_at_paper_rate(mode: Any, dataset: Any, config: Any, fold: int) -> float:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.cv import fold_dir
    from ctlib.notebook.folders import results_dir  # lazy: as above
    from ctlib.recipes import recipe  # lazy: as above
    from ctlib.results import load_history  # lazy: as above

    slow = recipe("lesson", config.arch, mode=mode, epochs=config.epochs, lr=3e-4, seed=config.seed)
    folder = fold_dir(results_dir(mode, slow), dataset.name, "paper", slow.run_name, fold)
    if not (folder / "history.json").is_file():
        raise FileNotFoundError(
            f"the run at the paper's rate is not in {folder}: set LR = 3e-4 and train, then "
            "check again."
        )
    loss = load_history(folder)["train_loss"]
    return float(loss.iloc[0] - loss.iloc[-1])


def _verdict_flips(committed: pd.DataFrame) -> int:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.study.paper import compare_with_paper

    narrow, wide = (
        compare_with_paper(committed, ["accuracy"], tolerance=t, include_not_run=False)["verdict"]
        for t in (0.5, 5.0)
    )
    return int((narrow.to_numpy() != wide.to_numpy()).sum())


def _fold_to_fold(out: Any, dataset: Any, config: Any) -> float:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.results import collect_results

    runs = collect_results(out)
    runs = runs[(runs["dataset"] == dataset.name) & (runs["arch"] == config.arch)]
    accuracy = runs[runs["protocol"] == "paper"].set_index("fold")["accuracy"]
    if not {0, 1} <= set(accuracy.index):
        raise FileNotFoundError(
            f"folds 0 and 1 of this recipe are not both in {out} (found folds "
            f"{sorted(accuracy.index)}): set FOLD = 1, run the training cell, then check again."
        )
    return float(100 * abs(accuracy[1] - accuracy[0]))


def _runner_up_gap(committed: pd.DataFrame) -> float:
    image_level = committed[
        (committed["dataset"] == "covid19-ct") & (committed["protocol"] == "paper")
    ]
    means = image_level.groupby("arch")["accuracy"].mean().sort_values(ascending=False)
    return float(100 * (means.iloc[0] - means.iloc[1]))


def _patient_level_cost(results: pd.DataFrame, patient: Any = None) -> float:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.notebook.folders import output_dir
    from ctlib.results import collect_results  # lazy: as above

    patient = patient or output_dir("runs", "patient", create=False)  # the exercise's --out
    runs = collect_results(patient)
    runs = runs[runs["protocol"] == "patient"]
    image = results[
        (results["protocol"] == "paper")
        & results["dataset"].isin(runs["dataset"])
        & results["arch"].isin(runs["arch"])
    ]
    if runs.empty or image.empty:
        raise FileNotFoundError(
            f"no patient-level run under {patient} to set beside an image-level one of the "
            "same network and data set: run the exercise's command first."
        )
    return float(100 * (image["accuracy"].mean() - runs["accuracy"].mean()))


def _class_blind_method(model: Any, info: dict, image: Any) -> str:
    # lazy: a check loads what it recomputes only when a learner runs it
    import numpy as np

    from ctlib.explain import explain_image  # lazy: as above

    agreement = {}
    for method in ("gradcam", "eigencam"):
        covid, other = (
            explain_image(model, image, info["arch"], method, target=t).heatmap for t in (1, 0)
        )
        with np.errstate(invalid="ignore", divide="ignore"):  # a flat map: no correlation
            agreement[method] = float(np.corrcoef(covid.ravel(), other.ravel())[0, 1])
    return min(agreement, key=lambda m: np.nan_to_num(agreement[m], nan=1.0))


def _widest_seed_spread(committed: Any, yours: Any = None) -> str:
    # lazy: a check loads what it recomputes only when a learner runs it
    from pathlib import Path

    from ctlib.notebook.folders import repo_root  # lazy: as above
    from ctlib.study.honest import cam_scores_over_seeds  # lazy: as above

    yours = yours or (repo_root() or Path.cwd()) / "outputs" / "cam-score"  # the exercise's --out
    raw = cam_scores_over_seeds(committed, yours)
    scores = ["test_accuracy", "pointing_game", "energy_in_lesions"]
    return str(raw.groupby("method_name")[scores].std().max().idxmax())


def _external_losses(results: Any) -> list[float]:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.study.honest import external_frame

    frame = external_frame(results)
    return [
        float(100 * (row.train_cv_accuracy.mean() - row.accuracy)) for row in frame.itertuples()
    ]


def _perplexity_moves(folder: Any, seed: int) -> str:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.explain import fold_tsne

    scores = [
        fold_tsne(folder, perplexity=p, seed=seed).scores.set_index(["images", "space"])
        for p in (5.0, 50.0)
    ]
    moved = (scores[0]["knn_accuracy"] - scores[1]["knn_accuracy"]).abs().groupby("space").max()
    changed = [space for space, by in moved.items() if by > 1e-9]
    return changed[0] if len(changed) == 1 else " and ".join(sorted(changed)) or "neither"


def _seed_agreement(folder: Any, perplexity: float, seed: int) -> float:
    # lazy: a check loads what it recomputes only when a learner runs it
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr  # lazy: as above

    from ctlib.explain import fold_tsne  # lazy: as above

    a, b = (
        fold_tsne(folder, perplexity=perplexity, seed=s).points[["x", "y"]].to_numpy()
        for s in (seed, seed + 1)
    )
    return float(spearmanr(pdist(a), pdist(b))[0])


def _drops(config: Any) -> list[int]:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.recipes import schedule_table

    starts = [int(str(span).split("–")[0]) for span in schedule_table(config).index]
    return starts[1:]


def _densenet_gap() -> float:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.study.paper import paper_table

    rows = paper_table().loc["covid19-ct"].droplevel("protocol")["accuracy_mean"]
    return float(rows["densenet201"] - rows["densenet169"])


def _widest_margin(summary: pd.DataFrame) -> str:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.explain.faithfulness import RANDOM_MAP

    cams = summary.drop(index=[RANDOM_MAP, "randomised network (Grad-CAM)"], errors="ignore")
    return str((cams["road"] - summary.loc[RANDOM_MAP, "road"]).idxmax())


def _overconfidence(results: Any) -> float:
    # lazy: a check loads what it recomputes only when a learner runs it
    from ctlib.study.honest import calibration_frame

    frame = calibration_frame(results)
    return float(100 * (frame["confidence"] - frame["accuracy"]).max())


#: (notebook, exercise) -> its check
CHECKS: dict[tuple[str, int], Check] = {
    ("01", 1): Check(
        _widest_spread,
        "compare the range of width / height of the paper's two data sets, e.g. their 5 % and "
        "95 % quantiles, not their means; answer with the data set's name.",
    ),
    ("01", 4): Check(
        _images_per_patient,
        "count the images per patient_id in frames['covid19-ct'] (groupby + size), then "
        "average over the patients, not over the images.",
        tolerance=0.05,
    ),
    ("02", 1): Check(
        _loss_fall_at_paper_rate,
        "train the same fold at lr 3e-4 and subtract its last epoch's train_loss from its "
        "first (its history.json); answer with that fall.",
        tolerance=0.0005,
    ),
    ("02", 2): Check(
        _fold_to_fold,
        "train fold 1 too (FOLD = 1), then subtract the two folds' test accuracies (each "
        "fold's metrics.json, or run_cv's table) and answer with the difference in points "
        "(positive).",
        tolerance=0.05,
    ),
    ("02", 3): Check(
        _drops,
        "answer with the epochs (counted from 1) at which a new, lower rate starts: the first "
        "epoch of each row of schedule_table(config) after the first row.",
    ),
    ("03", 1): Check(
        _runner_up_gap,
        "on covid19-ct, take the image-level runs (protocol 'paper') of committed, average "
        "each run's (column arch) accuracy over its folds, and subtract the second best mean "
        "from the best, in points.",
        tolerance=0.05,
    ),
    ("03", 2): Check(
        _patient_level_cost,
        "average the test accuracy over the folds of the image-level run (results, protocol "
        "'paper') and of your patient-level run, and subtract the patient-level mean from the "
        "image-level one, in points.",
        tolerance=0.05,
    ),
    ("03", 4): Check(
        _densenet_gap,
        "subtract DenseNet169's mean accuracy from DenseNet201's on covid19-ct (paper_table(), "
        "column accuracy_mean), in points.",
        tolerance=0.05,
    ),
    ("03", 5): Check(
        _verdict_flips,
        "compare the committed runs with the paper (compare_with_paper, accuracy) at a "
        "tolerance of half a point and of five points and count the runs whose verdict "
        "differs.",
    ),
    ("04", 1): Check(
        _perplexity_moves,
        "run fold_tsne at perplexity 5 and at 50 and compare its scores table row by row: "
        "answer with the name of the space (as the table's space column spells it) whose "
        "knn_accuracy changes.",
    ),
    ("04", 2): Check(
        _seed_agreement,
        "embed with SEED and with SEED + 1, take the pairwise distances of each picture's "
        "points (scipy's pdist) and answer with their Spearman correlation.",
        tolerance=0.002,
    ),
    ("05", 3): Check(
        _class_blind_method,
        "explain the same slice for COVID (target=1) and for non-COVID (target=0) with each "
        "method and correlate the two maps; answer with the method key (as explain_image "
        "takes it) whose maps differ.",
    ),
    ("05", 5): Check(
        _widest_seed_spread,
        "over the seeds (the committed CAM scores and yours), take each score's standard "
        "deviation per method and answer with the score column whose largest one is widest.",
    ),
    ("05", 8): Check(
        _widest_margin,
        "subtract the random map's road from each method's road (the table's rows), leave out "
        "the random map and the randomised network, and name the method with the largest "
        "difference.",
    ),
    ("06", 6): Check(
        _overconfidence,
        "per run, subtract the accuracy from the mean confidence (calibration_frame(results)); "
        "answer with the largest difference, in points.",
        tolerance=0.1,
    ),
    ("06", 7): Check(
        _external_losses,
        "for each row of external_frame(results), in its order: the mean of train_cv_accuracy "
        "(the training set's own folds) minus the external accuracy, in points; answer with "
        "the list of the two.",
        tolerance=0.1,
    ),
}

#: the check cell the students' copies carry under each checked exercise: what it passes in
CHECK_CELLS: dict[tuple[str, int], str] = {
    ("01", 1): 'check("01", 1, answer, frames=frames)',
    ("01", 4): 'check("01", 4, answer, frames=frames)',
    ("02", 1): 'check("02", 1, answer, mode=MODE, dataset=dataset, config=config, fold=FOLD)',
    ("02", 2): 'check("02", 2, answer, out=out, dataset=dataset, config=config)',
    ("02", 3): 'check("02", 3, answer, config=recipe("lesson", ARCH, mode=MODE, epochs=8, lr=LR, '
    "seed=SEED))",
    ("03", 1): 'check("03", 1, answer, committed=committed)',
    ("03", 2): 'check("03", 2, answer, results=results)',
    ("03", 4): 'check("03", 4, answer)',
    ("03", 5): 'check("03", 5, answer, committed=committed)',
    ("04", 1): 'check("04", 1, answer, folder=folders[PROTOCOLS[0]], seed=SEED)',
    ("04", 2): 'check("04", 2, answer, folder=folders[PROTOCOLS[0]], perplexity=PERPLEXITY, '
    "seed=SEED)",
    ("05", 3): 'check("05", 3, answer, model=model, info=info, image=image)',
    ("05", 5): 'check("05", 5, answer, committed=committed_results() / "explain")',
    ("05", 8): 'check("05", 8, answer, summary=summary)',
    ("06", 6): 'check("06", 6, answer, results=results)',
    ("06", 7): 'check("06", 7, answer, results=results)',
}


def _check_of(notebook: str, exercise: int) -> Check:
    try:
        return CHECKS[(notebook, exercise)]
    except KeyError:
        known = ", ".join(f"{n}/{e}" for n, e in CHECKS)
        raise ValueError(
            f"Exercise {exercise} of notebook {notebook} has no check (it is a written one, or "
            f"the number is wrong); checked exercises: {known}."
        ) from None


def expected_answer(notebook: str, exercise: int, **given: Any) -> Any:
    """What :func:`check` compares with (for tests and teachers; a learner calls check)."""
    return _check_of(notebook, exercise).expected(**given)


def check(notebook: str, exercise: int, answer: Any, **given: Any) -> bool:
    """Say whether ``answer`` to an exercise is right, recomputed from ``given`` (the
    notebook's own objects the exercise works on); print *right* or a hint.

    Args:
        notebook: the notebook's number, e.g. ``"03"``.
        exercise: the exercise's number in that notebook.
        answer: the learner's answer (a name, a number or a list of epochs, as the hint says).
        given: the notebook's objects the answer comes from, by name (the check cell passes
            them).

    Returns:
        Whether the answer is right.
    """
    found = _check_of(notebook, exercise)
    if answer is None or answer is ...:
        print("Set `answer` in your cell first, then run this check again.")
        return False
    try:
        expected = found.expected(**given)
    except FileNotFoundError as missing:  # what the answer needs is not on disk yet
        print(f"Not yet: {missing}")
        return False
    if found.agrees(answer, expected):
        print(f"Right: {answer!r}.")
        return True
    print(f"Not yet ({answer!r}). Hint: {found.hint}")
    return False
