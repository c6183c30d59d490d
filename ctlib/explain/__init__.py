"""Explaining trained networks (the paper's Sec. 5): features and t-SNE, Grad-CAM, CAMs scored.

* :mod:`~ctlib.explain.inputs` -- image lists, checkpoints, predictions on any image (Fig. 15/16);
* :mod:`~ctlib.explain.features` -- penultimate features, t-SNE, separation (Fig. 11/12);
* :mod:`~ctlib.explain.cam` -- CAMs on the network's canvas, mapped back to the image (Fig. 13-16);
* :mod:`~ctlib.explain.scoring` -- CAMs scored against known lesions, heat on padding and body;
* :mod:`~ctlib.explain.faithfulness` -- CAMs tested for faithfulness (ROAD; import from there);
* :mod:`~ctlib.explain.folds` -- one trained fold's t-SNE and gallery, for notebooks 04 and 05.

The public names are imported from ``ctlib.explain``. See docs/DEVELOPERS.md, *Explain*.
"""

from __future__ import annotations

from ctlib.explain.cam import (
    CAM_METHODS,
    CamResult,
    cam_layer_choices,
    canvas_cams,
    explain_files,
    explain_image,
    gradcam,
)
from ctlib.explain.features import (
    FEATURE_CACHE_VERSION,
    FeatureSet,
    embed_tsne,
    extract_features,
    feature_cache_key,
    fold_split,
    select_outcomes,
    separation_scores,
)
from ctlib.explain.folds import (
    GALLERY_OUTCOMES,
    FoldEmbedding,
    FoldGallery,
    fold_gallery,
    fold_tsne,
    lesion_masks,
)
from ctlib.explain.inputs import expand_image_paths, load_trained, predict_files
from ctlib.explain.scoring import (
    body_mask,
    energy_in_mask,
    heat_location,
    heat_report,
    pointing_baseline,
    pointing_game,
    randomized_copy,
    score_cams,
    score_on_lesions,
    spearman,
    ssim,
    summarize_cam_scores,
)

__all__ = [
    "FEATURE_CACHE_VERSION",
    "CAM_METHODS",
    "CamResult",
    "FeatureSet",
    "FoldEmbedding",
    "FoldGallery",
    "GALLERY_OUTCOMES",
    "body_mask",
    "cam_layer_choices",
    "canvas_cams",
    "embed_tsne",
    "energy_in_mask",
    "expand_image_paths",
    "explain_files",
    "explain_image",
    "extract_features",
    "feature_cache_key",
    "fold_split",
    "fold_gallery",
    "fold_tsne",
    "gradcam",
    "heat_location",
    "heat_report",
    "lesion_masks",
    "load_trained",
    "pointing_baseline",
    "pointing_game",
    "score_on_lesions",
    "predict_files",
    "randomized_copy",
    "score_cams",
    "select_outcomes",
    "separation_scores",
    "spearman",
    "ssim",
    "summarize_cam_scores",
]
