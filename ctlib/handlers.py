"""The pieces the training loop calls around the paper's step: resume, checkpoints, guard, log.

Each is a small named object :func:`ctlib.train.fit` calls explicitly, in the order it reads:
:func:`resume_run` (training state and random state back from ``checkpoint.pt``),
:class:`DivergenceGuard` (a NaN or infinite loss stops the run), :class:`BatchProgress`,
:class:`BestWeights` (``best.pt`` by validation loss), :class:`RollingCheckpoint` (the full
state, atomically, by epochs or minutes) and :class:`EpochLog` (``history.json``,
``history.csv``, TensorBoard). None of them touches the loss, ``backward`` or the optimizer step.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import random
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ctlib.config import RUNTIME_SETTINGS, Runtime, TrainConfig, recipe_differences
from ctlib.errors import CheckpointError, TrainingDivergedError
from ctlib.files import atomic_write, write_json

__all__ = [
    "CHECKPOINT",
    "HISTORY",
    "BatchProgress",
    "BestWeights",
    "DivergenceGuard",
    "EpochLog",
    "ResumePoint",
    "RollingCheckpoint",
    "atomic_save",
    "epoch_bar",
    "load_training_state",
    "resume_run",
    "rng_state",
    "set_rng_state",
    "to_host",
]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
BEST = "best.pt"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then renamed into place."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


# --- random state -------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every random state, as tensors and plain numbers only (so that a checkpoint loads with
    ``torch.load(weights_only=True)``, which cannot run code)."""
    version, internal, gauss_next = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    python, numpy = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- resume -------------------------------------------------------------------------------


def load_training_state(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """A ``checkpoint.pt`` written by :func:`ctlib.train.fit`, loaded with
    ``weights_only=True``: tensors and plain data only, so a planted file can never run code.

    Raises:
        CheckpointError: the file is truncated or corrupt, holds other objects, or is not a
            training checkpoint; the message names the file and says to use ``--no-resume``.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            path,
            "it holds objects other than tensors and plain data (written by an older "
            f"ctlib, or not by ctlib), so it is not loaded: loading it could run code ({error})",
        ) from None
    except (EOFError, RuntimeError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(path, f"the file is truncated or corrupt ({error})") from None
    keys = {"model", "optimizer", "epoch", "history", "rng", "config"}
    if not isinstance(state, dict) or not keys <= set(state):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(path, f"it is no ctlib training checkpoint (found {found})")
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 100_000:
        raise CheckpointError(path, f"its epoch {epoch!r} is not an epoch count")
    mistyped = [k for k in ("model", "optimizer", "rng") if not isinstance(state[k], dict)]
    if not isinstance(state["history"], list) or not all(
        isinstance(h, dict) for h in state["history"]
    ):
        mistyped.append("history")
    if mistyped:
        raise CheckpointError(path, f"its {', '.join(mistyped)} are not what fit writes")
    return state


@dataclass
class ResumePoint:
    """Where a run starts: epoch 0 with nothing behind it, or where a checkpoint left off."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = math.inf


def resume_run(
    folder: Path | None,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    precision: Any,
    device: torch.device,
) -> ResumePoint:
    """Load ``folder/checkpoint.pt`` into the model, optimizer, gradient scaler
    (``precision.scaler``) and random states.

    Returns a fresh :class:`ResumePoint` when there is no checkpoint. Refuses (naming the
    settings) a checkpoint of another recipe; runtime settings may change.
    """
    if folder is None or not (folder / CHECKPOINT).is_file():
        return ResumePoint()
    state = load_training_state(folder / CHECKPOINT, device)
    differ = recipe_differences(state.get("config") or {}, config)
    if differ:
        raise ValueError(
            f"{folder / CHECKPOINT} was written by another recipe (it differs in "
            f"{', '.join(differ)}); resume with the same one (runtime settings such as "
            f"{', '.join(RUNTIME_SETTINGS)} may change), use another output folder, or "
            "start again with --no-resume."
        )
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if precision.scaler is not None and state.get("scaler"):
            precision.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            folder / CHECKPOINT,
            f"its saved state does not fit this network and optimizer (another architecture's "
            f"weights?): {first}",
        ) from None
    log.info("resumed from %s at epoch %d", folder / CHECKPOINT, state["epoch"] + 1)
    return ResumePoint(state["epoch"] + 1, state["history"], state.get("best_val", math.inf))


# --- during an epoch ----------------------------------------------------------------------


class DivergenceGuard:
    """Stops a run whose loss became NaN or infinite, instead of training on garbage.

    On the CPU the loss is checked as it comes (it costs nothing); on a GPU the first bad step
    is recorded on the device and read once, at the end of the epoch (:meth:`check`).
    """

    def __init__(self, device: torch.device, sync_free: bool | None = None) -> None:
        self.sync_free = device.type == "cuda" if sync_free is None else sync_free
        self.step = torch.full((), -1, dtype=torch.long, device=device)
        self.loss = torch.zeros((), device=device)

    def diverged(self, loss: torch.Tensor, step: int) -> bool:
        """Record ``loss`` of batch ``step``; True (on the CPU only) once it is not finite."""
        first_bad = (self.step < 0) & ~torch.isfinite(loss)
        self.step = torch.where(first_bad, step, self.step)
        self.loss = torch.where(first_bad, loss, self.loss)
        return not self.sync_free and bool(self.step >= 0)

    def check(self, epoch: int, lr: float) -> None:
        """Raise :class:`TrainingDivergedError` if any batch of the epoch diverged."""
        if int(self.step) >= 0:  # one read per epoch
            raise TrainingDivergedError(
                f"The loss became {self.loss.item()} at epoch {epoch + 1}, batch "
                f"{int(self.step) + 1} (lr {lr:g}). Lower the learning rate, turn off amp, or "
                "check the data for broken images; the last good checkpoint is kept."
            )


def epoch_bar(start: int, config: TrainConfig, enabled: bool) -> tqdm:
    """The run's epoch bar (it starts where a resumed run left off)."""
    return tqdm(
        range(start, config.epochs),
        desc=f"train {config.arch}",
        unit="epoch",
        disable=not enabled,
        initial=start,
        total=config.epochs,
    )


class BatchProgress:
    """The batch bar of one epoch: on the CPU with the running loss; on a GPU it counts batches
    only (the loss would be a host read: it is read once, at the end of the epoch)."""

    def __init__(
        self,
        total: int,
        epoch: int,
        device: torch.device,
        enabled: bool,
        sync_free: bool | None = None,
    ) -> None:
        self.show_loss = enabled and not (device.type == "cuda" if sync_free is None else sync_free)
        self.bar = tqdm(
            total=total, desc=f"epoch {epoch + 1}", leave=False, disable=not enabled, unit="batch"
        )

    def update(self, step: int, total_loss: torch.Tensor, seen: int) -> None:
        if self.show_loss:
            self.bar.set_postfix(loss=f"{total_loss.item() / seen:.4f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# --- after an epoch -----------------------------------------------------------------------


class BestWeights:
    """Keeps the weights of the epoch with the lowest validation loss in ``folder/best.pt``."""

    def __init__(self, folder: Path | None, best: float = math.inf) -> None:
        self.folder, self.value = folder, best

    def update(self, val_loss: float, model: nn.Module, epoch: int) -> None:
        if self.folder is not None and val_loss < self.value:
            self.value = val_loss
            atomic_save({"model": model.state_dict(), "epoch": epoch + 1}, self.folder / BEST)


class RollingCheckpoint:
    """The full training state in one rolling ``checkpoint.pt``, written atomically, and always
    after the last epoch: a kill loses at most the training since the last one.

    On the CPU it is written every ``runtime.checkpoint_every`` epochs or once
    ``checkpoint_minutes`` passed, in the training's own thread. On a GPU an epoch takes
    seconds and a checkpoint of a large network is a gigabyte: it goes by time only
    (``runtime.gpu_checkpoint_minutes``), and the state is copied to the host and written on a
    background thread while the GPU trains on. One write at a time; :meth:`wait` joins the
    writer (and raises its error), and :func:`ctlib.train.fit` calls it before it returns, so a
    finished fold never has a write in flight. ``by_time`` and ``background`` default to
    whether ``device`` is a GPU.
    """

    def __init__(
        self,
        folder: Path | None,
        runtime: Runtime,
        start_epoch: int,
        device: torch.device | None = None,
        *,
        by_time: bool | None = None,
        background: bool | None = None,
    ) -> None:
        gpu = device is not None and device.type == "cuda"
        self.folder, self.runtime = folder, runtime
        self.by_time = gpu if by_time is None else by_time
        self.background = gpu if background is None else background
        self.saved_epochs, self.saved_at = start_epoch, time.monotonic()
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def due(self, epoch: int, epochs: int) -> bool:
        """Whether the state after 0-based ``epoch`` (of ``epochs``) is to be written."""
        if self.folder is None:
            return False
        if epoch + 1 == epochs:
            return True
        minutes = self.runtime.gpu_checkpoint_minutes if self.by_time else None
        if minutes is None:
            if epoch + 1 - self.saved_epochs >= self.runtime.checkpoint_every:
                return True
            minutes = self.runtime.checkpoint_minutes
        return time.monotonic() - self.saved_at >= 60 * minutes

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        """Write ``state`` (model, optimizer, scaler, history, best_val, config) with the epoch
        and every random state; in the background, from a copy on the host."""
        payload = {**state, "epoch": epoch, "rng": rng_state()}
        if self.background:
            self.wait()  # the previous write first: one at a time
            payload = to_host(payload)  # training goes on changing the tensors in place
            self._writer = threading.Thread(
                target=self._write, args=(payload,), name="ctlib-checkpoint"
            )
            self._writer.start()
        else:
            atomic_save(payload, self.folder / CHECKPOINT)
        self.saved_epochs, self.saved_at = epoch + 1, time.monotonic()

    def _write(self, payload: dict[str, Any]) -> None:
        try:
            atomic_save(payload, self.folder / CHECKPOINT)
        except BaseException as error:  # raised in the training thread by wait()
            self._error = error

    def wait(self) -> None:
        """Join the background writer, if any, and raise what it failed with."""
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        if self._error is not None:
            error, self._error = self._error, None
            error.add_note(
                f"ctlib: writing {self.folder / CHECKPOINT} in the background failed; the "
                "previous checkpoint is still in place: check the disk (space, permissions) "
                "and resume."
            )
            raise error


def to_host(value: Any) -> Any:
    """``value`` with every tensor copied to the host (one copy each: the originals may change
    while the copy is written)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: to_host(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_host(item) for item in value)
    return value


class EpochLog:
    """Each epoch's record: ``history.json`` and ``history.csv`` in the run's folder, and
    TensorBoard scalars in ``<folder>/tensorboard`` when asked (``--tensorboard``)."""

    def __init__(self, folder: Path | None, runtime: Runtime) -> None:
        self.folder, self.writer = folder, None
        if runtime.tensorboard and folder is not None:
            self.writer = _tensorboard_writer(folder / "tensorboard")

    def write(self, history: list[dict[str, Any]]) -> None:
        if self.folder is None:
            return
        write_json(history, self.folder / HISTORY)
        table = pd.DataFrame(history)
        atomic_write(self.folder / "history.csv", lambda tmp: table.to_csv(tmp, index=False))
        if self.writer is not None:
            record = history[-1]
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _tensorboard_writer(folder: Path) -> Any:
    try:
        # lazy: TensorBoard is optional and only --tensorboard needs it
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            f"--tensorboard needs the tensorboard package ({error}); install it with "
            "`pip install tensorboard`, or train without --tensorboard."
        ) from None
    return SummaryWriter(log_dir=str(folder))
