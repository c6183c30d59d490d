"""The training options of the command line, generated from the recipe and the runtime.

Each option is a field of :class:`ctlib.config.TrainConfig` or :class:`ctlib.config.Runtime`:
its flag is the field's name (``batch_size`` -> ``--batch-size``), its type the field's, its
help the field's line in the class docstring. :data:`FLAGS` lists the few whose flag says
something else (``--no-pretrained``); :func:`training_settings` turns parsed options back into
the two objects, starting from a named recipe (:func:`ctlib.recipes.recipe`).
"""

from __future__ import annotations

import argparse
import inspect
import re
import types
import typing
from dataclasses import MISSING, Field, fields
from typing import Any

from ctlib.argtypes import Number
from ctlib.canvas import MAX_CANVAS_SIDE
from ctlib.config import AMP_CHOICES, CONTENTS, DATA_PATHS, OPTIMIZERS, Runtime, TrainConfig

__all__ = ["FLAGS", "RANGES", "add_training_options", "field_help", "training_settings"]


#: The range of each numeric recipe and runtime field on the command line (a field without
#: one is refused when the parser is built, so a new field cannot slip through unchecked).
RANGES: dict[str, Number] = {
    "epochs": Number(int, 1),
    "batch_size": Number(int, 1),
    "lr": Number(float, above=0),
    "weight_decay": Number(float, 0),
    "canvas": Number(int, 1, MAX_CANVAS_SIDE),
    "seed": Number(int, 0),
    "num_workers": Number(int, 0),
    "checkpoint_every": Number(int, 1),
    "checkpoint_minutes": Number(float, above=0),
    "gpu_checkpoint_minutes": Number(float, above=0),
}

#: Fields the command line sets through a flag of another name or shape.
FLAGS: dict[str, dict[str, Any]] = {
    "pretrained": {
        "flag": "--no-pretrained",
        "action": "store_false",
        "help": "random initialisation",
    },
    "strategy": {
        "flag": "--feature-extraction",
        "action": "store_const",
        "const": "feature_extraction",
        "help": "train only the head (the strategy the paper contrasts with fine-tuning)",
    },
    "canvas": {"nargs": 2, "type": int, "metavar": ("W", "H")},
    "seed": {"default": 0},
    "checkpoint_every": {"metavar": "N"},
    "checkpoint_minutes": {"metavar": "M"},
    "gpu_checkpoint_minutes": {"metavar": "M"},
}
#: Fields with no option: the schedule's shape, the augmentations and the threshold are the
#: paper's; ``arch`` is its own option; channels-last is always on.
NOT_OPTIONS = {"arch", "lr_milestones", "lr_values", "augment", "threshold", "channels_last"}
CHOICES = {
    "optimizer": OPTIMIZERS,
    "amp": AMP_CHOICES,
    "data_path": DATA_PATHS,
    "content": CONTENTS,
}


def field_help(cls: type) -> dict[str, str]:
    """Each attribute's description from a dataclass's Google-style ``Attributes:`` section."""
    text = inspect.getdoc(cls) or ""
    section = text.split("Attributes:", 1)[-1]
    found: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            name, found[match[1]] = match[1], match[2]
        elif name and line.startswith("        "):
            found[name] += " " + line.strip()
        elif line.strip():
            name = None
    return found


def _option(field: Field, cls: type, helps: dict[str, str]) -> tuple[str, dict[str, Any]]:
    spec = dict(FLAGS.get(field.name, {}))
    flag = spec.pop("flag", "--" + field.name.replace("_", "-"))
    kind = typing.get_type_hints(cls)[field.name]
    base = (
        typing.get_args(kind)[0]
        if typing.get_origin(kind) in (typing.Union, types.UnionType)
        else kind
    )
    if "action" not in spec and base is bool:
        spec["action"] = "store_true"
    elif "action" not in spec:
        spec.setdefault("type", base if base in (int, float, str) else str)
    if spec.get("type") in (int, float):
        if field.name not in RANGES:
            raise TypeError(f"{cls.__name__}.{field.name} is a number with no range in RANGES")
        spec["type"] = RANGES[field.name]
    if field.name in CHOICES:
        spec["choices"] = CHOICES[field.name]
    default = field.default if field.default is not MISSING else None
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", helps.get(field.name, "")).replace("``", "")
    spec.setdefault("help", text if default is None else f"{text} (default: {default})")
    spec.setdefault("default", None)
    spec["dest"] = field.name
    return flag, spec


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Add one option per recipe and runtime field (and ``--quick``) to ``parser``."""
    for cls in (TrainConfig, Runtime):
        helps = field_help(cls)
        group = parser.add_argument_group(
            "recipe (what the network learns)" if cls is TrainConfig else "runtime (how it runs)"
        )
        for field in fields(cls):
            if field.name not in NOT_OPTIONS:
                flag, spec = _option(field, cls, helps)
                group.add_argument(flag, **spec)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CPU-sized run on the CPU: 2 epochs, batch 16, a 160-px-wide canvas",
    )


def training_settings(args: argparse.Namespace) -> tuple[TrainConfig, Runtime]:
    """The recipe (the ``quick`` one with ``--quick``, else the paper's) for ``args.arch``, with
    every option given; and the runtime. A learning rate scales the whole schedule."""
    # lazy: ctlib.recipes loads the model registry (and so torch); building the parser does not
    from ctlib.recipes import recipe, recipe_runtime

    name = "quick" if args.quick else "paper"  # --quick is sized for, and runs on, the CPU
    given = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig)}
    if given.get("canvas") is not None:
        given["canvas"] = tuple(given["canvas"])
    config = recipe(name, args.arch, **{k: v for k, v in given.items() if k not in NOT_OPTIONS})
    runtime = recipe_runtime(name, **{f.name: getattr(args, f.name, None) for f in fields(Runtime)})
    return config, runtime
