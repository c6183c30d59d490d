"""The Table 2 sweep: its plan and cost, the local executor on CPU slots (a killed cell
retried and resumed, a cell over its time limit, Ctrl-C), the SLURM job array as far as it
goes without a cluster (a fake ``sbatch`` on PATH; submitit's own requeue machinery run
locally), and the data check before any cell starts."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import submitit

from ctlib.cli import build_parser, main
from ctlib.cv import fold_dir
from ctlib.data import load_dataset
from ctlib.ops import sweep
from ctlib.ops.sweep import Grid, Task, estimate_cost, plan_tasks, process, slurm

TINY = ["--batch-size", "8", "--canvas", "64", "48", "--no-pretrained"]
_CV = build_parser()._subparsers._group_actions[0].choices["cv"]  # noqa: SLF001
# a checkpoint every epoch, so a killed cell has something to resume from (if cv offers it)
CHECKPOINT_EVERY = ["--checkpoint-every", "1"] if "--checkpoint-every" in _CV.format_help() else []
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two cells on a 2-core machine


def _finish(out: Path, dataset: str, run: str, fold: int) -> None:
    folder = fold_dir(out, dataset, "paper", run, fold)
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text("{}")


def _history(path: Path) -> list[dict]:
    try:
        return json.loads(path.read_text() or "[]")
    except (OSError, ValueError):
        return []


def _wait_for(condition, what: str, timeout_s: float = 300.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _sessions_alive(sessions: set[int]) -> list[int]:
    """Processes (their pids) whose session is one of ``sessions`` (a cell and its children)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) in sessions:
            alive.append(int(stat.parent.name))
    return alive


@pytest.fixture(scope="module")
def synthetic_ready() -> None:
    load_dataset("synthetic", progress=False)  # generated once, before cells need it


# ----------------------------------------------------------------------- plan and cost
def test_plan_skips_finished_cells_and_unknown_names_fail(tmp_path: Path) -> None:
    _finish(tmp_path, "covid19-ct", "resnet18", 1)
    _finish(tmp_path, "covid19-ct", "resnet18-scratch", 2)
    todo, done = plan_tasks(["covid19-ct"], ["resnet18"], 3, tmp_path)
    assert done == [Task("covid19-ct", "resnet18", 1)]
    assert [t.fold for t in todo] == [0, 2]
    todo, done = plan_tasks(["covid19-ct"], ["resnet18"], 3, tmp_path, run_suffix="-scratch")
    assert [t.fold for t in done] == [2]
    with pytest.raises(ValueError, match="resnet181"):
        plan_tasks(["covid19-ct"], ["resnet181"], 3, tmp_path)
    with pytest.raises(ValueError, match="covid19-c"):
        plan_tasks(["covid19-c"], ["resnet18"], 3, tmp_path)


def test_cost_estimate_arithmetic_guessed_and_measured(tmp_path: Path) -> None:
    from ctlib.ops.sweep.cost import ASSUMPTIONS, CARDS, overhead_hours, seconds_per_image

    costs = tmp_path / "costs.csv"
    pd.DataFrame(
        {
            "arch": ["resnet18", "squeezenet"],
            "canvas": ["349x253", "349x253"],
            "cpu_ms_per_image": [100.0, 50.0],
            "gflops_forward": [2.0, 0.001],
            "params_m": [10.0, 1.0],
            "leaf_modules": [50, 100],
        }
    ).to_csv(costs, index=False)
    tasks = [Task("covid19-ct", a, k) for a in ("resnet18", "squeezenet") for k in range(5)]
    cost = estimate_cost(tasks, epochs=10, n_folds=5, gpu_tflops=10.0, costs=costs)
    images = 5 * 746 * 4 / 5 * 10  # five folds, 4/5 of 746 images, 10 epochs
    assert cost.loc["resnet18", "images_trained"] == int(images)
    assert cost.loc["resnet18", "cpu_hours"] == pytest.approx(images * 0.1 / 3600)
    train = images * 6e9 / 1e13 / 3600  # 3 x forward FLOPs at 10 TFLOP/s
    startup = 5 * 25 / 3600  # five cells, 25 s each
    one_cell = train / 5
    size_gb = 10e6 * 12 / 1e9  # 12 bytes per parameter
    checkpoints = math.floor(one_cell * 60 / 10) + 1
    checkpoint = 5 * (checkpoints * size_gb / 10 + size_gb / 0.5) / 3600
    assert cost.loc["resnet18", "startup_hours"] == pytest.approx(startup)
    assert cost.loc["resnet18", "checkpoint_hours"] == pytest.approx(checkpoint)
    assert cost.loc["resnet18", "gpu_hours_estimate"] == pytest.approx(train + startup + checkpoint)
    assert cost.loc["resnet18", "images_per_s"] == pytest.approx(1e13 / 6e9)
    assert cost.loc["resnet18", "gpu_hours"] == cost.loc["resnet18", "gpu_hours_estimate"]
    assert cost.loc["total", "cells"] == 10 and cost.loc["total", "source"] == "estimate"
    # a tiny network is bound by its kernel launches, not by its FLOPs
    launches = 100 * 3 * 10e-6 / 32
    assert seconds_per_image({"gflops_forward": 0.001, "leaf_modules": 100}, 10.0) == launches
    assert cost.loc["squeezenet", "images_per_s"] == pytest.approx(1 / launches)
    # each card kind at the assumed share of its peak; a faster card costs less
    by_card = [cost.loc["resnet18", f"gpu_hours_{kind}"] for kind in ("T4", "A100", "H100")]
    assert by_card == sorted(by_card, reverse=True)
    h100_train = images * 6e9 / (CARDS["H100"] * ASSUMPTIONS["efficiency"] * 1e12) / 3600
    assert cost.loc["resnet18", "gpu_hours_H100"] == pytest.approx(
        h100_train + startup + sum(overhead_hours(10.0, h100_train / 5)[1:]) * 5, rel=1e-6
    )
    figures = pd.DataFrame({"arch": ["resnet18"], "images_per_s": [1000.0]}).set_index("arch")
    cost = estimate_cost(tasks, epochs=10, n_folds=5, costs=costs, figures=figures)
    measured = images / 1000 / 3600
    assert cost.loc["resnet18", "gpu_hours"] == pytest.approx(
        measured + startup + cost.loc["resnet18", "checkpoint_hours"]
    )
    assert cost.loc["resnet18", "source"] == "measured"
    assert cost.loc["resnet18", "images_per_s"] == pytest.approx(1000.0)
    assert cost.loc["squeezenet", "source"] == "estimate"  # not in the figures
    assert pd.isna(cost.loc["squeezenet", "gpu_hours_measured"])
    assert cost.loc["total", "source"] == "mixed"
    assert cost.loc["total", "gpu_hours"] == pytest.approx(
        cost.loc["resnet18", "gpu_hours"] + cost.loc["squeezenet", "gpu_hours_estimate"]
    )
    with pytest.raises(ValueError, match="Unknown card 'V100'"):
        estimate_cost(tasks, costs=costs, card="V100")
    # a figures row that measured the start-up and the checkpoint's copy replaces the assumptions
    figures["startup_s"], figures["checkpoint_s"] = [90.0], [0.06]
    cost = estimate_cost(tasks, epochs=10, n_folds=5, costs=costs, figures=figures)
    assert cost.loc["resnet18", "startup_hours"] == pytest.approx(5 * 90 / 3600)
    copy_gb_per_s = size_gb / 0.06  # 0.12 GB in 0.06 s
    one_cell = measured / 5
    count = math.floor(one_cell * 60 / 10) + 1
    assert cost.loc["resnet18", "checkpoint_hours"] == pytest.approx(
        5 * (count * size_gb / copy_gb_per_s + size_gb / 0.5) / 3600
    )
    assert cost.loc["squeezenet", "startup_hours"] == pytest.approx(5 * 25 / 3600)  # assumed


def test_shipped_costs_cover_the_papers_twelve() -> None:
    from ctlib.models import list_models
    from ctlib.ops.sweep import COSTS_FILE

    table = pd.read_csv(COSTS_FILE)
    assert set(list_models(paper=True)) <= set(table["arch"])
    assert (table["cpu_ms_per_image"] > 0).all() and (table["gflops_forward"] > 0).all()
    # counted FLOPs follow the networks' size: ResNet101 costs more than ResNet18
    flops = table.set_index("arch")["gflops_forward"]
    assert flops["resnet101"] > 2 * flops["resnet18"]


def test_gpu_figures_are_looked_for_in_order(tmp_path: Path, monkeypatch) -> None:
    given, env = tmp_path / "given.csv", tmp_path / "env.csv"
    for path in (given, env):
        path.write_text("arch,images_per_s\nresnet18,500\nresnet18,800\n")
    monkeypatch.setenv(sweep.GPU_FIGURES_ENV, str(env))
    assert sweep.gpu_figures_path(given) == given
    assert sweep.gpu_figures_path() == env
    assert sweep.read_gpu_figures(env).loc["resnet18", "images_per_s"] == 800  # the last row
    monkeypatch.setenv(sweep.GPU_FIGURES_ENV, str(tmp_path / "none.csv"))
    with pytest.raises(FileNotFoundError, match="CTLIB_GPU_FIGURES"):
        sweep.gpu_figures_path()
    monkeypatch.delenv(sweep.GPU_FIGURES_ENV)
    monkeypatch.setattr(
        "ctlib.ops.sweep.figures._REPO_GPU_FIGURES", tmp_path / "benchmarks" / "gpu_check.csv"
    )
    assert sweep.gpu_figures_path() is None  # no file beside the package: the FLOP guess
    (tmp_path / "bad.csv").write_text("arch,images_per_s\nresnet18,0\n")
    with pytest.raises(ValueError, match="positive"):
        sweep.read_gpu_figures(tmp_path / "bad.csv")


#: The GPU figures' header before peak_reserved_gib, sync_debug and device (old files).
OLD_FIGURE_HEADER = (
    "arch,canvas_width,canvas_height,batch_size,precision,channels_last,data_path,images_per_s,"
    "data_wait_share,optimizer_share,peak_memory_gib,gpu,torch,measured_at"
)


def test_cells_are_packed_by_reserved_memory_and_old_files_by_allocated(tmp_path: Path) -> None:
    columns = ",".join(sweep.GPU_FIGURE_COLUMNS)
    new = tmp_path / "new.csv"
    new.write_text(
        f"{columns}\n"
        "resnet18,349,253,32,bfloat16,True,device,1000,0.1,0.1,3.0,3.5,,,pass,cuda,H100,2.5,2025\n"
        "resnet50,349,253,32,bfloat16,True,device,500,0.1,0.1,6.0,,,,pass,cuda,H100,2.5,2025\n"
        "squeezenet,335,255,32,bfloat16,True,device,900,0.1,0.1,,nan,,,pass,cuda,H100,2.5,2025\n"
    )
    figures = sweep.read_gpu_figures(new)
    # reserved where measured; the allocated peak where not; nothing where neither is known
    assert sweep.packing_memory_gib(figures.to_dict("index")) == {"resnet18": 3.5, "resnet50": 6.0}
    old = tmp_path / "old.csv"
    old.write_text(
        OLD_FIGURE_HEADER
        + "\nresnet18,349,253,32,bf16,True,device,1000,0.1,0.1,3.0,NVIDIA H200,2.5.1,2025\n"
    )
    figures = sweep.read_gpu_figures(old)
    assert "peak_reserved_gib" not in figures
    assert sweep.packing_memory_gib(figures.to_dict("index")) == {"resnet18": 3.0}
    assert sweep.packing_memory_gib({"a": {"peak_reserved_gib": "0"}, "b": {}}) == {}


@pytest.mark.parametrize(
    "row, on_gpu",
    [
        ({"device": "cuda", "gpu": "NVIDIA H100"}, True),
        ({"device": "cuda:1"}, True),
        ({"device": "cpu", "gpu": "NVIDIA H100"}, False),  # the device column decides
        ({"device": "mps", "gpu": "Apple M2"}, False),
        ({"gpu": "CPU x86_64 (2 threads)"}, False),  # an old file: the script's CPU example
        ({"device": float("nan"), "gpu": "NVIDIA H200"}, True),  # an old file: a GPU's row
        ({"device": pd.NA, "gpu": "CPU x86_64 (2 threads)"}, False),
        ({"gpu": "NVIDIA H200"}, True),
    ],
)
def test_only_rows_measured_on_a_cuda_gpu_cost_the_grid(row: dict, on_gpu: bool) -> None:
    assert sweep.measured_on_gpu(row) is on_gpu


def test_cells_share_a_gpu_only_where_their_memory_fits() -> None:
    slots = sweep.local_slots("0,1", per_gpu=2)
    assert [s.label for s in slots] == ["GPU 0 #1", "GPU 0 #2", "GPU 1 #1", "GPU 1 #2"]
    big = [Task("covid19-ct", "resnet101", k) for k in range(2)]
    small = [Task("covid19-ct", "squeezenet", k) for k in range(2)]
    hours = {t: 2.0 for t in big} | {t: 1.0 for t in small}
    memory = {"resnet101": 50.0, "squeezenet": 10.0}
    placed = sweep.schedule_preview(
        big + small, slots[:2], hours, memory_gib=memory, gpu_memory={"0": 80.0}
    )
    start = {task: (slot.label, s, e) for slot, task, s, e in placed}
    # two ResNet101 (100 GiB) never run together on the 80 GiB GPU; the SqueezeNets fit beside
    assert start[big[0]] == ("GPU 0 #1", 0.0, 2.0)
    assert start[small[0]][1] == 0.0 and start[small[1]][1] == 1.0
    assert start[big[1]][1] == 2.0
    for _, task, s, _ in placed:  # at any start, what runs on the GPU fits
        running = [t for _, t, a, b in placed if a <= s < b]
        assert sum(memory[t.arch] for t in running) <= 80.0, task
    # without memory figures the two slots simply take the next cell
    placed = sweep.schedule_preview(big, slots[:2], hours)
    assert [(p[0].label, p[2]) for p in placed] == [("GPU 0 #1", 0.0), ("GPU 0 #2", 0.0)]
    with pytest.raises(ValueError, match="--slots cpu"):
        sweep.local_slots([])


@pytest.mark.parametrize(
    "name",
    [
        "3",
        "GPU-8f3c2d1e-5b6a-4c3d-9e8f-0a1b2c3d4e5f",
        "GPU-8f3c",
        "MIG-6a2b9c1d-3e4f-5a6b-7c8d-9e0f1a2b3c4d",
        "MIG-GPU-8f3c2d1e-5b6a-4c3d-9e8f-0a1b2c3d4e5f/1/0",
    ],
)
def test_gpus_named_as_cuda_visible_devices_names_them_are_slots(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{name},cpu-not-a-gpu")
    assert sweep.visible_gpus()[0] == name
    slots = sweep.local_slots(name, per_gpu=2)
    assert [s.gpu for s in slots] == [name, name] and slots[0].device == "cuda"


@pytest.mark.parametrize("name", ["gpu0", "GPU-xyz", "MIG-", "0,", "cuda:0"])
def test_a_slot_that_names_no_gpu_is_refused_with_the_forms_that_would(name: str) -> None:
    with pytest.raises(ValueError, match="UUID such as GPU-8f3c"):
        sweep.local_slots([name])


# ---------------------------------------------------------------------- data and dry run
def test_the_sweep_refuses_to_start_without_its_data(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture
) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("CTLIB_DATA_DIR", str(empty))
    out = tmp_path / "runs"
    base = ["sweep", "--archs", "shufflenet", "--folds", "2", "--out", str(out)]
    for executor in (["--slots", "cpu"], ["--executor", "slurm"]):
        assert main([*base, *executor]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: The sweep needs data sets that are not ready")
        assert "covid19-ct" in err and "sars-cov-2-ct" in err
        assert f"python -m ctlib download all --dest {empty}" in err
    assert not (out / "logs").exists() and not (out / "slurm").exists(), "nothing started"
    assert main([*base, "--datasets", "covid19-ct", "synthetic", "--slots", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"python -m ctlib download covid19-ct --dest {empty}" in err
    assert "synthetic" not in err  # generated, never missing
    assert main([*base, "--dry-run", "--slots", "cpu"]) == 0  # a dry run shows it, goes on
    assert "data NOT READY" in capsys.readouterr().out


def test_dry_run_shows_where_cells_run_and_the_cost_source(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture, data_root: Path
) -> None:
    monkeypatch.delenv(sweep.GPU_FIGURES_ENV, raising=False)
    monkeypatch.setattr("ctlib.ops.sweep.figures._REPO_GPU_FIGURES", tmp_path / "absent.csv")
    out = tmp_path / "runs"
    _finish(out, "covid19-ct", "resnet18", 4)
    argv = ["sweep", "--datasets", "covid19-ct", "--archs", "resnet18", "squeezenet"]
    argv += ["--out", str(out), "--root", str(data_root), "--dry-run", "--epochs", "10"]
    assert main([*argv, "--slots", "0", "--per-gpu", "2"]) == 0
    text = capsys.readouterr().out
    assert "9 cells to run, 1 finished already" in text
    assert "NO GPU FIGURES" in text and "every GPU hour below is an estimate" in text
    assert "10% of an H100's 989 TFLOP/s peak" in text and "T4_h (est.)" in text
    assert "startup_h" in text and "ckpt_h" in text and "measured_h" not in text
    assert "GPU 0 #1" in text and "GPU 0 #2" in text and "dry run: nothing started" in text
    assert not (out / "logs").exists()
    figures = tmp_path / "gpu_check.csv"
    row = "resnet18,349,253,32,bfloat16,True,device,1000,0.1,0.1,3.0,3.5,31.0,0.2,pass,cuda,"
    row += "NVIDIA H200,"
    figures.write_text(",".join(sweep.GPU_FIGURE_COLUMNS) + "\n" + row + "2.5.1,2025-01-01\n")
    assert main([*argv, "--executor", "slurm", "--gpu-figures", str(figures)]) == 0
    text = capsys.readouterr().out
    assert f"images/s measured on the GPU for 1 architecture(s) ({figures})" in text
    assert "estimated at 10% of an H100's" in text and "for squeezenet" in text  # labelled
    table = text.split("cost:")[1]
    assert re.search(r"resnet18\s+\S+\s+1,000.00\s+measured", table)
    assert re.search(r"squeezenet\s.*estimate", table)
    assert "--array=0-8%9" in text and "task   8:" in text and "dry run: nothing submitted" in text
    assert "NVIDIA H200" in text
    # a file written before peak_reserved_gib, sync_debug and device existed is read as before
    old = tmp_path / "old_gpu_check.csv"
    old_row = "resnet18,349,253,32,bf16,True,device,1000,0.1,0.1,3.0,NVIDIA H200,2.5.1,2025-01-01"
    old.write_text(OLD_FIGURE_HEADER + "\n" + old_row + "\n")
    assert main([*argv, "--executor", "slurm", "--gpu-figures", str(old)]) == 0
    table = capsys.readouterr().out.split("cost:")[1]
    assert re.search(r"resnet18\s.*measured", table) and re.search(r"squeezenet\s.*estimate", table)
    # the script's CPU example never costs the grid, wherever the file lies
    cpu = tmp_path / "cpu.csv"
    cpu.write_text(
        ",".join(sweep.GPU_FIGURE_COLUMNS)
        + "\nresnet18,80,80,32,fp32,True,device,90,0.1,0.1,,,12.0,0.1,skipped,cpu,"
        + "CPU x86_64,2.5.1,2025\n"
    )
    assert main([*argv, "--executor", "slurm", "--gpu-figures", str(cpu)]) == 0
    text = capsys.readouterr().out
    assert f"left out the row(s) of resnet18 in {cpu}: not measured on a CUDA GPU" in text
    table = text.split("cost:")[1]
    assert re.search(r"resnet18\s.*estimate", table) and not re.search(
        r"resnet18\s.*measured", table
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (["--retries", "-1"], "argument --retries: expected an integer >= 0"),
        (["--per-gpu", "0"], "argument --per-gpu: expected an integer >= 1"),
        (["--executor", "pbs"], "argument --executor: invalid choice: 'pbs'"),
        (["--cell-timeout", "0"], "argument --cell-timeout: expected a finite number > 0"),
        (["--executor", "slurm", "--sbatch", "=3"], "expected NAME=VALUE"),
        (["--epochz", "3"], "Unknown option(s) --epochz 3"),
        (["--arch", "resnet18"], "--arch is set by the sweep"),
        (["--lr", "inf"], "argument --lr: expected a finite number > 0"),
        (["--executor", "slurm", "--retries", "2"], "--retries: only for --executor local"),
        (["--partition", "gpu"], "--partition: only for --executor slurm"),
        (["--gpu-figures", "no-such.csv"], "--gpu-figures names 'no-such.csv'"),
    ],
)
def test_bad_sweep_options_end_in_one_error_line(
    options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["sweep", "--dry-run", "--datasets", "synthetic", "--archs", "shufflenet"]
    try:
        code = main([*argv, "--out", str(tmp_path / "runs"), *options])
    except SystemExit as exit_:  # argparse's own refusal: usage, then one error line
        code = exit_.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and "Traceback" not in err
    assert len(errors) == 1 and message in errors[0], err
    assert not (tmp_path / "runs" / "logs").exists()


# --------------------------------------------------------------------- local executor
@pytest.mark.slow
def test_a_killed_cell_is_retried_and_resumes_then_a_rerun_skips_everything(
    tmp_path: Path, synthetic_ready: None, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "runs"
    argv = ["sweep", "--datasets", "synthetic", "--archs", "shufflenet", "--folds", "2"]
    argv += ["--out", str(out), "--slots", "cpu,cpu", "--retries", "1", "--epochs", "6"]
    argv += [*TINY, *CHECKPOINT_EVERY]
    log = tmp_path / "sweep.out"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "ctlib", *argv], stdout=handle, stderr=subprocess.STDOUT, env=ENV
        )
    fold0 = fold_dir(out, "synthetic", "paper", "shufflenet-scratch", 0)
    try:
        _wait_for(lambda: len(_history(fold0 / "history.json")) >= 1, "fold 0's first epoch")
        before = _history(fold0 / "history.json")
        pid = json.loads((fold0 / "train.lock").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)  # the cell dies (as if the kernel killed it), lock left
        assert process.wait(timeout=600) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert "failed (exit -9): synthetic-shufflenet-fold0; retry 1 of 1" in text
    assert "2 cells finished, 0 failed" in text
    assert "# attempt 2" in (out / "logs" / "synthetic-shufflenet-fold0.log").read_text()
    after = _history(fold0 / "history.json")
    assert [h["epoch"] for h in after] == [1, 2, 3, 4, 5, 6]
    # resumed: the epochs trained before the kill are kept as they were, not trained again
    assert after[: len(before)] == before
    for k in (0, 1):
        metrics = json.loads(
            (
                fold_dir(out, "synthetic", "paper", "shufflenet-scratch", k) / "metrics.json"
            ).read_text()
        )
        assert 0 <= metrics["accuracy"] <= 1
    assert main(argv) == 0
    assert "0 cells to run, 2 finished already" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failing_cell_fails_alone_and_a_slow_one_is_stopped_at_its_time_limit(
    tmp_path: Path, synthetic_ready: None
) -> None:
    grid = Grid(tmp_path / "runs", 2, run_suffix="-scratch", cv_args=("--epochs", "500", *TINY))
    bad, slow = Task("synthetic", "nosuch", 0), Task("synthetic", "shufflenet", 0)
    start = time.monotonic()
    outcomes = sweep.run_local(
        [bad, slow],
        sweep.local_slots("cpu,cpu"),
        grid,
        retries=1,
        cell_timeout_min=0.35,  # the bad cell fails well within it, the slow one never ends
        grace_s=20,
        poll_s=0.2,
    )
    assert time.monotonic() - start < 400
    failed = outcomes[bad.label]
    assert not failed.finished and failed.returncode != 0 and failed.attempts == 2
    assert failed.timed_out == 0 and "nosuch" in grid.log(bad).read_text()
    stopped = outcomes[slow.label]
    assert not stopped.finished and stopped.timed_out == 2 and stopped.attempts == 2, (
        f"{stopped}; its log:\n{grid.log(slow).read_text()[-3000:]}"
    )
    assert not (grid.folder(slow) / "metrics.json").exists()


@pytest.mark.slow
def test_ctrl_c_stops_every_cell_and_leaves_no_process(
    tmp_path: Path, synthetic_ready: None
) -> None:
    out = tmp_path / "runs"
    argv = ["sweep", "--datasets", "synthetic", "--archs", "shufflenet", "--folds", "2"]
    argv += ["--out", str(out), "--slots", "cpu,cpu", "--epochs", "500", *TINY]
    log = tmp_path / "sweep.out"
    locks = [
        fold_dir(out, "synthetic", "paper", "shufflenet-scratch", k) / "train.lock" for k in (0, 1)
    ]
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "ctlib", *argv], stdout=handle, stderr=subprocess.STDOUT, env=ENV
        )
    cells: set[int] = set()
    try:
        _wait_for(lambda: all(lock.is_file() for lock in locks), "both cells to train")
        cells = {int(p) for p in re.findall(r"\(pid (\d+),", log.read_text())}
        assert len(cells) == 2
        process.send_signal(signal.SIGINT)  # Ctrl-C, once
        assert process.wait(timeout=180) == 130
    finally:
        if process.poll() is None:
            process.kill()
        for pid in _sessions_alive(cells):  # never leave a stray process on the machine
            os.kill(pid, signal.SIGKILL)
    text = log.read_text()
    assert "SIGINT: stopping 2 running cell(s)" in text
    assert "run the same command again" in text.lower()
    _wait_for(lambda: not _sessions_alive(cells), "no cell process left", timeout_s=10)
    # stopped with SIGINT, each cell released its fold's lock on the way out
    assert not any(lock.exists() for lock in locks)


# ------------------------------------------------------------------------------ SLURM
def _fake_slurm(tmp_path: Path, states: dict[str, str] | None = None) -> Path:
    """``srun``, ``sbatch`` (records its arguments and the script, answers a job id) and
    ``sacct`` (answers ``states``) in a folder to put first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        "#!/bin/sh\n"
        'n=$(ls "$(dirname "$0")" | grep -c "^script")\n'
        'cp "$1" "$(dirname "$0")/script$n.sh"\n'
        'echo "$@" >> "$(dirname "$0")/sbatch.args"\n'
        'echo "Submitted batch job $((4242 + n))"\n'
    )
    lines = "".join(f'echo "{job}|{state}|node1"\n' for job, state in (states or {}).items())
    (bin_dir / "sacct").write_text(f'#!/bin/sh\necho "JobID|State|NodeList"\n{lines}')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def test_slurm_submits_one_array_with_its_resources_and_resubmits_only_missing_cells(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture, synthetic_ready: None
) -> None:
    bin_dir = _fake_slurm(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "runs"
    _finish(out, "synthetic", "shufflenet-scratch", 1)
    argv = ["sweep", "--executor", "slurm", "--datasets", "synthetic", "--archs", "shufflenet"]
    argv += ["--folds", "4", "--out", str(out), "--partition", "gpu", "--time", "90"]
    argv += ["--gpus-per-job", "1", "--cpus-per-job", "6", "--mem-gb", "32"]
    argv += ["--array-parallelism", "2", "--sbatch", "account=ctlab", "--sbatch", "exclusive"]
    argv += ["--setup", "module load cuda", "--epochs", "7", "--compile", *TINY]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "submitted job 4242: 3 task(s)" in text
    script = (bin_dir / "script0.sh").read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --mem=32GB",
        "#SBATCH --array=0-2%2",
        "#SBATCH --account=ctlab",
        "#SBATCH --exclusive",
        "#SBATCH --job-name=ctlib-sweep",
        f"#SBATCH --signal={submitit.JobEnvironment.USR_SIG}@120",
        "module load cuda",
        "-m submitit.core._submit",
    ):
        assert line in script, line
    # each array task holds one cell: the cv command with the pass-through options
    commands = {}
    for k in range(3):
        delayed = submitit.helpers.DelayedSubmission.load(
            out / "slurm" / f"4242_{k}" / f"4242_{k}_submitted.pkl"
        )
        cell = delayed.function
        assert isinstance(cell, sweep.CellJob) and hasattr(cell, "checkpoint")
        assert delayed._timeout_countdown == 3  # noqa: SLF001 - requeues after a time-out
        commands[cell.label] = cell.command
    assert sorted(commands) == [f"synthetic-shufflenet-fold{k}" for k in (0, 2, 3)]
    command = commands["synthetic-shufflenet-fold2"]
    assert command[command.index("--only-folds") + 1] == "2"
    assert command[-3:] == ["--device", "cuda", "-q"]
    assert {"--compile", "--no-pretrained"} <= set(command) and "7" in command
    # later: fold 0 still runs, fold 2 timed out for good, fold 3 finished -> only fold 2 again
    _finish(out, "synthetic", "shufflenet-scratch", 3)
    states = {"4242_0": "RUNNING", "4242_2": "TIMEOUT", "4242_3": "COMPLETED"}
    _fake_slurm(tmp_path, states)
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "1 cells to run, 2 finished already, 1 queued or running on SLURM" in text
    assert "running: synthetic-shufflenet-fold0 (job 4242_0); not submitted again" in text
    assert "submitted job 4243: 1 task(s)" in text
    assert "synthetic-shufflenet-fold2" in text.split("submitted job 4243")[1]
    recorded = json.loads((out / "slurm" / "cells.json").read_text())
    assert recorded["synthetic-shufflenet-fold2"] == "4243"
    # small networks side by side: two cells per array task
    shutil.rmtree(out / "slurm")
    _fake_slurm(tmp_path)
    assert main([*argv, "--per-gpu", "2", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "2 cells side by side per task" in text and "#SBATCH" not in text
    assert re.search(r"task   0: synthetic-shufflenet-fold\d \+ synthetic-shufflenet-fold\d", text)
    assert main([*argv, "--per-gpu", "2"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"submitted job \d+: 1 task\(s\)", text) and f"table {out}" in text
    job = re.search(r"\n  (\S+): synthetic-shufflenet-fold\d \+ synthetic", text)[1]
    group = submitit.helpers.DelayedSubmission.load(
        out / "slurm" / job / f"{job}_submitted.pkl"
    ).function
    assert isinstance(group, sweep.CellGroup) and len(group.cells) == 2
    recorded = json.loads((out / "slurm" / "cells.json").read_text())
    assert {recorded[c.label] for c in group.cells} == {job}


def test_a_cell_group_runs_its_cells_side_by_side_and_names_the_one_that_failed(
    tmp_path: Path,
) -> None:
    """Several small cells in one array task (--per-gpu with --executor slurm): they start
    together, a finished one is skipped, a failed one is named."""

    def cell(name: str, code: str) -> sweep.CellJob:
        folder = tmp_path / name
        script = f"import pathlib, time; time.sleep(0.5); {code}"
        return sweep.CellJob([sys.executable, "-c", script], name, folder,
                             tmp_path / "logs" / f"{name}.log", tmp_path / "attempts")  # fmt: skip

    finish = (
        "p = pathlib.Path({!r}); p.mkdir(parents=True); (p / 'metrics.json').write_text('{{}}')"
    )
    cells = [cell(n, finish.format(str(tmp_path / n))) for n in ("a", "b")]
    started = time.monotonic()
    assert sweep.CellGroup(cells)() == [
        {"cell": "a", "status": "finished"},
        {"cell": "b", "status": "finished"},
    ]
    assert time.monotonic() - started < 0.5 + 0.5 + 5  # side by side, not one after the other
    assert sweep.CellGroup(cells).label == "a+b"
    again = [*cells, cell("c", "raise SystemExit(3)")]
    with pytest.raises(RuntimeError, match=r"cell c failed \(exit 3\)") as failed:
        sweep.CellGroup(again)()
    assert "cell a" not in str(failed.value)  # finished before: skipped, not run again
    assert (tmp_path / "logs" / "a.log").read_text().count("$ ") == 1


def test_a_lock_left_by_an_earlier_attempt_of_the_same_task_is_removed(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv(
        "PATH",
        f"{_fake_slurm(tmp_path, {'77_1': 'RUNNING', '78_1': 'FAILED'})}"
        f"{os.pathsep}{os.environ['PATH']}",
    )
    for name, value in {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "4300",
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_ARRAY_TASK_ID": "1",
    }.items():
        monkeypatch.setenv(name, value)
    grid = Grid(tmp_path / "runs", 2)
    task = Task("synthetic", "shufflenet", 1)
    attempts = tmp_path / "runs" / "slurm" / "attempts"
    cell = sweep.CellJob(
        grid.command(task), task.label, grid.folder(task), grid.log(task), attempts
    )
    lock = grid.folder(task) / "train.lock"
    lock.parent.mkdir(parents=True)
    attempts.mkdir(parents=True)
    for job, removed in (("4242_1", True), ("77_1", False), ("78_1", True)):
        lock.write_text(json.dumps({"pid": 123, "host": "node7", "since": 0}))
        (attempts / f"{task.label}.json").write_text(
            json.dumps({"job": job, "host": "node7", "pid": 123})
        )
        # this very task requeued, or a task that has ended: its lock goes; a live one stays
        assert cell.release_stale_lock() is removed, job
        assert lock.exists() is not removed
    lock.write_text(json.dumps({"pid": 999, "host": "node8", "since": 0}))
    assert not cell.release_stale_lock() and lock.exists()  # another process's lock


@pytest.mark.slow
def test_a_slurm_cell_requeued_after_a_time_out_resumes_from_its_checkpoint(
    tmp_path: Path, synthetic_ready: None
) -> None:
    """The array task's own object and submitit's own requeue, run by submitit's local
    executor; USR2 is what SLURM sends the task near its time limit."""
    EPOCHS = 24  # noqa: N806
    grid = Grid(
        tmp_path / "runs",
        2,
        run_suffix="-scratch",
        # a tiny epoch takes about 0.4 s: enough epochs that the cell cannot finish in the
        # moments between the first epoch and the signal's effect
        cv_args=("--epochs", str(EPOCHS), *TINY, *CHECKPOINT_EVERY),
    )
    task = Task("synthetic", "shufflenet", 0)
    attempts = tmp_path / "runs" / "slurm" / "attempts"
    cell = sweep.CellJob(
        grid.command(task, "cpu"),
        task.label,
        grid.folder(task),
        grid.log(task),
        attempts,
        grace_s=30,
    )
    executor = submitit.LocalExecutor(tmp_path / "submitit", max_num_timeout=2)
    executor.update_parameters(timeout_min=30)
    history = grid.folder(task) / "history.json"
    job = executor.submit(cell)
    try:
        _wait_for(lambda: len(_history(history)) >= 1 or job.done(), "the first epoch")
        assert not job.done(), job.stderr()
        before = _history(history)
        cv_pid = json.loads((grid.folder(task) / "train.lock").read_text())["pid"]
        task_pid = int(Path(f"/proc/{cv_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(task_pid, getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG))
        _wait_for(job.done, "the requeued task to finish", timeout_s=600)
    finally:
        if not job.done():
            job.cancel()
    assert job.result() == {"cell": task.label, "status": "finished"}
    assert "Requeued" in (job.stdout() or "") + (job.stderr() or "")
    log = grid.log(task).read_text()
    assert "stopped for a requeue" in log and log.count("$ ") == 2
    after = _history(history)
    assert [h["epoch"] for h in after] == list(range(1, EPOCHS + 1))
    assert after[: len(before)] == before  # resumed, not trained again from epoch 1


def test_a_cell_answers_sigint_even_when_its_parent_ignores_it() -> None:
    """A sweep started with ``&`` from a script inherits SIGINT ignored; its cells must not."""
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT))"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        inherited = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
        for start in (process.default_stop_signals, slurm._ignore_checkpoint_signal):  # noqa: SLF001
            cell = subprocess.run(
                probe, capture_output=True, text=True, check=True, preexec_fn=start
            ).stdout
            assert "default_int_handler" in cell, cell
    finally:
        signal.signal(signal.SIGINT, previous)
    assert inherited.strip() == str(int(signal.SIG_IGN))  # the probe sees an ignored SIGINT


def test_slurm_says_which_imagenet_files_compute_nodes_would_miss(
    tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture
) -> None:
    from ctlib.ops.sweep.command import _note_missing_weights

    monkeypatch.setenv("CTLIB_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no hub cache either
    _note_missing_weights(["efficientnet_lite0", "resnet18"])
    note = capsys.readouterr().out
    assert "the ImageNet weights of resnet18 are not on this disk" in note
    assert "efficientnet_lite0" not in note  # its weights ship with a package
    assert str(tmp_path / "weights") in note
    _note_missing_weights(["efficientnet_lite0"])
    assert capsys.readouterr().out == ""
