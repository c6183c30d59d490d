"""The GPU sweep's scheduler and cost estimate, exercised on CPU slots."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ctlib.cli import main
from ctlib.cv import fold_dir
from ctlib.data import load_dataset
from ctlib.sweep import Task, estimate_cost, plan_tasks, run_sweep


def _finish(out: Path, dataset: str, run: str, fold: int) -> None:
    folder = fold_dir(out, dataset, "paper", run, fold)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")


def test_plan_skips_finished_cells_and_unknown_archs_fail(tmp_path: Path) -> None:
    _finish(tmp_path, "covid19-ct", "resnet18", 1)
    _finish(tmp_path, "covid19-ct", "resnet18-scratch", 2)
    todo, done = plan_tasks(["covid19-ct"], ["resnet18"], 3, tmp_path)
    assert done == [Task("covid19-ct", "resnet18", 1)]
    assert [t.fold for t in todo] == [0, 2]
    todo, done = plan_tasks(["covid19-ct"], ["resnet18"], 3, tmp_path, run_suffix="-scratch")
    assert [t.fold for t in done] == [2]
    with pytest.raises(ValueError, match="resnet181"):
        plan_tasks(["covid19-ct"], ["resnet181"], 3, tmp_path)


def test_cost_estimate_arithmetic(tmp_path: Path) -> None:
    costs = tmp_path / "costs.csv"
    pd.DataFrame(
        {
            "arch": ["resnet18"],
            "canvas": ["349x253"],
            "cpu_ms_per_image": [100.0],
            "gflops_forward": [2.0],
        }
    ).to_csv(costs, index=False)
    tasks = [Task("covid19-ct", "resnet18", k) for k in range(5)]
    cost = estimate_cost(tasks, epochs=10, n_folds=5, gpu_tflops=10.0, costs=costs)
    images = 5 * 746 * 4 / 5 * 10  # five folds, 4/5 of 746 images, 10 epochs
    assert cost.loc["resnet18", "images_trained"] == int(images)
    assert cost.loc["resnet18", "cpu_hours"] == pytest.approx(images * 0.1 / 3600)
    assert cost.loc["resnet18", "gpu_hours_estimate"] == pytest.approx(images * 6e9 / 1e13 / 3600)
    assert cost.loc["total", "cells"] == 5


def test_shipped_costs_cover_the_papers_twelve() -> None:
    from ctlib.models import list_models
    from ctlib.sweep import COSTS_FILE

    table = pd.read_csv(COSTS_FILE)
    assert set(list_models(paper=True)) <= set(table["arch"])
    assert (table["cpu_ms_per_image"] > 0).all() and (table["gflops_forward"] > 0).all()
    # counted FLOPs follow the networks' size: ResNet101 costs more than ResNet18
    flops = table.set_index("arch")["gflops_forward"]
    assert flops["resnet101"] > 2 * flops["resnet18"]


def test_sweep_runs_cells_on_two_slots_then_skips_them(tmp_path: Path, capsys) -> None:
    load_dataset("synthetic", progress=False)  # generate once, before two processes need it
    out = tmp_path / "runs"
    tasks = [Task("synthetic", "shufflenet", k) for k in (0, 1)] + [Task("synthetic", "nosuch", 0)]
    cv_args = ["--epochs", "1", "--batch-size", "8", "--canvas", "64", "48", "--no-pretrained"]
    status = run_sweep(tasks, ["cpu", "cpu"], out, cv_args, n_folds=2, poll_s=0.2)
    assert status["synthetic-shufflenet-fold0"] == 0 and status["synthetic-shufflenet-fold1"] == 0
    assert status["synthetic-nosuch-fold0"] != 0  # a bad cell fails alone, with a log
    assert "nosuch" in (out / "logs" / "synthetic-nosuch-fold0.log").read_text()
    for k in (0, 1):
        metrics = json.loads(
            (
                fold_dir(out, "synthetic", "paper", "shufflenet-scratch", k) / "metrics.json"
            ).read_text()
        )
        assert 0 <= metrics["accuracy"] <= 1
    capsys.readouterr()
    assert (
        main(
            [
                "sweep",
                "--datasets",
                "synthetic",
                "--archs",
                "shufflenet",
                "--folds",
                "2",
                "--out",
                str(out),
                "--no-pretrained",
                "--slots",
                "cpu",
            ]
        )
        == 0
    )
    assert "0 cells to run, 2 finished already" in capsys.readouterr().out
