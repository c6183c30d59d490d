"""The models layer: the paper's twelve CNNs (Table 1, and one teaching extra), built one way.

* :mod:`~ctlib.models.registry` -- Table 1 as data: one :class:`ModelSpec` per architecture;
* :mod:`~ctlib.models.weights` -- ImageNet weights: offline first, read, renamed, fitted;
* :mod:`~ctlib.models.factory` -- :func:`create_model` (one logit, the paper's two strategies);
* :mod:`~ctlib.models.checkpoints` -- :func:`save_checkpoint`, :func:`load_checkpoint`.

Each room imports only those above it. Why the heads, layers and weights are as they are:
``docs/DEVELOPERS.md``, section *Models*. ``get_spec("resnet50").canvas`` is ``(349, 253)``.
"""

from ctlib.errors import WeightsUnavailableError
from ctlib.models.checkpoints import load_checkpoint, save_checkpoint
from ctlib.models.factory import (
    cam_target_layers,
    create_model,
    get_layer,
    head_module,
    penultimate_features,
    probabilities,
    spec_of,
    unwrap_model,
)
from ctlib.models.registry import ModelSpec, get_spec, list_models
from ctlib.models.weights import CHECKPOINT_FORMAT, weight_file_candidates

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
