"""Beyond the paper: external validation and calibration, as tables read from results on disk.

* :func:`external_table` -- each network trained on all of one data set and tested on all of
  the other (``results/<train set>/external-<test set>/<run>/``), beside the same recipe's
  cross-validation on each set;
* :func:`calibration_table` -- per run and protocol: expected calibration error, Brier score,
  and whether the network is over- or under-confident (:func:`ctlib.metrics.calibration`);
* :func:`faithfulness_table` -- the CAMs' ROAD scores on real test images
  (``results/explain/road_*.csv``, :func:`ctlib.explain.faithfulness.faithfulness`);
* :func:`pointing_road_table` -- on the synthetic set, where the lesions are known, each CAM's
  pointing game beside its ROAD (``results/explain/cam_scores_*.csv`` written with
  ``benchmarks/score_cams.py --road``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ctlib.metrics import bootstrap_ci, calibration
from ctlib.results import RESULT_KEYS, collect_predictions, collect_results
from ctlib.study.tables import cam_scores_per_method, mean_std, network_name, protocol_name

__all__ = [
    "calibration_frame",
    "calibration_table",
    "cam_scores_over_seeds",
    "external_frame",
    "external_table",
    "faithfulness_table",
    "pointing_road_table",
]


def _with_thresholds(results: str | os.PathLike[str]) -> pd.DataFrame:
    """Every finished fold's predictions with the fold's threshold (``metrics.json``)."""
    predictions = collect_predictions(results)
    folds = collect_results(results)[[*RESULT_KEYS, "fold", "threshold"]]
    return predictions.merge(folds, on=[*RESULT_KEYS, "fold"], how="left")


def calibration_frame(results: str | os.PathLike[str], n_bins: int = 10) -> pd.DataFrame:
    """Per run (data set, protocol, network): the calibration of its test predictions, pooled
    over folds (:func:`ctlib.metrics.calibration`; each fold's own threshold decides its
    accuracy), as fractions, with the run's recipe."""
    predictions = _with_thresholds(results)
    recipes = collect_results(results).groupby(RESULT_KEYS)["recipe"].first()
    rows = []
    for keys, group in predictions.groupby(RESULT_KEYS, sort=True):
        right = (group["prob"] >= group["threshold"]) == (group["label"] == 1)
        result = calibration(group["label"], group["prob"], n_bins=n_bins)
        # the accuracy and the verdict at each fold's own threshold (official: tuned on val)
        result["accuracy"] = float(right.mean())
        gap = result["confidence"] - result["accuracy"]
        one = 1 / len(group)
        result["verdict"] = (
            "overconfident" if gap > one else "underconfident" if gap < -one else "calibrated"
        )
        rows.append({**dict(zip(RESULT_KEYS, keys, strict=True)), **result,
                     "folds": group["fold"].nunique(), "recipe": recipes.loc[keys]})  # fmt: skip
    return pd.DataFrame(rows)


def calibration_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    """:func:`calibration_frame` for reading: ECE and mean confidence in %, the Brier score."""
    frame = calibration_frame(results)
    return pd.DataFrame(
        {
            "data set": frame["dataset"],
            "protocol": frame["protocol"].map(protocol_name),
            "network": frame["arch"].map(network_name),
            "images": frame["n"].astype(int),
            "ECE, %": (100 * frame["ece"]).round(1),
            "Brier": frame["brier"].map(lambda b: f"{b:.3f}"),
            "mean confidence, %": (100 * frame["confidence"]).round(1),
            "accuracy, %": (100 * frame["accuracy"]).round(1),
            "verdict": frame["verdict"],
        }
    )


def external_frame(
    results: str | os.PathLike[str], n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per external run: its test metrics with a bootstrap 95 % interval of accuracy
    (patients resampled where the test set knows them, images otherwise), and the accuracy
    of the same network's image-level cross-validation on the training set and on the test
    set (mean over folds, with the recipes, so a reader sees whether they agree).

    Raises:
        FileNotFoundError: ``results`` holds no external run.
    """
    finished = collect_results(results)
    external = finished[finished["protocol"].str.startswith("external-")]
    if external.empty:
        raise FileNotFoundError(
            f"No external run (<train set>/external-<test set>/<run>/fold0) under "
            f"{str(results)!r}; run `python -m ctlib cv --protocol external --test-dataset NAME`."
        )
    predictions = collect_predictions(results)
    rows = []
    for _, run in external.iterrows():
        test_set = run["protocol"].removeprefix("external-")
        keys = (run["dataset"], run["protocol"], run["arch"])
        pooled = predictions.set_index(RESULT_KEYS).loc[[keys]]
        patients = pooled["patient_id"].notna().all()
        _, low, high = bootstrap_ci(
            pooled["label"],
            pooled["prob"],
            groups=pooled["patient_id"] if patients else None,
            threshold=float(run["threshold"]),
            n_boot=n_boot,
            seed=seed,
        )
        rows.append(
            {
                "train": run["dataset"],
                "test": test_set,
                "arch": run["arch"],
                **{m: run[m] for m in ("accuracy", "recall", "specificity", "roc_auc", "n")},
                "ci_low": low,
                "ci_high": high,
                "resampled": "patients" if patients else "images",
                "recipe": run["recipe"],
                **_in_distribution(finished, run["dataset"], run["arch"], "train"),
                **_in_distribution(finished, test_set, run["arch"], "test"),
                "cpu_minutes": run["train_seconds"] / 60,
            }
        )
    return pd.DataFrame(rows)


def _in_distribution(finished: pd.DataFrame, dataset: str, arch: str, side: str) -> dict:
    """The image-level CV of ``arch`` on ``dataset``: accuracy over folds and its recipe."""
    runs = finished[
        (finished["dataset"] == dataset)
        & (finished["protocol"] == "paper")
        & (finished["arch"] == arch)
    ]
    return {
        f"{side}_cv_accuracy": runs["accuracy"] if not runs.empty else pd.Series(dtype=float),
        f"{side}_cv_recipe": runs["recipe"].iloc[0] if not runs.empty else "",
    }


def external_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    """:func:`external_frame` for reading, in %: the external accuracy with its interval, beside
    each set's own cross-validation (mean ± std over folds; ``–`` where there is none)."""
    frame = external_frame(results)
    return pd.DataFrame(
        {
            "trained on (all of it)": frame["train"],
            "tested on (all of it)": frame["test"],
            "network": frame["arch"].map(network_name),
            "images": frame["n"].astype(int),
            "accuracy, % (95 % CI)": [
                f"{100 * a:.1f} ({100 * lo:.1f}–{100 * hi:.1f}, {how})"
                for a, lo, hi, how in zip(
                    frame["accuracy"],
                    frame["ci_low"],
                    frame["ci_high"],
                    frame["resampled"],
                    strict=True,
                )  # fmt: skip
            ],
            "sensitivity, %": (100 * frame["recall"]).round(1),
            "specificity, %": (100 * frame["specificity"]).round(1),
            "ROC-AUC": frame["roc_auc"].round(3),
            "CV on the training set, %": [mean_std(s) or "–" for s in frame["train_cv_accuracy"]],
            "CV on the test set, %": [mean_std(s) or "–" for s in frame["test_cv_accuracy"]],
            "recipe": frame["recipe"],
            "CPU min": frame["cpu_minutes"].map(lambda m: f"{m:.0f}" if np.isfinite(m) else ""),
        }
    )


def faithfulness_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    """``results/explain/road_*.csv`` (``python -m ctlib road``) as one table: per data set
    and map, the mean ROAD score (higher: the map's top pixels are the ones the prediction
    needs; about 0 for a random ranking), removal of the most and of the least relevant
    pixels first, and the confidence change under the map, as changes in P(explained class)
    in percentage points, with the network's fold, test accuracy and recipe.

    Raises:
        FileNotFoundError: no ROAD file under ``results/explain``.
    """
    files = sorted(Path(results).glob("explain/road_*.csv"))
    if not files:
        raise FileNotFoundError(
            f"No ROAD scores (explain/road_*.csv) under {str(results)!r}; run "
            "`python -m ctlib road RUNS --dataset NAME --fold 1`."
        )
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    rows = []
    keys = ["dataset", "protocol", "run", "fold"]
    for (dataset, protocol, run, fold), group in frame.groupby(keys, sort=False):
        for name, scores in group.groupby("map", sort=False):
            rows.append(
                {
                    "data set": dataset,
                    "network": f"{network_name(run)}, {protocol_name(protocol)}, fold {fold}",
                    "map": name,
                    "ROAD (higher: faithful)": f"{100 * scores['road'].mean():.1f}",
                    "most relevant removed": f"{100 * scores['morf'].mean():.1f}",
                    "least relevant removed": f"{100 * scores['lerf'].mean():.1f}",
                    "input × map": f"{100 * scores['mult_change'].mean():.1f}",
                    "images": scores["path"].nunique(),
                    "thresholds, %": str(scores["percentiles"].iloc[0]).replace(" ", "/"),
                    "test accuracy, %": f"{100 * scores['test_accuracy'].iloc[0]:.1f}",
                    "recipe": scores["recipe"].iloc[0],
                }
            )
    return pd.DataFrame(rows)


def cam_scores_over_seeds(*folders: str | os.PathLike[str]) -> pd.DataFrame:
    """The CAM scores (``cam_scores_*.csv``, ``benchmarks/score_cams.py``) of networks of one
    recipe trained with different seeds, from each folder in turn (a results folder's
    ``explain/``, or a score run's ``--out``); a seed already read is not read again.

    Raises:
        FileNotFoundError: no scores in any of the folders.
    """
    frames: list[pd.DataFrame] = []
    seen: set = set()
    for folder in folders:
        for file in sorted(Path(folder).glob("cam_scores_*.csv")):
            frame = pd.read_csv(file)
            frame = frame[~frame["seed"].isin(seen)]
            seen |= set(frame["seed"])
            frames.append(frame.assign(source=str(folder)))
    if not frames:
        raise FileNotFoundError(f"No CAM scores (cam_scores_*.csv) in {[str(f) for f in folders]}.")
    return pd.concat(frames, ignore_index=True)


def pointing_road_table(results: str | os.PathLike[str]) -> pd.DataFrame:
    """Points at the lesion, or depends on it? Per CAM method on the synthetic set: the
    pointing game beside ROAD (points of P(explained class)), ROAD split by whether the
    method's peak hits a lesion, and the ROAD of the two maps that explain nothing; mean ±
    std over the networks trained with different seeds. Read from the
    ``results/explain/cam_scores_*.csv`` files that hold ROAD columns
    (``benchmarks/score_cams.py --road --results results``).

    Raises:
        FileNotFoundError: no CAM-score file with ROAD columns under ``results/explain``.
    """
    files = [f for f in sorted(Path(results).glob("explain/cam_scores_*.csv"))
             if "road" in pd.read_csv(f, nrows=0).columns]  # fmt: skip
    if not files:
        raise FileNotFoundError(
            f"No CAM scores with ROAD under {str(results)!r}/explain; run "
            "benchmarks/score_cams.py --road --results results."
        )
    shown = {
        "pointing game, %": "pointing_game",
        "ROAD": "road",
        "ROAD where it points at a lesion": "road_hit",
        "ROAD where it misses": "road_miss",
        "ROAD, random map": "road_random_map",
        "ROAD, randomised network": "road_random_network",
    }
    return cam_scores_per_method(files, {k: (v, 100.0, 1) for k, v in shown.items()})
