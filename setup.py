"""The build's one addition to pyproject.toml: the committed results and figures go into the
wheel, so that a wheel (Colab, a `pip install` from a folder) holds what the lessons read.

`results/` and `figures/` stay where they are in the repository; at build time they are copied
into the wheel as `ctlib/_committed/results/` and `ctlib/_committed/figures/` (and the glossary
as `ctlib/_committed/docs/GLOSSARY.md`), where
`ctlib.notebook.committed_results()` and its siblings find them outside a clone. An editable
install (`pip install -e .`) reads them from the clone instead.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
COMMITTED = ("results", "figures")
#: single files the lessons show, e.g. the glossary their first cells link to
COMMITTED_FILES = ("docs/GLOSSARY.md",)


class BuildWithCommittedFiles(build_py):
    """``build_py`` that also copies the committed results and figures into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads them from the clone
        target = Path(self.build_lib) / "ctlib" / "_committed"
        shutil.rmtree(target, ignore_errors=True)  # a reused build folder keeps no stale file
        for name in COMMITTED:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, target / name, dirs_exist_ok=True)
        for name in COMMITTED_FILES:
            if (ROOT / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ROOT / name, target / name)


setup(cmdclass={"build_py": BuildWithCommittedFiles})
