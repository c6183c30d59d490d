"""Where a data set's images lie on disk, and what a wrong layout is told."""

from __future__ import annotations

import os
from pathlib import Path

from ctlib.data.images import IMAGE_SUFFIXES
from ctlib.data.registry import DatasetInfo
from ctlib.errors import DataError
from ctlib.paths import data_dir

__all__ = ["find_dataset_folder", "list_images"]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (by suffix, hidden files ignored), sorted."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def find_dataset_folder(info: DatasetInfo, root: str | os.PathLike[str] | None) -> Path:
    """Find ``<root>/<name>`` and check its class folders; errors say what to do."""
    base = data_dir(root)
    folder = base / info.name
    class_names = [c for c, _ in info.class_folders]
    if not folder.is_dir() and all((base / c).is_dir() for c in class_names):
        folder = base  # the user pointed at the data set folder itself
    hint = (
        f"Get it with python -m ctlib download {info.name} --dest {str(base)!r} (in Python: "
        f"ctlib.data.download({info.name!r}, {str(base)!r})), or point CTLIB_DATA_DIR (or "
        f"--root / root=) at the folder that holds {info.name}/."
    )
    if not folder.is_dir():
        raise DataError(f"Data set {info.name!r} not found: {str(folder)!r} does not exist. {hint}")
    absent = [c for c in class_names if not (folder / c).is_dir()]
    if absent:
        present = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise DataError(
            f"Class folder(s) {absent} of {info.name!r} missing in {str(folder)!r}; found "
            f"folders {present}, expected {class_names}. {hint}"
        )
    for class_folder in class_names:
        path = folder / class_folder
        images = list_images(path)
        if not images:
            nested = [p for p in path.iterdir() if p.is_dir()]
            extra = (
                f" It holds the folder(s) {[p.name for p in nested]}: an archive unpacked one "
                f"level too deep? Move their images up into {str(path)!r}."
                if nested
                else ""
            )
            raise DataError(f"Class folder {str(path)!r} holds no images.{extra} {hint}")
    return folder
