"""The operations floor: the Table 2 sweep on GPUs and clusters, the notebook maintainers'
tools (:mod:`ctlib.ops.notebooks`), the workshop pre-flight (:mod:`ctlib.ops.workshop`).

Nothing a lesson imports lives here; these modules build on the lesson's, never the reverse.
"""
