"""Kit checkpoints: a trained network saved with the architecture and head size it belongs to.

What the paper's five folds (Sec. 4) leave on disk, and what the explanations (Sec. 5) load back.
A room of its own because :func:`load_checkpoint` rebuilds the network with
:func:`~ctlib.models.factory.create_model`, which itself loads weights through
:mod:`ctlib.models.weights`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctlib.files import atomic_write
from ctlib.models.factory import create_model, get_layer, spec_of, unwrap_model
from ctlib.models.registry import get_spec
from ctlib.models.weights import CHECKPOINT_FORMAT, read_weights_file

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike[str],
    name: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Save a kit checkpoint: the state dict with the architecture and head size it belongs to.

    Args:
        model: a model from :func:`create_model`.
        path: the file to write (folders are made).
        name: registry name; defaults to ``model.ctlib_arch``.
        extra: plain data to keep beside (epoch, metrics): str, int, float, bool, None, lists,
            dicts; numpy scalars and arrays become numbers and lists (the file must load with
            ``weights_only=True``).

    Returns:
        The path written. Read it back with :func:`load_checkpoint` or ``create_model(weights=)``.
    """
    spec = spec_of(model, name)
    module = unwrap_model(model)
    head = get_layer(module, spec.head, spec)
    weight = next(p for n, p in head.named_parameters() if n.endswith("weight"))
    try:
        plain = json.loads(json.dumps(dict(extra or {}), default=_plain_number))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"extra must hold plain data (numbers, strings, lists, dicts): {err}"
        ) from err
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "arch": spec.name,
        "num_classes": int(weight.shape[0]),
        "state_dict": module.state_dict(),
        "extra": plain,
    }
    # atomically: a kill or a full disk leaves the old file or none, never a torn one
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def _plain_number(value: Any) -> Any:
    """numpy (or torch) scalars and arrays as Python numbers and lists, for ``json.dumps``."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} {value!r} is not plain data")


def load_checkpoint(
    path: str | os.PathLike[str], strategy: str = "finetune", name: str | None = None
) -> nn.Module:
    """Rebuild a model from a kit checkpoint (architecture and head size read from the file).

    Args:
        path: a file written by :func:`save_checkpoint`.
        strategy: as in :func:`create_model`.
        name: the architecture expected; a checkpoint of another one is refused.
    """
    path = Path(path)
    if path.is_dir():
        inside = path / "model.pt"
        hint = f" It holds a model.pt: pass {str(inside)!r}." if inside.is_file() else ""
        raise FileNotFoundError(f"Checkpoint {str(path)!r} is a folder, not a model file.{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    obj = read_weights_file(path)
    if not isinstance(obj, Mapping) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is no ctlib checkpoint (no 'format': {CHECKPOINT_FORMAT!r}); "
            "for a plain state dict use create_model(name, weights=path)."
        )
    arch = str(obj["arch"]) if name is None else get_spec(name).name
    return create_model(arch, num_classes=int(obj["num_classes"]), weights=path, strategy=strategy)
