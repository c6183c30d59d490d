"""What the runs say, in sentences generated from results on disk (never typed)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ctlib.explain.faithfulness import RANDOM_MAP, RANDOM_NETWORK
from ctlib.models import get_spec
from ctlib.results import collect_results
from ctlib.study.audit import load_audits
from ctlib.study.honest import calibration_frame, external_frame
from ctlib.study.paper import best_rows, paper_range
from ctlib.study.tables import PROTOCOL_NAMES, network_name, protocol_name

__all__ = ["key_findings"]


def _accuracy(
    frame: pd.DataFrame, dataset: str, protocol: str, run: str
) -> tuple[float, float, int] | None:
    rows = frame[
        (frame["dataset"] == dataset) & (frame["protocol"] == protocol) & (frame["arch"] == run)
    ]
    if rows.empty:
        return None
    return (
        float(rows["accuracy"].mean()),
        float(rows["accuracy"].std(ddof=1)) if len(rows) > 1 else 0.0,
        len(rows),
    )


#: The parts of a recipe in words that name a run's variant rather than its budget.
VARIANT_PARTS = ("random init", "flat content")


def _recipe(frame: pd.DataFrame, dataset: str, protocol: str, run: str) -> str:
    """The recipe in words of a run's first fold ("" when not recorded)."""
    rows = frame[
        (frame["dataset"] == dataset) & (frame["protocol"] == protocol) & (frame["arch"] == run)
    ]
    return "" if rows.empty else str(rows["recipe"].iloc[0] or "")


def _budget(recipe: str) -> str:
    """A recipe in words without its variant parts: the budget it trained with."""
    parts = [p for p in recipe.split(", ") if p and p not in VARIANT_PARTS]
    return ", ".join(parts) if parts or not recipe else "the paper's"


def _differ(budget: str, reference: str) -> tuple[str, str]:
    """What two budgets in words differ in: the parts of each the other lacks, e.g.
    ``("12 epochs", "24 epochs")``; a recipe not recorded is named as such."""
    if not budget or not reference:
        return budget or "a recipe not recorded", reference or "a recipe not recorded"
    ours, theirs = budget.split(", "), reference.split(", ")
    only_ours = [p for p in ours if p not in theirs]
    only_theirs = [p for p in theirs if p not in ours]
    return ", ".join(only_ours) or "the paper's", ", ".join(only_theirs) or "the paper's"


def _budget_words(budget: str, reference: str) -> tuple[str, str]:
    """How a run's budget reads beside the reference's: ``("same budget", "")``, or
    ``("at <what differs>", "; the reference trained at <what differs>, so the budgets differ
    too")``."""
    if budget == reference:
        return "same budget", ""
    ours, theirs = _differ(budget, reference)
    return f"at {ours}", f"; the reference trained at {theirs}, so the budgets differ too"


def key_findings(results: str | os.PathLike[str], run: str = "efficientnet_lite0") -> list[str]:
    """The comparisons that matter, as sentences built from ``results`` (Markdown bullets
    without the bullet): the image-level accuracy against the grouped protocols, against
    random initialisation, the padding probe and the metadata-only classifier; then external
    validation and calibration."""
    frame = collect_results(results)
    audits = load_audits(results)
    lines = []
    for dataset in sorted(frame["dataset"].unique(), reverse=True):
        paper = _accuracy(frame, dataset, "paper", run)
        if paper is None:
            continue
        name = network_name(run)
        reference = _budget(_recipe(frame, dataset, "paper", run))
        parts = [f"image-level folds {100 * paper[0]:.1f} %"]
        for protocol in ("patient", "pseudo-patient", "official"):
            other = _accuracy(frame, dataset, protocol, run)
            if other is not None:
                budget = _budget(_recipe(frame, dataset, protocol, run))
                ours, theirs = _differ(budget, reference)
                unlike = (
                    f", not like for like: trained at {ours}, the image-level run at {theirs}"
                    if budget != reference
                    else ""
                )
                parts.append(
                    f"{PROTOCOL_NAMES[protocol]} {100 * other[0]:.1f} % "
                    f"({100 * (other[0] - paper[0]):+.1f} points{unlike})"
                )
        lines.append(f"**{dataset}**, {name}: " + "; ".join(parts) + ".")
        best = best_rows("accuracy")
        if dataset in best.index:
            arch = best.loc[dataset, "arch"]
            low, high = paper_range(dataset, "accuracy")
            recipe = frame.loc[
                (frame["dataset"] == dataset)
                & (frame["protocol"] == "paper")
                & (frame["arch"] == run),
                "recipe",
            ].iloc[0]
            top = best.loc[dataset, "accuracy_mean"]
            lines.append(
                f"**{dataset}**, against the paper: the CPU reference ({name}, recipe: "
                f"{recipe or 'not recorded'}) reaches {100 * paper[0]:.1f} %, "
                f"{100 * paper[0] - top:+.1f} points from the paper's best row "
                f"({get_spec(arch).display_name}, {top:.1f} %); the paper's twelve "
                f"architectures span {low:.1f}–{high:.1f} %."
            )

        scratch = _accuracy(frame, dataset, "paper", f"{run}-scratch")
        if scratch is not None:
            same, caveat = _budget_words(
                _budget(_recipe(frame, dataset, "paper", f"{run}-scratch")), reference
            )
            lines.append(
                f"**{dataset}**, the same network from random initialisation, {same}: "
                f"{100 * scratch[0]:.1f} % ({100 * (scratch[0] - paper[0]):+.1f} points: what "
                f"ImageNet pre-training buys here{caveat})."
            )
        # other architectures from random initialisation (e.g. ResNet18, the paper's family)
        here = (frame["dataset"] == dataset) & (frame["protocol"] == "paper")
        runs = set(frame.loc[here, "arch"])
        for other_run in sorted(runs - {f"{run}-scratch"}):
            arch, _, variant = other_run.partition("-")
            if variant != "scratch":
                continue
            spec = get_spec(arch)
            other = _accuracy(frame, dataset, "paper", other_run)
            family = " (one of the paper's twelve)" if spec.paper else ""
            same, caveat = _budget_words(
                _budget(_recipe(frame, dataset, "paper", other_run)), reference
            )
            lines.append(
                f"**{dataset}**, {spec.display_name}{family} from random initialisation, "
                f"{same}: {100 * other[0]:.1f} % ({100 * (other[0] - paper[0]):+.1f} points "
                f"against {name}{caveat})."
            )
        flat = _accuracy(frame, dataset, "paper", f"{run}-flat")
        if flat is not None:
            lines.append(
                f"**{dataset}**, padding-geometry probe (the slice replaced by a flat gray box, "
                f"only its size and place on the canvas left): {100 * flat[0]:.1f} % "
                f"± {100 * flat[1]:.1f} (chance: 50 %)."
            )
        audit = audits.get(dataset, {}).get("protocols", {})
        if "paper" in audit:
            grouped = [p for p in audit if p != "paper"]
            text = (
                f"**{dataset}**, a random forest on file metadata only (size, width, height, "
                f"format, intensity statistics): {100 * audit['paper']['metadata_accuracy']:.1f} % "
                "under image-level folds"
            )
            if grouped:
                text += (
                    f", {100 * audit[grouped[0]]['metadata_accuracy']:.1f} % under "
                    f"{PROTOCOL_NAMES[grouped[0]]}"
                )
            lines.append(text + ".")
            if "patient_leak" in audit["paper"]:
                lines.append(
                    f"**{dataset}**: under the paper's image-level folds, "
                    f"{100 * audit['paper']['patient_leak']:.0f} % of the test images have a "
                    "slice of the same patient in training."
                )
            lines.append(
                f"**{dataset}**: {100 * audit['paper']['lookalike_share']:.0f} % of the test "
                "images have a look-alike in training under image-level folds; a 1-nearest-"
                "neighbour vote on untrained ImageNet features alone scores "
                f"{100 * audit['paper']['nearest_neighbour_accuracy']:.1f} %"
                + (
                    f" ({100 * audit[grouped[0]]['nearest_neighbour_accuracy']:.1f} % under "
                    f"{PROTOCOL_NAMES[grouped[0]]})."
                    if grouped
                    else "."
                )
            )
    lines += _external_lines(results, run) + _calibration_lines(results, run)
    return lines + _faithfulness_lines(results)


def _external_lines(results: str | os.PathLike[str], run: str) -> list[str]:
    """A sentence per external run of ``run``: its accuracy with its interval beside the
    training set's and the test set's own image-level folds."""
    try:
        frame = external_frame(results)
    except FileNotFoundError:
        return []
    lines = []
    for row in frame[frame["arch"] == run].itertuples():
        sides = ((row.train_cv_accuracy, row.train), (row.test_cv_accuracy, row.test))
        own = [
            f"{100 * folds.mean():.1f} % on {where}'s own image-level folds"
            for folds, where in sides
            if len(folds)
        ]
        same = "" if row.recipe == row.train_cv_recipe else (
            f" (recipes differ: {row.recipe or 'not recorded'} here, "
            f"{row.train_cv_recipe or 'not recorded'} in the folds)"
        )  # fmt: skip
        lines.append(
            f"**{row.train} → {row.test}** (external validation), {network_name(run)} trained "
            f"on all of {row.train} and tested on all of {row.test}: "
            f"{100 * row.accuracy:.1f} % (95 % CI {100 * row.ci_low:.1f}–{100 * row.ci_high:.1f}, "
            f"{row.resampled} resampled; sensitivity {100 * row.recall:.1f} %, specificity "
            f"{100 * row.specificity:.1f} %)"
            + (", against " + " and ".join(own) if own else "")
            + f"{same}."
        )
    return lines


def _calibration_lines(results: str | os.PathLike[str], run: str) -> list[str]:
    """One sentence: the calibration of ``run`` under each protocol, with its verdict."""
    frame = calibration_frame(results)
    frame = frame[frame["arch"] == run].sort_values(
        ["dataset", "protocol"], ascending=[False, True]
    )
    if frame.empty:
        return []
    parts = [
        f"{r.dataset}, {protocol_name(r.protocol)}: ECE {100 * r.ece:.1f} %, {r.verdict} "
        f"(mean confidence {100 * r.confidence:.1f} %, accuracy {100 * r.accuracy:.1f} %)"
        for r in frame.itertuples()
    ]
    return [
        f"**Calibration** of {network_name(run)}'s P(COVID) (expected calibration error over "
        "10 equal-width bins, test folds pooled): " + "; ".join(parts) + "."
    ]


def _faithfulness_lines(results: str | os.PathLike[str]) -> list[str]:
    """Grad-CAM's ROAD on real test slices beside the two maps that explain nothing, per data
    set; and, on the synthetic set, its ROAD where its peak hits a lesion and where it misses."""
    lines = []
    files = sorted(Path(results).glob("explain/road_*.csv"))
    if files:
        frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
        parts = []
        for dataset, group in frame.groupby("dataset", sort=False):
            road = group.groupby("map")["road"].mean() * 100
            if {"Grad-CAM", RANDOM_MAP, RANDOM_NETWORK} <= set(road.index):
                parts.append(
                    f"{dataset} {road['Grad-CAM']:.1f} points (random map {road[RANDOM_MAP]:.1f}, "
                    f"randomised network {road[RANDOM_NETWORK]:.1f}; "
                    f"{group['path'].nunique()} test slices of fold {group['fold'].iloc[0]})"
                )
        if parts:
            lines.append(
                "**Faithfulness on real slices**: Grad-CAM's ROAD (half the difference between the "
                "drop in P(explained class) when its top-ranked pixels are removed and when its "
                "bottom-ranked ones are) is " + "; ".join(parts) + "."
            )
    scored = []
    for path in sorted(Path(results).glob("explain/cam_scores_*.csv")):
        table = pd.read_csv(path)
        if "road_hit" in table.columns:
            scored.append(table[table["method"] == "gradcam"])
    if scored:
        grad = pd.concat(scored, ignore_index=True)
        lines.append(
            f"**Points at the lesion, or depends on it?** On the synthetic set ({len(grad)} "
            f"networks, {int(grad['n_images'].max())} held-out COVID slices each), Grad-CAM's "
            f"peak lies on a lesion on {100 * grad['pointing_game'].mean():.0f} % of the slices; "
            f"its ROAD is {100 * grad['road_hit'].mean():.1f} points where it does and "
            f"{100 * grad['road_miss'].mean():.1f} where it does not (random map "
            f"{100 * grad['road_random_map'].mean():.1f})."
        )
    return lines
