"""Training as in the paper (Sec. 4): every layer fine-tuned with LAMB on binary cross-entropy.

The learning rate starts at 3e-4 and drops to 1e-4, 3e-5, 1e-5 and 3e-6 at epochs 50, 70, 80
and 90 of 100 (:func:`ctlib.config.lr_at`); batch 32, weight decay 1. :func:`train_step` is one
batch, :func:`train_one_epoch` one pass, :func:`fit` the whole schedule. Around them, the
machinery: :mod:`ctlib.runtime` (device, precision, data path) and :mod:`ctlib.handlers`
(resume, checkpoints, divergence guard, progress, history). ``docs/DEVELOPERS.md`` explains why.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ctlib.config import Runtime, TrainConfig, lr_at
from ctlib.handlers import (
    BatchProgress,
    BestWeights,
    DivergenceGuard,
    EpochLog,
    RollingCheckpoint,
    epoch_bar,
    resume_run,
)
from ctlib.metrics import binary_cross_entropy
from ctlib.models import probabilities
from ctlib.optim import ForeachLamb
from ctlib.runtime import (
    CompiledSteps,
    Precision,
    TrainingBatches,
    evaluation_batches,
    memory_format,
    place_model,
    resolve_device,
    seed_everything,
)
from ctlib.transforms import CanvasDataset

__all__ = ["Runtime", "TrainConfig", "build_optimizer", "fit", "lr_at", "loss_fn", "predict"]
__all__ += ["train_one_epoch", "train_step", "validate"]


def loss_fn(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy on the one COVID logit (the paper's loss)."""
    if logits.shape[-1] == 1:
        return nn.functional.binary_cross_entropy_with_logits(logits[:, 0].float(), labels.float())
    return nn.functional.cross_entropy(logits.float(), labels.long())


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
) -> torch.Tensor:
    """One LAMB step on one batch: forward, binary cross-entropy, backward, update."""
    with precision.autocast():
        logits = model(images)
    loss = loss_fn(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    if precision.scaler is None:
        loss.backward()
        optimizer.step()
    else:  # fp16: the loss is scaled so that small gradients survive
        precision.scaler.scale(loss).backward()
        precision.scaler.step(optimizer)
        precision.scaler.update()
    return loss.detach()


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    guard: DivergenceGuard,
    progress: BatchProgress,
) -> tuple[float, int]:
    """One pass over the training batches; returns ``(mean loss, images seen)``."""
    model.train()
    total, seen = torch.zeros_like(guard.loss), 0
    for step, (images, labels) in enumerate(batches):
        loss = train_step(model, images, labels, optimizer, precision)
        if guard.diverged(loss, step):
            break
        total += loss * labels.shape[0]
        seen += labels.shape[0]
        progress.update(step, total, seen)
    progress.close()
    return total.item() / max(seen, 1), seen


def fit(
    model: nn.Module,
    train_set: CanvasDataset,
    config: TrainConfig,
    out: str | os.PathLike[str] | None = None,
    *,
    runtime: Runtime | None = None,
    resume: bool = True,
    progress: bool = True,
    val_set: Dataset | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``train_set`` with the recipe ``config``: the paper's schedule, epoch by
    epoch; returns one record per epoch (``epoch, lr, train_loss, seconds, images_per_s``, and
    ``val_loss, val_accuracy`` with ``val_set``). The model is left trained, in eval mode.

    ``out`` keeps ``checkpoint.pt`` (resumed from when ``resume``), ``history.json`` and
    ``history.csv`` (None: nothing on disk); ``runtime`` says where and how (default: auto);
    ``val_set`` is scored after every epoch, its best epoch kept in ``out/best.pt``;
    ``on_epoch_end`` gets each record (e.g. to stop early by raising). Raises
    :class:`~ctlib.errors.TrainingDivergedError` when the loss becomes NaN or infinite.
    """
    runtime = runtime or Runtime()
    device = place_model(model, runtime)
    seed_everything(config.seed)
    optimizer = build_optimizer(model, config)
    precision = Precision(runtime, device)
    folder = _folder(out)
    start = resume_run(folder if resume else None, config, model, optimizer, precision, device)
    batches = TrainingBatches(train_set, config, runtime, device, progress)
    step_model = CompiledSteps(model, config.batch_size) if runtime.compile else model
    checkpoint = RollingCheckpoint(folder, runtime, start.epoch, device)
    best = BestWeights(folder, start.best_val)
    log, history = EpochLog(folder, runtime), start.history
    epochs = epoch_bar(start.epoch, config, progress)
    try:
        for epoch in epochs:
            lr = lr_at(epoch, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            started, guard = time.perf_counter(), DivergenceGuard(device)
            bar = BatchProgress(len(batches), epoch, device, progress)
            loss, seen = train_one_epoch(
                step_model, batches.epoch(epoch), optimizer, precision, guard, bar
            )
            guard.check(epoch, lr)
            seconds = time.perf_counter() - started
            record = epoch_record(epoch, lr, loss, seen, seconds)
            if val_set is not None:
                record.update(validate(model, val_set, config, runtime))
                best.update(record["val_loss"], model, epoch)
            history.append(record)
            epochs.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:g}")
            if checkpoint.due(epoch, config.epochs):
                checkpoint.save(
                    epoch, _training_state(model, optimizer, precision, history, best, config)
                )
            log.write(history)
            if on_epoch_end is not None:
                on_epoch_end(record)
    finally:
        checkpoint.wait()  # a write in flight ends before the fold does
        log.close()
    model.eval()
    return history


def validate(
    model: nn.Module, val_set: Dataset, config: TrainConfig, runtime: Runtime
) -> dict[str, float]:
    """Validation loss (binary cross-entropy) and accuracy of the model as it stands."""
    probs, labels = predict(
        model, val_set, config, runtime=runtime, progress=False, return_labels=True
    )
    accuracy = float(np.mean((probs >= config.threshold) == labels))
    return {"val_loss": binary_cross_entropy(labels, probs), "val_accuracy": accuracy}


def epoch_record(epoch: int, lr: float, loss: float, seen: int, seconds: float) -> dict[str, Any]:
    """What the history keeps of one epoch (0-based ``epoch``)."""
    return {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": loss,
        "seconds": round(seconds, 3),
        "images_per_s": round(seen / seconds, 2) if seconds else None,
    }


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """LAMB as the recipe names it: ``"lamb"``, torch-optimizer's ``Lamb`` arithmetic
    (:class:`ctlib.optim.ForeachLamb`), or ``"lamb_timm"``, timm's through its factory."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "lamb":
        return ForeachLamb(params, lr=config.lr, weight_decay=config.weight_decay)
    # lazy: timm's import is slow and only optimizer='lamb_timm' needs it
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, "lamb", lr=config.lr, weight_decay=config.weight_decay)


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig | None = None,
    *,
    runtime: Runtime | None = None,
    progress: bool = True,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Probability of COVID for every item of ``dataset`` (in order).

    Args:
        model: a trained model.
        dataset: yields ``(image, label)``, e.g. an evaluation ``CanvasDataset``.
        config: the recipe (its batch size); default the paper's.
        runtime: device, precision, memory format; default the CPU.
        progress: a progress bar.
        return_labels: also return the labels.
    """
    config, runtime = config or TrainConfig(), runtime or Runtime(device="cpu")
    if len(dataset) == 0:
        raise ValueError("predict() got an empty data set; check the split or fold selection.")
    device = resolve_device(runtime.device)
    model.to(device=device, memory_format=memory_format(runtime)).eval()
    precision = Precision(runtime, device)
    probs, ys = [], []
    batches, total = evaluation_batches(dataset, config, runtime, device)
    for images, y in tqdm(batches, total=total, desc="predict", leave=False, disable=not progress):
        with precision.autocast():
            probs.append(probabilities(model(images)).float())
        ys.append(y)
    out = torch.cat(probs).cpu().numpy().astype(np.float64)  # one read for the whole pass
    if return_labels:
        return out, torch.cat([torch.as_tensor(y) for y in ys]).cpu().numpy().astype(np.int64)
    return out


def _folder(out: str | os.PathLike[str] | None) -> Path | None:
    if out is None:
        return None
    Path(out).mkdir(parents=True, exist_ok=True)
    return Path(out)


def _training_state(model, optimizer, precision, history, best, config) -> dict[str, Any]:  # noqa: ANN001
    scaler = precision.scaler
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "history": history,
        "best_val": best.value,
        "config": config.to_dict(),
    }
