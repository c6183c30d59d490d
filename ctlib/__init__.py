"""ctlib: a teaching and reproduction kit for *Explainable COVID-19 Detection Using
Chest CT Scans and Deep Learning* (Alshazly, Linse, Barth, Martinetz, 2020).

Import the part you need, e.g. ``from ctlib.data import load_dataset`` or
``from ctlib.models import create_model``. Data flows one way through the layers:
``data`` -> ``canvas``/``transforms`` -> ``models`` -> ``train`` -> ``recipes`` -> ``cv`` ->
``results`` -> ``explain`` -> ``study`` -> ``plots`` -> ``notebook``/``widgets`` -> ``cli``
(``ARCHITECTURE.md`` in the repository is the map). Importing ctlib does no work: no
seeding, no folders made, no downloads.
"""

__version__ = "0.1.0"

#: The kit's distribution name (pyproject.toml's ``[project] name``), which pip, wheels and
#: ``importlib.metadata`` know it by; the import name is ``ctlib``. The PyPI name ``ctlib``
#: belongs to an unrelated package: never ``pip install ctlib``.
DISTRIBUTION = "ctlib-covid"

#: How a wheel of the kit is named (``ctlib_covid-0.1.0-py3-none-any.whl``): a glob.
WHEEL_GLOB = DISTRIBUTION.replace("-", "_") + "-*.whl"
