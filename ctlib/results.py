"""Results on disk: the interface between training and everything that reports.

A cross-validation run (:func:`ctlib.cv.run_cv`) writes each fold's ``config.json``,
``history.json``, ``metrics.json`` and ``predictions.csv`` (layout: docs/DEVELOPERS.md,
*Cross-validation*); :func:`collect_results`, :func:`collect_predictions` and
:func:`load_history` read them, so no table or notebook needs a model in memory.
:func:`export_results` copies finished runs' small files into ``results/`` (image paths made
relative, no checkpoints); :func:`import_results` seeds a runs folder from them, so a long job
continues on a new machine.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import pandas as pd

from ctlib.data import CTDataset, load_dataset
from ctlib.errors import RunFileError
from ctlib.files import atomic_write
from ctlib.recipes import describe_recipe
from ctlib.runfiles import read_config, read_folds, read_history, read_metrics, read_predictions
from ctlib.train import TrainConfig

__all__ = [
    "RESULT_KEYS",
    "collect_predictions",
    "collect_results",
    "export_results",
    "fold_recipe",
    "import_results",
    "load_history",
    "relative_paths",
]

#: The columns that name a run: its data set, protocol and run name (``arch``).
RESULT_KEYS = ["dataset", "protocol", "arch"]


def fold_recipe(config_file: str | os.PathLike[str]) -> str:
    """A fold's recipe in words (:func:`ctlib.recipes.describe_recipe`) from its
    ``config.json``, e.g. ``"24 epochs, 224×162, batch 16, lr 0.001"``; "" without one."""
    config_file = Path(config_file)
    if not config_file.is_file():
        return ""
    train = read_config(config_file).get("train", {})
    known = {f.name for f in fields(TrainConfig)}
    return describe_recipe(TrainConfig.from_dict({k: v for k, v in train.items() if k in known}))


def collect_results(out: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per finished fold found under ``out`` (``<dataset>/<protocol>/<arch>/fold<k>``):
    its ``metrics.json`` and, from its ``config.json``, the ``recipe`` in words.

    Raises:
        FileNotFoundError: ``out`` does not exist or holds no finished fold.
    """
    base = Path(out)
    if not base.is_dir():
        raise FileNotFoundError(
            f"Results folder {str(base)!r} does not exist; run "
            "`python -m ctlib cv ... --out` first."
        )
    rows = []
    for path in sorted(base.glob("*/*/*/fold*/metrics.json")):
        dataset, protocol, arch, fold = path.parts[-5:-1]
        metrics = read_metrics(path)
        rows.append(
            {
                "dataset": dataset,
                "protocol": protocol,
                "arch": arch,
                "fold": int(fold.removeprefix("fold")),
                **metrics,
                "recipe": fold_recipe(path.parent / "config.json"),
            }
        )
    if not rows:
        deeper = sorted({p.parents[4] for p in base.glob("*/*/*/*/fold*/metrics.json")})
        hint = (
            "; it holds results one level deeper: pass one of "
            + ", ".join(repr(str(d)) for d in deeper)
            if deeper
            else ""
        )
        raise FileNotFoundError(
            f"No finished fold (<dataset>/<protocol>/<arch>/fold*/metrics.json) under "
            f"{str(base)!r}{hint}."
        )
    return pd.DataFrame(rows).sort_values(RESULT_KEYS + ["fold"]).reset_index(drop=True)


def collect_predictions(out: str | os.PathLike[str]) -> pd.DataFrame:
    """All per-image predictions under ``out``, with dataset, protocol and arch columns."""
    frames = []
    for path in sorted(Path(out).glob("*/*/*/fold*/predictions.csv")):
        if not (path.parent / "metrics.json").is_file():
            continue
        dataset, protocol, arch, _ = path.parts[-5:-1]
        frames.append(read_predictions(path).assign(dataset=dataset, protocol=protocol, arch=arch))
    if not frames:
        raise FileNotFoundError(f"No predictions.csv of a finished fold under {str(out)!r}.")
    return pd.concat(frames, ignore_index=True)


def load_history(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """A fold's ``history.json`` (one row per epoch)."""
    path = Path(folder) / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"No history.json in {str(folder)!r}: has this fold been trained?")
    return read_history(path)


_SMALL_FILES = ("config.json", "history.json", "metrics.json", "predictions.csv")
_READERS = {
    "config.json": read_config,
    "history.json": read_history,
    "metrics.json": read_metrics,
    "predictions.csv": read_predictions,
}


def _check_plain_files(finished: Sequence[Path], base: Path) -> None:
    """Refuse, before anything is copied, a results tree whose folds or small files are
    symbolic links (a link would copy whatever it points to, a private file included) or
    whose JSON files are not JSON.

    Raises:
        ValueError: naming the file.
    """
    for metrics in finished:
        fold = metrics.parent
        candidates = [fold, fold.parent, *(fold / n for n in _SMALL_FILES)]
        candidates.append(fold.parent / "folds.csv")
        for path in candidates:
            if path.is_symlink() or (path.exists() and not (path.is_file() or path.is_dir())):
                raise ValueError(
                    f"{path} is a symbolic link or not a plain file: results travel as plain "
                    f"files only; replace it with the file itself. Nothing was copied from {base}."
                )
        for name, reader in _READERS.items():  # each file is what it claims to be
            if (fold / name).is_file():
                try:
                    reader(fold / name)
                except RunFileError as error:
                    raise RunFileError(
                        error.path, f"{error.problem}; nothing was copied from {base}"
                    ) from None


def _copy(source: Path, target: Path) -> None:
    """Copy one plain file, atomically (a kill leaves the old file or none, never half)."""
    atomic_write(target, lambda tmp: shutil.copyfile(source, tmp, follow_symlinks=False))


def relative_paths(paths: pd.Series) -> pd.Series:
    """``/any/where/<dataset>/CT_COVID/x.png`` -> ``CT_COVID/x.png`` (class folder + file), so
    that files under ``results/`` carry no machine's paths."""
    return paths.astype(str).map(lambda p: "/".join(Path(p).parts[-2:]) if os.path.isabs(p) else p)


def export_results(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[Path]:
    """Copy the small files of every *finished* fold under ``source`` into ``dest``.

    Image paths in ``predictions.csv`` and ``folds.csv`` become relative to the data
    set's folder (``CT_COVID/x.png``), so results carry no machine's paths. Unfinished
    folds (no ``metrics.json``) and checkpoints are left behind. Returns the files written.
    """
    source, dest = Path(source), Path(dest)
    written = []
    _check_plain_files(sorted(source.glob("*/*/*/fold*/metrics.json")), source)
    for metrics in sorted(source.glob("*/*/*/fold*/metrics.json")):
        fold = metrics.parent
        target = dest / fold.relative_to(source)
        target.mkdir(parents=True, exist_ok=True)
        for name in _SMALL_FILES:
            if not (fold / name).is_file():
                continue
            if name == "predictions.csv":
                frame = read_predictions(fold / name)
                frame["path"] = relative_paths(frame["path"])
                atomic_write(target / name, lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
            else:
                _copy(fold / name, target / name)
            written.append(target / name)
        folds_csv = fold.parent / "folds.csv"
        if folds_csv.is_file():
            frame = read_folds(folds_csv, as_text=True)
            frame["path"] = relative_paths(frame["path"])
            atomic_write(
                target.parent / "folds.csv", lambda tmp, frame=frame: frame.to_csv(tmp, index=False)
            )
            if target.parent / "folds.csv" not in written:
                written.append(target.parent / "folds.csv")
    if not written:
        raise FileNotFoundError(f"No finished fold (fold*/metrics.json) under {str(source)!r}.")
    return written


def import_results(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    datasets: Sequence[CTDataset] = (),
) -> list[Path]:
    """The reverse of :func:`export_results`: seed a runs folder with finished folds.

    A new machine (a fresh Colab runtime, the next session of a long CPU job) starts with
    an empty runs folder; importing the exported folds first lets ``python -m ctlib cv``
    skip them and train only what is missing. Relative image paths become the data set's
    absolute ones under ``root`` (the same as :func:`ctlib.data.load_dataset` gives, so the
    fold assignment is checked as usual). Folds already finished in ``dest`` are left alone.
    Imported folds have no checkpoint (``model.pt``): Grad-CAM and t-SNE need a fold
    trained on this machine. ``datasets``: loaded data sets to use instead of loading them
    from ``root`` (by name).

    Returns the files written.

    Raises:
        FileNotFoundError: ``source`` holds no finished fold.
        ValueError: an image of the results is missing from the data set under ``root``,
            or ``dest`` holds another fold assignment for the same run.
    """
    source, dest = Path(source), Path(dest)
    finished = sorted(source.glob("*/*/*/fold*/metrics.json"))
    if not finished:
        raise FileNotFoundError(f"No finished fold (fold*/metrics.json) under {str(source)!r}.")
    _check_plain_files(finished, source)

    def lookup_of(frame: pd.DataFrame) -> dict[str, str]:
        return dict(zip(relative_paths(frame["path"]), frame["path"].astype(str)))

    absolute = {d.name: lookup_of(d.frame) for d in datasets}

    def to_absolute(name: str, paths: pd.Series, where: Path) -> pd.Series:
        if name not in absolute:
            absolute[name] = lookup_of(load_dataset(name, root, progress=False).frame)
        lookup = absolute[name]
        missing = sorted(set(paths.astype(str)) - set(lookup))
        if missing:
            raise ValueError(
                f"{where} names {len(missing)} images that the {name!r} data set under "
                f"{root or 'the default data folder'} does not hold (first: {missing[0]!r}); "
                "point --root at the data the results were made with."
            )
        return paths.astype(str).map(lookup)

    written = []
    runs_seen: set[Path] = set()
    for metrics in finished:
        fold = metrics.parent
        name = fold.relative_to(source).parts[0]
        target = dest / fold.relative_to(source)
        run_folds = fold.parent / "folds.csv"
        target_folds = target.parent / "folds.csv"
        if run_folds.is_file() and run_folds not in runs_seen:  # once per run, not per fold
            runs_seen.add(run_folds)
            frame = read_folds(run_folds, as_text=True)
            frame["path"] = to_absolute(name, frame["path"], run_folds)
            if target_folds.is_file():
                old = read_folds(target_folds, as_text=True)
                if old["path"].tolist() != frame["path"].tolist() or (
                    old["fold"].tolist() != frame["fold"].tolist()
                ):
                    raise ValueError(
                        f"{target_folds} holds another fold assignment than {run_folds}; "
                        "import into another runs folder. Nothing was written for this run."
                    )
            else:
                target_folds.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(target_folds, lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
                written.append(target_folds)
        if (target / "metrics.json").is_file():
            continue
        target.mkdir(parents=True, exist_ok=True)
        # metrics.json last: a fold counts as finished only once everything else is there
        for file in sorted(_SMALL_FILES, key=lambda f: f == "metrics.json"):
            if not (fold / file).is_file():
                continue
            if file == "predictions.csv":
                frame = read_predictions(fold / file)
                frame["path"] = to_absolute(name, frame["path"], fold / file)
                atomic_write(target / file, lambda tmp, frame=frame: frame.to_csv(tmp, index=False))
            else:
                _copy(fold / file, target / file)
            written.append(target / file)
    return written
