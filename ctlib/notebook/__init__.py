"""What the numbered notebooks share: the mode, where outputs go, the data they work on.

* :mod:`~ctlib.notebook.mode` -- quick or full, from ``CTLIB_QUICK`` (:func:`get_mode`);
* :mod:`~ctlib.notebook.folders` -- output, results and figure folders (:func:`keep_figure`);
* :mod:`~ctlib.notebook.datasets` -- which data sets are here, a notebook's data set, the
  quick cross-validation that notebook 03 reads (:func:`ensure_results`);
* :mod:`~ctlib.notebook.lessons` -- what the lessons train (:data:`LESSON_RUNS`);
* :mod:`~ctlib.notebook.colab` -- whether this is Colab, the kit's public address.

What the notebooks compute lives in the layers below: recipes in :mod:`ctlib.recipes`,
figures in :mod:`ctlib.plots`, tables in :mod:`ctlib.study`, widgets in :mod:`ctlib.widgets`.
The maintainers' tools (run, strip, students' copies, pages, Colab cells, the workshop
pre-flight) are one floor down, in :mod:`ctlib.ops`.
"""

from ctlib.notebook.colab import in_colab, repository
from ctlib.notebook.datasets import (
    FULL_DATASET,
    browse_sets,
    data_status,
    default_dataset,
    ensure_results,
    get_dataset,
)
from ctlib.notebook.folders import (
    OUTPUT_ENV,
    RUNS_ENV,
    committed_figures,
    committed_results,
    committed_root,
    committed_source,
    committed_table,
    figure_dir,
    glossary,
    keep_figure,
    output_dir,
    repo_root,
    results_dir,
    show_committed_figure,
)
from ctlib.notebook.mode import QUICK_ENV, Mode, get_mode, runs_here

__all__ = [
    "FULL_DATASET",
    "OUTPUT_ENV",
    "RUNS_ENV",
    "QUICK_ENV",
    "Mode",
    "browse_sets",
    "committed_figures",
    "committed_results",
    "committed_root",
    "committed_source",
    "committed_table",
    "data_status",
    "default_dataset",
    "ensure_results",
    "figure_dir",
    "glossary",
    "get_dataset",
    "get_mode",
    "in_colab",
    "keep_figure",
    "output_dir",
    "repo_root",
    "repository",
    "results_dir",
    "runs_here",
    "show_committed_figure",
]
