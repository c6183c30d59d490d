"""The training recipes, each written once: the paper's and the CPU-sized ones, as tables too.

* the **paper's** (Alshazly et al. 2020, Sec. 4): :class:`ctlib.train.TrainConfig`'s defaults;
* :func:`quick_config` -- the command line's ``--quick``: 2 epochs, batch 16, a 160-px-wide
  canvas of the architecture's shape, on the CPU;
* :func:`finetune_config` -- the notebooks' recipe: the paper's in full mode, a CPU-sized one
  in quick mode;
* :func:`recipe_table` and :func:`schedule_table` show a recipe beside the paper's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ctlib.models import get_spec, list_models
from ctlib.train import TrainConfig, lr_at

__all__ = ["describe_recipe", "finetune_config", "quick_config", "recipe_table", "schedule_table"]


def quick_config(arch: str = "efficientnet_lite0", **changes: Any) -> TrainConfig:
    """A CPU-sized recipe for quick mode: 2 epochs, batch 16, a small canvas of the same shape."""
    width, height = get_spec(arch).canvas
    scale = 160 / width
    base = TrainConfig(
        arch=arch,
        epochs=2,
        batch_size=16,
        canvas=(160, max(32, int(round(height * scale)))),
        device="cpu",
    )
    return replace(base, **changes)


def recipe_table(config: TrainConfig) -> pd.DataFrame:
    """This run's recipe beside the paper's (Sec. 4), with every deviation marked."""
    paper = TrainConfig(arch=config.arch)
    schedule = "drops at epochs {} to {}".format(
        "/".join(str(m) for m in paper.lr_milestones), ", ".join(f"{v:g}" for v in paper.lr_values)
    )
    this_schedule = "drops at about the same fractions of the run, to " + ", ".join(
        f"{v:g}" for v in config.lr_values
    )
    rows = [
        (
            "architecture",
            get_spec(config.arch).display_name,
            "one of 12 (Table 1)",
            config.arch not in list_models(paper=True),
        ),
        (
            "ImageNet weights",
            config.pretrained,
            paper.pretrained,
            config.pretrained != paper.pretrained,
        ),
        ("strategy", config.strategy, paper.strategy, config.strategy != paper.strategy),
        ("optimizer", "LAMB", "LAMB", False),
        ("loss", "binary cross-entropy", "binary cross-entropy", False),
        ("epochs", config.epochs, paper.epochs, config.epochs != paper.epochs),
        ("batch size", config.batch_size, paper.batch_size, config.batch_size != paper.batch_size),
        ("initial learning rate", f"{config.lr:g}", f"{paper.lr:g}", config.lr != paper.lr),
        (
            "learning-rate schedule",
            schedule
            if config.epochs == paper.epochs and config.lr_values == paper.lr_values
            else this_schedule,
            schedule,
            config.epochs != paper.epochs or config.lr_values != paper.lr_values,
        ),
        (
            "weight decay",
            f"{config.weight_decay:g}",
            f"{paper.weight_decay:g}",
            config.weight_decay != paper.weight_decay,
        ),
        (
            "canvas (w × h)",
            "{}×{}".format(*config.input_size),
            "{}×{}".format(*paper.input_size),
            config.input_size != paper.input_size,
        ),
    ]
    frame = pd.DataFrame(rows, columns=["setting", "this run", "paper", "differs"]).set_index(
        "setting"
    )
    frame["differs"] = np.where(frame["differs"], "← differs", "")
    return frame


def schedule_table(config: TrainConfig) -> pd.DataFrame:
    """The learning rate per range of epochs (1-based, inclusive) of ``config``."""
    rows, start = [], 0
    for epoch in range(1, config.epochs + 1):
        if epoch == config.epochs or lr_at(epoch, config) != lr_at(start, config):
            span = f"{start + 1}–{epoch}" if epoch > start + 1 else f"{epoch}"
            rows.append({"epochs": span, "learning rate": f"{lr_at(start, config):g}"})
            start = epoch
    return pd.DataFrame(rows).set_index("epochs")


QUICK_ARCH = "efficientnet_lite0"


FULL_ARCH = "resnet101"


QUICK_LR = 1e-2


def finetune_config(
    mode: Any,
    arch: str | None = None,
    *,
    max_epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    canvas_width: int | None = None,
    seed: int = 0,
) -> TrainConfig:
    """The fine-tuning recipe of a notebook: the paper's in full mode, a CPU-sized one in quick.

    ``mode`` is a :class:`ctlib.notebook.Mode` (anything with a boolean ``quick``).

    Quick mode deviates from the paper, for the CPU (each notebook says so):
    EfficientNet-Lite0 (the only network with ImageNet weights offline), 5 epochs instead
    of 100, a canvas 128 px wide (same shape as Table 1's) instead of 349 × 253, batch 16
    instead of 32, and an initial learning rate of 1e-2 instead of 3e-4 -- with a few dozen
    LAMB steps, 3e-4 barely moves the weights. The schedule's milestones scale with the
    epochs; a learning rate other than the paper's scales the whole schedule, so the drops
    keep the paper's ratios (1/3, 1/10, 1/30, 1/100 of the initial rate). Every argument
    given overrides the mode's choice.
    """
    if mode.quick:
        name = arch or QUICK_ARCH
        width, height = get_spec(name).canvas
        target = canvas_width or 128
        config = TrainConfig(
            arch=name,
            epochs=5,
            batch_size=16,
            device="cpu",
            seed=seed,
            canvas=(target, max(32, int(round(height * target / width)))),
        )
        lr = QUICK_LR if lr is None else lr
    else:
        name = arch or FULL_ARCH
        config = TrainConfig(arch=name, seed=seed)
        if canvas_width is not None:
            width, height = get_spec(name).canvas
            config = dataclasses.replace(
                config, canvas=(canvas_width, int(round(height * canvas_width / width)))
            )
    changes: dict[str, Any] = {}
    if max_epochs is not None:
        changes["epochs"] = int(max_epochs)
    if batch_size is not None:
        changes["batch_size"] = int(batch_size)
    config = dataclasses.replace(config, **changes) if changes else config
    if lr is not None and float(lr) != config.lr:
        # keep the paper's ratios: the drops go to 1/3, 1/10, 1/30 and 1/100 of the initial rate
        config = config.with_lr(float(lr))
    return config


def describe_recipe(config: TrainConfig) -> str:
    """``"the paper's"`` when ``config`` trains as the paper does (Sec. 4: 100 epochs, batch 32,
    lr 3e-4 with its drops, weight decay 1, Table 1's canvas, pretrained, fine-tuned on the
    slices), else what differs in a few words, e.g. ``"12 epochs, 224×162, batch 16, lr 0.001"``.
    Runtime settings (device, precision, workers) do not count."""
    paper = TrainConfig(arch=config.arch)
    parts = []
    if config.epochs != paper.epochs:
        parts.append(f"{config.epochs} epochs")
    if config.input_size != paper.input_size:
        parts.append("{}×{}".format(*config.input_size))
    if config.batch_size != paper.batch_size:
        parts.append(f"batch {config.batch_size}")
    if config.lr != paper.lr or config.lr_values != paper.lr_values:
        parts.append(f"lr {config.lr:g}")
    if config.weight_decay != paper.weight_decay:
        parts.append(f"weight decay {config.weight_decay:g}")
    if config.optimizer != paper.optimizer:
        parts.append(config.optimizer)
    if not config.pretrained:
        parts.append("random init")
    if config.strategy != paper.strategy:
        parts.append(config.strategy.replace("_", " "))
    if config.content != paper.content:
        parts.append(f"{config.content} content")
    return ", ".join(parts) if parts else "the paper's"
