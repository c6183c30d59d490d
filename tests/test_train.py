"""Training: the paper's recipe as defaults, the schedule, seeding, resume, NaN detection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ctlib.config import Runtime, split_settings
from ctlib.data import load_dataset
from ctlib.data.synthetic import SyntheticConfig
from ctlib.errors import CheckpointError, TrainingDivergedError
from ctlib.handlers import load_training_state
from ctlib.train import TrainConfig, build_optimizer, fit, lr_at, predict
from ctlib.transforms import CanvasDataset

TINY = dict(
    arch="shufflenet", pretrained=False, epochs=3, batch_size=8, canvas=(64, 48), device="cpu"
)


@pytest.fixture(scope="module")
def tiny_frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    ds = load_dataset(
        "synthetic",
        tmp_path_factory.mktemp("synth"),
        synthetic=SyntheticConfig(n_patients=16, slices_per_patient=(2, 2)),
        progress=False,
    )
    return ds.frame


def test_defaults_are_the_papers() -> None:
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.lr, config.weight_decay) == (
        100,
        32,
        3e-4,
        1.0,
    )
    assert config.lr_milestones == (50, 70, 80, 90)
    assert config.lr_values == (1e-4, 3e-5, 1e-5, 3e-6)
    assert config.pretrained and config.strategy == "finetune" and config.optimizer == "lamb"


def test_default_optimizer_is_torch_optimizer_lamb() -> None:
    """The default is torch-optimizer's Lamb arithmetic (ForeachLamb computes it without
    host reads): the recipe's settings, and the same step as torch-optimizer's own."""
    import torch_optimizer

    from ctlib.optim import ForeachLamb

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    reference = nn.Linear(3, 1)
    reference.load_state_dict(model.state_dict())
    optimizer = build_optimizer(model, TrainConfig())
    assert type(optimizer) is ForeachLamb
    group = optimizer.param_groups[0]
    assert group["lr"] == 3e-4 and group["weight_decay"] == 1.0
    assert optimizer.clamp_value == 10 and optimizer.debias is False
    other = torch_optimizer.Lamb(reference.parameters(), lr=3e-4, weight_decay=1.0)
    x = torch.randn(8, 3)
    for net, opt in ((model, optimizer), (reference, other)):
        for _ in range(3):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_timm_lamb_is_an_option() -> None:
    from timm.optim import Lamb

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    optimizer = build_optimizer(model, TrainConfig(optimizer="lamb_timm"))
    assert type(optimizer) is Lamb
    decays = sorted(g["weight_decay"] for g in optimizer.param_groups)
    assert decays == [0.0, 1.0]  # biases and norms are not decayed in timm's factory


def test_schedule_paper_and_scaled() -> None:
    config = TrainConfig()
    expected = {
        0: 3e-4,
        49: 3e-4,
        50: 1e-4,
        69: 1e-4,
        70: 3e-5,
        79: 3e-5,
        80: 1e-5,
        89: 1e-5,
        90: 3e-6,
        99: 3e-6,
    }
    assert {e: lr_at(e, config) for e in expected} == expected
    short = replace(config, epochs=20)
    assert [lr_at(e, short) for e in (9, 10, 13, 14, 15, 16, 17, 18)] == [
        3e-4,
        1e-4,
        1e-4,
        3e-5,
        3e-5,
        1e-5,
        1e-5,
        3e-6,
    ]


def test_with_lr_scales_the_whole_schedule() -> None:
    config = TrainConfig().with_lr(3e-3)
    assert [lr_at(e, config) for e in (0, 50, 70, 80, 90)] == pytest.approx(
        [3e-3, 1e-3, 3e-4, 1e-4, 3e-5]
    )


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="Did you mean|did you mean"):
        TrainConfig(arch="resnet-18")
    with pytest.raises(ValueError, match="too small for inceptionv3"):
        TrainConfig(arch="inceptionv3", canvas=(64, 64))
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    round_trip = TrainConfig.from_dict(TrainConfig(canvas=(96, 64)).to_dict())
    assert round_trip == TrainConfig(canvas=(96, 64))


def _run(
    frame: pd.DataFrame, out: Path | None, resume: bool = True, **changes: object
) -> tuple[list, np.ndarray]:
    from ctlib.models import create_model

    config, runtime = split_settings(**{**TINY, **changes})
    torch.manual_seed(config.seed)
    model = create_model(config.arch, pretrained=False, progress=False)
    train = CanvasDataset(frame.iloc[:24], config.input_size, train=True, seed=config.seed)
    history = fit(model, train, config, out, runtime=runtime, progress=False, resume=resume)
    probs = predict(
        model,
        CanvasDataset(frame.iloc[24:], config.input_size),
        config,
        runtime=runtime,
        progress=False,
    )
    return history, probs


def _cut_after_first_epoch(frame: pd.DataFrame, out: Path, **changes: object) -> None:
    """Train the tiny recipe into ``out`` and stop it, as a kill would, after epoch 1 (with a
    checkpoint after every epoch, so that there is one to resume from)."""
    from ctlib.models import create_model

    class Killed(Exception):
        pass

    def kill_after_first_epoch(record: dict) -> None:
        if record["epoch"] == 1:
            raise Killed

    config, runtime = split_settings(**{**TINY, "checkpoint_every": 1, **changes})
    torch.manual_seed(config.seed)
    model = create_model(config.arch, pretrained=False, progress=False)
    train = CanvasDataset(frame.iloc[:24], config.input_size, train=True, seed=config.seed)
    with pytest.raises(Killed):
        fit(
            model,
            train,
            config,
            out,
            runtime=runtime,
            progress=False,
            on_epoch_end=kill_after_first_epoch,
        )


def test_same_seed_same_result(tiny_frame: pd.DataFrame) -> None:
    h1, p1 = _run(tiny_frame, None, epochs=2)
    h2, p2 = _run(tiny_frame, None, epochs=2)
    assert [h["train_loss"] for h in h1] == [h["train_loss"] for h in h2]
    assert np.array_equal(p1, p2)
    h3, p3 = _run(tiny_frame, None, epochs=2, seed=1)
    assert not np.array_equal(p1, p3)


def test_the_number_of_workers_changes_nothing(tiny_frame: pd.DataFrame) -> None:
    # the shuffled order and every augmentation depend on (seed, epoch, index) only; a
    # progress bar that iterated the loader twice once made the order depend on the workers
    h0, p0 = _run(tiny_frame, None, epochs=2, num_workers=0)
    h2, p2 = _run(tiny_frame, None, epochs=2, num_workers=2)
    assert [h["train_loss"] for h in h0] == [h["train_loss"] for h in h2]
    assert np.array_equal(p0, p2)


def test_the_device_data_path_trains_reproducibly_and_resumes(
    tiny_frame: pd.DataFrame, tmp_path: Path
) -> None:
    """data_path='device' (canvases on the device, batch augmentation: the GPU path)
    runs on the CPU too: same seed, same result; a cut run resumes to the uninterrupted one."""
    full_history, full_probs = _run(tiny_frame, tmp_path / "full", epochs=2, data_path="device")
    again, probs = _run(tiny_frame, None, epochs=2, data_path="device")
    assert [h["train_loss"] for h in again] == [h["train_loss"] for h in full_history]
    assert np.array_equal(probs, full_probs)
    loader_history, _ = _run(tiny_frame, None, epochs=2, data_path="loader")
    assert loader_history[0]["train_loss"] != full_history[0]["train_loss"]  # another stream
    _cut_after_first_epoch(tiny_frame, tmp_path / "cut", epochs=2, data_path="device")
    history, probs = _run(tiny_frame, tmp_path / "cut", epochs=2, data_path="device")
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in full_history]
    assert np.array_equal(probs, full_probs)


def test_workers_default_to_none_on_the_cpu_and_some_for_a_gpu() -> None:
    from ctlib.runtime import resolve_data_path, resolve_workers

    config = Runtime()
    assert config.num_workers is None and config.data_path == "auto"
    assert resolve_workers(config, torch.device("cpu")) == 0
    assert 1 <= resolve_workers(config, torch.device("cuda")) <= 8
    assert resolve_workers(Runtime(num_workers=3), torch.device("cuda")) == 3
    assert resolve_data_path(config, torch.device("cuda")) == "device"
    assert resolve_data_path(config, torch.device("cpu")) == "loader"
    assert resolve_data_path(Runtime(data_path="loader"), torch.device("cuda")) == "loader"


def test_one_epoch_iterates_its_loader_once(
    tiny_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch.utils.data import DataLoader

    calls: list[int] = []
    original = DataLoader.__iter__

    def counted(self: DataLoader):  # noqa: ANN202
        calls.append(1)
        return original(self)

    monkeypatch.setattr(DataLoader, "__iter__", counted)
    _run(tiny_frame, None, epochs=2)
    assert len(calls) == 2 + 1, "one iteration per epoch, and one for the predictions"


def test_resume_after_interruption_matches(tiny_frame: pd.DataFrame, tmp_path: Path) -> None:
    full_history, full_probs = _run(tiny_frame, tmp_path / "full")

    _cut_after_first_epoch(tiny_frame, tmp_path / "cut")
    assert len(json.loads((tmp_path / "cut" / "history.json").read_text())) == 1
    torch.manual_seed(123)  # the resumed process starts from another random state
    history, probs = _run(tiny_frame, tmp_path / "cut")
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in full_history]
    assert np.array_equal(probs, full_probs)


def test_resume_refuses_another_config(tiny_frame: pd.DataFrame, tmp_path: Path) -> None:
    _run(tiny_frame, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="another recipe"):
        _run(tiny_frame, tmp_path, epochs=2, lr=1e-3)


def test_resume_goes_on_when_only_runtime_settings_change(
    tiny_frame: pd.DataFrame, tmp_path: Path
) -> None:
    """Workers, precision or memory format may change between sessions: the run resumes."""
    full_history, _ = _run(tiny_frame, tmp_path / "full", epochs=2)

    _cut_after_first_epoch(tiny_frame, tmp_path / "cut", epochs=2)
    history, _ = _run(tiny_frame, tmp_path / "cut", epochs=2, channels_last=False, amp="off")
    assert (
        len(history) == 2
        and history[0] == json.loads((tmp_path / "cut" / "history.json").read_text())[0]
    )
    assert history[0]["train_loss"] == full_history[0]["train_loss"]


class _Payload:
    """Unpickling this runs code: it creates ``marker`` (a stand-in for anything worse)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_the_rolling_checkpoint_is_written_every_n_epochs_and_after_the_last(
    tiny_frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ctlib.handlers as train_module

    written: list[int] = []
    original = train_module.atomic_save

    def recorded(obj: dict, path: Path) -> None:
        if path.name == "checkpoint.pt":
            written.append(obj["epoch"] + 1)
        original(obj, path)

    monkeypatch.setattr(train_module, "atomic_save", recorded)
    _run(tiny_frame, tmp_path / "a", epochs=5, checkpoint_every=2)
    assert written == [2, 4, 5]
    written.clear()
    _run(tiny_frame, tmp_path / "b", epochs=3, checkpoint_every=10, checkpoint_minutes=1e-9)
    assert written == [1, 2, 3], "the minutes rule writes one whenever they have passed"
    state = load_training_state(tmp_path / "a" / "checkpoint.pt")
    assert state["epoch"] + 1 == 5 and len(state["history"]) == 5


def test_on_a_gpu_the_checkpoint_goes_by_time_only_and_is_written_in_the_background(
    tmp_path: Path,
) -> None:
    from ctlib.handlers import RollingCheckpoint

    runtime = Runtime(checkpoint_every=1, gpu_checkpoint_minutes=60)
    gpu = RollingCheckpoint(tmp_path, runtime, 0, torch.device("cuda"))
    assert gpu.by_time and gpu.background
    assert not gpu.due(0, 10), "every epoch on the CPU; on a GPU, not before 60 minutes"
    assert gpu.due(9, 10), "always after the last epoch"
    cpu = RollingCheckpoint(tmp_path, runtime, 0, torch.device("cpu"))
    assert cpu.due(0, 10) and not cpu.background
    gpu.saved_at -= 3601
    assert gpu.due(0, 10)

    weights = torch.arange(6.0)
    writer = RollingCheckpoint(tmp_path, runtime, 0, background=True)
    writer.save(0, {"model": {"w": weights}, "history": [{"epoch": 1}]})
    weights.add_(100)  # training goes on at once: the write holds the copy made at save()
    writer.wait()
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert torch.equal(state["model"]["w"], torch.arange(6.0)) and state["epoch"] == 0
    assert not list(tmp_path.glob("*.tmp*")), "nothing half-written left behind"

    (tmp_path / "a-file").write_text("")
    broken = RollingCheckpoint(tmp_path / "a-file" / "run", runtime, 0, background=True)
    broken.save(0, {"model": {"w": weights}})
    with pytest.raises(OSError) as failed:
        broken.wait()
    assert "previous checkpoint is still in place" in "".join(failed.value.__notes__)
    broken.wait()  # the error is raised once


def test_a_run_checkpointed_in_the_background_resumes_to_the_same_numbers(
    tiny_frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU's checkpoints (by time, from a copy, on a thread), run on the CPU: a run cut
    after its first epoch resumes to the uninterrupted run's numbers."""
    import functools

    import ctlib.train
    from ctlib.handlers import RollingCheckpoint

    full_history, full_probs = _run(tiny_frame, tmp_path / "full", epochs=2)
    gpu_like = functools.partial(RollingCheckpoint, by_time=True, background=True)
    monkeypatch.setattr(ctlib.train, "RollingCheckpoint", gpu_like)
    _cut_after_first_epoch(tiny_frame, tmp_path / "cut", epochs=2, gpu_checkpoint_minutes=1e-9)
    assert (tmp_path / "cut" / "checkpoint.pt").is_file()
    history, probs = _run(tiny_frame, tmp_path / "cut", epochs=2, gpu_checkpoint_minutes=1e-9)
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in full_history]
    assert np.array_equal(probs, full_probs)


def test_resume_names_the_recipe_settings_that_differ(
    tiny_frame: pd.DataFrame, tmp_path: Path
) -> None:
    _run(tiny_frame, tmp_path, epochs=1)
    with pytest.raises(ValueError, match=r"differs in batch_size, lr"):
        _run(tiny_frame, tmp_path, epochs=1, lr=1e-3, batch_size=4, num_workers=0)


def test_a_planted_checkpoint_never_runs_its_code(tiny_frame: pd.DataFrame, tmp_path: Path) -> None:
    """A runs folder from elsewhere may hold a malicious checkpoint.pt: resuming refuses it
    (loaded with weights_only=True) and the payload never runs."""
    marker = tmp_path / "payload-ran"
    folder = tmp_path / "run"
    folder.mkdir()
    # a file that looks like a checkpoint, with code inside
    torch.save(
        {
            "model": {},
            "optimizer": {},
            "epoch": 0,
            "history": [],
            "rng": _Payload(marker),
            "config": split_settings(**TINY)[0].to_dict(),
        },
        folder / "checkpoint.pt",
    )
    with open(tmp_path / "plain.pkl", "wb") as handle:  # the same payload really runs when
        import pickle  # loaded the unsafe way: the test can fail

        pickle.dump(_Payload(tmp_path / "control"), handle)
    with open(tmp_path / "plain.pkl", "rb") as handle:
        pickle.load(handle)
    assert (tmp_path / "control").exists()
    with pytest.raises(CheckpointError, match="could run code") as error:
        _run(tiny_frame, folder)
    assert not marker.exists()
    assert "checkpoint.pt" in str(error.value) and "--no-resume" in str(error.value)


def test_a_truncated_checkpoint_says_which_file_and_the_fix(
    tiny_frame: pd.DataFrame, tmp_path: Path
) -> None:
    _run(tiny_frame, tmp_path, epochs=1)
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        _run(tiny_frame, tmp_path, epochs=1)
    assert str(checkpoint) in str(error.value) and "--no-resume" in str(error.value)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    torch.save({"weights": torch.zeros(2)}, foreign / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="no ctlib training checkpoint"):
        _run(tiny_frame, foreign, epochs=1)
    history, _ = _run(tiny_frame, tmp_path, epochs=1, resume=False)  # the fix works
    assert len(history) == 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"epoch": -3}, "is not an epoch count"),
        ({"epoch": "five"}, "is not an epoch count"),
        ({"epoch": 10**9}, "is not an epoch count"),
        ({"history": "x"}, "history are not what fit writes"),
        ({"rng": [1, 2]}, "rng are not what fit writes"),
        ({"model": {"conv.weight": torch.zeros(3)}}, "does not fit this network"),
    ],
    ids=["negative-epoch", "text-epoch", "absurd-epoch", "history", "rng", "other-weights"],
)
def test_a_checkpoint_with_impossible_contents_is_refused_by_name(
    tiny_frame: pd.DataFrame, tmp_path: Path, change: dict, problem: str
) -> None:
    """A checkpoint that loads (tensors and plain data) but cannot be this run's state: the
    kit's error, the file and --no-resume, never a traceback from deep inside torch."""
    _run(tiny_frame, tmp_path, epochs=2)
    checkpoint = tmp_path / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    torch.save({**state, **change}, checkpoint)
    with pytest.raises(CheckpointError, match=problem) as error:
        _run(tiny_frame, tmp_path, epochs=2)
    assert str(checkpoint) in str(error.value) and "--no-resume" in str(error.value)


def test_checkpoints_hold_only_tensors_and_plain_data(
    tiny_frame: pd.DataFrame, tmp_path: Path
) -> None:
    _run(tiny_frame, tmp_path, epochs=1)
    state = load_training_state(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 0 and isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)


class _NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3))) * float("nan")


def test_nan_loss_stops_with_a_clear_message(tiny_frame: pd.DataFrame) -> None:
    config, runtime = split_settings(**{**TINY, "epochs": 1})
    train = CanvasDataset(tiny_frame.iloc[:8], config.input_size, train=True)
    with pytest.raises(TrainingDivergedError, match="loss became nan at epoch 1"):
        fit(_NaNNet(), train, config, None, runtime=runtime, progress=False)


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_result(tmp_path: Path) -> None:
    """A real SIGKILL of `python -m ctlib train` after its first epoch, then a rerun."""
    args = [
        sys.executable,
        "-m",
        "ctlib",
        "train",
        "--arch",
        "shufflenet",
        "--no-pretrained",
        "--epochs",
        "4",
        "--batch-size",
        "8",
        "--canvas",
        "64",
        "48",
        "--device",
        "cpu",
        "--folds",
        "2",
        "--checkpoint-every",
        "1",
        "-q",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    synth = ["--dataset", "synthetic"]
    subprocess.run(
        args + synth + ["--out", str(tmp_path / "full")],
        check=True,
        env=env,
        capture_output=True,
        timeout=600,
    )
    cut = tmp_path / "cut"
    history = cut / "synthetic" / "paper" / "shufflenet-scratch" / "fold0" / "history.json"
    process = subprocess.Popen(
        args + synth + ["--out", str(cut)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if history.is_file() and len(json.loads(history.read_text() or "[]")) >= 1:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (history.parent / "metrics.json").exists()
    subprocess.run(
        args + synth + ["--out", str(cut)], check=True, env=env, capture_output=True, timeout=600
    )
    a = pd.read_csv(
        tmp_path
        / "full"
        / "synthetic"
        / "paper"
        / "shufflenet-scratch"
        / "fold0"
        / "predictions.csv"
    )
    b = pd.read_csv(history.parent / "predictions.csv")
    assert np.array_equal(a["prob"].to_numpy(), b["prob"].to_numpy())
    full = json.loads(
        (
            tmp_path
            / "full"
            / "synthetic"
            / "paper"
            / "shufflenet-scratch"
            / "fold0"
            / "history.json"
        ).read_text()
    )
    resumed = json.loads(history.read_text())
    assert [h["train_loss"] for h in full] == [h["train_loss"] for h in resumed]


@pytest.mark.parametrize(
    "capability, expected",
    [
        ((7, 0), torch.float16),  # V100: fp16 with gradient scaling
        ((7, 5), torch.float16),  # T4 (Colab's free GPU): bf16 only emulated
        ((8, 0), torch.bfloat16),  # A100
        ((9, 0), torch.bfloat16),  # H100/H200
    ],
)
def test_auto_precision_fits_the_gpu(capability: tuple[int, int], expected: torch.dtype) -> None:
    from ctlib.runtime import choose_precision

    assert choose_precision("auto", "cuda", capability) is expected


def test_auto_precision_is_fp32_on_the_cpu_and_explicit_choices_are_kept() -> None:
    from ctlib.runtime import choose_precision

    assert choose_precision("auto", "cpu") is None
    assert choose_precision("off", "cuda", (9, 0)) is None
    assert choose_precision("bf16", "cpu") is torch.bfloat16
    assert choose_precision("fp16", "cuda", (9, 0)) is torch.float16


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"lr": float("nan")}, "lr must be a positive number"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"num_workers": -1}, "num_workers must be >= 0"),
        ({"device": "tpu"}, "device must be"),
        ({"amp": "fp16", "device": "cpu"}, "fp16' needs a GPU"),
    ],
)
def test_bad_training_values_are_refused_with_the_fix(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        split_settings(**{**TINY, **changes})


def test_every_epoch_is_logged_to_json_csv_and_tensorboard(
    tiny_frame: pd.DataFrame, tmp_path: Path
) -> None:
    history, _ = _run(tiny_frame, tmp_path, epochs=2, tensorboard=True)
    table = pd.read_csv(tmp_path / "history.csv")
    assert table["epoch"].tolist() == [1, 2]
    assert table["train_loss"].tolist() == [h["train_loss"] for h in history]
    assert json.loads((tmp_path / "history.json").read_text()) == history
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    logged = [event.value for event in events.Scalars("train_loss")]
    assert logged == pytest.approx([h["train_loss"] for h in history], rel=1e-6)


def test_deterministic_mode_sets_the_flags_and_leaves_them_alone_otherwise() -> None:
    from ctlib.runtime import place_model, set_deterministic

    assert not torch.are_deterministic_algorithms_enabled()
    try:
        place_model(nn.Linear(2, 1), Runtime(device="cpu"))
        assert not torch.are_deterministic_algorithms_enabled()
        place_model(nn.Linear(2, 1), Runtime(device="cpu", deterministic=True))
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()


class _Upsampling(nn.Module):
    """A head that upsamples bilinearly and pools to 2 x 2: two backward kernels CUDA runs
    with atomics (no deterministic version)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.pool, self.fc = (
            nn.Conv2d(3, 4, 3),
            nn.AdaptiveAvgPool2d(2),
            nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(self.conv(x), scale_factor=2, mode="bilinear")
        return self.fc(self.pool(x).flatten(1))


def test_nondeterministic_ops_finds_the_kernels_without_a_deterministic_version() -> None:
    from ctlib.models import create_model
    from ctlib.runtime import nondeterministic_ops

    assert nondeterministic_ops(_Upsampling(), (32, 24)) == [
        "aten._adaptive_avg_pool2d_backward.default",
        "aten.upsample_bilinear2d_backward.default",
    ]
    # a 1 x 1 adaptive pool is computed as a mean: deterministic
    assert nondeterministic_ops(create_model("squeezenet", pretrained=False, progress=False),
                                (64, 48)) == []  # fmt: skip


@pytest.mark.slow
def test_the_twelve_architectures_run_no_nondeterministic_kernel() -> None:
    """What docs/DEVELOPERS.md says of --deterministic: with it, each of the paper's twelve
    networks trains bit-identically on a GPU (no op of its step lacks a deterministic kernel)."""
    from ctlib.models import create_model, list_models
    from ctlib.runtime import nondeterministic_ops

    found = {}
    for arch in list_models(paper=True):  # on a small canvas: the ops, not the sizes, matter
        model = create_model(arch, pretrained=False, progress=False)
        found[arch] = nondeterministic_ops(model, (160, 120))
    assert len(found) == 12 and found == {arch: [] for arch in found}


@pytest.mark.slow
def test_compiled_steps_compile_the_full_batch_once_and_run_the_rest_eagerly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 20-image epoch in batches of 8, 8 and 4: one graph for the batch of 8, the 4 run by
    the eager network (the same parameters), no image dropped; the compiled code cached
    under $CTLIB_CACHE_DIR/inductor."""
    import torch._dynamo

    from ctlib.runtime import CompiledSteps

    monkeypatch.setenv("CTLIB_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))  # fmt: skip
    steps = CompiledSteps(model, batch_size=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = 0
    for _ in range(2):  # two epochs: the second compiles nothing
        for size in (8, 8, 4):
            images, labels = torch.randn(size, 3, 16, 16), torch.randint(0, 2, (size,))
            loss = nn.functional.binary_cross_entropy_with_logits(
                steps(images)[:, 0], labels.float()
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += size
    assert seen == 40
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1  # the batch of 8 only
    with torch.no_grad():
        assert steps(torch.randn(3, 3, 16, 16)).shape == (3, 1)  # any other size: eager
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    assert (tmp_path / "inductor").is_dir()
    torch._dynamo.reset()
