"""Tables from results folders: Table 2 cells, Fig. 9 averages, bootstrap intervals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctlib.metrics import binary_metrics
from ctlib.results import collect_predictions, collect_results
from ctlib.study.tables import markdown_table, mean_confusion, table2, with_confidence


def _write_fold(
    out: Path,
    arch: str,
    fold: int,
    labels: np.ndarray,
    probs: np.ndarray,
    patients: list[str] | None = None,
    finished: bool = True,
) -> dict:
    folder = out / "covid19-ct" / "paper" / arch / f"fold{fold}"
    folder.mkdir(parents=True)
    pd.DataFrame(
        {
            "path": [f"img{i}.png" for i in range(len(labels))],
            "label": labels,
            "prob": probs,
            "fold": fold,
            "patient_id": patients if patients else [pd.NA] * len(labels),
        }
    ).to_csv(folder / "predictions.csv", index=False)
    metrics = binary_metrics(labels, probs)
    if finished:
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return metrics


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for arch in ("resnet18", "densenet201"):
        for fold in range(3):
            labels = rng.integers(0, 2, 40)
            probs = np.clip(labels * 0.6 + rng.uniform(0, 0.5, 40), 0, 1)
            patients = [f"P{i // 4}" for i in range(40)]
            _write_fold(tmp_path, arch, fold, labels, probs, patients)
    _write_fold(tmp_path, "squeezenet", 0, np.array([0, 1]), np.array([0.1, 0.9]), finished=False)
    return tmp_path


def test_collect_skips_unfinished_folds(results_dir: Path) -> None:
    results = collect_results(results_dir)
    assert sorted(results["arch"].unique()) == ["densenet201", "resnet18"]
    assert len(results) == 6 and set(results["fold"]) == {0, 1, 2}
    assert "squeezenet" not in set(collect_predictions(results_dir)["arch"])


def test_table2_cells_are_mean_and_sample_std(results_dir: Path) -> None:
    results = collect_results(results_dir)
    table = table2(results)
    row = results[results["arch"] == "resnet18"]["accuracy"]
    expected = f"{100 * row.mean():.1f} ± {100 * row.std(ddof=1):.1f}"
    assert table.loc[("covid19-ct", "paper", "resnet18"), "accuracy"] == expected
    assert table.loc[("covid19-ct", "paper", "resnet18"), "folds"] == 3
    markdown = markdown_table(table.reset_index())
    assert markdown.splitlines()[0].startswith("| dataset | protocol | arch | accuracy")
    assert expected in markdown


def test_mean_confusion_averages_counts(results_dir: Path) -> None:
    results = collect_results(results_dir)
    matrix = mean_confusion(results)[("covid19-ct", "paper", "densenet201")]
    rows = results[results["arch"] == "densenet201"]
    assert matrix[0, 0] == pytest.approx(rows["tp"].mean())
    assert matrix[1, 1] == pytest.approx(rows["tn"].mean())
    assert matrix.sum() == pytest.approx(40)


def test_confidence_resamples_patients_when_known(results_dir: Path) -> None:
    predictions = collect_predictions(results_dir)
    ci = with_confidence(predictions, n_boot=200)
    row = ci.loc[("covid19-ct", "paper", "resnet18")]
    assert row["resampled"] == "patients"
    assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]


def test_missing_results_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_results(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="No finished fold"):
        collect_results(tmp_path)


def test_results_one_level_deeper_are_named_in_the_error(tmp_path: Path) -> None:
    for point in ("e12", "e24"):
        _write_fold(tmp_path / point, "resnet18", 0, np.array([0, 1]), np.array([0.2, 0.8]))
    with pytest.raises(FileNotFoundError, match="one level deeper") as error:
        collect_results(tmp_path)
    assert str(tmp_path / "e12") in str(error.value) and str(tmp_path / "e24") in str(error.value)
    assert len(collect_results(tmp_path / "e24")) == 1


def test_a_fold_whose_metric_is_nan_is_not_averaged_silently() -> None:
    """Issue 30: a NaN fold was left out of the mean while the row still counted it."""
    rows = pd.DataFrame(
        {
            "dataset": "d",
            "protocol": "paper",
            "arch": "a",
            "fold": [0, 1, 2],
            "accuracy": [0.8, 0.9, 1.0],
            "precision": [0.5, np.nan, 0.7],
            "recall": [np.nan, np.nan, np.nan],
        }
    )
    table = table2(rows, ["accuracy", "precision", "recall"])
    assert table["accuracy"].iloc[0] == "90.0 ± 10.0"
    assert table["precision"].iloc[0] == "60.0 ± 14.1 (2 of 3 folds)"
    assert table["recall"].iloc[0] == "n/a" and table["folds"].iloc[0] == 3
