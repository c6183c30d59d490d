"""Reading images and trained networks: file lists, checkpoints, predictions.

Shared by :mod:`ctlib.explain.features` and :mod:`ctlib.explain.cam`; the public names are
re-exported by :mod:`ctlib.explain`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ctlib.canvas import check_canvas_size, fit_to_canvas
from ctlib.data import CLASS_NAMES, IMAGE_SUFFIXES, CTDataset, read_grayscale
from ctlib.errors import ImageReadError
from ctlib.models import ModelSpec, get_spec, load_checkpoint, probabilities, spec_of
from ctlib.models.weights import read_weights_file
from ctlib.runfiles import read_config
from ctlib.transforms import normalize


def expand_image_paths(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, and the image files inside given folders (sorted, not recursive)."""
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            paths += sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
        elif path.exists():
            paths.append(path)
        else:
            raise FileNotFoundError(f"{str(path)!r} does not exist.")
    if not paths:
        raise FileNotFoundError(f"No image files found in {[str(i) for i in items]}.")
    return paths


def load_trained(checkpoint: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict]:
    """A trained model from a ``model.pt`` and what its run says about it.

    The canvas and threshold are also set on the model (``model.ctlib_canvas``,
    ``model.ctlib_threshold``), where :func:`explain_image` and :func:`extract_features`
    find them when no canvas is passed.

    Returns:
        ``(model, info)`` where ``info`` holds ``arch``, ``canvas``, ``mean``, ``std`` and
        ``threshold``, as stored in the file (an older file without them: the canvas from
        the run's ``config.json`` beside it, else the architecture's).
    """
    path = Path(checkpoint)
    model = load_checkpoint(path).eval()
    raw = read_weights_file(path)  # load_checkpoint has checked it is a kit checkpoint
    spec = get_spec(raw["arch"])
    extra = raw.get("extra", {})
    if not isinstance(extra, dict):
        raise ValueError(f"{path} stores its settings ('extra') as {type(extra).__name__}, not "
                         "a mapping: export the model again from its run.")  # fmt: skip
    info = {
        "arch": spec.name,
        "canvas": tuple(extra.get("canvas", spec.canvas)),
        "mean": tuple(extra.get("mean", spec.mean)),
        "std": tuple(extra.get("std", spec.std)),
        "threshold": float(extra.get("threshold", 0.5)),
    }
    config = path.parent / "config.json"
    if "canvas" not in extra and config.is_file():  # a model.pt of an older kit
        canvas = read_config(config).get("train", {}).get("canvas")
        if canvas:
            info["canvas"] = tuple(canvas)
    _check_stored_settings(info, path)
    model.ctlib_canvas = tuple(info["canvas"])
    model.ctlib_threshold = info["threshold"]
    return model, info


def _check_stored_settings(info: dict, path: Path) -> None:
    """Refuse a model file whose stored canvas, normalisation or threshold cannot be right
    (a canvas past :data:`~ctlib.canvas.MAX_CANVAS_SIDE`, a zero or non-finite standard
    deviation, which would turn every prediction into NaN, a threshold outside 0..1)."""
    fix = (
        "The file was not written by this kit as it is, or was altered: export the model "
        "again from its run (python -m ctlib cv ... writes model.pt in each fold folder)."
    )
    try:
        info["canvas"] = check_canvas_size(info["canvas"], f"the canvas stored in {path}")
    except ValueError as error:
        raise ValueError(f"{error} {fix}") from None
    mean, std = np.asarray(info["mean"], float), np.asarray(info["std"], float)
    if mean.shape != (3,) or std.shape != (3,) or not np.isfinite([*mean, *std]).all():
        raise ValueError(
            f"{path} stores a normalisation that is not three finite means and standard "
            f"deviations (mean {info['mean']}, std {info['std']}). {fix}"
        )
    if not (std > 0).all():
        raise ValueError(
            f"{path} stores a standard deviation of zero or less ({info['std']}): every "
            f"prediction would be NaN. {fix}"
        )
    if not 0.0 <= info["threshold"] <= 1.0:
        raise ValueError(
            f"{path} stores the decision threshold {info['threshold']}, outside 0..1. {fix}"
        )


@torch.no_grad()
def predict_files(
    files: Sequence[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str],
    *,
    canvas: tuple[int, int] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Probability of COVID and the label for any PNG/JPEG files (or folders of them).

    Unreadable files are reported in the ``error`` column, not raised, so one bad file
    does not stop a folder.
    """
    size = check_canvas_size(canvas, "--canvas (canvas=)") if canvas else None
    model, info = load_trained(checkpoint)
    size = size or info["canvas"]
    rows = []
    for path in tqdm(expand_image_paths(files), desc="predict", disable=not progress, unit="img"):
        try:
            image = read_grayscale(path)
        except ImageReadError as error:
            rows.append(
                {"file": str(path), "prob": float("nan"), "label": "", "error": error.reason}
            )
            continue
        x = normalize(fit_to_canvas(image, size)[0], info["mean"], info["std"]).unsqueeze(0)
        prob = float(probabilities(model(x))[0])
        rows.append(
            {
                "file": str(path),
                "prob": prob,
                "label": CLASS_NAMES[int(prob >= info["threshold"])],
                "error": "",
            }
        )
    return pd.DataFrame(rows)


def image_frame(data: CTDataset | pd.DataFrame | Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """A frame with at least ``path`` (and ``label``, NaN where unknown) from any image source."""
    if isinstance(data, CTDataset):
        frame = data.frame
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        frame = pd.DataFrame({"path": [str(p) for p in expand_image_paths(list(data))]})
    if "path" not in frame.columns:
        raise ValueError(
            f"Expected a frame with a 'path' column, got columns {list(frame.columns)}."
        )
    frame = frame.reset_index(drop=True)
    if "label" not in frame.columns:
        frame = frame.assign(label=np.nan)
    return frame


def spec_and_canvas(
    model: nn.Module, arch: str | None, canvas: tuple[int, int] | None
) -> tuple[ModelSpec, tuple[int, int]]:
    """The network's registry spec and the canvas to draw on: ``canvas`` if given, else the
    one the model was trained at (``model.ctlib_canvas``), else Table 1's."""
    spec = spec_of(model, arch)
    size = canvas if canvas is not None else getattr(model, "ctlib_canvas", None) or spec.canvas
    return spec, (int(size[0]), int(size[1]))


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
