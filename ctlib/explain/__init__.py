"""Explaining trained networks: features and t-SNE, Grad-CAM mapped back, CAMs scored.

The paper's Sec. 5 in four parts, each a few pure functions:

**Predictions on any image** (Fig. 15/16): :func:`predict_files`, :func:`explain_files`.

**Features and t-SNE** (Fig. 11/12): :func:`extract_features` runs a trained network over a
data set and returns the pooled penultimate features (what the head sees) and the network's
probabilities, cached on disk under ``ctlib.paths.cache_dir()/features`` keyed by a hash of
the weights, the canvas and the image files; :func:`embed_tsne` embeds them with
scikit-learn's t-SNE; :func:`separation_scores` puts a number on "well separated"
(cross-validated k-NN accuracy and silhouette score, in the feature space and in the
embedding). ``ctlib.plots.plot_tsne`` draws train/test x COVID/non-COVID in four colours with
misclassified test images marked.

**Grad-CAM** (Fig. 13-16): :func:`gradcam` (heat map only) and :func:`explain_image`
(a :class:`CamResult`) take the *original* 2-D uint8 image. The image is drawn on the
network's canvas (:func:`ctlib.canvas.fit_to_canvas`), the CAM is computed there with
pytorch-grad-cam on the registry's layer (``spec.cam_layer``; any other can be named), and
the map is cut out through the placement box and resized to the original image. The share
of the heat that fell on the padding, which the mapped-back map no longer shows, is
reported as ``padding_share``. Methods: ``"gradcam"`` (default), ``"gradcam++"``,
``"hirescam"``, ``"scorecam"``, ``"eigencam"``, ``"layercam"`` (see :data:`CAM_METHODS`).

Heat-map scale: pytorch-grad-cam scales each *canvas* map to [0, 1]. The mapped-back map
keeps that scale, so its maximum is below 1 when the canvas maximum lay on the padding:
an overlay then looks weak exactly when the network looked elsewhere.

CAM hygiene (see the field notes): CAMs are computed in float32 with autocast disabled and
gradients enabled (also inside ``torch.no_grad()``); the hooks are released by
pytorch-grad-cam's context manager even when something fails; the model's train/eval
mode is restored (pytorch-grad-cam leaves it in eval mode) and the parameter gradients
its backward pass leaves behind are cleared. Targets of a one-logit network are
pytorch-grad-cam's ``BinaryClassifierOutputTarget``: 1 (COVID, the logit) or 0 (non-COVID,
minus the logit); ``target=None`` explains the predicted class. For a
``feature_extraction`` model (frozen backbone) the input is given ``requires_grad`` so
that the target layer's activations carry gradients.

**CAMs scored** -- not only shown. On the synthetic set, where lesion masks are known,
:func:`score_cams` measures for each method:

* *pointing game* (Zhang et al. 2018): the heat map's maximum lies inside a lesion, with a
  tolerance of ``tolerance`` pixels of the original image (default 15: the peak may be at
  most 15 px from the nearest lesion pixel, i.e. inside the mask dilated by a disc of
  radius 15). Baselines, exact rather than sampled: the chance that a uniformly random
  peak scores, over the whole image and over the body only (:func:`pointing_baseline`);
* *heat share in lesions* (energy-based pointing game, Wang et al. 2020): the sum of the
  heat inside the lesion mask over the sum of all heat on the image, against the lesion's
  share of the image area (what a flat map would give);
* *sanity check* (Adebayo et al. 2018): the maps of the trained network are compared with
  those of the same architecture with randomised weights (:func:`randomized_copy`: full
  re-initialisation by default, or a cascade from the head down); Spearman's rank
  correlation (over the whole image, and over the body only) and SSIM between the two
  maps should be low. A method whose maps barely
  change when the weights are destroyed explains the image, not the network.

On real data (no lesion masks), :func:`heat_location` reports the share of heat on the
padding and outside the body (:func:`body_mask`: Otsu threshold, largest connected
component, holes filled).

**For the notebooks** (04 t-SNE, 05 Grad-CAM): :func:`ctlib.cv.trained_fold` finds a trained
fold or trains a missing one with a given recipe; :func:`fold_tsne` makes the t-SNE of a fold
with its separation scores and where each test image's nearest training image lies (same
class? same patient?); :func:`fold_gallery` explains a fold's surest and most wrong test
slices of each outcome (true/false positives and negatives, the paper's Fig. 13-16);
:func:`lesion_masks` adds the synthetic lesion masks to a frame of
slices.

**Modules**: :mod:`~ctlib.explain.inputs` (image lists, checkpoints, predictions),
:mod:`~ctlib.explain.features` (features, t-SNE, separation), :mod:`~ctlib.explain.cam`
(CAMs on the canvas, mapped back), :mod:`~ctlib.explain.scoring` (CAMs scored, heat
location, :func:`heat_report` over a run's folds), :mod:`~ctlib.explain.folds` (one fold
for notebooks 04 and 05). The public names are imported from ``ctlib.explain``.
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
    "predict_files",
    "randomized_copy",
    "score_cams",
    "select_outcomes",
    "separation_scores",
    "spearman",
    "ssim",
    "summarize_cam_scores",
]
