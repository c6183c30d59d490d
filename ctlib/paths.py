"""Where ctlib looks for data sets, caches and weights; nothing touches the disk at import time.

Optional environment variables (folders are made only when a caller asks, ``create=True``):

* ``CTLIB_DATA_DIR`` -- the real data sets (``covid19-ct/``, ``sars-cov-2-ct/``); default
  ``<cache>/data`` (``.ci/run`` points it at ``../shared/data``);
* ``CTLIB_CACHE_DIR`` -- what ctlib makes itself (the synthetic set, canvases, features);
  default ``$XDG_CACHE_HOME/ctlib`` or ``~/.cache/ctlib``;
* ``CTLIB_WEIGHTS_DIR`` -- offline ImageNet weights; default ``<cache>/weights``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "data_dir", "weights_dir"]


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir(create: bool = False) -> Path:
    """The folder for files ctlib makes itself (``CTLIB_CACHE_DIR`` or ``~/.cache/ctlib``).

    Args:
        create: make the folder if it does not exist.
    """
    path = _env_path("CTLIB_CACHE_DIR")
    if path is None:
        xdg = _env_path("XDG_CACHE_HOME")
        path = (xdg if xdg is not None else Path.home() / ".cache") / "ctlib"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the folder that holds the real data sets.

    Order: the ``root`` argument, then ``CTLIB_DATA_DIR``, then ``<cache>/data``.
    """
    if root is not None:
        return Path(root).expanduser()
    env = _env_path("CTLIB_DATA_DIR")
    if env is not None:
        return env
    return cache_dir() / "data"


def weights_dir(create: bool = False) -> Path:
    """The folder searched for offline weights (``CTLIB_WEIGHTS_DIR`` or ``<cache>/weights``)."""
    path = _env_path("CTLIB_WEIGHTS_DIR") or cache_dir() / "weights"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
