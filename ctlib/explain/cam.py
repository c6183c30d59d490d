"""Class activation maps computed on the canvas and mapped back to the original image.

See :mod:`ctlib.explain` for the overview (the paper's Fig. 13-16) and the CAM hygiene it keeps.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_grad_cam
import torch
from pytorch_grad_cam.utils.model_targets import (
    BinaryClassifierOutputTarget,
    ClassifierOutputTarget,
)
from torch import nn
from tqdm.auto import tqdm

from ctlib.canvas import Box, box_to_image, fit_to_canvas, padding_mask
from ctlib.data import read_grayscale
from ctlib.errors import ImageReadError
from ctlib.explain.inputs import expand_image_paths, load_trained, model_device, spec_and_canvas
from ctlib.models import get_layer, probabilities, spec_of, unwrap_model
from ctlib.transforms import normalize

log = logging.getLogger(__name__)

# key: (pytorch_grad_cam class name, display name)
CAM_METHODS: dict[str, tuple[str, str]] = {
    "gradcam": ("GradCAM", "Grad-CAM"),
    "gradcam++": ("GradCAMPlusPlus", "Grad-CAM++"),
    "hirescam": ("HiResCAM", "HiResCAM"),
    "scorecam": ("ScoreCAM", "Score-CAM"),
    "eigencam": ("EigenCAM", "Eigen-CAM"),
    "layercam": ("LayerCAM", "LayerCAM"),
}
"""The CAM methods offered: key -> (pytorch-grad-cam class, display name)."""

_METHOD_ALIASES = {"gradcampp": "gradcam++", "gradcamplusplus": "gradcam++"}


@dataclass(frozen=True)
class CamResult:
    """A class activation map of one image, on the canvas and mapped back.

    Attributes:
        heatmap: ``(H, W)`` float32 in [0, 1], the original image's shape.
        canvas_heatmap: ``(canvas_h, canvas_w)`` float32 in [0, 1], as the network saw it.
        box: the image's placement box on the canvas.
        prob: the network's P(COVID).
        target: the class explained (1 COVID, 0 non-COVID).
        method: the CAM method's key (see :data:`CAM_METHODS`).
        layer: the target layer's dotted name.
        padding_share: the share of the canvas heat that lies on padding (NaN if the map
            is all zero).
        arch: the architecture.
        threshold: probability from which the network says COVID.
    """

    heatmap: np.ndarray
    canvas_heatmap: np.ndarray
    box: Box
    prob: float
    target: int
    method: str
    layer: str
    padding_share: float
    arch: str
    threshold: float = 0.5

    @property
    def predicted(self) -> int:
        """The predicted class (1 COVID, 0 non-COVID)."""
        return int(self.prob >= self.threshold)

    @property
    def method_name(self) -> str:
        """The method's display name, e.g. ``Grad-CAM++``."""
        return CAM_METHODS[self.method][1]


def cam_method_key(method: str) -> str:
    key = str(method).strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    key = _METHOD_ALIASES.get(key, key)
    if key not in CAM_METHODS:
        raise ValueError(f"Unknown CAM method {method!r}; choose from {list(CAM_METHODS)}.")
    return key


def _layer_module(
    model: nn.Module, spec: Any, layer: str | nn.Module | None
) -> tuple[nn.Module, str]:
    if layer is None:
        return get_layer(model, spec.cam_layer, spec), spec.cam_layer
    if isinstance(layer, nn.Module):
        names = {id(m): n for n, m in unwrap_model(model).named_modules()}
        if id(layer) not in names:
            raise ValueError("The layer given is not a module of this model.")
        return layer, names[id(layer)]
    try:
        return unwrap_model(model).get_submodule(layer), layer
    except AttributeError as err:
        raise ValueError(
            f"{spec.name!r} has no layer {layer!r}; see cam_layer_choices(model) "
            f"(default: {spec.cam_layer!r})."
        ) from err


def _targets(
    target: int | Sequence[int] | None, probs: torch.Tensor, threshold: float, num_outputs: int
) -> tuple[list[int], list[Any]]:
    n = len(probs)
    if target is None:
        classes = [int(p >= threshold) for p in probs.tolist()]
    elif isinstance(target, (int, np.integer)):
        classes = [int(target)] * n
    else:
        classes = [int(t) for t in target]
    if len(classes) != n or any(c not in (0, 1) for c in classes):
        raise ValueError(
            f"target must be None (the predicted class), 1 (COVID), 0 (non-COVID) or "
            f"one of those per image; got {target!r} for {n} image(s)."
        )
    maker = BinaryClassifierOutputTarget if num_outputs == 1 else ClassifierOutputTarget
    return classes, [maker(c) for c in classes]


def canvas_cams(
    model: nn.Module,
    x: torch.Tensor,
    arch: str | None = None,
    method: str = "gradcam",
    target: int | Sequence[int] | None = None,
    layer: str | nn.Module | None = None,
    *,
    threshold: float | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """CAMs of a normalised batch on its canvas: the core that the other functions wrap.

    Args:
        model: a kit-built network (one logit, or two).
        x: ``(N, 3, H, W)`` normalised canvases (:func:`ctlib.transforms.normalize`).
        arch: registry name; defaults to ``model.ctlib_arch``.
        method: a key of :data:`CAM_METHODS` (case and dashes ignored: ``"Grad-CAM++"`` works).
        target: None (the predicted class), 1 (COVID), 0 (non-COVID), or one per image.
        layer: dotted name or module of the target layer; default ``spec.cam_layer``.
        threshold: for ``target=None``; default ``model.ctlib_threshold`` or 0.5.
        batch_size: Score-CAM's batch of masked inputs.
        progress: show Score-CAM's own progress bars (silenced otherwise).

    Returns:
        ``(maps, probs, targets)``: ``(N, H, W)`` float32 maps scaled to [0, 1] per image,
        ``(N,)`` probabilities and the classes explained.
    """

    spec = spec_of(model, arch)
    key = cam_method_key(method)
    module, _ = _layer_module(model, spec, layer)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"canvas_cams expects a (N, 3, H, W) batch, got shape {tuple(x.shape)}.")
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        raise ValueError(
            "CAMs are computed in float32; this model has other parameter dtypes. "
            "Pass a float32 copy: copy.deepcopy(model).float()."
        )
    threshold = float(
        threshold if threshold is not None else getattr(model, "ctlib_threshold", 0.5)
    )
    device = model_device(model)
    was_training = model.training
    cam_class = getattr(pytorch_grad_cam, CAM_METHODS[key][0])
    x = x.detach().to(device=device, dtype=torch.float32).clone().requires_grad_(True)
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stderr(io.StringIO())
    try:
        with torch.enable_grad(), torch.autocast(device.type, enabled=False):
            model.eval()
            with torch.no_grad():
                logits = model(x)
            probs = probabilities(logits).cpu()
            classes, targets = _targets(target, probs, threshold, logits.shape[1])
            with cam_class(model=model, target_layers=[module]) as cam:
                cam.batch_size = batch_size  # read by Score-CAM only
                try:
                    with quiet:
                        maps = cam(input_tensor=x, targets=targets)
                except IndexError as err:  # the context manager would swallow an IndexError
                    raise RuntimeError(
                        f"{CAM_METHODS[key][1]} failed on {type(module).__name__}: {err}"
                    ) from err
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    maps = np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0)
    return np.clip(maps, 0.0, 1.0), probs.numpy().astype(np.float32), classes


def heat_share(heat: np.ndarray, mask: np.ndarray) -> float:
    total = float(heat.sum(dtype=np.float64))
    return float(heat[mask].sum(dtype=np.float64) / total) if total > 0 else float("nan")


def explain_image(
    model: nn.Module,
    image: np.ndarray,
    arch: str | None = None,
    method: str = "gradcam",
    target: int | None = None,
    layer: str | nn.Module | None = None,
    *,
    canvas: tuple[int, int] | None = None,
    threshold: float | None = None,
) -> CamResult:
    """A CAM of an original image: computed on the canvas, mapped back through the box.

    Args:
        model: a kit-built network.
        image: the original 2-D uint8 image (e.g. :func:`ctlib.data.read_grayscale`).
        arch: registry name; defaults to ``model.ctlib_arch``.
        method: see :data:`CAM_METHODS`.
        target: None (the predicted class), 1 (COVID) or 0 (non-COVID).
        layer: target layer; default ``spec.cam_layer``.
        canvas: ``(width, height)``; defaults to ``model.ctlib_canvas``, else Table 1's.
        threshold: for the predicted class; default ``model.ctlib_threshold`` or 0.5.

    Returns:
        A :class:`CamResult`.
    """
    spec, size = spec_and_canvas(model, arch, canvas)
    canvas_img, box = fit_to_canvas(image, size)
    x = normalize(canvas_img, spec.mean, spec.std).unsqueeze(0)
    threshold = float(
        threshold if threshold is not None else getattr(model, "ctlib_threshold", 0.5)
    )
    _, layer_name = _layer_module(model, spec, layer)
    maps, probs, classes = canvas_cams(
        model, x, spec.name, method, target, layer, threshold=threshold
    )
    canvas_map = maps[0]
    heatmap = np.clip(box_to_image(canvas_map, box, image.shape), 0.0, 1.0).astype(np.float32)
    return CamResult(
        heatmap=heatmap,
        canvas_heatmap=canvas_map,
        box=box,
        prob=float(probs[0]),
        target=classes[0],
        method=cam_method_key(method),
        layer=layer_name,
        padding_share=heat_share(canvas_map, padding_mask(size, box)),
        arch=spec.name,
        threshold=threshold,
    )


def gradcam(
    model: nn.Module,
    image: np.ndarray,
    arch: str | None = None,
    method: str = "gradcam",
    target: int | None = None,
    *,
    layer: str | nn.Module | None = None,
    canvas: tuple[int, int] | None = None,
) -> np.ndarray:
    """The heat map of an original image: ``(H, W)`` float32 in [0, 1], the image's shape.

    A pure function (the model's mode and weights are left as they were); see
    :func:`explain_image` for the arguments and for what else is known about the map.

    Example:
        >>> heat = gradcam(model, read_grayscale("slice.png"), "resnet18")  # doctest: +SKIP
        >>> heat.shape == image.shape                                      # doctest: +SKIP
        True
    """
    return explain_image(model, image, arch, method, target, layer, canvas=canvas).heatmap


def cam_layer_choices(
    model: nn.Module, arch: str | None = None, canvas: tuple[int, int] | None = None, n: int = 4
) -> list[str]:
    """Layers worth a CAM: ``spec.cam_layer`` first, then the ends of earlier stages.

    One dry forward pass (no gradients) records the size of each module's feature map. For
    each finer resolution than the CAM layer's, nearest first, the shallowest module
    producing it (the fewest dots in its name; of those, the last to run) is offered, e.g.
    ``layer3``, ``layer2``, ``layer1`` in a ResNet, ``Mixed_6e`` in InceptionV3. Modules of
    the head, containers of the CAM layer and modules run more than once are left out.
    Hooks are removed afterwards.

    Returns:
        At most ``n`` dotted layer names, the default (``spec.cam_layer``) first.
    """
    spec, size = spec_and_canvas(model, arch, canvas)
    inner = unwrap_model(model)
    seen: dict[str, tuple[int, int]] = {}
    calls: dict[str, int] = {}
    handles = []

    def record(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(output, torch.Tensor) and output.dim() == 4 and name not in seen:
                seen[name] = (int(output.shape[2]), int(output.shape[3]))

        return hook

    for name, module in inner.named_modules():
        if name and not (name == spec.head or name.startswith(spec.head + ".")):
            handles.append(module.register_forward_hook(record(name)))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, size[1], size[0], device=model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if spec.cam_layer not in seen:
        return [spec.cam_layer]
    cam_area = seen[spec.cam_layer][0] * seen[spec.cam_layer][1]
    best: dict[tuple[int, int], tuple[int, int, str]] = {}  # hw -> (depth, -order, name)
    for order, (name, hw) in enumerate(seen.items()):
        if (
            calls.get(name, 0) != 1
            or hw[0] * hw[1] <= cam_area
            or spec.cam_layer.startswith(name + ".")
        ):
            continue
        key = (name.count("."), -order, name)
        if hw not in best or key < best[hw]:
            best[hw] = key
    finer = sorted(best, key=lambda hw: hw[0] * hw[1])
    return [spec.cam_layer] + [best[hw][2] for hw in finer][: n - 1]


def explain_files(
    files: Sequence[str | os.PathLike[str]],
    checkpoint: str | os.PathLike[str] | tuple[nn.Module, dict],
    method: str = "gradcam",
    target: int | None = None,
    *,
    canvas: tuple[int, int] | None = None,
    progress: bool = True,
) -> list[tuple[Path, np.ndarray, CamResult]]:
    """Predict and explain any PNG/JPEG files or folders (the paper's Fig. 15/16 test).

    Args:
        files: image files or folders of them.
        checkpoint: a ``model.pt``, or ``(model, info)`` from :func:`load_trained`.
        method: see :data:`CAM_METHODS`.
        target: None (the predicted class), 1 or 0.
        canvas: overrides the run's canvas.
        progress: progress bar.

    Returns:
        ``(path, image, result)`` per readable file; unreadable files are logged and skipped.
        Draw them with ``ctlib.plots.plot_cam_gallery``.
    """
    model, info = checkpoint if isinstance(checkpoint, tuple) else load_trained(checkpoint)
    size = tuple(canvas) if canvas else tuple(info["canvas"])
    out = []
    for path in tqdm(expand_image_paths(files), desc="explain", disable=not progress, unit="img"):
        try:
            image = read_grayscale(path)
        except ImageReadError as error:
            log.warning("skipped %s: %s", path, error.reason)
            continue
        out.append(
            (
                path,
                image,
                explain_image(
                    model,
                    image,
                    info["arch"],
                    method,
                    target,
                    canvas=size,
                    threshold=info["threshold"],
                ),
            )
        )
    return out
