"""One machine trains, the room reuses: the lessons' trained networks as one archive.

``python -m ctlib prepare-workshop --pack ctlib-lessons.zip`` (or ``python -m ctlib lesson-pack
export FILE`` after it) writes every finished fold of the runs notebooks 02-05 train
(:data:`ctlib.notebook.lessons.LESSON_RUNS`, in the current mode) into one zip: the fold
folders as the notebooks find them (weights, predictions, metrics, history, config; no
rolling checkpoints), and ``pack.json`` with each file's SHA-256. ``python -m ctlib
lesson-pack import FILE`` on a learner's laptop or a Colab runtime puts them where the
notebooks look (:func:`ctlib.notebook.folders.results_dir`), so no network trains in class.

Importing is as careful as loading a checkpoint: a member outside the pack's list, an absolute
path, ``..``, a link or a file whose hash differs refuses the whole archive before anything is
written; files are extracted into a temporary folder and moved into place only when all check
out; a fold already here is left as it is. The weights themselves are read later with
``torch.load(weights_only=True)``, as any ``model.pt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from ctlib.notebook.folders import results_dir
from ctlib.notebook.lessons import lesson_runs
from ctlib.notebook.mode import Mode, get_mode

__all__ = ["PACK_INDEX", "LessonPackError", "export_lesson_pack", "import_lesson_pack"]

#: the archive's table of contents
PACK_INDEX = "pack.json"
#: files a finished fold does not need (training state, locks, temporary files)
LEFT_OUT = ("checkpoint.pt", "best.pt", "train.lock")


class LessonPackError(ValueError):
    """A lesson pack that cannot be imported: foreign, altered, unsafe or for another mode."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run_folders(mode: Mode) -> list[Path]:
    """Each lesson run's folder of finished folds: ``<results_dir>/<data set>/<protocol>``."""
    return [results_dir(mode, config) / dataset / run.protocol_in(mode)
            for run, dataset, config in lesson_runs(mode)]  # fmt: skip


def export_lesson_pack(
    path: str | os.PathLike[str], mode: Mode | None = None, folders: Sequence[Path] | None = None
) -> dict[str, str]:
    """Write the finished folds of the lesson runs (or of ``folders``, each under the mode's
    results base) into the zip ``path``; returns the packed files and their SHA-256.

    Raises:
        FileNotFoundError: no finished fold to pack (run ``python -m ctlib prepare-workshop``).
    """
    mode = mode or get_mode()
    base = results_dir(mode)
    files: dict[str, str] = {}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for folder in folders if folders is not None else _run_folders(mode):
            for metrics in sorted(folder.glob("*/fold*/metrics.json")):
                run = metrics.parent.parent
                fold_files = [p for p in sorted(metrics.parent.rglob("*")) if p.is_file()]
                for file in [*fold_files, *sorted(run.glob("*.csv"))]:
                    name = file.relative_to(base).as_posix()
                    if file.name in LEFT_OUT or ".tmp" in file.name or name in files:
                        continue
                    data = file.read_bytes()
                    archive.writestr(name, data)
                    files[name] = _sha256(data)
        if not files:
            raise FileNotFoundError(
                f"No finished lesson fold under {base} to pack ({mode}); train them first: "
                "python -m ctlib prepare-workshop --no-rehearse."
            )
        index = {"kit": "ctlib", "mode": "quick" if mode.quick else "full", "files": files}
        archive.writestr(PACK_INDEX, json.dumps(index, indent=1, sort_keys=True))
    return files


def _checked_members(archive: zipfile.ZipFile, mode: Mode) -> dict[str, str]:
    """The pack's file list, after checking every member is listed, safe and a plain file."""
    try:
        index = json.loads(archive.read(PACK_INDEX))
    except (KeyError, ValueError) as error:
        raise LessonPackError(f"it has no readable {PACK_INDEX} ({error})") from None
    files = index.get("files")
    if index.get("kit") != "ctlib" or not isinstance(files, dict):
        raise LessonPackError(f"its {PACK_INDEX} is not a ctlib lesson pack's")
    wanted = "quick" if mode.quick else "full"
    if index.get("mode") != wanted:
        raise LessonPackError(
            f"it holds the {index.get('mode')}-mode networks, this is {wanted} mode "
            "(CTLIB_QUICK); import a pack made in the same mode"
        )
    for info in archive.infolist():
        name = PurePosixPath(info.filename)
        if info.filename == PACK_INDEX:
            continue
        if info.filename not in files:
            raise LessonPackError(f"{info.filename!r} is not in its {PACK_INDEX}")
        if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
            raise LessonPackError(f"{info.filename!r} would land outside the runs folder")
        if stat.S_ISLNK(info.external_attr >> 16) or info.is_dir():
            raise LessonPackError(f"{info.filename!r} is not a plain file")
    absent = sorted(set(files) - set(archive.namelist()))
    if absent:
        raise LessonPackError(f"files listed in its {PACK_INDEX} are missing: {absent[:3]}")
    return files


def import_lesson_pack(path: str | os.PathLike[str], mode: Mode | None = None) -> list[Path]:
    """Put a lesson pack's folds where the notebooks look; returns the fold folders added
    (a fold already here is kept as it is).

    Raises:
        LessonPackError: the archive is not a lesson pack of this mode, lists other files than
            it holds, would write outside the runs folder, or a file's hash differs; nothing
            is written then.
    """
    mode = mode or get_mode()
    path = Path(path)
    base = results_dir(mode)
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise LessonPackError(f"Cannot import {path}: not a readable zip ({error}).") from None
    with archive, tempfile.TemporaryDirectory(dir=_existing(base)) as temporary:
        try:
            files = _checked_members(archive, mode)
            for name, digest in files.items():
                data = archive.read(name)
                if _sha256(data) != digest:
                    raise LessonPackError(f"{name!r} differs from its recorded SHA-256")
                target = Path(temporary, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        except LessonPackError as error:
            raise LessonPackError(
                f"Cannot import the lesson pack {path}: {error}. Nothing was written; make a new "
                "pack with python -m ctlib lesson-pack export on the machine that trained."
            ) from None
        added = []
        for fold in sorted({f for f in map(_fold_of, files) if f is not None}):
            if (base / fold / "metrics.json").is_file():
                continue  # finished here already
            (base / fold).parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(base / fold, ignore_errors=True)  # an unfinished attempt
            shutil.move(str(Path(temporary, fold)), str(base / fold))
            added.append(base / fold)
        for name in files:  # the runs' fold tables (folds.csv), where missing
            if _fold_of(name) is None and not (base / name).exists():
                (base / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(Path(temporary, name)), str(base / name))
    return added


def _fold_of(name: str) -> str | None:
    """The fold folder (``.../foldK``) a packed file lies in, or None (a run's own file)."""
    parts = PurePosixPath(name).parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith("fold") and part[4:].isdigit():
            return "/".join(parts[: i + 1])
    return None


def _existing(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
