"""A training step with no host synchronisation: what a GPU would wait on, trapped on the CPU.

On CUDA every read of a tensor's value on the host (``item``, ``bool``, ``float``, ``tolist``,
``cpu``, ``numpy``) waits for all the work queued before it, and every tensor built from Python
data (``torch.tensor``) is a blocking host-to-device copy. The device data path's epoch -- batch
assembly, augmentation, normalisation, forward, loss, backward, LAMB, the divergence guard and
the batch bar, as :func:`ctlib.train.fit` runs them on a GPU -- must do neither. On the CPU the
same code runs with those calls replaced by traps; on a GPU, ``torch.cuda.set_sync_debug_mode``
("error") checks it for real (skipped here without one; ``benchmarks/gpu_check.py`` runs it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from ctlib.config import Runtime, TrainConfig
from ctlib.handlers import BatchProgress, DivergenceGuard
from ctlib.models import create_model
from ctlib.optim import ForeachLamb
from ctlib.runtime import Precision, TrainingBatches
from ctlib.train import train_one_epoch
from ctlib.transforms import CanvasDataset

HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "cpu", "numpy")


class HostSync(AssertionError):
    """A host read, or a tensor built from Python data, inside the trapped region."""


def _trap(patch: pytest.MonkeyPatch) -> None:
    def refuse(name: str):  # noqa: ANN202
        def call(*args: object, **kwargs: object) -> None:
            raise HostSync(f"{name} inside a training step")

        return call

    for name in HOST_READS:
        patch.setattr(torch.Tensor, name, refuse(f"Tensor.{name}"))
    for name in ("tensor", "as_tensor", "from_numpy"):
        patch.setattr(torch, name, refuse(f"torch.{name}"))


def _epoch_parts(synth, device: torch.device, multi_tensor: bool):  # noqa: ANN001, ANN202
    train_set = CanvasDataset(synth.frame.iloc[:20], (64, 48), train=True)
    config = TrainConfig(arch="resnet18", batch_size=8, canvas=(64, 48), pretrained=False)
    runtime = Runtime(device=device.type, data_path="device", amp="off")
    torch.manual_seed(0)
    model = create_model("resnet18", pretrained=False, progress=False).to(device)
    model = model.to(memory_format=torch.channels_last)
    optimizer = ForeachLamb(model.parameters(), lr=1e-3, weight_decay=1.0,
                            multi_tensor=multi_tensor)  # fmt: skip
    batches = TrainingBatches(train_set, config, runtime, device, progress=False)
    return model, optimizer, batches, Precision(runtime, device)


def _trapped(batches: Iterator, arm: Callable[[], None], disarm: Callable[[], None]) -> Iterator:
    """The epoch's batches, every step between the first batch and the end trapped: the epoch's
    order is drawn on the host once before (one copy to the device), and the epoch's loss is
    read once after (the one read of an epoch)."""
    first = next(batches)
    arm()
    yield first
    yield from batches
    disarm()


def _one_epoch(model, optimizer, batches, precision, device, epoch, arm=None, disarm=None):  # noqa: ANN001, ANN202
    """An epoch as fit() runs it on a GPU, its steps between ``arm`` and ``disarm``."""
    guard = DivergenceGuard(device, sync_free=True)  # as on a GPU: read once, after the epoch
    bar = BatchProgress(len(batches), epoch, device, enabled=True, sync_free=True)
    nothing = lambda: None  # noqa: E731
    steps = _trapped(iter(batches.epoch(epoch)), arm or nothing, disarm or nothing)
    return guard, train_one_epoch(model, steps, optimizer, precision, guard, bar)


@pytest.mark.parametrize("multi_tensor", [False, True], ids=["per-tensor", "multi-tensor"])
def test_an_epoch_of_the_device_path_neither_reads_back_nor_copies_from_python(
    monkeypatch: pytest.MonkeyPatch, multi_tensor: bool, synth
) -> None:
    device = torch.device("cpu")
    model, optimizer, batches, precision = _epoch_parts(synth, device, multi_tensor)
    # one epoch first: what is made once (the optimizer's state, its ratio buffer) is made here
    _one_epoch(model, optimizer, batches, precision, device, 0)
    before = [p.detach().clone() for p in model.parameters()]
    with monkeypatch.context() as patch:
        arm = lambda: _trap(patch)  # noqa: E731
        guard, (loss, seen) = _one_epoch(model, optimizer, batches, precision, device, 1, arm,
                                         patch.undo)  # fmt: skip
    assert seen == 20 and np.isfinite(loss)  # 20 images in batches of 8, 8 and 4
    guard.check(1, 1e-3)  # the one read of the epoch
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters())), "no training"


def test_the_trap_catches_a_read(monkeypatch: pytest.MonkeyPatch, synth) -> None:
    device = torch.device("cpu")
    model, optimizer, batches, precision = _epoch_parts(synth, device, False)
    bar = BatchProgress(len(batches), 0, device, enabled=True)  # the CPU's bar reads the loss
    with monkeypatch.context() as patch, pytest.raises(HostSync, match="Tensor.item"):
        guard = DivergenceGuard(device, sync_free=True)
        steps = _trapped(iter(batches.epoch(0)), lambda: _trap(patch), patch.undo)
        train_one_epoch(model, steps, optimizer, precision, guard, bar)
    with monkeypatch.context() as patch, pytest.raises(HostSync, match="__bool__"):
        guard = DivergenceGuard(device)  # the CPU's guard checks every loss as it comes
        steps = _trapped(iter(batches.epoch(1)), lambda: _trap(patch), patch.undo)
        bar = BatchProgress(len(batches), 1, device, enabled=False)
        train_one_epoch(model, steps, optimizer, precision, guard, bar)


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU (benchmarks/gpu_check.py runs this check on a GPU machine)",
)
def test_an_epoch_on_cuda_runs_under_sync_debug_mode_error(synth) -> None:
    device = torch.device("cuda")
    model, optimizer, batches, precision = _epoch_parts(synth, device, True)
    _one_epoch(model, optimizer, batches, precision, device, 0)
    torch.cuda.synchronize()
    try:
        guard, (loss, seen) = _one_epoch(
            model, optimizer, batches, precision, device, 1,
            lambda: torch.cuda.set_sync_debug_mode("error"),
            lambda: torch.cuda.set_sync_debug_mode("default"),
        )  # fmt: skip
    finally:
        torch.cuda.set_sync_debug_mode("default")
    guard.check(1, 1e-3)
    assert seen == 20 and np.isfinite(loss)
