"""The two settings objects of a training run: the recipe, and how it is run.

:class:`TrainConfig` is the *recipe*, what the network learns: the paper's Sec. 4 settings are
its defaults. :class:`Runtime` is *how* it is computed (device, precision, workers, data path,
compile, checkpoint cadence). A run may resume when only the runtime changed; the recipe's
equality decides (:func:`recipe_differences`, the one comparison the kit makes).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ctlib.canvas import check_canvas_size
from ctlib.models import get_spec
from ctlib.transforms import AugmentConfig

__all__ = [
    "AMP_CHOICES",
    "DATA_PATHS",
    "OPTIMIZERS",
    "RUNTIME_SETTINGS",
    "Runtime",
    "TrainConfig",
    "lr_at",
    "recipe_differences",
    "recipe_of",
    "split_settings",
]

OPTIMIZERS = ("lamb", "lamb_timm")
CONTENTS = ("image", "flat")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
DATA_PATHS = ("auto", "loader", "device")
# The smallest canvas side each network accepts (valid convolutions and pooling shrink
# the feature maps to nothing below it); 32 for the others (five stride-2 stages).
MIN_CANVAS_SIDE = {"inceptionv3": 75, "xception": 71}


@dataclass(frozen=True)
class TrainConfig:
    """The recipe: everything that decides what a run learns. Defaults: the paper's (Sec. 4).

    Attributes:
        arch: registry name (``ctlib.models.list_models()``).
        pretrained: start from ImageNet weights (the paper: yes).
        strategy: ``"finetune"`` trains everything (the paper); ``"feature_extraction"``
            only the head.
        epochs: 100 in the paper.
        batch_size: 32 in the paper.
        lr: the initial learning rate, 3e-4 in the paper (the command line and
            :func:`ctlib.recipes.recipe` scale the later drops with it).
        lr_milestones: epochs (of 100) where the learning rate drops -- 50, 70, 80, 90.
        lr_values: the learning rates from those epochs on -- 1e-4, 3e-5, 1e-5, 3e-6.
        weight_decay: 1 in the paper.
        optimizer: ``"lamb"`` (torch-optimizer's arithmetic, default) or ``"lamb_timm"``.
        canvas: ``(width, height)``; None takes the architecture's Table 1 canvas.
        augment: the train-time augmentations (Sec. 4).
        seed: one seed for Python, NumPy, torch, augmentations and shuffling.
        threshold: probability from which a prediction is COVID.
        content: what the canvas shows inside the placement box: ``"image"`` (the slice,
            as in the paper) or ``"flat"`` (a uniform gray box: the padding-geometry probe).
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
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("content", self.content, CONTENTS)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}; the paper's is 3e-4.")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(
                f"weight_decay must be >= 0, got {self.weight_decay!r} (the paper: 1)."
            )
        if self.canvas is not None:
            object.__setattr__(self, "canvas", check_canvas_size(self.canvas, "canvas"))
            _check_canvas(self.arch, self.canvas)
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
        extraction), ``-flat`` (the padding-geometry probe)."""
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
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`. Runtime settings, which configs written before the
        recipe and the runtime were apart hold too, are left out; unknown keys are refused; a
        setting the file lacks (added to the kit after it was written) takes its default."""
        data = {k: v for k, v in data.items() if k not in RUNTIME_SETTINGS}
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"Unknown TrainConfig keys {sorted(unknown)}.")
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


@dataclass(frozen=True)
class Runtime:
    """How a run is computed; never what it learns, so a run resumes when only this changes.

    Attributes:
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
        amp: ``"auto"`` (mixed precision on CUDA, fp32 on the CPU), ``"bf16"``, ``"fp16"``
            or ``"off"`` (:func:`ctlib.runtime.choose_precision`).
        channels_last: channels-last memory format (faster on both).
        compile: ``torch.compile`` the training step's full batches (the last, smaller one
            runs eagerly: :class:`ctlib.runtime.CompiledSteps`).
        num_workers: DataLoader worker processes for the CPU data path (None: 0 on the CPU,
            one per core but one, at most 8, when the loader feeds a GPU).
        data_path: ``"loader"`` (albumentations per image: the CPU path), ``"device"``
            (canvases on the device, augmented a batch at a time: :mod:`ctlib.batches`), or
            ``"auto"``: ``"device"`` on CUDA, else ``"loader"``.
        checkpoint_every: write the rolling ``checkpoint.pt`` every this many epochs...
        checkpoint_minutes: ...or once this many minutes passed since the last one, whichever
            is first (and always after the last epoch).
        gpu_checkpoint_minutes: on a GPU, where an epoch takes seconds, the checkpoint goes by
            time only: every this many minutes and after the last epoch, written from a copy on
            a background thread while training goes on.
        deterministic: bit-identical reruns on a GPU: deterministic algorithms (warnings where
            an op has none) and cuDNN's autotuner off; slower.
        tensorboard: also log every epoch's record to TensorBoard (``<out>/tensorboard``).
    """

    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    num_workers: int | None = None
    data_path: str = "auto"
    checkpoint_every: int = 5
    checkpoint_minutes: float = 5.0
    gpu_checkpoint_minutes: float = 10.0
    deterministic: bool = False
    tensorboard: bool = False

    def __post_init__(self) -> None:
        _one_of("amp", self.amp, AMP_CHOICES)
        _one_of("data_path", self.data_path, DATA_PATHS)
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(
                f"num_workers must be >= 0 (0: load in the main process), got {self.num_workers}."
            )
        if not self.gpu_checkpoint_minutes > 0:
            raise ValueError(
                f"gpu_checkpoint_minutes must be > 0, got {self.gpu_checkpoint_minutes}."
            )
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

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``config.json`` (a record of how the run was computed)."""
        return asdict(self)


#: The runtime's settings: they change how a run is computed, never what it learns.
RUNTIME_SETTINGS = tuple(f.name for f in fields(Runtime))


def split_settings(**settings: Any) -> tuple[TrainConfig, Runtime]:
    """The recipe and the runtime from one flat set of settings (as a command line or a
    ``config.json`` of an earlier kit version holds them).

    Example:
        >>> config, runtime = split_settings(arch="resnet18", epochs=2, device="cpu")
        >>> runtime.device, config.epochs
        ('cpu', 2)
    """
    runtime = {k: settings.pop(k) for k in list(settings) if k in RUNTIME_SETTINGS}
    return TrainConfig(**settings), Runtime(**runtime)


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def _check_canvas(arch: str, canvas: tuple[int, int]) -> None:
    smallest = MIN_CANVAS_SIDE.get(arch, 32)
    if min(canvas) < smallest:
        raise ValueError(
            f"Canvas {canvas[0]}x{canvas[1]} is too small for {arch}: its feature maps vanish "
            f"below {smallest} px a side. Use a canvas of at least {smallest} x {smallest} "
            f"(Table 1: {get_spec(arch).canvas})."
        )


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


def recipe_of(config: dict[str, Any]) -> dict[str, Any]:
    """A recipe as plain data, from a ``config.json``'s or a checkpoint's ``"train"`` entry
    of any kit version: runtime settings left out, settings added since at their defaults."""
    return TrainConfig.from_dict(config).to_dict()


def recipe_differences(old: dict[str, Any], new: TrainConfig) -> list[str]:
    """The recipe settings in which a stored run (``old``, as its files hold it) differs from
    ``new``: empty when the run may resume. The one comparison behind every resume."""
    try:
        stored = recipe_of(old)
    except (TypeError, ValueError) as error:
        return [f"unreadable stored recipe ({error})"]
    current = new.to_dict()
    return sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
