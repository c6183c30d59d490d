"""Training: the paper's LAMB recipe in one frozen config, resumable, on CPU or GPU.

Alshazly et al. (2020, Sec. 4) fine-tune every network entirely with LAMB on binary
cross-entropy: learning rate 3e-4, lowered to 1e-4, 3e-5, 1e-5 and 3e-6 at epochs 50,
70, 80 and 90; batch size 32; weight decay 1; 100 epochs. :class:`TrainConfig` holds
exactly these values as defaults. A shorter run (quick mode, the CPU) scales the
milestones with the number of epochs (:func:`lr_at`).

**Which LAMB.** ``optimizer="lamb"`` (the default) is torch-optimizer's ``Lamb``, the
package the kit's users chose, computed by :class:`ctlib.optim.ForeachLamb` (the same
arithmetic, checked against it step by step, without reading values back to the host):
no bias correction, the weight norm in the trust ratio clamped at 10, the trust ratio
applied to every tensor (biases and norms included), no gradient clipping.
``optimizer="lamb_timm"`` is timm's ``Lamb`` through timm's optimizer factory: bias
correction, global gradient-norm clipping at 1.0, and biases and norm weights excluded from
weight decay (and so from the trust ratio). The two give different trajectories from the
same start; the paper does not say which it used.

**Speed.** On a GPU: mixed precision (:func:`choose_precision`: bf16 where the GPU computes
it natively, compute capability 8.0 and up, else fp16 with a gradient scaler),
channels-last memory, ``cudnn.benchmark`` (the canvas never changes size), and the GPU data
path (:mod:`ctlib.batches`: canvases held on the GPU, augmented a batch at a time; chosen by
``data_path="auto"`` on CUDA). Nothing in a training step reads a value back to the host:
the LAMB is :class:`ctlib.optim.ForeachLamb` (torch-optimizer's arithmetic, without its
per-tensor host reads), and the running loss and the divergence check stay on the device
until the epoch ends. Where the CPU data path feeds a GPU, the DataLoader's workers
(``num_workers=None``: one per core but one, at most 8) live for the whole run.

On the CPU: fp32, channels-last (about 2x for EfficientNet-Lite0), denormals flushed to zero
(pretrained weights otherwise run 5-25 % slower); bf16 autocast is an option
(``amp="bf16"``) to measure, never the default: on this project's CPUs it was many times
slower than fp32 (``benchmarks/bench_precision.py``). ``torch.compile`` is optional
(``compile=True``, ``--compile``) and off by default: it costs minutes per input shape and
was slower than eager fp32 on those CPUs too.

**Little lost, little written.** The full training state (weights, optimizer, epoch,
history, random states) is written atomically to one rolling ``checkpoint.pt`` every
``checkpoint_every`` epochs (5) or once ``checkpoint_minutes`` (5) have passed since the last
one, whichever comes first, and after the last epoch; :func:`ctlib.cv.run_fold` removes it
when the fold's model and predictions are saved. On a fast GPU a checkpoint per epoch would
cost as much as the epoch; on the CPU at most five minutes of training are lost to a kill.
:func:`fit` with ``resume=True`` continues from it and reaches the same result as an
uninterrupted run: the shuffling and the augmentations depend only on ``(seed, epoch,
index)``, and the global random state (dropout) is restored. It resumes when only runtime
settings changed (:data:`RUNTIME_SETTINGS`: device, precision, workers, compile, data path,
checkpoint cadence) and refuses, naming the settings, when the recipe changed. A NaN or
infinite loss stops training with :class:`TrainingDivergedError` instead of training on
garbage (on a GPU at the end of the epoch it appeared in, the host reading the check once).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import random
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from ctlib.batches import DeviceBatches
from ctlib.errors import CheckpointError, TrainingDivergedError
from ctlib.files import atomic_write, write_json
from ctlib.models import get_spec, probabilities
from ctlib.optim import ForeachLamb
from ctlib.transforms import AugmentConfig, CanvasDataset, item_seed

__all__ = [
    "OPTIMIZERS",
    "RUNTIME_SETTINGS",
    "TrainConfig",
    "TrainingDivergedError",
    "build_optimizer",
    "choose_precision",
    "fit",
    "load_training_state",
    "lr_at",
    "predict",
    "recipe_of",
    "resolve_device",
    "seed_everything",
]

log = logging.getLogger(__name__)

OPTIMIZERS = ("lamb", "lamb_timm")
CONTENTS = ("image", "flat")
# The smallest canvas side each network accepts (valid convolutions and pooling shrink
# the feature maps to nothing below it); 32 for the others (five stride-2 stages).
MIN_CANVAS_SIDE = {"inceptionv3": 75, "xception": 71}
CHECKPOINT = "checkpoint.pt"
#: Settings that change how a run is computed, not what it learns: a run resumes when only
#: they change, and they never tell two recipes apart.
RUNTIME_SETTINGS = (
    "device",
    "amp",
    "channels_last",
    "compile",
    "num_workers",
    "data_path",
    "checkpoint_every",
    "checkpoint_minutes",
)
DATA_PATHS = ("auto", "loader", "device")
HISTORY = "history.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Defaults: the paper's recipe (Sec. 4).

    Attributes:
        arch: registry name (``ctlib.models.list_models()``).
        pretrained: start from ImageNet weights (the paper: yes).
        strategy: ``"finetune"`` trains everything (the paper); ``"feature_extraction"``
            only the head.
        epochs: 100 in the paper.
        batch_size: 32 in the paper.
        lr: 3e-4 in the paper.
        lr_milestones: epochs (of 100) where the learning rate drops -- 50, 70, 80, 90.
        lr_values: the learning rates from those epochs on -- 1e-4, 3e-5, 1e-5, 3e-6.
        weight_decay: 1 in the paper.
        optimizer: ``"lamb"`` (torch-optimizer, default) or ``"lamb_timm"``.
        canvas: ``(width, height)``; None takes the architecture's Table 1 canvas.
        augment: the train-time augmentations.
        seed: one seed for Python, NumPy, torch, augmentations and shuffling.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        amp: ``"auto"`` (mixed precision on CUDA, none on the CPU), ``"bf16"``,
            ``"fp16"`` or ``"off"``.
        channels_last: channels-last memory format (faster on both).
        compile: ``torch.compile`` the model.
        num_workers: DataLoader worker processes for the CPU data path (0: load in the main
            process; None: 0 on the CPU, where workers would take the cores the training
            needs, and one per core but one, at most 8, when the CPU path feeds a GPU).
        data_path: ``"loader"`` (albumentations per image in a DataLoader: the CPU path),
            ``"device"`` (canvases on the training device, augmented a batch at a time:
            :mod:`ctlib.batches`), or ``"auto"``: ``"device"`` on CUDA, else ``"loader"``.
        checkpoint_every: write the rolling ``checkpoint.pt`` every this many epochs...
        checkpoint_minutes: ...or once this many minutes of training passed since the last
            one, whichever is first (and always after the last epoch).
        threshold: probability from which a prediction is COVID.
        content: what the canvas shows inside the placement box: ``"image"`` (the slice,
            as in the paper) or ``"flat"`` (a uniform gray box: only the box's size and
            position remain -- the padding-geometry shortcut probe).
    """

    arch: str = "efficientnet_lite0"
    pretrained: bool = True
    strategy: str = "finetune"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 3e-4
    lr_milestones: tuple[int, ...] = (50, 70, 80, 90)
    lr_values: tuple[float, ...] = (1e-4, 3e-5, 1e-5, 3e-6)
    weight_decay: float = 1.0
    optimizer: str = "lamb"
    canvas: tuple[int, int] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    num_workers: int | None = None
    data_path: str = "auto"
    checkpoint_every: int = 5
    checkpoint_minutes: float = 5.0
    threshold: float = 0.5
    content: str = "image"

    def __post_init__(self) -> None:
        # unknown names fail here, with a suggestion; aliases become the registry's name, so
        # that a run is named (and found) the same whatever spelling started it
        object.__setattr__(self, "arch", get_spec(self.arch).name)
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}."
            )
        if len(self.lr_milestones) != len(self.lr_values):
            raise ValueError("lr_milestones and lr_values must have the same length.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}.")
        if self.content not in CONTENTS:
            raise ValueError(f"content must be one of {CONTENTS}, got {self.content!r}.")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be 'auto', 'bf16', 'fp16' or 'off', got {self.amp!r}.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}; the paper's is 3e-4.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(
                f"weight_decay must be >= 0, got {self.weight_decay!r} (the paper: 1)."
            )
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(
                f"num_workers must be >= 0 (0: load in the main process), got {self.num_workers}."
            )
        if self.data_path not in DATA_PATHS:
            raise ValueError(f"data_path must be one of {DATA_PATHS}, got {self.data_path!r}.")
        if self.checkpoint_every < 1 or not self.checkpoint_minutes > 0:
            raise ValueError(
                "checkpoint_every must be >= 1 epoch and checkpoint_minutes > 0, got "
                f"{self.checkpoint_every} and {self.checkpoint_minutes}."
            )
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(self.device)):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}."
            )
        if self.amp == "fp16" and self.device == "cpu":
            raise ValueError("amp='fp16' needs a GPU: on the CPU use 'off' (fp32) or 'bf16'.")
        if self.canvas is not None:
            object.__setattr__(self, "canvas", (int(self.canvas[0]), int(self.canvas[1])))
            smallest = MIN_CANVAS_SIDE.get(self.arch, 32)
            if min(self.canvas) < smallest:
                raise ValueError(
                    f"Canvas {self.canvas[0]}x{self.canvas[1]} is too small for {self.arch}: its "
                    f"feature maps vanish below {smallest} px a side. Use a canvas of at least "
                    f"{smallest} x {smallest} (Table 1: {get_spec(self.arch).canvas})."
                )
        object.__setattr__(self, "lr_milestones", tuple(int(m) for m in self.lr_milestones))
        object.__setattr__(self, "lr_values", tuple(float(v) for v in self.lr_values))

    @property
    def input_size(self) -> tuple[int, int]:
        """The canvas ``(width, height)`` actually used."""
        return self.canvas or get_spec(self.arch).canvas

    @property
    def run_name(self) -> str:
        """The results folder name of this recipe: the architecture, plus what differs from
        the paper's kind of run -- ``-scratch`` (random initialisation), ``-fe`` (feature
        extraction), ``-flat`` (the padding-geometry probe). E.g.
        ``efficientnet_lite0-scratch``."""
        name = self.arch
        if not self.pretrained:
            name += "-scratch"
        if self.strategy != "finetune":
            name += "-fe"
        if self.content != "image":
            name += f"-{self.content}"
        return name

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``config.json``."""
        data = asdict(self)
        data["augment"] = asdict(self.augment)
        return json.loads(json.dumps(data))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown TrainConfig keys {sorted(unknown)}.")
        data = dict(data)
        if isinstance(data.get("augment"), dict):
            data["augment"] = AugmentConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in data["augment"].items()}
            )
        for key in ("lr_milestones", "lr_values", "canvas"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        return cls(**data)

    def with_lr(self, lr: float) -> TrainConfig:
        """A copy whose whole schedule is scaled to start at ``lr`` (the drops keep their ratios).

        ``TrainConfig(lr=3e-3)`` alone would drop to the paper's absolute 1e-4 at the first
        milestone; ``TrainConfig().with_lr(3e-3)`` drops to 1e-3, 3e-4, 1e-4, 3e-5.
        """
        factor = lr / self.lr
        return replace(self, lr=lr, lr_values=tuple(v * factor for v in self.lr_values))

    def quick(self, epochs: int = 2, **changes: Any) -> TrainConfig:
        """A copy for a short run (milestones scale with ``epochs``)."""
        return replace(self, epochs=epochs, **changes)


def recipe_of(config: dict[str, Any]) -> dict[str, Any]:
    """A :meth:`TrainConfig.to_dict` without its :data:`RUNTIME_SETTINGS`: what a run learns."""
    return {k: v for k, v in config.items() if k not in RUNTIME_SETTINGS}


def lr_at(epoch: int, config: TrainConfig) -> float:
    """Learning rate of 0-based ``epoch``; the milestones scale to ``config.epochs``.

    With 100 epochs: 3e-4 for epochs 0-49, 1e-4 for 50-69, 3e-5 for 70-79, 1e-5 for
    80-89, 3e-6 for 90-99 -- as in the paper. With 20 epochs the drops come at 10,
    14, 16 and 18.
    """
    lr = config.lr
    for milestone, value in zip(config.lr_milestones, config.lr_values, strict=True):
        if epoch >= math.floor(milestone * config.epochs / 100 + 0.5):
            lr = value
    return lr


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA). Albumentations is seeded per item."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} asked for, but PyTorch sees no CUDA GPU here; use 'cpu'."
        )
    return resolved


def choose_precision(
    amp: str, device_type: str, capability: tuple[int, int] | None = None
) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on a device, or None for fp32.

    ``"auto"``: fp32 on the CPU (bf16 autocast was many times slower than fp32 on this
    project's CPUs, ``benchmarks/bench_precision.py``); on a CUDA GPU, bf16 where it computes
    bf16 natively (compute capability 8.0 and up: A100, H100, RTX 30xx...), else fp16 with a
    gradient scaler (T4 and V100: 7.5 and 7.0; Colab's free GPU is a T4, where
    ``torch.cuda.is_bf16_supported()`` says True but only emulates it). ``"bf16"``, ``"fp16"``
    and ``"off"`` are taken as asked.

    Args:
        amp: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"off"``.
        device_type: ``"cpu"``, ``"cuda"``...
        capability: the GPU's compute capability ``(major, minor)``; asked of the GPU when
            None and the device is CUDA.
    """
    if amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device_type != "cuda":
        return None
    if capability is None:
        capability = torch.cuda.get_device_capability()
    return torch.bfloat16 if tuple(capability) >= (8, 0) else torch.float16


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
    return choose_precision(config.amp, device.type, capability)


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The configured LAMB (see the module docstring for the two implementations)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "lamb":
        # torch-optimizer's Lamb arithmetic (tests/test_optim.py), without its per-tensor
        # host reads; its state dicts load into torch_optimizer.Lamb and back
        return ForeachLamb(params, lr=config.lr, weight_decay=config.weight_decay)
    # lazy: timm's import is slow and only optimizer='lamb_timm' needs it
    from timm.optim import create_optimizer_v2

    return create_optimizer_v2(model, "lamb", lr=config.lr, weight_decay=config.weight_decay)


def _atomic_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(state: dict[str, Any]) -> None:
    python, numpy = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["state"].tolist()), python["gauss_next"]))
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_state(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """A ``checkpoint.pt`` written by :func:`fit`, loaded with ``weights_only=True``: tensors
    and plain data only, so a planted or foreign file can never run code.

    Raises:
        CheckpointError: the file is truncated or corrupt, holds other objects (not written by
            this version of ctlib, or written to run code), or is not a training checkpoint;
            the message names the file and says to start again with ``--no-resume``.
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
    return state


def resolve_data_path(config: TrainConfig, device: torch.device) -> str:
    """The data path ``config.data_path`` means on ``device``: ``"device"`` or ``"loader"``."""
    if config.data_path != "auto":
        return config.data_path
    return "device" if device.type == "cuda" else "loader"


def resolve_workers(config: TrainConfig, device: torch.device) -> int:
    """DataLoader workers for the CPU data path: ``config.num_workers``, or when None, 0 on the
    CPU (workers would compete with the training for the cores) and one per core but one, at
    most 8, when the loader feeds a GPU."""
    if config.num_workers is not None:
        return config.num_workers
    if device.type == "cuda":
        return max(1, min(8, (os.cpu_count() or 2) - 1))
    return 0


def epoch_order(config: TrainConfig, n: int, epoch: int) -> list[int]:
    """The shuffled order of epoch ``epoch``: drawn from ``(seed, epoch)`` alone, so it never
    depends on the data path, the number of workers or how often a loader is iterated."""
    stream = torch.Generator().manual_seed(item_seed(config.seed, epoch, 2**32 - 1))
    return torch.randperm(n, generator=stream).tolist()


def _drop_last(n: int, batch_size: int) -> bool:
    return n % batch_size == 1  # no batch of 1 for BatchNorm


class _EpochOrder(Sampler):
    """One epoch's training order at a time, as ``(epoch, index)`` pairs. A persistent
    DataLoader asks its sampler for the order in the main process at every epoch, while its
    workers keep their own copies of the data set, which ``set_epoch`` in the main process
    would not reach: so every item carries its epoch (:meth:`CanvasDataset.__getitem__`)."""

    def __init__(self, n: int, config: TrainConfig) -> None:
        self.n, self.config, self.epoch = n, config, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in epoch_order(self.config, self.n, epoch)])


def _train_loader(
    dataset: CanvasDataset, config: TrainConfig, device: torch.device
) -> tuple[DataLoader, _EpochOrder]:
    """The CPU data path's DataLoader for the whole run (its workers persist across epochs)
    and the sampler that sets each epoch's order. The loader's own generator seeds only the
    workers' global random states, which no augmentation uses."""
    workers = resolve_workers(config, device)
    order = _EpochOrder(len(dataset), config)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=order,
        generator=torch.Generator().manual_seed(item_seed(config.seed, 0, 2**32 - 2)),
        num_workers=workers,
        drop_last=_drop_last(len(dataset), config.batch_size),
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    return loader, order


def _eval_batches(
    dataset: Dataset, config: TrainConfig, device: torch.device, memory: torch.memory_format
) -> tuple[Iterator[tuple[torch.Tensor, Any]], int]:
    """An evaluation pass over ``dataset`` in order: ``(batches on the device, how many)``."""
    if resolve_data_path(config, device) == "device" and isinstance(dataset, CanvasDataset):
        feeder = DeviceBatches.from_dataset(
            dataset, batch_size=config.batch_size, device=device, memory_format=memory
        )
        return feeder.epoch(), feeder.n_batches()
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        num_workers=resolve_workers(config, device),
        pin_memory=device.type == "cuda",
    )

    def batches() -> Iterator[tuple[torch.Tensor, Any]]:
        for images, labels in loader:  # iterated once
            yield images.to(device, non_blocking=True, memory_format=memory), labels

    return batches(), len(loader)


def _progress(batches: Iterator[Any], total: int, **bar: Any) -> Iterator[tuple[Any, tqdm]]:
    """Yield ``(batch, progress bar)``, iterating ``batches`` exactly once.

    ``tqdm.auto``'s bar (its asyncio variant) calls ``iter()`` on what it wraps both when it
    is built and when it is iterated: around a DataLoader that started the workers twice per
    epoch. So the bar only counts; the loop iterates the batches itself.
    """
    with tqdm(total=total, **bar) as progress:
        for batch in batches:
            yield batch, progress
            progress.update(1)


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if logits.shape[-1] == 1:
        return nn.functional.binary_cross_entropy_with_logits(logits[:, 0].float(), labels.float())
    return nn.functional.cross_entropy(logits.float(), labels.long())


def fit(
    model: nn.Module,
    train_set: CanvasDataset,
    config: TrainConfig,
    out: str | os.PathLike[str] | None = None,
    *,
    resume: bool = True,
    progress: bool = True,
    val_set: Dataset | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``train_set`` with the configured recipe.

    Args:
        model: from :func:`ctlib.models.create_model` (one logit: binary cross-entropy).
        train_set: a training :class:`~ctlib.transforms.CanvasDataset`.
        config: the recipe.
        out: folder for ``checkpoint.pt`` (every epoch, atomic) and ``history.json``;
            None keeps nothing on disk.
        resume: continue from ``out/checkpoint.pt`` if it exists.
        progress: tqdm progress bars.
        val_set: evaluated after every epoch (loss, accuracy); the best epoch by
            validation loss is kept in ``out/best.pt`` (model weights only).
        on_epoch_end: called with each epoch's history record (e.g. to stop early by
            raising, or to plot).

    Returns:
        The per-epoch history: ``epoch, lr, train_loss, seconds, images_per_s`` (+
        ``val_loss, val_accuracy`` with ``val_set``). The model is left trained, in
        eval mode.

    Raises:
        TrainingDivergedError: the loss became NaN or infinite.
    """
    device = resolve_device(config.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    seed_everything(config.seed)
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory)
    optimizer = build_optimizer(model, config)
    amp_dtype = _amp_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype is torch.float16 else None
    history: list[dict[str, Any]] = []
    start_epoch = 0
    best_val = math.inf
    if folder is not None and resume and (folder / CHECKPOINT).is_file():
        state = load_training_state(folder / CHECKPOINT, device)
        old, new = recipe_of(state.get("config") or {}), recipe_of(config.to_dict())
        if old != new:
            differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(
                f"{folder / CHECKPOINT} was written by another recipe (it differs in "
                f"{', '.join(differ)}); resume with the same one (runtime settings such as "
                f"{', '.join(RUNTIME_SETTINGS)} may change), use another output folder, or "
                "start again with --no-resume."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
        best_val = state.get("best_val", math.inf)
        _set_rng_state(state["rng"])
        log.info("resumed from %s at epoch %d", folder / CHECKPOINT, start_epoch)
    step_model = torch.compile(model) if config.compile else model
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one canvas size for the whole run
    drop_last = _drop_last(len(train_set), config.batch_size)
    if resolve_data_path(config, device) == "device":
        if not isinstance(train_set, CanvasDataset):
            raise TypeError(
                "data_path='device' needs a CanvasDataset (its canvases go to the GPU)."
            )
        feeder = DeviceBatches.from_dataset(
            train_set,
            batch_size=config.batch_size,
            device=device,
            memory_format=memory,
            progress=progress,
        )
        n_batches = feeder.n_batches(drop_last)

        def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            order = epoch_order(config, len(train_set), epoch)
            return feeder.epoch(epoch, order, drop_last=drop_last)

    else:
        loader, sampler = _train_loader(train_set, config, device)
        n_batches = len(loader)

        def epoch_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)  # for the main process (workers read it from the items)
            for images, labels in loader:
                yield (
                    images.to(device, non_blocking=True, memory_format=memory),
                    labels.to(device, non_blocking=True),
                )

    # the host checks the loss as it comes where that costs nothing; on a GPU, once an epoch
    sync_free = device.type == "cuda"
    saved_epochs, saved_at = start_epoch, time.monotonic()
    epochs = tqdm(
        range(start_epoch, config.epochs),
        desc=f"train {config.arch}",
        unit="epoch",
        disable=not progress,
        initial=start_epoch,
        total=config.epochs,
    )
    for epoch in epochs:
        lr = lr_at(epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        started = time.perf_counter()
        total = torch.zeros((), device=device)
        bad_step = torch.full((), -1, dtype=torch.long, device=device)
        bad_loss = torch.zeros((), device=device)
        seen = 0
        for step, ((images, labels), bar) in enumerate(
            _progress(
                epoch_batches(epoch),
                n_batches,
                desc=f"epoch {epoch + 1}",
                leave=False,
                disable=not progress,
                unit="batch",
            )
        ):
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                logits = step_model(images)
            loss = _loss(logits, labels)
            first_bad = (bad_step < 0) & ~torch.isfinite(loss)
            bad_step = torch.where(first_bad, step, bad_step)
            bad_loss = torch.where(first_bad, loss.detach(), bad_loss)
            if not sync_free and bad_step >= 0:
                break
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            total += loss.detach() * labels.shape[0]
            seen += labels.shape[0]
            if progress and (not sync_free or step % 25 == 0):
                bar.set_postfix(loss=f"{total.item() / seen:.4f}", refresh=False)
        if int(bad_step) >= 0:  # one read per epoch
            raise TrainingDivergedError(
                f"The loss became {bad_loss.item()} at epoch {epoch + 1}, batch "
                f"{int(bad_step) + 1} (lr {lr:g}). Lower the learning rate, turn off amp, or "
                "check the data for broken images; the last good checkpoint is kept."
            )
        seconds = time.perf_counter() - started
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": total.item() / max(seen, 1),
            "seconds": round(seconds, 3),
            "images_per_s": round(seen / seconds, 2) if seconds else None,
        }
        if val_set is not None:
            probs, labels_v = predict(model, val_set, config, progress=False, return_labels=True)
            eps = 1e-7
            p = np.clip(probs, eps, 1 - eps)
            record["val_loss"] = float(
                -np.mean(labels_v * np.log(p) + (1 - labels_v) * np.log(1 - p))
            )
            record["val_accuracy"] = float(np.mean((probs >= config.threshold) == labels_v))
            if folder is not None and record["val_loss"] < best_val:
                best_val = record["val_loss"]
                _atomic_save({"model": model.state_dict(), "epoch": epoch + 1}, folder / "best.pt")
        history.append(record)
        epochs.set_postfix(loss=f"{record['train_loss']:.4f}", lr=f"{lr:g}")
        if folder is not None:
            due = (
                epoch + 1 == config.epochs
                or epoch + 1 - saved_epochs >= config.checkpoint_every
                or time.monotonic() - saved_at >= 60 * config.checkpoint_minutes
            )
            if due:
                _atomic_save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "epoch": epoch,
                        "history": history,
                        "rng": _rng_state(),
                        "best_val": best_val,
                        "config": config.to_dict(),
                    },
                    folder / CHECKPOINT,
                )
                saved_epochs, saved_at = epoch + 1, time.monotonic()
            write_json(history, folder / HISTORY)
        if on_epoch_end is not None:
            on_epoch_end(record)
    model.eval()
    return history


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Probability of COVID for every item of ``dataset`` (in order).

    Args:
        model: a trained model.
        dataset: yields ``(image, label)``, e.g. an evaluation ``CanvasDataset``.
        config: device, batch size, amp and memory format; defaults to ``TrainConfig``'s
            for the CPU.
        progress: a progress bar.
        return_labels: also return the labels.
    """
    config = config or TrainConfig(device="cpu")
    if len(dataset) == 0:
        raise ValueError("predict() got an empty data set; check the split or fold selection.")
    device = resolve_device(config.device)
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory).eval()
    amp_dtype = _amp_dtype(config, device)
    probs, labels = [], []
    batches, total = _eval_batches(dataset, config, device, memory)
    for (images, y), _ in _progress(
        batches, total, desc="predict", leave=False, disable=not progress, unit="batch"
    ):
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = model(images)
        probs.append(probabilities(logits).float())
        labels.append(y)
    out = torch.cat(probs).cpu().numpy().astype(np.float64)  # one read for the whole pass
    if return_labels:
        return out, torch.cat([torch.as_tensor(y) for y in labels]).cpu().numpy().astype(np.int64)
    return out
