"""Explaining trained networks: predictions on any image (the paper's Fig. 15/16 test).

This module will also hold penultimate features, t-SNE and Grad-CAM mapped back to the
original image (issue: explainability).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from ctlib.canvas import fit_to_canvas
from ctlib.data import IMAGE_SUFFIXES, ImageReadError, read_grayscale
from ctlib.transforms import normalize

__all__ = ["expand_image_paths", "load_trained", "predict_files"]


def expand_image_paths(items: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given, and the image files inside given folders (sorted, not recursive)."""
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            paths += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                            and not p.name.startswith("."))
        elif path.exists():
            paths.append(path)
        else:
            raise FileNotFoundError(f"{str(path)!r} does not exist.")
    if not paths:
        raise FileNotFoundError(f"No image files found in {[str(i) for i in items]}.")
    return paths


def load_trained(checkpoint: str | os.PathLike[str]) -> tuple[torch.nn.Module, dict]:
    """A trained model from a ``model.pt`` and what its run says about it.

    Returns:
        ``(model, info)`` where ``info`` holds ``arch``, ``canvas`` (from the run's
        ``config.json`` beside the file if present, else the architecture's), ``mean``,
        ``std`` and ``threshold``.
    """
    from ctlib.models import get_spec, load_checkpoint

    path = Path(checkpoint)
    model = load_checkpoint(path).eval()
    raw = torch.load(path, map_location="cpu", weights_only=True)
    spec = get_spec(raw["arch"])
    info = {"arch": spec.name, "canvas": spec.canvas, "mean": spec.mean, "std": spec.std,
            "threshold": float(raw.get("extra", {}).get("threshold", 0.5))}
    config = path.parent / "config.json"
    if config.is_file():
        canvas = json.loads(config.read_text()).get("train", {}).get("canvas")
        if canvas:
            info["canvas"] = tuple(canvas)
    return model, info


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
    model, info = load_trained(checkpoint)
    size = tuple(canvas) if canvas else info["canvas"]
    rows = []
    for path in tqdm(expand_image_paths(files), desc="predict", disable=not progress, unit="img"):
        try:
            image = read_grayscale(path)
        except ImageReadError as error:
            rows.append({"file": str(path), "prob": float("nan"), "label": "", "error": error.reason})
            continue
        x = normalize(fit_to_canvas(image, size)[0], info["mean"], info["std"]).unsqueeze(0)
        logits = model(x)
        prob = float(torch.sigmoid(logits[0, 0]) if logits.shape[1] == 1
                     else torch.softmax(logits, 1)[0, 1])
        rows.append({"file": str(path), "prob": prob,
                     "label": "COVID" if prob >= info["threshold"] else "non-COVID", "error": ""})
    return pd.DataFrame(rows)
