"""Tables and figures from results folders: the paper's Table 2 and Fig. 9 layouts.

Everything here reads what :mod:`ctlib.cv` wrote (``metrics.json`` and
``predictions.csv`` per fold); no model is needed, so a notebook can show every number
without retraining.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ctlib.metrics import METRICS, bootstrap_ci

__all__ = [
    "TABLE2_METRICS",
    "collect_predictions",
    "collect_results",
    "confusion_figure",
    "mean_confusion",
    "table2",
    "table2_markdown",
]

TABLE2_METRICS = ("accuracy", "precision", "recall", "specificity", "f1")
_KEYS = ["dataset", "protocol", "arch"]


def collect_results(out: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per finished fold found under ``out`` (``<dataset>/<protocol>/<arch>/fold<k>``).

    Raises:
        FileNotFoundError: ``out`` does not exist or holds no finished fold.
    """
    base = Path(out)
    if not base.is_dir():
        raise FileNotFoundError(f"Results folder {str(base)!r} does not exist; run "
                                "`python -m ctlib cv ... --out` first.")
    rows = []
    for path in sorted(base.glob("*/*/*/fold*/metrics.json")):
        dataset, protocol, arch, fold = path.parts[-5:-1]
        metrics = json.loads(path.read_text())
        rows.append({"dataset": dataset, "protocol": protocol, "arch": arch,
                     "fold": int(fold.removeprefix("fold")), **metrics})
    if not rows:
        raise FileNotFoundError(f"No finished fold (fold*/metrics.json) under {str(base)!r}.")
    return pd.DataFrame(rows).sort_values(_KEYS + ["fold"]).reset_index(drop=True)


def collect_predictions(out: str | os.PathLike[str]) -> pd.DataFrame:
    """All per-image predictions under ``out``, with dataset, protocol and arch columns."""
    frames = []
    for path in sorted(Path(out).glob("*/*/*/fold*/predictions.csv")):
        if not (path.parent / "metrics.json").is_file():
            continue
        dataset, protocol, arch, _ = path.parts[-5:-1]
        frames.append(pd.read_csv(path, dtype={"patient_id": "string"}).assign(
            dataset=dataset, protocol=protocol, arch=arch))
    if not frames:
        raise FileNotFoundError(f"No predictions.csv of a finished fold under {str(out)!r}.")
    return pd.concat(frames, ignore_index=True)


def table2(
    results: pd.DataFrame,
    metrics: Sequence[str] = TABLE2_METRICS,
    *,
    percent: bool = True,
    decimals: int = 1,
) -> pd.DataFrame:
    """The paper's Table 2 layout: one row per (data set, protocol, architecture).

    Cells are ``"mean ± std"`` over folds (sample std), in % by default; a ``folds``
    column says how many folds each row averages (the paper: 5).
    """
    scale = 100.0 if percent else 1.0
    grouped = results.groupby(_KEYS, sort=True)
    table = pd.DataFrame(index=grouped.size().index)
    for metric in metrics:
        mean = grouped[metric].mean() * scale
        std = grouped[metric].std(ddof=1).fillna(0.0) * scale
        table[metric] = [f"{m:.{decimals}f} ± {s:.{decimals}f}" for m, s in zip(mean, std, strict=True)]
    table["folds"] = grouped.size()
    return table


def table2_numbers(results: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and std per (data set, protocol, architecture) as numbers (columns ``<m>_mean``...)."""
    grouped = results.groupby(_KEYS, sort=True)[list(metrics)]
    mean = grouped.mean().add_suffix("_mean")
    std = grouped.std(ddof=1).add_suffix("_std")
    return pd.concat([mean, std], axis=1)


def table2_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of :func:`table2`'s output (no extra dependency)."""
    frame = table.reset_index()
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def with_confidence(predictions: pd.DataFrame, metric: str = "accuracy", n_boot: int = 2000,
                    seed: int = 0) -> pd.DataFrame:
    """Pooled test predictions per run with a bootstrap 95 % interval.

    Patients are resampled where every prediction has a patient ID, images otherwise.
    """
    rows = []
    for keys, group in predictions.groupby(_KEYS, sort=True):
        groups = group["patient_id"] if group["patient_id"].notna().all() else None
        est, low, high = bootstrap_ci(group["label"], group["prob"], groups=groups, metric=metric,
                                      n_boot=n_boot, seed=seed)
        rows.append({**dict(zip(_KEYS, keys, strict=True)), metric: est, "ci_low": low,
                     "ci_high": high, "resampled": "patients" if groups is not None else "images"})
    return pd.DataFrame(rows).set_index(_KEYS)


def mean_confusion(results: pd.DataFrame) -> dict[tuple[str, str, str], np.ndarray]:
    """Fig. 9: per run, the confusion matrix of average counts over folds.

    Rows are the true class and columns the predicted class, ordered (COVID, non-COVID)
    as in the paper's figure.
    """
    out = {}
    for keys, group in results.groupby(_KEYS, sort=True):
        tp, fn, fp, tn = (group[c].mean() for c in ("tp", "fn", "fp", "tn"))
        out[keys] = np.array([[tp, fn], [fp, tn]])
    return out


def confusion_figure(results: pd.DataFrame, *, columns: int = 4) -> Figure:
    """Fig. 9 layout: one heat-mapped confusion matrix (average counts over folds) per run."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    matrices = mean_confusion(results)
    n = len(matrices)
    columns = min(columns, n)
    rows = int(np.ceil(n / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    names = ["COVID", "non-COVID"]
    for ax, ((dataset, protocol, arch), matrix) in zip(axes.flat, matrices.items(), strict=False):
        sns.heatmap(matrix, annot=True, fmt=".1f", cmap="Blues", cbar=False, ax=ax,
                    xticklabels=names, yticklabels=names, square=True)
        ax.set_title(f"{arch}\n{dataset}, {protocol}", fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    figure.suptitle("Confusion matrices, average counts over test folds", fontsize=10)
    figure.tight_layout()
    return figure
