"""What the lessons train: each run notebooks 02-05 need (:data:`LESSON_RUNS`), with the recipe
the notebook itself asks for (:func:`ctlib.recipes.recipe` in the lesson's mode). The workshop
pre-flight (``python -m ctlib prepare-workshop``, :mod:`ctlib.ops.workshop`) trains them ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctlib.data.registry import DATASETS
from ctlib.notebook.mode import Mode
from ctlib.recipes import recipe
from ctlib.train import TrainConfig

__all__ = ["LESSON_RUNS", "LessonRun", "lesson_runs", "plan_problems"]


@dataclass(frozen=True)
class LessonRun:
    """One training run a notebook needs, as the notebook itself asks for it.

    Attributes:
        notebook: the notebook's file stem.
        recipe: ``"lesson"`` (fine-tuning, :func:`ctlib.recipes.recipe`'s ``lesson``) or
            ``"explain"`` (the network of notebooks 04 and 05).
        protocol: the cross-validation protocol (in quick mode, and in full mode unless
            ``full_protocol`` says otherwise).
        folds: the folds it trains; None: all of them.
        quick: (data set, architecture) in quick mode.
        full: (data set, architecture) in full mode.
        why: what the notebook does with it.
        full_protocol: the protocol in full mode, where the notebook asks for another one.
    """

    notebook: str
    recipe: str
    protocol: str
    folds: tuple[int, ...] | None
    quick: tuple[str, str]
    full: tuple[str, str]
    why: str
    full_protocol: str | None = None

    def protocol_in(self, mode: Mode) -> str:
        """The protocol the notebook trains with in ``mode``."""
        return self.protocol if mode.quick or self.full_protocol is None else self.full_protocol


#: What notebooks 02–05 train with their default parameters (05 reuses 04's network).
LESSON_RUNS: tuple[LessonRun, ...] = (
    LessonRun(
        "02_finetune",
        "lesson",
        "paper",
        (0,),
        ("synthetic", "efficientnet_lite0"),
        ("sars-cov-2-ct", "resnet101"),
        "fine-tunes one fold",
    ),
    LessonRun(
        "03_cross_validation",
        "lesson",
        "paper",
        None,
        ("synthetic", "efficientnet_lite0"),
        ("sars-cov-2-ct", "resnet101"),
        "completes the 5-fold cross-validation",
    ),
    LessonRun(
        "04_tsne",
        "explain",
        "patient",
        (0,),
        ("synthetic", "efficientnet_lite0"),
        ("covid19-ct", "inceptionv3"),
        "t-SNE of a fold split by patient",
    ),
    LessonRun(
        "04_tsne",
        "explain",
        "paper",
        (0,),
        ("synthetic", "efficientnet_lite0"),
        ("covid19-ct", "inceptionv3"),
        "t-SNE of a fold split by image",
    ),
    LessonRun(
        "05_gradcam",
        "explain",
        "patient",
        (0,),
        ("synthetic", "efficientnet_lite0"),
        ("sars-cov-2-ct", "resnet101"),
        "the network it explains (04's, in quick mode; 02's fold in full mode)",
        full_protocol="paper",  # SARS-CoV-2 CT has no patient IDs; the notebook says "paper"
    ),
)


def lesson_runs(mode: Mode) -> list[tuple[LessonRun, str, TrainConfig]]:
    """``(run, data set, config)`` for each of :data:`LESSON_RUNS` in ``mode``."""
    out = []
    for run in LESSON_RUNS:
        dataset, arch = run.quick if mode.quick else run.full
        out.append((run, dataset, recipe(run.recipe, arch, mode=mode)))
    return out


def plan_problems(mode: Mode, runs: tuple[LessonRun, ...] = LESSON_RUNS) -> list[str]:
    """What would stop a lesson run in ``mode``, found before anything trains: an unknown data
    set or architecture, a recipe the architecture refuses, or a protocol its data set cannot
    give (patient folds without patient IDs, an official split where there is none).
    ``[]``: the plan is sound."""
    problems = []
    for run in runs:
        dataset, arch = run.quick if mode.quick else run.full
        protocol = run.protocol_in(mode)
        where = f"{run.notebook}: {arch} on {dataset}, {protocol}"
        info = DATASETS.get(dataset)
        if info is None:
            problems.append(f"{where}: no data set {dataset!r}")
            continue
        try:
            recipe(run.recipe, arch, mode=mode)
        except (KeyError, ValueError) as error:
            problems.append(f"{where}: {error}")
        if protocol == "patient" and not info.patient_ids:
            problems.append(f"{where}: {dataset} has no patient IDs for patient folds")
        if protocol == "official" and not info.official_split:
            problems.append(f"{where}: {dataset} has no official split")
        if protocol == "pseudo-patient" and dataset != "sars-cov-2-ct":
            problems.append(f"{where}: pseudo-patient groups exist for sars-cov-2-ct only")
    return problems
