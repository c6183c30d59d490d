"""Tables from results on disk: the paper's Table 2 layout, the comparison, the audit.

Everything here reads what :mod:`ctlib.cv` wrote (``metrics.json`` and ``predictions.csv``
per fold, see :mod:`ctlib.results`) and what the audit and the CAM scoring stored under
``results/``; no model is needed, so a notebook can show every number without retraining.

* :func:`table2` -- the paper's Table 2 layout (mean ± std over folds);
* :func:`with_confidence` -- pooled predictions with bootstrap intervals;
* :func:`mean_confusion` -- Fig. 9's average confusion counts;
* :func:`comparison_table` -- every run by protocol, the paper's rows beside;
* :func:`audit_table`, :func:`heat_table`, :func:`cam_score_table`, :func:`sweep_cost_table`
  -- the audit, Grad-CAM's heat, CAM scores and the full grid's cost, as tables;
* :func:`markdown_table` -- any of them as Markdown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ctlib.data import REAL_DATASETS
from ctlib.metrics import PAPER_METRICS, bootstrap_ci
from ctlib.models import get_spec, list_models
from ctlib.ops.sweep.cost import CARDS, estimate_cost
from ctlib.ops.sweep.grid import Task
from ctlib.results import RESULT_KEYS, collect_results
from ctlib.study.audit import load_audits
from ctlib.study.paper import PUBLISHED, best_rows, compare_with_paper, paper_range

__all__ = [
    "PROTOCOL_NAMES",
    "audit_table",
    "versus_paper",
    "cam_score_table",
    "cam_scores_per_method",
    "comparison_table",
    "heat_table",
    "markdown_table",
    "mean_confusion",
    "mean_std",
    "network_name",
    "protocol_name",
    "sweep_cost_table",
    "table2",
    "with_confidence",
]


def markdown_table(frame: pd.DataFrame, digits: int | None = None) -> str:
    """A frame's columns and rows as a Markdown table (no extra dependency); with ``digits``,
    floats get that many decimals. Call ``frame.reset_index()`` first to show the index."""

    def cell(value: Any) -> str:
        if digits is not None and isinstance(value, (float, np.floating)):
            return "nan" if np.isnan(value) else f"{value:.{digits}f}"
        return str(value)

    lines = [
        "| " + " | ".join(map(str, frame.columns)) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def table2(
    results: pd.DataFrame,
    metrics: Sequence[str] = PAPER_METRICS,
    *,
    percent: bool = True,
    decimals: int = 1,
) -> pd.DataFrame:
    """The paper's Table 2 layout: one row per (data set, protocol, architecture).

    Cells are ``"mean ± std"`` over folds (sample std), in % by default; a ``folds``
    column says how many folds each row has (the paper: 5). A fold whose metric is NaN (e.g.
    precision when it predicted no COVID) is left out of that metric's mean, and the cell says
    over how many folds it is (``"88.1 ± 2.0 (4 of 5 folds)"``); ``"n/a"`` when none has it.
    """
    scale = 100.0 if percent else 1.0
    grouped = results.groupby(RESULT_KEYS, sort=True)
    table = pd.DataFrame(index=grouped.size().index)
    size = grouped.size()
    for metric in metrics:
        mean = grouped[metric].mean() * scale
        std = grouped[metric].std(ddof=1).fillna(0.0) * scale
        counted = grouped[metric].count()  # a fold whose metric is NaN is not averaged: say so
        table[metric] = [
            "n/a"
            if k == 0
            else f"{m:.{decimals}f} ± {s:.{decimals}f}" + (f" ({k} of {n} folds)" if k < n else "")
            for m, s, k, n in zip(mean, std, counted, size, strict=True)
        ]
    table["folds"] = size
    return table


def with_confidence(
    predictions: pd.DataFrame, metric: str = "accuracy", n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Pooled test predictions per run with a bootstrap 95 % interval.

    Patients are resampled where every prediction has a patient ID, images otherwise.
    """
    rows = []
    for keys, group in predictions.groupby(RESULT_KEYS, sort=True):
        groups = group["patient_id"] if group["patient_id"].notna().all() else None
        est, low, high = bootstrap_ci(
            group["label"], group["prob"], groups=groups, metric=metric, n_boot=n_boot, seed=seed
        )
        rows.append(
            {
                **dict(zip(RESULT_KEYS, keys, strict=True)),
                metric: est,
                "ci_low": low,
                "ci_high": high,
                "resampled": "patients" if groups is not None else "images",
            }
        )
    return pd.DataFrame(rows).set_index(RESULT_KEYS)


def mean_confusion(results: pd.DataFrame) -> dict[tuple[str, str, str], np.ndarray]:
    """Fig. 9: per run, the confusion matrix of average counts over folds.

    Rows are the true class and columns the predicted class, ordered (COVID, non-COVID)
    as in the paper's figure.
    """
    out = {}
    for keys, group in results.groupby(RESULT_KEYS, sort=True):
        tp, fn, fp, tn = (group[c].mean() for c in ("tp", "fn", "fp", "tn"))
        out[keys] = np.array([[tp, fn], [fp, tn]])
    return out


PROTOCOL_NAMES = {
    "paper": "image-level 5-fold (the paper's)",
    "patient": "patient-level 5-fold",
    "pseudo-patient": "pseudo-patient 5-fold",
    "official": "official train/val/test split",
}


def protocol_name(protocol: str) -> str:
    """A protocol in words (:data:`PROTOCOL_NAMES`); an external run, ``external-<test set>``,
    names the set it was tested on."""
    if protocol.startswith("external-"):
        return f"external: all of it, tested on {protocol.removeprefix('external-')}"
    return PROTOCOL_NAMES.get(protocol, protocol)


def network_name(run: str) -> str:
    arch, *variants = run.split("-")
    words = {"scratch": "random init", "fe": "head only", "flat": "flat box: padding probe"}
    name = get_spec(arch).display_name
    extra = [words.get(v, v) for v in variants]
    return f"{name} ({', '.join(extra)})" if extra else f"{name} (ImageNet)"


def mean_std(values: pd.Series, scale: float = 100.0, digits: int = 1) -> str:
    """``"mean ± std"`` (sample std) of the values times ``scale``; the mean alone for one
    value, ``""`` for none (NaN values are left out)."""
    values = values.dropna() * scale
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


_SHOWN = (
    ("accuracy", "accuracy"),
    ("F1", "f1"),
    ("sensitivity", "recall"),
    ("specificity", "specificity"),
)


def versus_paper(comparison: pd.DataFrame) -> str:
    """One run's accuracy against the paper in words, from its rows of
    :func:`ctlib.study.paper.compare_with_paper`: against its own Table 2 row where it has
    one (agrees / lower / higher, by how much), else against the paper's best row and range."""
    row = comparison[comparison["metric"] == "accuracy"].iloc[0]
    if row["compared_with"] == "own row":
        return f"{row['verdict']} ({row['difference']:+.1f} vs its Table 2 row)"
    if pd.isna(row["paper_mean"]):
        return "nothing published"
    best = row["compared_with"].removeprefix("paper's best ").strip("()")
    return (
        f"not in the paper: {row['difference']:+.1f} vs its best ({best}); the paper's "
        f"twelve {row['paper_min']:.1f}–{row['paper_max']:.1f}"
    )


def comparison_table(results: str | os.PathLike[str], *, with_paper: bool = True) -> pd.DataFrame:
    """Protocol x data set x network -> accuracy, F1, sensitivity, specificity (mean ± std
    over test folds, %), the number of folds, the recipe, how the run stands against the
    paper (:func:`versus_paper`) and the CPU time it took (training, all folds). With
    ``with_paper``, each data set's best Table 2 row and the range of its twelve are added."""
    frame = collect_results(results)
    comparison = compare_with_paper(frame, include_not_run=False)
    rows = []
    for (dataset, protocol, run), group in frame.groupby(
        ["dataset", "protocol", "arch"], sort=True
    ):
        mine = comparison[
            (comparison["dataset"] == dataset)
            & (comparison["protocol"] == protocol)
            & (comparison["arch"] == run)
        ]
        rows.append(
            {
                "data set": dataset,
                "protocol": protocol_name(protocol),
                "network": network_name(run),
                **{label: mean_std(group[m]) for label, m in _SHOWN},
                "folds": int(len(group)),
                "recipe": str(group["recipe"].iloc[0]) or "–",
                "vs the paper (accuracy)": (
                    "not in the paper: it tests each data set on itself only"
                    if protocol.startswith("external-")
                    else versus_paper(mine)
                ),
                "CPU min": f"{group['train_seconds'].sum() / 60:.0f}",
            }
        )
    if with_paper:
        for dataset in sorted(set(frame["dataset"]) & {r.dataset for r in PUBLISHED}):
            best = best_rows("accuracy").loc[dataset]
            result = next(r for r in PUBLISHED if r.dataset == dataset and r.arch == best["arch"])
            paper_rows = [
                (
                    f"{get_spec(result.arch).display_name} (paper's best, published)",
                    {label: f"{result.mean[m]:.1f} ± {result.std[m]:.1f}" for label, m in _SHOWN},
                ),
                (
                    "the paper's twelve (range of their means)",
                    {
                        label: "{:.1f}–{:.1f}".format(*paper_range(dataset, m))
                        for label, m in _SHOWN
                    },
                ),
            ]
            for network, cells in paper_rows:
                rows.append(
                    {
                        "data set": dataset,
                        "protocol": PROTOCOL_NAMES["paper"],
                        "network": network,
                        **cells,
                        "folds": 5,
                        "recipe": "the paper's",
                        "vs the paper (accuracy)": "",
                        "CPU min": "GPU",
                    }
                )
    order = {name: i for i, name in enumerate(PROTOCOL_NAMES.values())}
    table = pd.DataFrame(rows)
    table["_order"] = table["protocol"].map(order)
    table["_paper"] = table["network"].str.contains("paper")
    return (
        table.sort_values(
            ["data set", "_order", "_paper", "network"], ascending=[False, True, False, True]
        )
        .drop(columns=["_order", "_paper"])
        .reset_index(drop=True)
    )


def audit_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    """The audit JSONs as one table: per data set and split, near-duplicate pairs across
    folds, test images with a look-alike in training, and the metadata-only accuracy."""
    rows = []
    for name, report in load_audits(results).items():
        for protocol, entry in report["protocols"].items():
            rows.append(
                {
                    "data set": name,
                    "split": protocol_name(protocol),
                    "identical pairs across folds": entry.get("identical_pairs", 0),
                    "near-duplicate pairs across folds": entry["near_duplicate_pairs"],
                    "test images with a look-alike in training": (
                        f"{entry['lookalike_images']} ({100 * entry['lookalike_share']:.0f} %)"
                    ),
                    "1-NN accuracy (ImageNet features)": (
                        f"{100 * entry['nearest_neighbour_accuracy']:.1f}"
                    ),
                    "metadata-only accuracy": f"{100 * entry['metadata_accuracy']:.1f}",
                    "size-only accuracy": f"{100 * entry['size_only_accuracy']:.1f}",
                }
            )
    if not rows:
        raise FileNotFoundError(
            f"No audit (audit/*.json) under {str(results)!r}; run "
            "`python -m ctlib audit report <dataset>`."
        )
    return pd.DataFrame(rows)


def sweep_cost_table() -> pd.DataFrame:
    """The full grid's expected cost per architecture (and in total), as printed by
    ``python -m ctlib sweep --dry-run`` on an empty results folder."""
    tasks = [
        Task(d, a, k) for d in REAL_DATASETS for a in list_models(paper=True) for k in range(5)
    ]
    cost = estimate_cost(tasks)
    names = [get_spec(a).display_name if a != "total" else "total" for a in cost.index]
    return pd.DataFrame(
        {
            "architecture": names,
            "cells": cost["cells"].astype(int).to_numpy(),
            "images trained (M)": (cost["images_trained"] / 1e6).round(2).to_numpy(),
            "CPU hours (measured step)": cost["cpu_hours"].round(0).astype(int).to_numpy(),
            **{
                f"{kind} hours (estimate)": cost[f"gpu_hours_{kind}"].round(2).to_numpy()
                for kind in CARDS
            },
        }
    )


def heat_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    """``results/explain/heat_*.csv`` as one table: mean over folds of each share, in %, with
    the recipe the explained networks were trained with (a heat report outlives the networks
    it explained: when the reference run is retrained, the recipe column shows that the heat
    is from the earlier one; "" for a report written without it)."""
    files = sorted(Path(results).glob("explain/heat_*.csv"))
    if not files:
        raise FileNotFoundError(f"No heat report (explain/heat_*.csv) under {str(results)!r}.")
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    frame = frame.reindex(columns=frame.columns.union(["recipe"], sort=False))
    frame["recipe"] = frame["recipe"].fillna("")
    grouped = frame.groupby(["dataset", "protocol", "run", "recipe", "method"], sort=True)
    table = grouped[["padding_share", "outside_body_share", "outside_body_area"]].mean() * 100
    table["images"] = grouped["n_images"].sum()
    table = table.reset_index()
    return pd.DataFrame(
        {
            "data set": table["dataset"],
            "protocol": table["protocol"].map(protocol_name),
            "network": table["run"].map(network_name),
            "recipe": table["recipe"],
            "CAM": table["method"],
            "heat on padding, %": table["padding_share"].round(1),
            "heat outside the body, %": table["outside_body_share"].round(1),
            "canvas outside the body, %": table["outside_body_area"].round(1),
            "images": table["images"],
        }
    )


def cam_scores_per_method(
    files: list[Path], columns: dict[str, tuple[str, float, int]]
) -> pd.DataFrame:
    """The CAM-score files (one per trained network) as one row per data set, architecture and
    CAM method: ``columns`` maps each shown column to ``(score column, scale, digits)``, shown
    as the mean over the networks ± their standard deviation (:func:`mean_std`), beside the
    number of networks and of scored images."""
    frame = pd.concat([pd.read_csv(f).assign(file=f.name) for f in files], ignore_index=True)
    frame = frame.reindex(columns=frame.columns.union(["dataset", "test_accuracy"], sort=False))
    frame["dataset"] = frame["dataset"].fillna("synthetic")
    rows = []
    keys = ["dataset", "arch", "method_name"]
    for (dataset, arch, method), group in frame.groupby(keys, sort=False):
        rows.append(
            {
                "data set": dataset,
                "network": network_name(arch),
                "CAM": method,
                "networks": group["file"].nunique(),
                **{
                    shown: mean_std(group[column], scale, digits)
                    for shown, (column, scale, digits) in columns.items()
                },  # fmt: skip
                "images": int(group["n_images"].max()),
            }
        )
    return pd.DataFrame(rows)


def cam_score_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    """``results/explain/cam_scores_*.csv`` (summaries of :func:`ctlib.explain.score_cams`,
    one file per trained network, written by ``benchmarks/score_cams.py --results results``)
    as one table in %: per data set, architecture and CAM method, the mean over the networks
    trained with different seeds, ± their standard deviation when there are several. The
    spread is the point: how far a CAM's localisation moves between two trainings of the
    same recipe, which one network's score cannot show."""
    files = sorted(Path(results).glob("explain/cam_scores_*.csv"))
    if not files:
        raise FileNotFoundError(
            f"No CAM scores (explain/cam_scores_*.csv) under {str(results)!r}; "
            "run benchmarks/score_cams.py --results results."
        )
    percent = {
        "test accuracy, %": "test_accuracy",
        "pointing game, %": "pointing_game",
        "random peak, %": "random_baseline",
        "random peak in the body, %": "body_baseline",
        "randomised network, %": "random_net_pointing",
        "heat in lesions, %": "energy_in_lesions",
        "lesion area, %": "lesion_area",
    }
    columns = {shown: (column, 100.0, 1) for shown, column in percent.items()}
    columns["sanity (Spearman)"] = ("sanity_spearman", 1.0, 2)
    return cam_scores_per_method(files, columns)
