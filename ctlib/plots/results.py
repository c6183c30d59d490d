"""Figures of results: Fig. 9's confusion matrices, the honest-evaluation panel, reliability
diagrams, look-alikes."""

from __future__ import annotations

import os
from collections.abc import Iterable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ctlib.data import CLASS_NAMES, read_grayscale
from ctlib.metrics import reliability_bins
from ctlib.models import get_spec, list_models
from ctlib.plots.palette import (
    CONTEXT,
    COUNTS_CMAP,
    CT_CMAP,
    EXTERNAL,
    GROUPED,
    IMAGE_LEVEL,
    INK,
    PROBE_HATCH,
    REFERENCE,
    REFERENCE_LINE,
    colour_name,
    protocol_colour,
)
from ctlib.results import collect_predictions, collect_results
from ctlib.study.audit import load_audits
from ctlib.study.honest import calibration_frame
from ctlib.study.paper import compare_with_paper, paper_table
from ctlib.study.tables import PROTOCOL_NAMES, mean_confusion, network_name, protocol_name

__all__ = [
    "confusion_figure",
    "honest_figure",
    "paper_figure",
    "plot_pairs",
    "reliability_figure",
]


def confusion_figure(results: pd.DataFrame, *, columns: int = 4) -> Figure:
    """Fig. 9 layout: one heat-mapped confusion matrix (average counts over folds) per run."""
    matrices = mean_confusion(results)
    n = len(matrices)
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    names = [CLASS_NAMES[1], CLASS_NAMES[0]]
    for ax, ((dataset, protocol, arch), matrix) in zip(axes.flat, matrices.items(), strict=False):
        sns.heatmap(
            matrix,
            annot=True,
            fmt=".1f",
            cmap=COUNTS_CMAP,
            vmin=0,
            vmax=1.25 * np.nanmax(np.asarray(matrix, dtype=float)),  # the top a dark grey
            cbar=False,
            ax=ax,
            xticklabels=names,
            yticklabels=names,
            square=True,
        )
        ax.set_title(f"{arch}\n{dataset}, {protocol}", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    figure.suptitle("Confusion matrices, average counts over test folds", fontsize=10)
    figure.tight_layout()
    return figure


def _is_probe(run: str) -> bool:
    """A control run (random initialisation, the padding probe): ``<arch>-<variant>``."""
    return "-" in run


def _hatch_probes(bars: BarContainer, runs: Iterable[str]) -> None:
    """Hatch the bars of control runs (:data:`~ctlib.plots.palette.PROBE_HATCH`)."""
    for bar, run in zip(bars.patches, runs, strict=True):
        if _is_probe(run):
            bar.set_hatch(PROBE_HATCH)


def _protocol_legend() -> list[Patch]:
    """Legend entries of the bar colours (:mod:`ctlib.plots.palette`): one per protocol kind,
    and the hatching of the controls."""
    return [
        Patch(facecolor=IMAGE_LEVEL, label="image-level folds (the paper's)"),
        Patch(facecolor=GROUPED, label="grouped folds (patient, pseudo-patient, official)"),
        Patch(facecolor=EXTERNAL, label="external: tested on the other data set"),
        Patch(facecolor="none", edgecolor=INK, hatch=PROBE_HATCH,
              label="hatched: a control (random init, padding probe)"),
    ]  # fmt: skip


_PROTOCOL_CAPTION = (
    f"bars by protocol: image-level folds ({colour_name(IMAGE_LEVEL)}), grouped folds "
    f"({colour_name(GROUPED)}), external ({colour_name(EXTERNAL)}); hatched: controls"
)


def honest_figure(results: str | os.PathLike[str]) -> Figure:
    """One panel per data set: test accuracy (mean ± std over folds) of every run, coloured by
    protocol (:func:`~ctlib.plots.palette.protocol_colour`; controls hatched), with the audit's
    metadata-only accuracy (same folds) as a dashed line per protocol in its colour and 50 %
    (chance) as a dotted grey one."""

    frame = collect_results(results)
    audits = load_audits(results)
    datasets = sorted(frame["dataset"].unique(), reverse=True)
    figure, axes = plt.subplots(1, len(datasets), figsize=(6.8 * len(datasets), 5.0), squeeze=False)
    for ax, dataset in zip(axes.flat, datasets, strict=False):
        runs = frame[frame["dataset"] == dataset]
        stats = (
            runs.groupby(["protocol", "arch"])["accuracy"]
            .agg(["mean", "std", "size"])
            .reset_index()
        )
        order = {p: i for i, p in enumerate(PROTOCOL_NAMES)}
        stats = stats.sort_values(
            ["protocol", "arch"], key=lambda c: c.map(order) if c.name == "protocol" else c
        )
        labels = [
            f"{network_name(a)}\n{protocol_name(p)}"
            for p, a in zip(stats["protocol"], stats["arch"], strict=True)
        ]
        y = np.arange(len(stats))
        bars = ax.barh(
            y,
            100 * stats["mean"],
            xerr=100 * stats["std"].fillna(0),
            color=[protocol_colour(p) for p in stats["protocol"]],
            edgecolor=INK,
            linewidth=0.4,
            ecolor=INK,
            capsize=3,
        )
        _hatch_probes(bars, stats["arch"])
        for yi, m, sd in zip(y, stats["mean"], stats["std"].fillna(0), strict=True):
            ax.text(100 * (m + sd) + 1.5, yi, f"{100 * m:.1f}", va="center", fontsize=8)
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(
            50, color=REFERENCE_LINE, linestyle=":", linewidth=1, label="chance (balanced classes)"
        )
        for protocol, entry in audits.get(dataset, {}).get("protocols", {}).items():
            ax.axvline(
                100 * entry["metadata_accuracy"],
                color=protocol_colour(protocol),
                linestyle="--",
                linewidth=1,
                label=f"metadata only, {protocol_name(protocol)}",
            )
        ax.set_xlim(0, 105)
        ax.set_xlabel("test accuracy, % (mean ± std over folds)")
        ax.set_title(dataset)
        handles, _ = ax.get_legend_handles_labels()
        # below the axes, where it hides no bar and no number
        ax.legend(handles=_protocol_legend() + handles, fontsize=7, loc="upper center",
                  bbox_to_anchor=(0.5, -0.13), frameon=False, ncol=2)  # fmt: skip
    figure.suptitle(f"Test accuracy by evaluation protocol; {_PROTOCOL_CAPTION}", fontsize=10)
    figure.tight_layout()
    return figure


def plot_pairs(pairs: pd.DataFrame, title: str = "") -> Figure:
    """Each pair side by side, with folds, labels and the hash distance."""

    n = max(len(pairs), 1)
    figure, axes = plt.subplots(n, 2, figsize=(5.2, 2.4 * n), squeeze=False)
    names = CLASS_NAMES
    for row, pair in zip(axes, pairs.itertuples(index=False), strict=False):
        for ax, side in zip(row, ("a", "b"), strict=True):
            ax.imshow(read_grayscale(getattr(pair, f"path_{side}")), cmap=CT_CMAP)
            label = names[int(getattr(pair, f"label_{side}"))]
            ax.set_title(
                f"fold {getattr(pair, f'fold_{side}')}, {label}",
                fontsize=8,
            )
            ax.axis("off")
        row[0].text(
            1.02,
            -0.06,
            f"{pair.distance} bits apart",
            transform=row[0].transAxes,
            fontsize=8,
            ha="center",
            va="top",
        )
    if len(pairs) == 0:
        axes[0, 0].text(0.5, 0.5, "no pair", ha="center")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return figure


def paper_figure(
    results: str | os.PathLike[str] | pd.DataFrame | None = None, metric: str = "accuracy"
) -> Figure:
    """Table 2 at a glance: per data set, the paper's twelve architectures (mean ± SD over the
    five folds, in the reference grey) and, below them, the kit's runs from ``results`` (a
    folder or the frame of :func:`ctlib.results.collect_results`), coloured by protocol
    (controls hatched) and marked for what they are: the run of a paper architecture beside
    its own row, any other run beside the paper's best (dashed line)."""
    paper = paper_table().reset_index()
    ours = collect_results(results) if isinstance(results, (str, os.PathLike)) else results
    comparison = (
        compare_with_paper(ours, [metric], include_not_run=False)
        if ours is not None and len(ours)
        else None
    )
    datasets = [d for d in ("sars-cov-2-ct", "covid19-ct") if d in set(paper["dataset"])]
    figure, axes = plt.subplots(1, len(datasets), figsize=(6.4 * len(datasets), 6.2), squeeze=False)
    for ax, dataset in zip(axes.flat, datasets, strict=False):
        rows = paper[paper["dataset"] == dataset]
        rows = rows.set_index("arch").loc[
            [a for a in list_models(paper=True) if a in set(rows["arch"])]
        ]
        rows = rows.reset_index()
        labels = [get_spec(a).display_name for a in rows["arch"]]
        means, sds = rows[f"{metric}_mean"].tolist(), rows[f"{metric}_std"].tolist()
        colours, runs = [REFERENCE] * len(rows), [""] * len(rows)
        if comparison is not None:
            mine = comparison[comparison["dataset"] == dataset]
            for row in mine.itertuples(index=False):
                own = row.compared_with == "own row"
                kind = "beside its own row" if own else "not in the paper"
                labels.append(
                    f"kit: {network_name(row.arch)}\n{protocol_name(row.protocol)}, {kind}"
                )
                means.append(row.ours_mean)
                sds.append(0.0 if np.isnan(row.ours_std) else row.ours_std)
                colours.append(protocol_colour(row.protocol))
                runs.append(row.arch)
        y = np.arange(len(labels))
        bars = ax.barh(y, means, xerr=sds, color=colours, edgecolor=INK, linewidth=0.4,
                       ecolor=INK, capsize=2)  # fmt: skip
        _hatch_probes(bars, runs)
        for yi, m, s in zip(y, means, sds, strict=True):
            ax.text(m + s + 0.3, yi, f"{m:.1f}", va="center", fontsize=7)
        best = rows[f"{metric}_mean"].max()
        ax.axvline(
            best,
            color=REFERENCE_LINE,
            linestyle="--",
            linewidth=1,
            label=f"paper's best: {best:.1f} %",
        )
        ax.set_yticks(y, labels, fontsize=7)
        ax.invert_yaxis()
        low = min(m - s for m, s in zip(means, sds, strict=True))
        ax.set_xlim(max(0.0, 5 * np.floor((low - 2) / 5)), 103)
        ax.set_xlabel(f"{metric}, % (mean ± SD over test folds)")
        ax.set_title(
            f"{dataset}: the paper's Table 2 ({colour_name(REFERENCE)}) and the kit's runs",
            fontsize=10,
        )
        handles, _ = ax.get_legend_handles_labels()
        if comparison is not None:
            handles = _protocol_legend() + handles
        ax.legend(handles=handles, fontsize=7, loc="lower left")
    figure.tight_layout()
    return figure


def reliability_figure(
    results: str | os.PathLike[str], n_bins: int = 10, *, columns: int = 3
) -> Figure:
    """Reliability diagrams, one panel per run and protocol: the share of COVID slices against
    the mean P(COVID) in ``n_bins`` equal-width bins (test folds pooled; a point's area grows
    with its images, in its protocol's colour, :func:`~ctlib.plots.palette.protocol_colour`;
    the light grey bars are how many images fall in each bin). On the diagonal a network's 0.9
    means COVID nine times in ten; below it, it says COVID more surely than it is right; above
    it, less surely."""
    predictions = collect_predictions(results)
    summary = calibration_frame(results, n_bins)
    summary = summary.sort_values(["dataset", "protocol", "arch"], ascending=[False, True, True])
    n = len(summary)
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.7 * rows), squeeze=False)
    for ax, run in zip(axes.flat, summary.itertuples(), strict=False):
        group = predictions[(predictions["dataset"] == run.dataset)
                            & (predictions["protocol"] == run.protocol)
                            & (predictions["arch"] == run.arch)]  # fmt: skip
        bins = reliability_bins(group["label"], group["prob"], n_bins)
        ax.bar(bins["low"], bins["count"] / len(group), width=1 / n_bins, align="edge",
               color=CONTEXT, label="images in the bin")  # fmt: skip
        ax.plot([0, 1], [0, 1], color=REFERENCE_LINE, linestyle=":", linewidth=1,
                label="calibrated")  # fmt: skip
        full = bins[bins["count"] > 0]
        colour = protocol_colour(run.protocol)
        ax.plot(full["mean_prob"], full["fraction_covid"], color=colour, linewidth=1.2)
        ax.scatter(full["mean_prob"], full["fraction_covid"], color=colour, edgecolors=INK,
                   linewidths=0.3,
                   s=10 + 150 * full["count"] / len(group), zorder=3)  # fmt: skip
        ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
        ax.set_title(f"{run.dataset}, {protocol_name(run.protocol)}\n{network_name(run.arch)}\n"
                     f"ECE {100 * run.ece:.1f} %, Brier {run.brier:.3f}: {run.verdict}",
                     fontsize=7.5)  # fmt: skip
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("mean P(COVID) in the bin", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("share of COVID slices", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6.5, loc="upper left")
    figure.suptitle(f"Reliability of P(COVID): {n_bins} equal-width bins, test folds pooled",
                    fontsize=10)  # fmt: skip
    figure.tight_layout()
    return figure
