"""Where and how a run computes: device, precision, seeding, and the two data paths.

Nothing here changes what a network learns (that is the recipe, :class:`ctlib.config.TrainConfig`).
The CPU path augments each image with albumentations in a DataLoader; the GPU path holds every
canvas on the device and augments a batch at a time (:mod:`ctlib.batches`). Both draw an epoch's
order from ``(seed, epoch)`` alone, so workers, data path and resumes never change it.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ctlib.batches import DeviceBatches
from ctlib.config import Runtime, TrainConfig
from ctlib.transforms import CanvasDataset, item_seed

__all__ = [
    "NONDETERMINISTIC_ON_CUDA",
    "CompiledSteps",
    "Precision",
    "TrainingBatches",
    "choose_precision",
    "epoch_order",
    "evaluation_batches",
    "memory_format",
    "nondeterministic_ops",
    "place_model",
    "resolve_data_path",
    "resolve_device",
    "resolve_workers",
    "seed_everything",
    "set_deterministic",
]


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


def memory_format(runtime: Runtime) -> torch.memory_format:
    """Channels-last (faster on both CPU and GPU) or contiguous."""
    return torch.channels_last if runtime.channels_last else torch.contiguous_format


def place_model(model: nn.Module, runtime: Runtime) -> torch.device:
    """Move ``model`` to the runtime's device and memory format; returns the device. On the
    CPU denormals are flushed to zero (pretrained weights otherwise ran 5-25 % slower); on
    CUDA cuDNN may pick its fastest kernels (the canvas never changes size in a run), unless
    ``runtime.deterministic`` (:func:`set_deterministic`)."""
    device = resolve_device(runtime.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    if runtime.deterministic:
        set_deterministic(True)
    if device.type == "cuda" and not runtime.deterministic:
        torch.backends.cudnn.benchmark = True
    model.to(device=device, memory_format=memory_format(runtime))
    return device


class CompiledSteps(nn.Module):
    """``torch.compile`` for the full batches of a run, the eager network for the last,
    smaller one: the compiled graph keeps one static batch size (no second compile for the
    remainder, no image dropped, no padding in BatchNorm's statistics), and both paths share
    the same parameters and BatchNorm buffers.

    Compiled code is cached on disk under ``$CTLIB_CACHE_DIR/inductor`` (unless
    ``TORCHINDUCTOR_CACHE_DIR`` says otherwise), so the folds of one architecture and canvas,
    each a fresh process in a sweep, compile once and load it afterwards.
    """

    def __init__(self, model: nn.Module, batch_size: int) -> None:
        super().__init__()
        # lazy: the cache folder is only needed when compiling
        from ctlib.paths import cache_dir

        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
        self.model, self.batch_size = model, batch_size
        self.compiled = torch.compile(model, dynamic=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[0] == self.batch_size:
            return self.compiled(images)
        return self.model(images)


def set_deterministic(on: bool) -> None:
    """Deterministic algorithms everywhere (``warn_only``: an op without one warns and runs as
    before; :data:`NONDETERMINISTIC_ON_CUDA`), cuDNN's deterministic kernels without its
    autotuner, and cuBLAS's fixed workspace (read when cuBLAS starts, so set before the first
    matrix product); ``False`` undoes the first two."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    if on:
        torch.backends.cudnn.benchmark = False


#: The backward (and a few forward) kernels torch.use_deterministic_algorithms names as having no
#: deterministic CUDA version (the ops that "throw" in its documentation, torch 2.14), as the
#: aten ops a training step dispatches.
NONDETERMINISTIC_ON_CUDA = frozenset(
    {
        "aten._adaptive_avg_pool2d_backward.default",
        "aten._adaptive_avg_pool3d_backward.default",
        "aten.adaptive_max_pool2d_backward.default",
        "aten.avg_pool3d_backward.default",
        "aten.fractional_max_pool2d_backward.default",
        "aten.fractional_max_pool3d_backward.default",
        "aten.max_unpool2d.default",
        "aten.max_unpool3d.default",
        "aten.upsample_linear1d_backward.default",
        "aten.upsample_bilinear2d_backward.default",
        "aten.upsample_bicubic2d_backward.default",
        "aten.upsample_trilinear3d_backward.default",
        "aten.reflection_pad1d_backward.default",
        "aten.reflection_pad2d_backward.default",
        "aten.reflection_pad3d_backward.default",
        "aten.nll_loss_forward.default",
        "aten.nll_loss2d_forward.default",
        "aten._ctc_loss_backward.default",
        "aten.embedding_bag.default",
        "aten.put_.default",
        "aten.histc.default",
        "aten.bincount.default",
        "aten.median.dim",
        "aten.grid_sampler_2d_backward.default",
    }
)


def nondeterministic_ops(
    model: nn.Module, canvas: tuple[int, int], batch_size: int = 2
) -> list[str]:
    """The ops of one training step of ``model`` (forward, binary cross-entropy, backward) at
    ``canvas = (width, height)`` that have no deterministic CUDA kernel: recorded on the CPU,
    where the same ops are dispatched (``[]``: ``deterministic`` makes its steps bit-identical
    on a GPU, given the same inputs)."""
    # lazy: a developer's tool; the dispatch mode is not needed to train
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Record(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: set[str] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            self.ops.add(str(func))
            return func(*args, **(kwargs or {}))

    width, height = canvas
    images = torch.randn(batch_size, 3, height, width)
    labels = torch.arange(batch_size) % 2
    was_training = model.training
    model.train()
    try:
        with _Record() as record:
            logits = model(images)
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits[:, 0].float(), labels.float()
            )
            loss.backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return sorted(record.ops & NONDETERMINISTIC_ON_CUDA)


def choose_precision(
    amp: str, device_type: str, capability: tuple[int, int] | None = None
) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on a device, or None for fp32.

    ``"auto"``: fp32 on the CPU (bf16 autocast was many times slower than fp32 on this
    project's CPUs, ``benchmarks/bench_precision.py``); on a CUDA GPU, bf16 from compute
    capability 8.0 (A100, H100...), else fp16 with a gradient scaler (T4, V100; Colab's T4
    only emulates bf16). ``"bf16"``, ``"fp16"`` and ``"off"`` are taken as asked.

    Args:
        amp: ``"auto"``, ``"bf16"``, ``"fp16"`` or ``"off"``.
        device_type: ``"cpu"``, ``"cuda"``...
        capability: the GPU's compute capability; asked of the GPU when None on CUDA.
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


class Precision:
    """The run's numeric precision: an autocast context, and under fp16 a gradient scaler."""

    def __init__(self, runtime: Runtime, device: torch.device) -> None:
        capability = torch.cuda.get_device_capability(device) if device.type == "cuda" else None
        self.device_type = device.type
        self.dtype = choose_precision(runtime.amp, device.type, capability)
        fp16 = self.dtype is torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if fp16 else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision around a forward pass (a no-op in fp32)."""
        return torch.autocast(
            self.device_type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        )


def resolve_data_path(runtime: Runtime, device: torch.device) -> str:
    """The data path ``runtime.data_path`` means on ``device``: ``"device"`` or ``"loader"``."""
    if runtime.data_path != "auto":
        return runtime.data_path
    return "device" if device.type == "cuda" else "loader"


def resolve_workers(runtime: Runtime, device: torch.device) -> int:
    """DataLoader workers for the CPU data path: ``runtime.num_workers``, or when None, 0 on
    the CPU (workers would compete with the training for the cores) and one per core but one,
    at most 8, when the loader feeds a GPU."""
    if runtime.num_workers is not None:
        return runtime.num_workers
    if device.type == "cuda":
        return max(1, min(8, (os.cpu_count() or 2) - 1))
    return 0


def epoch_order(config: TrainConfig, n: int, epoch: int) -> list[int]:
    """The shuffled order of epoch ``epoch``: drawn from ``(seed, epoch)`` alone, so it never
    depends on the data path, the number of workers or how often a loader is iterated."""
    stream = torch.Generator().manual_seed(item_seed(config.seed, epoch, 2**32 - 1))
    return torch.randperm(n, generator=stream).tolist()


class _EpochOrder(Sampler):
    """One epoch's training order at a time, as ``(epoch, index)`` pairs. A persistent
    DataLoader's workers keep their own copies of the data set, which ``set_epoch`` in the main
    process would not reach: so every item carries its epoch."""

    def __init__(self, n: int, config: TrainConfig) -> None:
        self.n, self.config, self.epoch = n, config, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in epoch_order(self.config, self.n, epoch)])


class TrainingBatches:
    """A training set's batches, one epoch at a time, on the training device, by either path.

    ``batches.epoch(k)`` yields ``(images, labels)`` in epoch ``k``'s order; ``len(batches)``
    is the number of batches per epoch. A last batch of one image is dropped (BatchNorm).
    """

    def __init__(
        self,
        train_set: CanvasDataset,
        config: TrainConfig,
        runtime: Runtime,
        device: torch.device,
        progress: bool = True,
    ) -> None:
        self.train_set, self.config, self.device = train_set, config, device
        self.memory = memory_format(runtime)
        self.drop_last = len(train_set) % config.batch_size == 1
        if resolve_data_path(runtime, device) == "device":
            if not isinstance(train_set, CanvasDataset):
                raise TypeError(
                    "data_path='device' needs a CanvasDataset (its canvases go to the GPU)."
                )
            self.feeder = DeviceBatches.from_dataset(
                train_set,
                batch_size=config.batch_size,
                device=device,
                memory_format=self.memory,
                progress=progress,
            )
            self.loader, self.n = None, self.feeder.n_batches(self.drop_last)
        else:
            self.feeder, self.loader = None, self._loader(runtime)
            self.n = len(self.loader)

    def _loader(self, runtime: Runtime) -> DataLoader:
        """The CPU path's DataLoader for the whole run (its workers persist across epochs). Its
        own generator seeds only the workers' global random states, which no augmentation uses."""
        workers = resolve_workers(runtime, self.device)
        self.order = _EpochOrder(len(self.train_set), self.config)
        return DataLoader(
            self.train_set,
            batch_size=self.config.batch_size,
            sampler=self.order,
            generator=torch.Generator().manual_seed(item_seed(self.config.seed, 0, 2**32 - 2)),
            num_workers=workers,
            drop_last=self.drop_last,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def __len__(self) -> int:
        return self.n

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch, on the device."""
        if self.feeder is not None:
            order = epoch_order(self.config, len(self.train_set), epoch)
            yield from self.feeder.epoch(epoch, order, drop_last=self.drop_last)
            return
        self.order.epoch = int(epoch)
        self.train_set.set_epoch(epoch)  # for the main process (workers read it from the items)
        for images, labels in self.loader:
            yield (
                images.to(self.device, non_blocking=True, memory_format=self.memory),
                labels.to(self.device, non_blocking=True),
            )


def evaluation_batches(
    dataset: Dataset, config: TrainConfig, runtime: Runtime, device: torch.device
) -> tuple[Iterator[tuple[torch.Tensor, Any]], int]:
    """An evaluation pass over ``dataset`` in order: ``(batches on the device, how many)``."""
    memory = memory_format(runtime)
    if resolve_data_path(runtime, device) == "device" and isinstance(dataset, CanvasDataset):
        feeder = DeviceBatches.from_dataset(
            dataset, batch_size=config.batch_size, device=device, memory_format=memory
        )
        return feeder.epoch(), feeder.n_batches()
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        num_workers=resolve_workers(runtime, device),
        pin_memory=device.type == "cuda",
    )

    def batches() -> Iterator[tuple[torch.Tensor, Any]]:
        for images, labels in loader:  # iterated once
            yield images.to(device, non_blocking=True, memory_format=memory), labels

    return batches(), len(loader)
