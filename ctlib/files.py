"""Writing files so that an interruption never leaves half of one, and hashing them.

Every result the kit writes (JSON, CSV, checkpoints, figures, caches) goes through
:func:`atomic_write`: the content is written to a hidden temporary file in the same folder
and renamed into place, so a reader sees either the old file or the new one, never a torn
one, whatever moment a run is killed at.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "sha256_file", "write_json"]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place.

    The temporary name keeps the suffix (some writers choose the format by it) and carries
    the process ID, so two processes never share one. On an error the temporary file is
    removed and nothing is replaced. Parent folders are made.

    Example:
        >>> write_csv = lambda tmp: frame.to_csv(tmp, index=False)  # doctest: +SKIP
        >>> atomic_write("out/table.csv", write_csv)  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(obj: Any, path: str | os.PathLike[str], *, indent: int | None = 1) -> Path:
    """``obj`` as JSON at ``path``, written atomically."""
    text = json.dumps(obj, indent=indent)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
