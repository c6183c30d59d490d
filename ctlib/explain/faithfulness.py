"""Do the explanations explain? CAMs tested for faithfulness on the network's own canvas.

A map is *faithful* when the pixels it ranks high are the ones the prediction depends on.
ROAD (Rong et al. 2022, *A Consistent and Efficient Evaluation Strategy for Attribution
Methods*; pytorch-grad-cam's ``metrics.road``) removes a share of the pixels, most relevant
first (MoRF) or least relevant first (LeRF), fills them in from their neighbours (noisy linear
imputation, so the hole itself carries no signal), and measures how the probability of the
explained class changes. Each map is set beside two baselines that explain nothing: a smooth
random map, and the map of the same network with its weights randomised (Adebayo et al. 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.metrics.road import (
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirstAverage,
)
from torch import nn
from tqdm.auto import tqdm

from ctlib.canvas import fit_to_canvas
from ctlib.data import read_grayscale
from ctlib.explain.cam import CAM_METHODS, cam_method_key, canvas_cams
from ctlib.explain.inputs import image_frame, model_device, spec_and_canvas
from ctlib.explain.scoring import randomized_copy
from ctlib.models import probabilities
from ctlib.transforms import normalize

__all__ = [
    "FAITHFULNESS_METHODS",
    "ClassProbability",
    "faithfulness",
    "map_faithfulness",
    "road_beside_pointing",
    "smooth_random_map",
    "summarize_faithfulness",
]

#: the CAMs tested by default: the kit's gradient-based ones and Eigen-CAM (Score-CAM is left
#: out: one forward pass per channel of the CAM layer, a thousand per image)
FAITHFULNESS_METHODS = ("gradcam", "gradcam++", "hirescam", "layercam", "eigencam")
#: the two maps that explain nothing
RANDOM_MAP, RANDOM_NETWORK = "random map", "randomised network (Grad-CAM)"


class ClassProbability:
    """A pytorch-grad-cam target: the probability of ``category`` (1 = COVID) from one logit
    (or two), so each metric is a change in probability, in [-1, 1]."""

    def __init__(self, category: int) -> None:
        self.category = int(category)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        prob = probabilities(output.reshape(1, -1))[0]
        return prob if self.category == 1 else 1 - prob


def smooth_random_map(size: tuple[int, int], cell: int = 32, seed: int = 0) -> np.ndarray:
    """A random map as smooth as a CAM: uniform noise on a grid of ``cell``-pixel cells (a
    CAM layer's stride), upsampled bilinearly to ``size = (width, height)``, in [0, 1]."""
    width, height = size
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // cell + 2, width // cell + 2)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def map_faithfulness(
    model: nn.Module,
    x: torch.Tensor,
    cam: np.ndarray,
    target: int,
    percentiles: Sequence[int] = (20, 40, 60, 80),
) -> dict[str, float]:
    """The faithfulness scores of one map of one image (see :func:`faithfulness`).

    Args:
        model: the network, in eval mode.
        x: the image as the network sees it, ``(1, 3, H, W)``.
        cam: its map, ``(H, W)`` in [0, 1]; equal values are ranked at random.
        target: the class explained (1 = COVID).
        percentiles: the removal thresholds.

    Returns:
        ``morf``, ``lerf``, ``road`` and ``mult_change`` (changes in P(target)).
    """
    cam = np.asarray(cam, dtype=np.float32)
    # ties broken at random (pytorch-grad-cam cuts at a percentile with `<`: a map that is 0
    # on 30 % of the canvas, as Grad-CAM's ReLU leaves it, would otherwise lose every pixel
    # at the 20 % threshold); seeded by the map, so a score is reproducible
    rng = np.random.default_rng(int(cam.size + 1000 * float(cam.sum())) % 2**32)
    batch = (cam + 1e-4 * rng.random(cam.shape, dtype=np.float32))[None]
    targets = [ClassProbability(target)]
    morf = float(ROADMostRelevantFirstAverage(list(percentiles))(x, batch, targets, model)[0])
    lerf = float(ROADLeastRelevantFirstAverage(list(percentiles))(x, batch, targets, model)[0])
    mult = float(CamMultImageConfidenceChange()(x, batch, targets, model)[0])
    return {"morf": morf, "lerf": lerf, "road": (lerf - morf) / 2, "mult_change": mult}


def faithfulness(
    model: nn.Module,
    data: pd.DataFrame | Sequence[str],
    arch: str | None = None,
    methods: Sequence[str] = FAITHFULNESS_METHODS,
    *,
    canvas: tuple[int, int] | None = None,
    percentiles: Sequence[int] = (20, 40, 60, 80),
    max_images: int | None = 100,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """ROAD and the confidence change under the map, per image and map.

    Every image is drawn on the network's canvas as in training; the class explained is the
    predicted one. For each map (each of ``methods``, :data:`RANDOM_MAP` and
    :data:`RANDOM_NETWORK`):

    * ``morf``: mean change in P(explained class) when the most relevant ``100 - p`` % of the
      pixels are removed, over ``percentiles`` p (more negative: more faithful);
    * ``lerf``: the same, least relevant removed first (nearer 0: more faithful);
    * ``road``: ``(lerf - morf) / 2``, pytorch-grad-cam's combined score (higher: more
      faithful; about 0 for a map that ranks pixels at random);
    * ``mult_change``: change in P(explained class) when the input is multiplied by the map
      (less negative: the map keeps what the network needs).

    Args:
        model: a trained network (its weights are not changed).
        data: a frame with ``path`` (and ``label``), e.g. a fold's test rows, or image paths.
        arch: registry name; defaults to ``model.ctlib_arch``.
        methods: keys of :data:`ctlib.explain.CAM_METHODS`.
        canvas: defaults to the canvas the model was trained at.
        percentiles: the removal thresholds (pytorch-grad-cam's default is 10, 20, ..., 90;
            four halve the cost: each is one sparse solve per image and map).
        max_images: test a random sample of at most this many images (``seed``).
        seed: the sample, the random map, the randomised weights and the imputation noise.
        progress: progress bar.

    Returns:
        One row per image and map: ``path``, ``label``, ``map``, ``prob`` (P(explained class)),
        ``target``, ``morf``, ``lerf``, ``road``, ``mult_change``.
    """
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be at least 1 (or None for all), got {max_images}.")
    if not percentiles or any(not 0 < p < 100 for p in percentiles):
        raise ValueError(f"percentiles must lie strictly between 0 and 100, got {percentiles}.")
    spec, size = spec_and_canvas(model, arch, canvas)
    frame = image_frame(data)
    if max_images is not None and len(frame) > max_images:
        frame = frame.sample(n=max_images, random_state=seed).sort_index()
    keys = [cam_method_key(m) for m in methods]  # an unknown method is named here
    device = model_device(model)
    control = randomized_copy(model, 1.0, seed)
    was_training = model.training
    model.eval()
    rows = []
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the imputer's noise
            for _, row in tqdm(list(frame.iterrows()), desc=f"ROAD {spec.name}", unit="img",
                               disable=not progress):  # fmt: skip
                canvas_img, _ = fit_to_canvas(read_grayscale(row["path"]), size)
                x = normalize(canvas_img, spec.mean, spec.std).unsqueeze(0).to(device)
                maps = {}
                for key in keys:
                    cams, probs, classes = canvas_cams(model, x, spec.name, key)
                    maps[CAM_METHODS[key][1]] = cams[0]
                target = classes[0]
                maps[RANDOM_MAP] = smooth_random_map(size, seed=seed + len(rows))
                maps[RANDOM_NETWORK] = canvas_cams(control, x, spec.name, "gradcam", target)[0][0]
                prob = float(probs[0]) if target == 1 else 1.0 - float(probs[0])
                for name, cam in maps.items():
                    scores = map_faithfulness(model, x, cam, target, percentiles)
                    label = row.get("label", pd.NA)
                    rows.append({"path": row["path"], "label": label, "map": name,
                                 "target": target, "prob": prob, **scores})  # fmt: skip
    finally:
        model.train(was_training)
    table = pd.DataFrame(rows)
    table.attrs.update({"percentiles": list(percentiles), "canvas": size, "arch": spec.name})
    return table


def summarize_faithfulness(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean of each score per map over the images, in the order the maps were tested, with
    the number of images."""
    order = list(dict.fromkeys(per_image["map"]))
    grouped = per_image.groupby("map", sort=False)
    table = grouped[["road", "morf", "lerf", "mult_change"]].mean()
    table["images"] = grouped["path"].nunique()
    return table.loc[order].reset_index()


def road_beside_pointing(cam_scores: pd.DataFrame, road: pd.DataFrame) -> pd.DataFrame:
    """Does "points at the lesion" agree with "the network depends on it"? Per CAM method.

    Args:
        cam_scores: :func:`ctlib.explain.score_cams` rows (``per_image=True``): ``path``,
            ``method`` (a key of :data:`ctlib.explain.CAM_METHODS`), ``pointing`` (hit or not).
        road: :func:`faithfulness` rows on the same images (``path``, ``map``, ``road``, ...).

    Returns:
        One row per method of ``cam_scores`` (in their order): ``road``, ``morf``, ``lerf``,
        ``mult_change`` (means over the images), ``road_hit`` and ``road_miss`` (mean ROAD
        over the images whose pointing game the method wins or loses; NaN where there are
        none), ``hits`` and ``misses``, and the two maps that explain nothing:
        ``road_random_map`` and ``road_random_network``.

    Raises:
        ValueError: a method (or a baseline map) has no ROAD rows on the scored images.
    """
    scored = road[road["path"].isin(cam_scores["path"])]
    baselines = {}
    for column, name in (("road_random_map", RANDOM_MAP), ("road_random_network", RANDOM_NETWORK)):
        values = scored.loc[scored["map"] == name, "road"]
        if values.empty:
            raise ValueError(f"No ROAD rows for the baseline map {name!r}: run faithfulness() "
                             "on the images score_cams scored.")  # fmt: skip
        baselines[column] = float(values.mean())
    rows = []
    for key, group in cam_scores.groupby("method", sort=False):
        name = CAM_METHODS[key][1]
        own = scored[scored["map"] == name].set_index("path")
        if own.empty:
            raise ValueError(f"No ROAD rows for {name!r} ({key}) on the scored images.")
        hit = group.set_index("path")["pointing"].astype(bool).reindex(own.index)
        hits, misses = hit.eq(True), hit.eq(False)
        rows.append(
            {
                "method": key,
                **own[["road", "morf", "lerf", "mult_change"]].mean().to_dict(),
                "road_hit": float(own.loc[hits, "road"].mean()),
                "road_miss": float(own.loc[misses, "road"].mean()),
                "hits": int(hits.sum()),
                "misses": int(misses.sum()),
                **baselines,
            }
        )
    return pd.DataFrame(rows)
