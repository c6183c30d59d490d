"""Figures: what a person would rather look at than read.

Every function returns a :class:`matplotlib.figure.Figure` and draws nothing on screen by
itself; :func:`save_figure` writes one atomically. By subject:

* :mod:`~ctlib.plots.data` -- canvases per architecture, image sizes, examples, augmentations;
* :mod:`~ctlib.plots.training` -- the learning-rate schedule, training curves;
* :mod:`~ctlib.plots.explain` -- t-SNE (Fig. 11/12), Grad-CAM overlays and galleries (Fig. 13-16,
  :func:`plot_outcome_gallery` all four outcomes in one);
* :mod:`~ctlib.plots.results` -- Fig. 9's confusion matrices, the honest-evaluation panel,
  reliability diagrams, near-duplicate pairs.

Every colour comes from :mod:`~ctlib.plots.palette`, the kit's colour language (one colour, one
meaning: COVID, non-COVID, a protocol, the paper's reference, ...; Okabe-Ito hues).
"""

from ctlib.plots.base import figure_png, image_grid, save_figure
from ctlib.plots.data import (
    canvas_sizes,
    plot_augmentations,
    plot_canvases,
    plot_examples,
    plot_sizes,
    plot_slices,
)
from ctlib.plots.explain import (
    TSNE_COLOURS,
    heat_overlay,
    plot_cam,
    plot_cam_gallery,
    plot_outcome_gallery,
    plot_tsne,
)
from ctlib.plots.reading import plot_reading_examples
from ctlib.plots.results import (
    confusion_figure,
    honest_figure,
    paper_figure,
    plot_pairs,
    reliability_figure,
)
from ctlib.plots.training import plot_history, plot_lr_schedule

__all__ = [
    "TSNE_COLOURS",
    "canvas_sizes",
    "confusion_figure",
    "figure_png",
    "heat_overlay",
    "honest_figure",
    "paper_figure",
    "image_grid",
    "plot_augmentations",
    "plot_cam",
    "plot_cam_gallery",
    "plot_canvases",
    "plot_examples",
    "plot_history",
    "plot_lr_schedule",
    "plot_outcome_gallery",
    "plot_pairs",
    "plot_reading_examples",
    "plot_sizes",
    "plot_slices",
    "plot_tsne",
    "reliability_figure",
    "save_figure",
]
