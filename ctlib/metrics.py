"""Metrics: pure functions of labels and probabilities (COVID = 1 is the positive class).

The paper (Sec. 4.1) reports accuracy, precision, recall (sensitivity), specificity and
F1, averaged over the five test folds as mean ± standard deviation. ctlib adds ROC-AUC,
the confusion matrix, calibration (expected calibration error, Brier score, reliability
bins), and bootstrap confidence intervals that resample *patients* where
patients are known -- slices of one patient are not independent evidence.

Conventions: a prediction is positive when ``prob >= threshold`` (0.5 by default); a
ratio whose denominator is zero (e.g. precision with no positive prediction) is 0.0,
as scikit-learn's ``zero_division=0``; the standard deviation over folds is the sample
standard deviation (``ddof=1``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "METRICS",
    "PAPER_METRICS",
    "binary_cross_entropy",
    "binary_metrics",
    "bootstrap_ci",
    "brier_score",
    "calibration",
    "confusion_counts",
    "expected_calibration_error",
    "reliability_bins",
    "roc_auc",
    "summarize_folds",
]

METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
#: The five the paper's Table 2 reports (its *sensitivity* is ``recall``).
PAPER_METRICS = ("accuracy", "precision", "recall", "specificity", "f1")


def _as_arrays(
    labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(
            f"labels and probs must be 1-D of one length, got {y.shape} and {p.shape}."
        )
    if len(y) == 0:
        raise ValueError("No predictions to score.")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(
            f"labels must be 0 or 1 (1 = COVID), got values {sorted(set(y.tolist()))[:5]}."
        )
    if np.isnan(p).any():
        raise ValueError("probs contain NaN; the model's output is broken.")
    return y.astype(np.int64), p


def confusion_counts(
    labels: Sequence[int] | np.ndarray, preds: Sequence[int] | np.ndarray
) -> dict[str, int]:
    """``tn, fp, fn, tp`` for binary labels and predictions (1 = COVID), from scikit-learn's
    ``confusion_matrix`` with both classes fixed (so a fold without one class still counts)."""
    # lazy: scikit-learn (joblib, cloudpickle) is slow to import; training needs none of it
    from sklearn.metrics import confusion_matrix

    y = np.asarray(labels).astype(np.int64)
    yhat = np.asarray(preds).astype(np.int64)
    tn, fp, fn, tp = confusion_matrix(y, yhat, labels=[0, 1]).ravel()
    return {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}


def roc_auc(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``); NaN for a single class."""
    y, p = _as_arrays(labels, probs)
    if y.min() == y.max():
        return float("nan")
    # lazy: scikit-learn (joblib, cloudpickle) is slow to import; training needs none of it
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else 0.0


def binary_cross_entropy(
    labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray, eps: float = 1e-7
) -> float:
    """Mean binary cross-entropy of predicted probabilities, each clipped to ``[eps, 1 - eps]``
    (the paper's loss, Sec. 4, here on a validation set's predictions)."""
    y, p = _as_arrays(labels, probs)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def binary_metrics(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
) -> dict[str, float]:
    """The paper's metrics plus ROC-AUC and the confusion counts.

    Args:
        labels: 1 = COVID, 0 = non-COVID.
        probs: predicted probability of COVID.
        threshold: a prediction is COVID when ``prob >= threshold``.

    Returns:
        ``accuracy, precision, recall, specificity, f1, roc_auc`` (fractions, not %),
        ``tn, fp, fn, tp``, ``n`` and ``threshold``.
    """
    y, p = _as_arrays(labels, probs)
    c = confusion_counts(y, (p >= threshold).astype(np.int64))
    precision = _ratio(c["tp"], c["tp"] + c["fp"])
    recall = _ratio(c["tp"], c["tp"] + c["fn"])
    return {
        "accuracy": _ratio(c["tp"] + c["tn"], len(y)),
        "precision": precision,
        "recall": recall,
        "specificity": _ratio(c["tn"], c["tn"] + c["fp"]),
        "f1": _ratio(2 * precision * recall, precision + recall),
        "roc_auc": roc_auc(y, p),
        **{k: float(v) for k, v in c.items()},
        "n": float(len(y)),
        "threshold": float(threshold),
    }


def brier_score(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> float:
    """Mean squared difference between P(COVID) and the label: 0 is perfect, 0.25 is what
    always saying 0.5 scores."""
    y, p = _as_arrays(labels, probs)
    return float(np.mean((p - y) ** 2))


def reliability_bins(
    labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray, n_bins: int = 10
) -> pd.DataFrame:
    """P(COVID) in ``n_bins`` equal-width bins on [0, 1]: per bin its edges, the number of
    images, their mean P(COVID) and the share of them that are COVID (the reliability
    diagram's points). Bin ``b`` holds ``b/n <= p < (b+1)/n``; the last also holds p = 1.
    Empty bins are kept, with count 0 and NaN means."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}.")
    y, p = _as_arrays(labels, probs)
    if p.min() < 0 or p.max() > 1:
        raise ValueError("probs must lie in [0, 1]: pass probabilities, not logits.")
    index = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(index, weights=p, minlength=n_bins) / count
        positive = np.bincount(index, weights=y, minlength=n_bins) / count
    edges = np.arange(n_bins + 1) / n_bins
    return pd.DataFrame(
        {"low": edges[:-1], "high": edges[1:], "count": count, "mean_prob": mean_prob,
         "fraction_covid": positive}
    )  # fmt: skip


def expected_calibration_error(
    labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray, n_bins: int = 10
) -> float:
    """Expected calibration error of P(COVID) over ``n_bins`` equal-width bins:

        ECE = sum over bins b of (n_b / N) * | mean P(COVID) in b - share of COVID in b |

    0 means that among the images given P(COVID) near 0.9, nine in ten are COVID (in every
    bin); it is a fraction (0.05 = 5 points), and it depends on the bins (10 here, as usual).
    """
    bins = reliability_bins(labels, probs, n_bins)
    full = bins[bins["count"] > 0]
    gap = (full["mean_prob"] - full["fraction_covid"]).abs()
    return float((full["count"] * gap).sum() / full["count"].sum())


def calibration(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    threshold: float = 0.5,
    n_bins: int = 10,
) -> dict[str, float | str]:
    """ECE, Brier score, and whether the network is over- or under-confident.

    Confidence is the probability of the class a prediction names (``max(p, 1 - p)``);
    a network is *overconfident* when its mean confidence exceeds its accuracy (at
    ``threshold``) by more than one image's worth, *underconfident* when it falls short by as
    much, else *calibrated*.

    Returns:
        ``ece``, ``brier``, ``confidence`` (mean), ``accuracy``, ``n`` and ``verdict``.
    """
    y, p = _as_arrays(labels, probs)
    confidence = float(np.mean(np.maximum(p, 1 - p)))
    accuracy = float(np.mean((p >= threshold) == (y == 1)))
    gap = confidence - accuracy
    verdict = (
        "overconfident" if gap > 1 / len(y) else "underconfident" if gap < -1 / len(y) else
        "calibrated"
    )  # fmt: skip
    return {
        "ece": expected_calibration_error(y, p, n_bins),
        "brier": brier_score(y, p),
        "confidence": confidence,
        "accuracy": accuracy,
        "n": float(len(y)),
        "verdict": verdict,
    }


def summarize_folds(per_fold: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and sample standard deviation over folds, one row per metric.

    Args:
        per_fold: one row per fold with the metric columns.
        metrics: which columns to summarise.
    """
    missing = [m for m in metrics if m not in per_fold]
    if missing:
        raise ValueError(f"Columns {missing} missing from the per-fold table.")
    table = per_fold[list(metrics)].astype(float)
    return pd.DataFrame({"mean": table.mean(), "std": table.std(ddof=1), "folds": table.count()})


def _one_metric(name: str, threshold: float) -> Callable[[np.ndarray, np.ndarray], float]:
    """One of :data:`METRICS` as a function of (labels, probs), computed alone (a bootstrap
    calls it thousands of times); equal to ``binary_metrics(...)[name]``."""
    if name == "roc_auc":
        return roc_auc

    def score(y: np.ndarray, p: np.ndarray) -> float:
        predicted = p >= threshold
        tp = float(np.sum(predicted & (y == 1)))
        fp = float(np.sum(predicted & (y == 0)))
        fn = float(np.sum(~predicted & (y == 1)))
        tn = float(np.sum(~predicted & (y == 0)))
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        return {
            "accuracy": lambda: _ratio(tp + tn, len(y)),
            "precision": lambda: precision,
            "recall": lambda: recall,
            "specificity": lambda: _ratio(tn, tn + fp),
            "f1": lambda: _ratio(2 * precision * recall, precision + recall),
        }[name]()

    return score


def bootstrap_ci(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    *,
    groups: Sequence[object] | np.ndarray | None = None,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "accuracy",
    threshold: float = 0.5,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap confidence interval of a metric.

    Where ``groups`` (patient IDs) are given, whole groups are resampled with
    replacement (a cluster bootstrap): slices of one patient are correlated, and
    resampling slices would give intervals that are too narrow.

    Returns:
        ``(estimate, low, high)``: the metric on all data and the interval bounds.
    """
    y, p = _as_arrays(labels, probs)
    if callable(metric):
        score = metric
    else:
        if metric not in METRICS:
            raise ValueError(f"Unknown metric {metric!r}; choose from {METRICS}.")
        score = _one_metric(metric, threshold)

    rng = np.random.default_rng(seed)
    if groups is None:
        members = [np.array([i]) for i in range(len(y))]
    else:
        codes, _ = pd.factorize(pd.Series(list(groups)))
        if len(codes) != len(y):
            raise ValueError("groups must have one entry per prediction.")
        members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    estimates = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, len(members), size=len(members))
        index = np.concatenate([members[g] for g in pick])
        estimates[b] = score(y[index], p[index])
    alpha = (1.0 - level) / 2.0
    low, high = np.nanquantile(estimates, [alpha, 1.0 - alpha])
    return float(score(y, p)), float(low), float(high)
