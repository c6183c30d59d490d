"""The paper's published numbers, as data, each with where it was read.

Alshazly, Linse, Barth, Martinetz: *Explainable COVID-19 Detection Using Chest CT Scans and
Deep Learning*. arXiv:2011.05317 (v1, 9 Nov 2020); *Sensors* 21(2):455 (2021). Table 2's 24 rows
ship as ``ctlib/study/table2.csv`` (mean and standard deviation over the five test folds, in %),
with the confusion counts the text states for Fig. 9/10; the paper's *sensitivity* is
``recall``. How they were read and checked: docs/DEVELOPERS.md, *The paper's numbers*.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ctlib.metrics import PAPER_METRICS
from ctlib.models import get_spec, list_models

if TYPE_CHECKING:
    from pandas.io.formats.style import Styler

__all__ = [
    "CITATION",
    "PUBLISHED",
    "STATED_CONFUSION_COUNTS",
    "TABLE2_FILE",
    "PublishedResult",
    "best_rows",
    "compare_with_paper",
    "highlight_differences",
    "paper_range",
    "paper_table",
    "table2_display",
    "table2_published",
]

CITATION = (
    "Alshazly H, Linse C, Barth E, Martinetz T. Explainable COVID-19 Detection Using Chest CT "
    "Scans and Deep Learning. arXiv:2011.05317 (2020); Sensors 21(2):455 (2021)."
)

#: The paper's Table 2 as shipped with the kit (package data).
TABLE2_FILE = Path(__file__).resolve().parent / "table2.csv"
_TABLE2_SOURCE = "Table 2 of arXiv:2011.05317v1 (Sensors 21(2):455, 2021), read from the text"

#: Fig. 9's counts that the paper's text states (average counts per test fold, rows = true
#: class, columns = predicted class, ordered COVID, non-COVID), by (data set, architecture).
STATED_CONFUSION_COUNTS: dict[tuple[str, str], tuple[tuple[int, int], tuple[int, int]]] = {
    ("sars-cov-2-ct", "squeezenet"): ((241, 10), (15, 231)),
}


@dataclass(frozen=True)
class PublishedResult:
    """One row the paper publishes: a data set, an architecture, metric means and stds.

    Attributes:
        dataset: ctlib's data set name (``"sars-cov-2-ct"``, ``"covid19-ct"``).
        arch: ctlib's architecture name (``ctlib.models.list_models()``).
        mean: metric name -> mean over the five test folds, in % (as published).
        std: metric name -> standard deviation over the folds, in %.
        protocol: the evaluation protocol in ctlib's words (``"paper"``: image-level 5-fold).
        source: where the numbers were read.
    """

    dataset: str
    arch: str
    mean: dict[str, float]
    std: dict[str, float] = field(default_factory=dict)
    protocol: str = "paper"
    source: str = ""


def _arch_of(display: str) -> str:
    """The registry name of one of the paper's twelve, from the name Table 2 prints."""
    names = {get_spec(n).display_name.lower(): n for n in list_models(paper=True)}
    try:
        return names[display.lower()]
    except KeyError:
        raise ValueError(
            f"Table 2 names {display!r}, which is none of the paper's twelve ({sorted(names)})."
        ) from None


def table2_published(path: str | Path = TABLE2_FILE) -> tuple[PublishedResult, ...]:
    """Table 2's 24 rows, read from the shipped CSV (``dataset, model, <metric>, <metric>_sd``)."""
    with Path(path).open(newline="") as handle:
        return tuple(
            PublishedResult(
                dataset=row["dataset"],
                arch=_arch_of(row["model"]),
                mean={m: float(row[m]) for m in PAPER_METRICS},
                std={m: float(row[f"{m}_sd"]) for m in PAPER_METRICS},
                source=_TABLE2_SOURCE,
            )
            for row in csv.DictReader(handle)
        )


PUBLISHED: tuple[PublishedResult, ...] = table2_published()
"""Every row of the paper's Table 2 (12 architectures x 2 data sets)."""


def paper_table(metrics: Sequence[str] = PAPER_METRICS) -> pd.DataFrame:
    """Table 2: one row per (data set, protocol, arch), in %.

    Columns ``<metric>_mean`` and ``<metric>_std`` and ``source``. The index matches
    :func:`ctlib.study.tables.table2`'s.
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


def best_rows(metric: str = "accuracy") -> pd.DataFrame:
    """Per data set, the paper's best row by ``metric`` (ties: the first in Table 2's order)."""
    table = paper_table().reset_index()
    best = table.loc[table.groupby("dataset", sort=False)[f"{metric}_mean"].idxmax()]
    return best.set_index("dataset")


def paper_range(dataset: str, metric: str = "accuracy") -> tuple[float, float]:
    """The lowest and highest mean the paper reports for ``metric`` on ``dataset`` (12 rows)."""
    table = paper_table()
    if dataset not in table.index.get_level_values("dataset"):
        raise ValueError(
            f"The paper reports nothing on {dataset!r}; it has "
            f"{sorted({r.dataset for r in PUBLISHED})}."
        )
    values = table.xs(dataset, level="dataset")[f"{metric}_mean"]
    return float(values.min()), float(values.max())


def _own_row(dataset: str, protocol: str, run: str) -> str | None:
    """The architecture whose Table 2 row a run is compared with, or None: only a run of one of
    the twelve, pretrained and fine-tuned on the slices (its run name is the bare architecture),
    under the paper's image-level protocol, has a row of its own."""
    if protocol != "paper" or "-" in run:
        return None
    try:
        spec = get_spec(run)
    except ValueError:
        return None
    if not spec.paper or not any(r.dataset == dataset and r.arch == spec.name for r in PUBLISHED):
        return None
    return spec.name


def compare_with_paper(
    results: pd.DataFrame,
    metrics: Sequence[str] = PAPER_METRICS,
    *,
    tolerance: float = 1.0,
    include_not_run: bool = True,
) -> pd.DataFrame:
    """Our cross-validation results beside the paper's Table 2, one row per run and metric.

    A run of one of the paper's twelve architectures (pretrained, fine-tuned, image-level
    folds) is compared with its own row: ``"agrees"`` when the difference is within the
    margin, else ``"lower"`` or ``"higher"``. A run the paper did not make (another network,
    a random initialisation, the padding probe, a patient-level protocol) has no row: it is
    ``"not in the paper"``, shown beside the paper's best row on that data set (the
    difference is to that best) and the paper's range over its twelve rows.

    Args:
        results: one row per finished fold, from :func:`ctlib.results.collect_results`
            (metrics as fractions 0..1); its ``recipe`` column, where present, is kept.
        metrics: which metrics.
        tolerance: percentage points within which ours and the paper's count as agreeing;
            the margin is the larger of ``tolerance`` and two standard deviations (ours and
            the paper's combined).
        include_not_run: also list the paper's rows that have no run of ours (``"not run"``).

    Returns:
        Columns ``dataset, protocol, arch, metric, ours_mean, ours_std, folds, recipe,
        compared_with, paper_mean, paper_std, paper_min, paper_max, difference`` (ours -
        paper, percentage points) and ``verdict``.
    """
    keys = ["dataset", "protocol", "arch"]
    paper = paper_table(metrics)
    rows = []
    for (dataset, protocol, run), group in results.groupby(keys, sort=True):
        own = _own_row(dataset, protocol, run)
        if own is not None:
            reference, compared = paper.loc[(dataset, "paper", own)], "own row"
        elif dataset in paper.index.get_level_values("dataset"):
            best = best_rows("accuracy").loc[dataset]
            reference = paper.loc[(dataset, "paper", best["arch"])]
            compared = f"paper's best ({get_spec(best['arch']).display_name})"
        else:
            reference, compared = None, "nothing published"
        recipe = str(group["recipe"].iloc[0]) if "recipe" in group else ""
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float) * 100.0
            low, high = paper_range(dataset, metric) if reference is not None else (np.nan, np.nan)
            rows.append(
                {
                    "dataset": dataset,
                    "protocol": protocol,
                    "arch": run,
                    "metric": metric,
                    "ours_mean": float(np.mean(values)),
                    "ours_std": float(np.std(values, ddof=1)) if len(values) > 1 else np.nan,
                    "folds": len(values),
                    "recipe": recipe,
                    "compared_with": compared,
                    "paper_mean": reference[f"{metric}_mean"] if reference is not None else np.nan,
                    "paper_std": reference[f"{metric}_std"] if reference is not None else np.nan,
                    "paper_min": low,
                    "paper_max": high,
                    "_own": own is not None,
                }
            )
    if include_not_run:
        done = {(r["dataset"], r["arch"]) for r in rows if r["_own"]}
        for (dataset, protocol, arch), row in paper.iterrows():
            if (dataset, arch) in done:
                continue
            for metric in metrics:
                low, high = paper_range(dataset, metric)
                rows.append(
                    {
                        "dataset": dataset,
                        "protocol": protocol,
                        "arch": arch,
                        "metric": metric,
                        "ours_mean": np.nan,
                        "ours_std": np.nan,
                        "folds": 0,
                        "recipe": "",
                        "compared_with": "own row",
                        "paper_mean": row[f"{metric}_mean"],
                        "paper_std": row[f"{metric}_std"],
                        "paper_min": low,
                        "paper_max": high,
                        "_own": True,
                    }
                )
    columns = [
        *keys,
        "metric",
        "ours_mean",
        "ours_std",
        "folds",
        "recipe",
        "compared_with",
        "paper_mean",
        "paper_std",
        "paper_min",
        "paper_max",
        "_own",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame["difference"] = frame["ours_mean"] - frame["paper_mean"]
    margin = np.maximum(
        tolerance, 2 * np.sqrt(frame["ours_std"].fillna(0) ** 2 + frame["paper_std"].fillna(0) ** 2)
    )
    verdict = np.where(
        frame["difference"].abs() <= margin,
        "agrees",
        np.where(frame["difference"] < 0, "lower", "higher"),
    )
    verdict = np.where(~frame["_own"].astype(bool), "not in the paper", verdict)
    verdict = np.where(frame["ours_mean"].isna(), "not run", verdict)
    frame["verdict"] = verdict
    order = {m: i for i, m in enumerate(metrics)}
    frame = frame.drop(columns="_own").sort_values(
        [*keys, "metric"], key=lambda s: s.map(order) if s.name == "metric" else s
    )
    return frame.reset_index(drop=True)


def highlight_differences(comparison: pd.DataFrame, decimals: int = 1) -> Styler:
    """A pandas Styler of :func:`compare_with_paper`'s frame: rows coloured by verdict.

    The kit's colour language (:data:`ctlib.plots.palette.VERDICT_TINTS`): light bluish green,
    agrees with its own row within the margin; light yellow (look here), ours lower or
    higher; no colour, a run the paper did not make (beside the paper's best, never
    "agreeing"); light grey, a published row we did not run.
    """
    # lazy: ctlib.plots (the palette's package) imports this module
    from ctlib.plots.palette import VERDICT_TINTS

    def colour(row: pd.Series) -> list[str]:
        shade = VERDICT_TINTS.get(row["verdict"])
        return [f"background-color: {shade}" if shade else ""] * len(row)

    numbers = [
        "ours_mean",
        "ours_std",
        "paper_mean",
        "paper_std",
        "paper_min",
        "paper_max",
        "difference",
    ]
    return (
        comparison.style.apply(colour, axis=1)
        .format({c: f"{{:.{decimals}f}}" for c in numbers if c in comparison}, na_rep="–")
        .format({"folds": "{:.0f}"}, na_rep="–")
        .hide(axis="index")
    )


def table2_display(dataset: str | None = None) -> pd.DataFrame:
    """Table 2 as the paper prints it: one row per data set and architecture, each metric as
    ``mean ± SD`` (in %), architectures in Table 1's order."""
    order = {name: i for i, name in enumerate(list_models(paper=True))}
    rows = []
    for result in sorted(PUBLISHED, key=lambda r: (r.dataset != "sars-cov-2-ct", order[r.arch])):
        if dataset is not None and result.dataset != dataset:
            continue
        rows.append(
            {
                "data set": result.dataset,
                "architecture": get_spec(result.arch).display_name,
                **{m: f"{result.mean[m]:.1f} ± {result.std[m]:.1f}" for m in PAPER_METRICS},
            }
        )
    return pd.DataFrame(rows).set_index(["data set", "architecture"])


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
