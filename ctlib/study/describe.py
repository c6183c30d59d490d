"""The data sets described from their sizes alone: counts, patients, aspect ratios, padding.

Notebook 01's tables. The real sets are described from their shipped manifests, so this
works whether or not their images are on disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ctlib.canvas import fit_box
from ctlib.data import CLASS_NAMES, REAL_DATASETS, CTDataset, read_manifest
from ctlib.study.paper import canvas_columns

__all__ = ["overview", "padding_stats", "size_frames"]


def size_frames(
    names: Sequence[str] = REAL_DATASETS, synthetic: CTDataset | None = None
) -> dict[str, pd.DataFrame]:
    """Label, patient and size of every image per data set, without reading images.

    The real sets come from their shipped manifests (``ctlib/data/manifests/<name>.csv``), so
    this works whether or not their images are on disk; the synthetic set from ``synthetic`` if
    given.
    """
    frames = {name: read_manifest(name) for name in names}
    if synthetic is not None:
        frames[synthetic.name] = synthetic.frame
    return frames


def overview(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Images, patients, sizes and aspect ratios per data set and class.

    Args:
        frames: data set name -> a frame with ``label``, ``patient_id``, ``width``, ``height``
            (a manifest or ``CTDataset.frame``).

    Returns:
        One row per (data set, class): ``images``, ``patients`` ("not published" where unknown),
        ``width`` and ``height`` as ``min–max``, and the median and range of the aspect
        ratio width / height.
    """
    rows = []
    for name, frame in frames.items():
        labelled = frame.assign(aspect=frame["width"] / frame["height"])
        for label, cls in CLASS_NAMES.items():
            part = labelled[labelled["label"] == label]
            if part.empty:
                continue
            rows.append(
                {
                    "dataset": name,
                    "class": cls,
                    "images": len(part),
                    "patients": str(part["patient_id"].nunique())
                    if part["patient_id"].notna().all()
                    else "not published",
                    "width": f"{part['width'].min()}–{part['width'].max()}",
                    "height": f"{part['height'].min()}–{part['height'].max()}",
                    "aspect median": round(float(part["aspect"].median()), 2),
                    "aspect range": f"{part['aspect'].min():.2f}–{part['aspect'].max():.2f}",
                }
            )
    return pd.DataFrame(rows).set_index(["dataset", "class"])


def padding_stats(
    frames: Mapping[str, pd.DataFrame],
    canvases: Mapping[str, tuple[int, int]] | None = None,
    square: int = 224,
) -> pd.DataFrame:
    """What fitting costs, per data set (medians over images, from sizes alone).

    For each canvas: the share of the canvas that is padding. For a plain ``square`` resize:
    how much the image is squashed, ``1 - min(aspect, 1/aspect)`` (0 %: not distorted).
    """
    canvases = canvases if canvases is not None else canvas_columns()
    rows = []
    for name, frame in frames.items():
        sizes = list(zip(frame["width"].astype(int), frame["height"].astype(int), strict=True))
        row: dict[str, object] = {"dataset": name}
        for cw, ch in canvases.values():
            padding = [
                1 - (b.width * b.height) / (cw * ch) for b in (fit_box(s, (cw, ch)) for s in sizes)
            ]
            row[f"padding {cw}×{ch}"] = f"{np.median(padding):.0%}"
        aspect = frame["width"].to_numpy(float) / frame["height"].to_numpy(float)
        row[f"squashed {square}×{square}"] = f"{np.median(1 - np.minimum(aspect, 1 / aspect)):.0%}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("dataset")
