"""CAMs scored: pointing game, heat in lesions, the randomisation sanity check, heat location.

See :mod:`ctlib.explain` for the definitions and their sources.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from scipy.stats import spearmanr
from torch import nn
from tqdm.auto import tqdm

from ctlib.canvas import Box
from ctlib.data import CTDataset, read_grayscale
from ctlib.explain.cam import CAM_METHODS, cam_method_key, explain_image, heat_share
from ctlib.explain.inputs import image_frame, load_trained, spec_and_canvas
from ctlib.results import fold_recipe
from ctlib.runfiles import read_predictions


def pointing_game(heatmap: np.ndarray, mask: np.ndarray, tolerance: float = 15.0) -> bool:
    """Whether the heat map's maximum lies within ``tolerance`` pixels of the mask.

    Args:
        heatmap: 2-D map.
        mask: boolean mask of the same shape (e.g. the lesions).
        tolerance: pixels; 0 means the peak must lie on a mask pixel. Equivalent to testing
            the peak against the mask dilated by a disc of this radius.

    A flat map (no maximum) scores False; of tied maxima the first in row-major order counts.
    """
    heatmap, mask = np.asarray(heatmap), np.asarray(mask, dtype=bool)
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ in shape.")
    if not mask.any() or not np.isfinite(heatmap).any() or np.nanmax(heatmap) <= np.nanmin(heatmap):
        return False
    peak = np.unravel_index(int(np.nanargmax(heatmap)), heatmap.shape)
    if tolerance <= 0:
        return bool(mask[peak])
    return bool(ndimage.distance_transform_edt(~mask)[peak] <= tolerance)


def pointing_baseline(
    mask: np.ndarray, tolerance: float = 15.0, region: np.ndarray | None = None
) -> float:
    """The chance that a uniformly random peak (in ``region``, default everywhere) scores.

    This is the exact expected pointing-game score of a random heat map: the share of the
    region's pixels within ``tolerance`` of the mask.
    """
    mask = np.asarray(mask, dtype=bool)
    near = mask if tolerance <= 0 else ndimage.distance_transform_edt(~mask) <= tolerance
    if not mask.any():
        return 0.0
    region = np.ones_like(mask) if region is None else np.asarray(region, dtype=bool)
    return float(near[region].mean()) if region.any() else float("nan")


def energy_in_mask(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heat (sum of the map) inside the mask; NaN for an all-zero map."""
    heatmap = np.clip(np.asarray(heatmap, dtype=np.float64), 0, None)
    mask = np.asarray(mask, dtype=bool)
    if heatmap.shape != mask.shape:
        raise ValueError(f"heatmap {heatmap.shape} and mask {mask.shape} differ in shape.")
    return heat_share(heatmap, mask)


def score_on_lesions(heatmap: np.ndarray, mask: np.ndarray, tolerance: float = 15.0) -> dict:
    """How one heat map meets one slice's lesions: ``pointing_game`` (its peak on or near
    them), ``energy_in_lesions`` (the share of its heat on them) and ``lesion_area`` (their
    share of the slice, what a flat map would put on them)."""
    mask = np.asarray(mask, dtype=bool)
    return {
        "pointing_game": pointing_game(heatmap, mask, tolerance),
        "energy_in_lesions": energy_in_mask(heatmap, mask),
        "lesion_area": float(mask.mean()),
    }


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation between two maps (NaN if either is constant)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"Maps of different sizes: {a.size} vs {b.size}.")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, sigma: float = 1.5) -> float:
    """Structural similarity of two maps (Wang et al. 2004; Gaussian window, sigma 1.5).

    The same as ``skimage.metrics.structural_similarity(a, b, data_range=data_range,
    gaussian_weights=True, use_sample_covariance=False)``, without the dependency.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"ssim expects two 2-D maps of one shape, got {a.shape} and {b.shape}.")
    truncate = 3.5  # skimage's window: radius 3.5 sigma, i.e. 11 px for sigma 1.5

    def blur(v: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(v, sigma=sigma, truncate=truncate, mode="reflect")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    pad = int(truncate * sigma + 0.5)
    return float(s[pad:-pad, pad:-pad].mean()) if min(s.shape) > 2 * pad else float(s.mean())


def randomized_copy(model: nn.Module, fraction: float = 1.0, seed: int = 0) -> nn.Module:
    """A copy of the model with the top ``fraction`` of its layers re-initialised.

    Adebayo et al. (2018)'s model-randomisation test. The modules holding parameters are
    taken in registration order (input to output for the kit's networks); the last
    ``ceil(fraction * count)`` of them are re-initialised with their own
    ``reset_parameters()`` (BatchNorm: weight 1, bias 0, running statistics reset). So
    ``fraction=1.0`` is the full re-initialisation and increasing fractions are the cascade
    from the head down. The original is not changed; the global random state is untouched.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
    clone = copy.deepcopy(model)
    modules = [m for m in clone.modules() if any(True for _ in m.parameters(recurse=False))]
    count = math.ceil(fraction * len(modules))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in modules[len(modules) - count :]:
            if isinstance(module, nn.modules.batchnorm._NormBase):
                module.reset_running_stats()
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                for param in module.parameters(recurse=False):
                    nn.init.normal_(param, std=0.02)
    return clone


def body_mask(image: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """The body in a CT slice: threshold, largest connected component, holes filled.

    Args:
        image: 2-D uint8 image.
        threshold: grey level; None uses Otsu's threshold (computed by OpenCV).

    The lungs, dark but enclosed by the body, are filled in. Text or rulers in published
    figures are usually separate, smaller components and are dropped.
    """
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"body_mask expects a 2-D uint8 image, got {image.dtype} {image.shape}.")
    if threshold is None:
        threshold, _ = cv2.threshold(image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = image > threshold
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3)), iterations=2)
    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    body = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(body)


def _mask_on_canvas(mask: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """An original-image mask drawn onto the canvas (nearest neighbour; padding False)."""
    out = np.zeros((size[1], size[0]), dtype=bool)
    scaled = cv2.resize(
        mask.astype(np.uint8), (box.width, box.height), interpolation=cv2.INTER_NEAREST
    ).astype(bool)
    out[box.y : box.y + box.height, box.x : box.x + box.width] = scaled
    return out


def _sample(frame: pd.DataFrame, max_images: int | None, seed: int) -> pd.DataFrame:
    if max_images is None or len(frame) <= max_images:
        return frame
    return frame.sample(n=max_images, random_state=seed).sort_index()


def score_cams(
    model: nn.Module,
    data: CTDataset | pd.DataFrame,
    arch: str | None = None,
    methods: Sequence[str] = ("gradcam", "gradcam++", "hirescam", "layercam", "eigencam"),
    *,
    canvas: tuple[int, int] | None = None,
    tolerance: float = 15.0,
    target: int = 1,
    randomize: float = 1.0,
    max_images: int | None = None,
    seed: int = 0,
    progress: bool = True,
    per_image: bool = False,
) -> pd.DataFrame:
    """Score CAM methods against known lesion masks (the synthetic set).

    Args:
        model: a trained network.
        data: the synthetic :class:`CTDataset` or a frame with ``path``, ``mask_path`` and
            ``label`` (e.g. the test fold's rows); COVID images with a non-empty mask are scored.
        arch: registry name; defaults to ``model.ctlib_arch``.
        methods: keys of :data:`CAM_METHODS`.
        canvas: defaults to ``model.ctlib_canvas``, else Table 1's.
        tolerance: pointing-game tolerance in original-image pixels.
        target: the class explained (1, COVID: where are the lesions?).
        randomize: ``fraction`` of :func:`randomized_copy` for the sanity check (1.0: full).
        max_images: score a random sample of at most this many images (``seed``).
        seed: for the sample and the randomised weights.
        progress: progress bar.
        per_image: return one row per image and method instead of the summary.

    Returns:
        The summary of :func:`summarize_cam_scores` (one row per method), or the per-image
        rows: ``pointing`` (hit), ``random_pointing``/``body_pointing`` (expected score of a
        uniformly random peak over the image/the body), ``energy`` (heat share in lesions),
        ``lesion_area`` (the lesions' share of the image: a flat map's energy),
        ``padding_share``, ``sanity_spearman`` and ``sanity_ssim`` (trained vs randomised
        map, whole image), ``sanity_spearman_body`` (the same inside :func:`body_mask` only:
        the black surround is cold in both maps for trivial reasons and inflates the
        whole-image correlation), ``random_net_pointing`` (the randomised network's
        pointing game), ``prob``.

    Score-CAM (``"scorecam"``) is not among the default methods: it runs one forward pass
    per channel of the CAM layer (1280 for EfficientNet-Lite0, about 1.5 min per image on
    one CPU core); score it on a sample (``max_images``).
    """
    spec, size = spec_and_canvas(model, arch, canvas)
    frame = image_frame(data)
    if "mask_path" not in frame.columns:
        raise ValueError(
            "score_cams needs lesion masks (a 'mask_path' column): use the "
            "synthetic data set. For real data use heat_location()."
        )
    has_mask = frame["mask_path"].notna() & (frame["mask_path"].astype(str) != "")
    frame = frame[(pd.to_numeric(frame["label"], errors="coerce") == 1) & has_mask]
    frame = _sample(frame, max_images, seed)
    if frame.empty:
        raise ValueError("No COVID images with lesion masks to score.")
    keys = [cam_method_key(m) for m in methods]
    control = randomized_copy(model, randomize, seed)
    rows = []
    for _, row in tqdm(
        list(frame.iterrows()), desc=f"score CAMs {spec.name}", unit="img", disable=not progress
    ):
        image = read_grayscale(row["path"])
        mask = read_grayscale(row["mask_path"]) > 127
        if not mask.any():
            continue
        body = body_mask(image)
        base = {
            "arch": spec.name,
            "path": row["path"],
            "random_pointing": pointing_baseline(mask, tolerance),
            "body_pointing": pointing_baseline(mask, tolerance, region=body),
            "lesion_area": float(mask.mean()),
        }
        for key in keys:
            result = explain_image(model, image, spec.name, key, target, canvas=size)
            random_net = explain_image(control, image, spec.name, key, target, canvas=size)
            rows.append(
                {
                    **base,
                    "method": key,
                    "prob": result.prob,
                    "pointing": pointing_game(result.heatmap, mask, tolerance),
                    "energy": energy_in_mask(result.heatmap, mask),
                    "padding_share": result.padding_share,
                    "sanity_spearman": spearman(result.heatmap, random_net.heatmap),
                    "sanity_spearman_body": spearman(
                        result.heatmap[body], random_net.heatmap[body]
                    ),
                    "sanity_ssim": ssim(result.heatmap, random_net.heatmap),
                    "random_net_pointing": pointing_game(random_net.heatmap, mask, tolerance),
                }
            )
    table = pd.DataFrame(rows)
    table.attrs.update({"tolerance": tolerance, "canvas": size, "randomize": randomize})
    return table if per_image else summarize_cam_scores(table)


def summarize_cam_scores(per_image: pd.DataFrame) -> pd.DataFrame:
    """One row per architecture and method: the means of :func:`score_cams`' per-image rows."""
    columns = {
        "pointing": "pointing_game",
        "random_pointing": "random_baseline",
        "body_pointing": "body_baseline",
        "random_net_pointing": "random_net_pointing",
        "energy": "energy_in_lesions",
        "lesion_area": "lesion_area",
        "padding_share": "padding_share",
        "sanity_spearman": "sanity_spearman",
        "sanity_spearman_body": "sanity_spearman_body",
        "sanity_ssim": "sanity_ssim",
    }
    grouped = per_image.assign(
        pointing=per_image["pointing"].astype(float),
        random_net_pointing=per_image["random_net_pointing"].astype(float),
    )
    summary = grouped.groupby(["arch", "method"], sort=False)[list(columns)].mean()
    summary = summary.rename(columns=columns)
    summary["n_images"] = grouped.groupby(["arch", "method"], sort=False).size()
    summary = summary.reset_index()
    summary.insert(2, "method_name", summary["method"].map(lambda k: CAM_METHODS[k][1]))
    return summary


def heat_location(
    model: nn.Module,
    data: CTDataset | pd.DataFrame | Sequence[str | os.PathLike[str]],
    arch: str | None = None,
    methods: Sequence[str] = ("gradcam",),
    *,
    canvas: tuple[int, int] | None = None,
    target: int | None = None,
    max_images: int | None = 100,
    seed: int = 0,
    progress: bool = True,
    per_image: bool = False,
) -> pd.DataFrame:
    """Where the heat goes on real data: on the padding, outside the body.

    Shares are of the whole canvas heat: ``padding_share`` (on the padding),
    ``outside_body_share`` (on the padding or on the image outside :func:`body_mask`).
    ``outside_body_area`` is the canvas share outside the body: what a flat map would put
    there, the number to compare with.

    Returns:
        One row per architecture and method (means; ``n_images``), or per image with
        ``per_image=True``.
    """
    spec, size = spec_and_canvas(model, arch, canvas)
    frame = _sample(image_frame(data), max_images, seed)
    keys = [cam_method_key(m) for m in methods]
    rows = []
    for path in tqdm(
        frame["path"].astype(str).tolist(),
        desc=f"heat location {spec.name}",
        unit="img",
        disable=not progress,
    ):
        image = read_grayscale(path)
        body = body_mask(image)
        for key in keys:
            result = explain_image(model, image, spec.name, key, target, canvas=size)
            on_body = _mask_on_canvas(body, result.box, size)
            rows.append(
                {
                    "arch": spec.name,
                    "method": key,
                    "path": path,
                    "prob": result.prob,
                    "padding_share": result.padding_share,
                    "outside_body_share": heat_share(result.canvas_heatmap, ~on_body),
                    "outside_body_area": float((~on_body).mean()),
                }
            )
    table = pd.DataFrame(rows)
    if per_image:
        return table
    summary = table.groupby(["arch", "method"], sort=False)[
        ["padding_share", "outside_body_share", "outside_body_area"]
    ].mean()
    summary["n_images"] = table.groupby(["arch", "method"], sort=False).size()
    return summary.reset_index()


def heat_report(
    runs: str | os.PathLike[str],
    dataset: str,
    protocol: str,
    run: str,
    *,
    images_per_fold: int = 20,
    methods: Sequence[str] = ("gradcam",),
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Grad-CAM heat on the padding and outside the body, for the trained networks of a run.

    Each fold's ``model.pt`` explains ``images_per_fold`` of *its own test images* (drawn
    with ``seed``), the canvas of its run. Needs the runs folder (checkpoints), not the
    exported results.

    Returns:
        One row per fold and method: ``padding_share`` and ``outside_body_share`` of the
        heat, ``outside_body_area`` (the share of the canvas outside the body: what a flat
        heat map would put there), ``n_images``; ``dataset, protocol, run`` columns, and
        ``recipe``: the fold's training recipe in words (:func:`ctlib.results.fold_recipe`),
        so a table read later says which networks the heat came from.
    """
    base = Path(runs) / dataset / protocol / run
    folds = sorted(base.glob("fold*/model.pt"))
    if not folds:
        raise FileNotFoundError(f"No trained fold (fold*/model.pt) under {str(base)!r}.")
    rows = []
    for checkpoint in folds:
        model, info = load_trained(checkpoint)
        test = read_predictions(checkpoint.parent / "predictions.csv", locate=dataset)
        summary = heat_location(
            model,
            test,
            info["arch"],
            methods,
            canvas=info["canvas"],
            max_images=images_per_fold,
            seed=seed,
            progress=progress,
        )
        rows.append(
            summary.assign(
                fold=int(checkpoint.parent.name.removeprefix("fold")),
                dataset=dataset,
                protocol=protocol,
                run=run,
                recipe=fold_recipe(checkpoint.parent / "config.json"),
            )
        )
    return pd.concat(rows, ignore_index=True)
