"""Running the numbered notebooks as tests (nbval, ``--nbval-lax`` from pyproject.toml).

* Quick mode unless the caller chose otherwise (``CTLIB_QUICK=1``): CPU, synthetic data, minutes.
* Outputs of the run go to a fresh temporary folder (``CTLIB_OUTPUT_DIR``), so every test run
  trains again and nothing is left in the repository; set ``CTLIB_OUTPUT_DIR`` to keep them.
* Checked outputs (cells marked ``# NBVAL_CHECK_OUTPUT``) are compared after the regular
  expressions in ``nbval_sanitize.cfg`` have been applied to both sides.
* The default test run executes one notebook (:data:`DEFAULT_NOTEBOOK`); the others are marked
  ``slow`` and run with ``pytest -m slow`` (``.ci/run`` runs both).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SANITIZE = HERE / "nbval_sanitize.cfg"


def pytest_configure(config: pytest.Config) -> None:
    if getattr(config.option, "nbval_sanitize_with", "missing") is None:
        config.option.nbval_sanitize_with = str(SANITIZE)
    os.environ.setdefault("CTLIB_QUICK", "1")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not os.environ.get("CTLIB_OUTPUT_DIR"):
        folder = tempfile.mkdtemp(prefix="ctlib-notebooks-")
        os.environ["CTLIB_OUTPUT_DIR"] = folder
        config.add_cleanup(lambda: shutil.rmtree(folder, ignore_errors=True))


#: The notebook the default run executes: it reads the committed results through most of the
#: library (study, tables, findings, plots) in about 20 s.
DEFAULT_NOTEBOOK = "06_honest_evaluation.ipynb"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix == ".ipynb" and path.name != DEFAULT_NOTEBOOK:
            item.add_marker(pytest.mark.slow)


_SECONDS: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add up each notebook's cell times (setup, call and teardown of its nbval items)."""
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _SECONDS[path] = _SECONDS.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print each notebook's quick-mode run time, as nbval measured it."""
    if not _SECONDS:
        return
    terminalreporter.section("notebook run times (quick mode, nbval)")
    for path, seconds in sorted(_SECONDS.items()):
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}")
