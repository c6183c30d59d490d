"""Metrics against scikit-learn, and the bootstrap's behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from ctlib.metrics import (
    binary_metrics,
    bootstrap_ci,
    brier_score,
    calibration,
    confusion_counts,
    expected_calibration_error,
    reliability_bins,
    roc_auc,
    summarize_folds,
)


@pytest.mark.parametrize("seed", range(12))
def test_against_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    y = rng.integers(0, 2, n)
    p = np.clip(y * rng.uniform(0, 1) + rng.normal(0.3, 0.3, n), 0, 1).round(2)  # ties
    threshold = float(rng.choice([0.3, 0.5, 0.7]))
    m = binary_metrics(y, p, threshold)
    yhat = (p >= threshold).astype(int)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, yhat))
    assert m["precision"] == pytest.approx(skm.precision_score(y, yhat, zero_division=0))
    assert m["recall"] == pytest.approx(skm.recall_score(y, yhat, zero_division=0))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - yhat, zero_division=0))
    assert m["f1"] == pytest.approx(skm.f1_score(y, yhat, zero_division=0))
    if 0 < y.sum() < n:
        assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    tn, fp, fn, tp = skm.confusion_matrix(y, yhat, labels=[0, 1]).ravel()
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (tn, fp, fn, tp)


def test_edge_cases() -> None:
    m = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert m["accuracy"] == 1.0 and m["precision"] == 0.0 and m["recall"] == 0.0
    assert np.isnan(m["roc_auc"])
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert confusion_counts([1, 0], [1, 1]) == {"tn": 0, "fp": 1, "fn": 0, "tp": 1}
    with pytest.raises(ValueError, match="0 or 1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="one length"):
        binary_metrics([0, 1], [0.1])


def test_summarize_folds_mean_std() -> None:
    folds = pd.DataFrame({"accuracy": [0.9, 0.8, 1.0], "f1": [0.5, 0.5, 0.5]})
    s = summarize_folds(folds, ["accuracy", "f1"])
    assert s.loc["accuracy", "mean"] == pytest.approx(0.9)
    assert s.loc["accuracy", "std"] == pytest.approx(np.std([0.9, 0.8, 1.0], ddof=1))
    assert s.loc["f1", "std"] == 0.0
    with pytest.raises(ValueError, match="missing"):
        summarize_folds(folds, ["recall"])


def test_bootstrap_contains_estimate_and_groups_widen() -> None:
    rng = np.random.default_rng(0)
    # 40 patients x 10 slices; a patient's slices share one outcome (correlated)
    patients = np.repeat(np.arange(40), 10)
    y = np.repeat(rng.integers(0, 2, 40), 10)
    correct = np.repeat(rng.random(40) < 0.8, 10)
    p = np.where(correct, y, 1 - y).astype(float)
    est, lo, hi = bootstrap_ci(y, p, n_boot=500, seed=1)
    est_g, lo_g, hi_g = bootstrap_ci(y, p, groups=patients, n_boot=500, seed=1)
    assert est == est_g and lo <= est <= hi and lo_g <= est_g <= hi_g
    assert (hi_g - lo_g) > 2 * (hi - lo)  # slices are not independent evidence
    assert bootstrap_ci(y, p, n_boot=200, seed=3) == bootstrap_ci(y, p, n_boot=200, seed=3)


def test_calibration_against_hand_computed_values() -> None:
    labels = [0, 0, 1, 1, 1]
    probs = [0.05, 0.35, 0.35, 0.9, 1.0]
    # bins (10, equal width): [0, .1): 0.05 (0 COVID); [.3, .4): 0.35, 0.35 (one COVID);
    # [.9, 1]: 0.9, 1.0 (both COVID; p = 1 falls in the last bin)
    bins = reliability_bins(labels, probs)
    assert bins["count"].tolist() == [1, 0, 0, 2, 0, 0, 0, 0, 0, 2]
    assert bins.loc[3, "mean_prob"] == pytest.approx(0.35)
    assert bins.loc[3, "fraction_covid"] == pytest.approx(0.5)
    assert np.isnan(bins.loc[1, "mean_prob"])
    # ECE = (1 * |0.05 - 0| + 2 * |0.35 - 0.5| + 2 * |0.95 - 1|) / 5 = (0.05 + 0.3 + 0.1) / 5
    assert expected_calibration_error(labels, probs) == pytest.approx(0.09)
    # Brier = (0.05² + 0.35² + 0.65² + 0.1² + 0²) / 5
    assert brier_score(labels, probs) == pytest.approx((0.0025 + 0.1225 + 0.4225 + 0.01) / 5)
    # confidence (0.95 + 0.65 + 0.65 + 0.9 + 1.0) / 5 = 0.83; accuracy 4/5 (0.35 for a COVID
    # slice is wrong): 0.03 is less than one image (0.2): calibrated
    result = calibration(labels, probs)
    assert result["confidence"] == pytest.approx(0.83)
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["verdict"] == "calibrated"
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == 0.0


def test_calibration_verdicts_and_bad_input() -> None:
    sure_and_wrong = calibration([1, 0, 1, 0], [0.99, 0.99, 0.01, 0.01])
    assert sure_and_wrong["verdict"] == "overconfident"
    timid = calibration([1] * 10 + [0] * 10, [0.6] * 10 + [0.4] * 10)
    assert timid["verdict"] == "underconfident"  # always right, only 60 % sure
    assert expected_calibration_error([1] * 10 + [0] * 10, [0.6] * 10 + [0.4] * 10) == (
        pytest.approx(0.4)
    )
    with pytest.raises(ValueError, match="probabilities, not logits"):
        reliability_bins([0, 1], [-2.0, 3.0])
    with pytest.raises(ValueError, match="n_bins must be at least 1"):
        expected_calibration_error([0, 1], [0.2, 0.8], n_bins=0)


@pytest.mark.parametrize(
    "metric", ["accuracy", "precision", "recall", "specificity", "f1", "roc_auc"]
)
def test_the_bootstrap_scores_each_metric_as_binary_metrics_does(metric: str) -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 60)
    probs = np.clip(labels * 0.3 + rng.random(60) * 0.7, 0, 1)
    groups = [f"p{i // 3}" for i in range(60)]

    def reference(y: np.ndarray, p: np.ndarray) -> float:
        return binary_metrics(y, p, 0.4)[metric]

    fast = bootstrap_ci(labels, probs, groups=groups, metric=metric, threshold=0.4, n_boot=200)
    slow = bootstrap_ci(labels, probs, groups=groups, metric=reference, n_boot=200)
    assert fast == pytest.approx(slow, abs=1e-12, nan_ok=True)
