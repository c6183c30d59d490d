"""The study: what the runs mean, as numbers read from results on disk (never typed in).

* :mod:`~ctlib.study.paper` -- the paper's published numbers (Table 1's canvases, Table 2's
  rows) and the comparison of a run with them;
* :mod:`~ctlib.study.describe` -- the data sets described from their sizes (notebook 01);
* :mod:`~ctlib.study.audit` -- the leakage and shortcut audit (near-duplicates, look-alikes,
  pseudo-patients, metadata-only classifiers);
* :mod:`~ctlib.study.tables` -- every table: Table 2's layout, the comparison of protocols,
  the audit, Grad-CAM's heat, CAM scores, the grid's cost; Markdown;
* :mod:`~ctlib.study.honest` -- external validation, calibration and the CAMs' faithfulness;
* :mod:`~ctlib.study.findings` -- the findings in sentences;
* :mod:`~ctlib.study.readme` -- the README's generated block;
* :mod:`~ctlib.study.slides` -- the opening talk's slide deck, generated the same way.

Import from the module, e.g. ``from ctlib.study.tables import table2``.
"""
