"""The paper's published numbers, as data, each with where it was read.

Alshazly, Linse, Barth, Martinetz: *Explainable COVID-19 Detection Using Chest CT Scans and
Deep Learning*. arXiv:2011.05317 (v1, 9 Nov 2020); published in *Sensors* 21(2):455 (2021).

Only numbers that were actually found in a readable copy of the paper are recorded here;
nothing is estimated, rounded differently or filled in. What was found:

* the **abstract** (arXiv:2011.05317v1 and the *Sensors* version, identical numbers): the
  best model's average accuracy, precision, sensitivity, specificity and F1 score on each
  data set, as means over the five test folds, in %, without standard deviations.

What is **missing** (not found in the sources that could be read when this file was written):

* the per-architecture rows of Table 2 (mean ± std of the five metrics for the other
  architectures, and the standard deviations of the best ones);
* the confusion-matrix counts of Fig. 9 and Fig. 10.

The abstract does not name the best architectures. The attribution recorded in
``arch`` (ResNet101 on SARS-CoV-2, DenseNet201 on COVID19-CT) comes from the project's
issue text, which cites the paper's Table 2; it was not checked against the table itself
here (``arch_source`` says so). Add Table 2 rows to :data:`PUBLISHED` as they are read,
with their ``source``; :func:`paper_table` and :func:`compare_with_paper` pick them up.

Metric names follow :mod:`ctlib.metrics`: the paper's *sensitivity* is ``recall``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ctlib.metrics import PAPER_METRICS
from ctlib.models import get_spec, list_models

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

__all__ = [
    "CITATION",
    "MISSING",
    "PUBLISHED",
    "PublishedResult",
    "compare_with_paper",
    "highlight_differences",
    "paper_table",
]

CITATION = (
    "Alshazly H, Linse C, Barth E, Martinetz T. Explainable COVID-19 Detection Using Chest CT "
    "Scans and Deep Learning. arXiv:2011.05317 (2020); Sensors 21(2):455 (2021)."
)

MISSING = (
    "Table 2 rows other than the best model per data set (mean ± std for SqueezeNet, "
    "ShuffleNet, ResNet18/50/101, ResNeXt50/101, InceptionV3, Xception, DenseNet121/169/201), "
    "the standard deviations of the best models, and the Fig. 9/10 confusion-matrix counts "
    "were not found in the readable sources; they are not recorded."
)


@dataclass(frozen=True)
class PublishedResult:
    """One row the paper publishes: a data set, an architecture, metric means (and stds).

    Attributes:
        dataset: ctlib's data set name (``"sars-cov-2-ct"``, ``"covid19-ct"``).
        arch: ctlib's architecture name (``ctlib.models.list_models()``).
        mean: metric name -> mean over the five test folds, in % (as published).
        std: metric name -> standard deviation in %, where published; empty if not.
        protocol: the evaluation protocol in ctlib's words (``"paper"``: image-level 5-fold).
        source: where the numbers were read.
        arch_source: where the architecture attribution comes from, if not ``source``.
    """

    dataset: str
    arch: str
    mean: dict[str, float]
    std: dict[str, float] = field(default_factory=dict)
    protocol: str = "paper"
    source: str = ""
    arch_source: str = ""


_ABSTRACT = "arXiv:2011.05317v1, abstract (also the abstract of Sensors 21(2):455, 2021)"
_ARCH_FROM_ISSUE = (
    "project issue 6, citing the paper's Table 2 (the abstract says only "
    "'our best models'); not checked against Table 2 here"
)

PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult(
        dataset="sars-cov-2-ct",
        arch="resnet101",
        mean={"accuracy": 99.4, "precision": 99.6, "recall": 99.8, "specificity": 99.6, "f1": 99.4},
        source=_ABSTRACT,
        arch_source=_ARCH_FROM_ISSUE,
    ),
    PublishedResult(
        dataset="covid19-ct",
        arch="densenet201",
        mean={"accuracy": 92.9, "precision": 91.3, "recall": 93.7, "specificity": 92.2, "f1": 92.5},
        source=_ABSTRACT,
        arch_source=_ARCH_FROM_ISSUE,
    ),
)
"""Every published row recorded so far (see the module docstring for what is missing)."""


def paper_table(metrics: Sequence[str] = PAPER_METRICS) -> pd.DataFrame:
    """The recorded published rows: one per (data set, protocol, arch), in %.

    Columns ``<metric>_mean`` and ``<metric>_std`` (NaN where not published) and
    ``source``. The index matches :func:`ctlib.study.tables.table2`'s.
    """
    rows = []
    for result in PUBLISHED:
        row: dict[str, object] = {
            "dataset": result.dataset,
            "protocol": result.protocol,
            "arch": result.arch,
        }
        for metric in metrics:
            row[f"{metric}_mean"] = result.mean.get(metric, np.nan)
            row[f"{metric}_std"] = result.std.get(metric, np.nan)
        row["source"] = result.source
        rows.append(row)
    return pd.DataFrame(rows).set_index(["dataset", "protocol", "arch"]).sort_index()


def compare_with_paper(
    results: pd.DataFrame,
    metrics: Sequence[str] = PAPER_METRICS,
    *,
    tolerance: float = 1.0,
) -> pd.DataFrame:
    """Our cross-validation results beside the paper's, one row per run and metric.

    Args:
        results: one row per finished fold, from :func:`ctlib.results.collect_results`
            (metrics as fractions 0..1).
        metrics: which metrics.
        tolerance: percentage points within which ours and the paper's count as agreeing
            when the paper gives no standard deviation; where it gives one, the margin is
            the larger of ``tolerance`` and two standard deviations (ours and the paper's
            combined).

    Returns:
        Columns ``dataset, protocol, arch, metric, ours_mean, ours_std, folds, paper_mean,
        paper_std, difference`` (ours - paper, percentage points) and ``verdict``:
        ``"agrees"``, ``"lower"``, ``"higher"``, ``"not published"`` (the paper gives no
        number for this run, or it is not recorded in :data:`PUBLISHED`) or
        ``"not run"`` (a published row with no results of ours).
    """
    keys = ["dataset", "protocol", "arch"]
    grouped = results.groupby(keys, sort=True)
    ours = []
    for key, group in grouped:
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float) * 100.0
            ours.append(
                {
                    **dict(zip(keys, key, strict=True)),
                    "metric": metric,
                    "ours_mean": float(np.mean(values)),
                    "ours_std": float(np.std(values, ddof=1)) if len(values) > 1 else np.nan,
                    "folds": len(values),
                }
            )
    ours_frame = pd.DataFrame(ours, columns=[*keys, "metric", "ours_mean", "ours_std", "folds"])
    paper = paper_table(metrics)
    published = []
    for key, row in paper.iterrows():
        for metric in metrics:
            published.append(
                {
                    **dict(zip(keys, key, strict=True)),
                    "metric": metric,
                    "paper_mean": row[f"{metric}_mean"],
                    "paper_std": row[f"{metric}_std"],
                }
            )
    paper_frame = pd.DataFrame(published, columns=[*keys, "metric", "paper_mean", "paper_std"])
    frame = ours_frame.merge(paper_frame, on=[*keys, "metric"], how="outer")
    frame["difference"] = frame["ours_mean"] - frame["paper_mean"]
    margin = np.maximum(
        tolerance, 2 * np.sqrt(frame["ours_std"].fillna(0) ** 2 + frame["paper_std"].fillna(0) ** 2)
    )
    verdict = np.where(
        frame["difference"].abs() <= margin,
        "agrees",
        np.where(frame["difference"] < 0, "lower", "higher"),
    )
    verdict = np.where(frame["paper_mean"].isna(), "not published", verdict)
    verdict = np.where(frame["ours_mean"].isna(), "not run", verdict)
    frame["verdict"] = verdict
    order = {m: i for i, m in enumerate(metrics)}
    frame = frame.sort_values(
        [*keys, "metric"], key=lambda s: s.map(order) if s.name == "metric" else s
    )
    return frame.reset_index(drop=True)


_COLOURS = {
    "agrees": "#d8f0d8",
    "lower": "#f8d0d0",
    "higher": "#fce8c0",
    "not published": "#eeeeee",
    "not run": "#eeeeee",
}


def highlight_differences(comparison: pd.DataFrame, decimals: int = 1) -> Styler:
    """A pandas Styler of :func:`compare_with_paper`'s frame: rows coloured by verdict.

    Green: agrees within the margin; red: ours lower; orange: ours higher; grey: nothing
    to compare with (not published, or not run).
    """

    def colour(row: pd.Series) -> list[str]:
        shade = _COLOURS.get(row["verdict"])
        return [f"background-color: {shade}" if shade else ""] * len(row)

    numbers = ["ours_mean", "ours_std", "paper_mean", "paper_std", "difference"]
    return (
        comparison.style.apply(colour, axis=1)
        .format({c: f"{{:.{decimals}f}}" for c in numbers}, na_rep="–")
        .format({"folds": "{:.0f}"}, na_rep="–")
        .hide(axis="index")
    )


def table1(names: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's Table 1 as the kit holds it: canvas, its aspect ratio, parameters."""
    rows = []
    for name in names if names is not None else list_models(paper=True):
        spec = get_spec(name)
        rows.append(
            {
                "architecture": spec.display_name,
                "canvas (w×h)": "{}×{}".format(*spec.canvas),
                "aspect": round(spec.canvas[0] / spec.canvas[1], 2),
                "parameters (M)": spec.table1_params_m,
            }
        )
    return pd.DataFrame(rows).set_index("architecture")


def canvas_columns(names: Sequence[str] | None = None) -> dict[str, tuple[int, int]]:
    """The paper's distinct canvases, each labelled with the architectures that use it.

    Example:
        >>> canvas_columns()["ResNets, ResNeXts, DenseNets"]
        (349, 253)
    """
    names = list(names) if names is not None else list_models(paper=True)
    groups: dict[tuple[int, int], list[str]] = {}
    for name in names:
        spec = get_spec(name)
        groups.setdefault(spec.canvas, []).append(spec.display_name)
    families = {"ResNet": "ResNets", "ResNeXt": "ResNeXts", "DenseNet": "DenseNets"}
    out = {}
    for canvas, members in groups.items():
        if len(members) > 2:
            short = []
            for member in members:
                family = next((v for k, v in families.items() if member.startswith(k)), member)
                if family not in short:
                    short.append(family)
            label = ", ".join(short)
        else:
            label = ", ".join(members)
        out[label] = canvas
    return out
