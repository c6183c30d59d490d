"""Google Colab, as a lesson sees it: whether this is Colab (:func:`in_colab`), and the kit's
public git address (:func:`repository`, one setting: ``[tool.ctlib] repository`` in
``pyproject.toml``). The badges and set-up cells written from it: :mod:`ctlib.ops.notebooks.colab`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["in_colab", "repository"]

_SETTING = re.compile(r'^\[tool\.ctlib\][^\[]*?^repository\s*=\s*"([^"]*)"', re.M | re.S)


def in_colab() -> bool:
    """Whether this Python runs inside Google Colab."""
    return "google.colab" in sys.modules


def _pyproject() -> Path:
    return Path(__file__).resolve().parents[2] / "pyproject.toml"


def repository(pyproject: str | Path | None = None) -> str:
    """The kit's public git address from ``[tool.ctlib] repository`` (``""``: none yet).

    Raises:
        FileNotFoundError: no ``pyproject.toml`` (an installed wheel has none: the address is
            a setting of the source tree, written into the notebooks).
        ValueError: ``pyproject.toml`` has no such setting.
    """
    path = Path(pyproject) if pyproject is not None else _pyproject()
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run this from the kit's source tree.")
    match = _SETTING.search(path.read_text())
    if match is None:
        raise ValueError(f'{path} has no `repository = "..."` under [tool.ctlib].')
    return match.group(1).strip()
