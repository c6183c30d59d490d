"""The training recipes, each named and written once, and shown beside the paper's.

Everything that trains -- the command line, the notebooks, the pre-flight, the benchmarks,
``scripts/reproduce_cpu.sh`` -- gets its recipe from :func:`recipe` by name, with overrides:
``paper`` (Sec. 4, for a GPU), ``quick`` (the command line's ``--quick``), ``lesson`` and
``explain`` (the notebooks in quick mode), ``score-cams`` and ``cpu-reference`` (the kit's
committed CPU runs). A learning rate other than the paper's scales the whole schedule.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ctlib.config import RUNTIME_SETTINGS, Runtime, TrainConfig, lr_at, recipe_of
from ctlib.models import get_spec, list_models

__all__ = [
    "FULL_ARCH",
    "QUICK_ARCH",
    "RECIPES",
    "RUNTIME_SETTINGS",
    "Recipe",
    "describe_recipe",
    "recipe",
    "recipe_id",
    "recipe_runtime",
    "recipe_table",
    "schedule_table",
]

QUICK_ARCH = "efficientnet_lite0"  # the one network with ImageNet weights offline
FULL_ARCH = "resnet101"  # the paper's best on SARS-CoV-2 CT


@dataclass(frozen=True)
class Recipe:
    """A named recipe: what :func:`recipe` changes in the paper's :class:`TrainConfig`.

    Attributes:
        epochs: as in :class:`TrainConfig`.
        batch_size: as in :class:`TrainConfig`.
        lr: the initial learning rate; the whole schedule scales with it.
        canvas_width: a canvas this wide, in the architecture's Table 1 aspect; None: Table 1's.
        canvas: an exact ``(width, height)`` instead.
        device: the device it is sized for (:func:`recipe_runtime`): the CPU for all but the
            paper's, so that a quick run gives the same numbers on any machine.
        doc: what it is for.
    """

    epochs: int
    batch_size: int
    lr: float
    canvas_width: int | None = None
    canvas: tuple[int, int] | None = None
    device: str = "cpu"
    doc: str = ""


_PAPER = TrainConfig()
RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        epochs=_PAPER.epochs,
        batch_size=_PAPER.batch_size,
        lr=_PAPER.lr,
        device="auto",
        doc="the paper's (Sec. 4), for a GPU",
    ),
    "quick": Recipe(
        epochs=2, batch_size=16, lr=_PAPER.lr, canvas_width=160, doc="the command line's --quick"
    ),
    "lesson": Recipe(
        epochs=5,
        batch_size=16,
        lr=1e-2,
        canvas_width=128,
        doc="the notebooks in quick mode: with a few dozen LAMB steps, 3e-4 barely moves the "
        "weights, so the rate is larger",
    ),
    "explain": Recipe(
        epochs=8,
        batch_size=16,
        lr=3e-3,
        canvas_width=192,
        doc="notebooks 04 and 05 in quick mode: one network",
    ),
    "score-cams": Recipe(
        epochs=12,
        batch_size=16,
        lr=3e-3,
        canvas=(256, 186),
        doc="benchmarks/score_cams.py: CAMs scored against synthetic lesions",
    ),
    "cpu-reference": Recipe(
        epochs=24,
        batch_size=16,
        lr=1e-3,
        canvas=(224, 162),
        doc="the kit's committed real-data runs on a 2-core CPU (results/; 12 epochs on "
        "SARS-CoV-2 CT)",
    ),
}


def _canvas_of(arch: str, width: int) -> tuple[int, int]:
    """A canvas ``width`` wide in ``arch``'s Table 1 aspect ratio (at least 32 px high)."""
    table_width, table_height = get_spec(arch).canvas
    return width, max(32, int(round(table_height * width / table_width)))


def recipe(name: str, arch: str | None = None, *, mode: Any = None, **changes: Any) -> TrainConfig:
    """The :class:`TrainConfig` of a named recipe (see :data:`RECIPES`) for ``arch``.

    Args:
        name: ``"paper"``, ``"quick"``, ``"lesson"``, ``"explain"``, ``"score-cams"`` or
            ``"cpu-reference"``.
        arch: the architecture (aliases such as ``inception_v3`` are fine); default
            EfficientNet-Lite0 for the CPU recipes, ResNet101 for the paper's.
        mode: a notebook's :class:`ctlib.notebook.Mode` (anything with a boolean ``quick``):
            in full mode every recipe is the paper's.
        changes: any :class:`TrainConfig` field (None: the recipe's own); ``lr`` scales the
            whole schedule, and ``canvas_width`` sets a canvas of the architecture's shape.

    Example:
        >>> recipe("lesson").epochs
        5
    """
    if mode is not None and not mode.quick:
        name = "paper"
    try:
        spec = RECIPES[name]
    except KeyError:
        raise ValueError(
            f"Unknown recipe {name!r}; choose from {sorted(RECIPES)} (ctlib.recipes.RECIPES)."
        ) from None
    changes = {k: v for k, v in changes.items() if v is not None}
    arch = get_spec(arch or (FULL_ARCH if name == "paper" else QUICK_ARCH)).name
    lr = float(changes.pop("lr", spec.lr))
    width = changes.pop("canvas_width", None) or spec.canvas_width
    canvas = changes.pop("canvas", None) or spec.canvas
    if canvas is None and width:
        canvas = _canvas_of(arch, int(width))
    fields = {"epochs": spec.epochs, "batch_size": spec.batch_size, **changes}
    config = TrainConfig(arch=arch, canvas=canvas, **fields)
    return config.with_lr(lr) if lr != config.lr else config


def recipe_runtime(name: str, *, mode: Any = None, **changes: Any) -> Runtime:
    """The :class:`~ctlib.config.Runtime` a named recipe is sized for: the CPU for every recipe
    but the paper's (``device="auto"``); ``changes`` override any runtime setting."""
    if mode is not None and not mode.quick:
        name = "paper"
    device = RECIPES[name].device if name in RECIPES else "auto"
    return Runtime(**{"device": device, **{k: v for k, v in changes.items() if v is not None}})


def recipe_id(config: TrainConfig) -> str:
    """A folder name for a recipe's results: its epochs, canvas and learning rate, and a hash
    of everything that decides what it learns (runtime settings excluded), e.g.
    ``5ep-128x93-lr0.01-3f2a9c``. Two recipes never share one; the same recipe always gets
    the same."""
    data = recipe_of(config.to_dict())
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:6]
    width, height = config.input_size
    return f"{config.epochs}ep-{width}x{height}-lr{config.lr:g}-{digest}"


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
