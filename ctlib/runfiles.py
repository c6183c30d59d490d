"""The kit's own files in a runs or results folder, each read by one reader that checks it.

A fold folder ``<out>/<dataset>/<protocol>/<run>/fold<k>`` holds ``config.json`` (the run's
recipe), ``metrics.json`` (its test metrics; written last, it marks the fold finished),
``history.json`` (one record per epoch) and ``predictions.csv`` (one row per test image); the
run folder above it holds ``folds.csv`` (every image's fold). Nothing else in the kit opens
them: each reader here checks its file's fields and types and raises
:class:`~ctlib.errors.RunFileError`, which names the file, what is wrong and the fix. (The
training state, ``checkpoint.pt``, is read by :func:`ctlib.handlers.load_training_state`, a
model file by :func:`ctlib.explain.load_trained`, a lock by :class:`ctlib.files.FolderLock`.)

Image paths in ``folds.csv`` and ``predictions.csv`` are the ones the training machine saw
(or, in exported results, relative to the data set's folder); :func:`locate_images` finds
them again on this machine, so a lesson pack or a moved data set still works.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ctlib.errors import RunFileError

__all__ = [
    "locate_images",
    "read_config",
    "read_folds",
    "read_history",
    "read_metrics",
    "read_predictions",
]

#: the metrics every finished fold has (older kits' files have at least these)
METRICS_REQUIRED = ("accuracy",)
#: the history's per-epoch fields the kit reads
HISTORY_REQUIRED = ("epoch", "seconds")


def _json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as error:
        raise RunFileError(path, f"it cannot be read ({error})") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise RunFileError(path, f"it is not valid JSON ({error})") from None


def _number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def read_metrics(path: str | os.PathLike[str]) -> dict[str, float]:
    """A fold's ``metrics.json``: an object of numbers (NaN where a metric is undefined), with
    at least ``accuracy``; counts (``tn``, ``fp``, ``fn``, ``tp``, ``n``) not negative, the
    ``threshold`` and the rates within 0..1."""
    path = Path(path)
    data = _json(path)
    if not isinstance(data, dict):
        raise RunFileError(path, f"it holds a {type(data).__name__}, not an object of metrics")
    missing = [k for k in METRICS_REQUIRED if k not in data]
    if missing:
        raise RunFileError(path, f"it lacks {missing}")
    wrong = sorted(k for k, v in data.items() if not _number(v))
    if wrong:
        raise RunFileError(path, f"{wrong} are not numbers")
    metrics = {k: math.nan if v is None else float(v) for k, v in data.items()}
    rates = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "threshold")
    bad = sorted(
        k
        for k, v in metrics.items()
        if not math.isnan(v)
        and ((k in rates and not 0 <= v <= 1) or (k in ("tn", "fp", "fn", "tp", "n") and v < 0))
    )
    if bad:
        raise RunFileError(path, f"{bad} are out of range ({ {k: metrics[k] for k in bad} })")
    return metrics


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A fold's ``config.json``: an object whose ``train`` (the recipe, if present) is an
    object too."""
    path = Path(path)
    data = _json(path)
    if not isinstance(data, dict):
        raise RunFileError(path, f"it holds a {type(data).__name__}, not an object")
    if not isinstance(data.get("train", {}), dict):
        raise RunFileError(path, "its 'train' entry (the recipe) is not an object")
    return data


def read_history(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A fold's ``history.json``: one record per epoch, each with a number ``epoch`` and
    ``seconds``."""
    path = Path(path)
    data = _json(path)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise RunFileError(path, "it is not a list of per-epoch records")
    for index, record in enumerate(data):
        missing = [k for k in HISTORY_REQUIRED if k not in record]
        wrong = [k for k in HISTORY_REQUIRED if k in record and not _number(record[k])]
        if missing or wrong:
            raise RunFileError(
                path, f"epoch record {index} lacks {missing}" if missing else f"{wrong} of "
                f"epoch record {index} are not numbers"
            )  # fmt: skip
    return pd.DataFrame.from_records(data)


def _table(path: Path, columns: tuple[str, ...], dtype: Any) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=dtype)
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RunFileError(path, f"it is not a readable CSV table ({first})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise RunFileError(path, f"it lacks the column(s) {missing} (has {list(frame.columns)})")
    if frame["path"].isna().any():
        raise RunFileError(path, f"{int(frame['path'].isna().sum())} row(s) have no path")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    if not labels.isin([0, 1]).all():
        raise RunFileError(path, "its 'label' column holds values other than 0 and 1")
    frame["label"] = labels.astype(int)
    return frame


def read_folds(
    path: str | os.PathLike[str], *, locate: str | None = None, as_text: bool = False
) -> pd.DataFrame:
    """A run's ``folds.csv``: ``path``, ``label`` (0/1) and ``fold`` (as text: a number, or
    ``train``/``val``/``test`` for the official split) for every image.

    Args:
        path: the file.
        locate: the data set's name: find each image on this machine (:func:`locate_images`).
        as_text: every other column as text, as written (to copy the table on).
    """
    path = Path(path)
    frame = _table(
        path, ("path", "label", "fold"), str if as_text else {"fold": str, "patient_id": "string"}
    )
    if frame["fold"].isna().any():
        raise RunFileError(path, "some images have no fold")
    if locate is not None:
        frame["path"] = locate_images(frame["path"], locate)
    return frame


def read_predictions(path: str | os.PathLike[str], *, locate: str | None = None) -> pd.DataFrame:
    """A fold's ``predictions.csv``: ``path``, ``label`` (0/1) and ``prob`` (within 0..1) for
    every test image. ``locate``: as in :func:`read_folds`."""
    path = Path(path)
    frame = _table(path, ("path", "label", "prob"), {"patient_id": "string"})
    prob = pd.to_numeric(frame["prob"], errors="coerce")
    if prob.isna().any() or not prob.between(0, 1).all():
        raise RunFileError(path, "its 'prob' column holds values that are not within 0..1")
    frame["prob"] = prob
    if locate is not None:
        frame["path"] = locate_images(frame["path"], locate)
    return frame


def locate_images(paths: pd.Series, dataset: str) -> pd.Series:
    """Where the images a run recorded are on this machine.

    A path that exists is kept. Otherwise the image is looked for where ``dataset`` lies
    here: a real data set's folder (``CTLIB_DATA_DIR``; ``<class folder>/<file>``, the form
    exported results keep), or the synthetic set's folder in this machine's cache (the same
    settings give the same folder name). An image found nowhere keeps its recorded path:
    the reader that opens it names it.
    """
    # lazy: the data package (and its registry) only when paths need finding
    from ctlib.data.registry import DATASETS
    from ctlib.paths import cache_dir, data_dir  # lazy: as above

    roots: list[tuple[Path, int]] = []  # (base, how many trailing parts to keep)
    if dataset == "synthetic":
        roots.append((cache_dir() / "synthetic", 3))  # <settings>/images/<file>
    elif dataset in DATASETS:
        roots.append((data_dir() / dataset, 2))  # <class folder>/<file>

    def find(recorded: str) -> str:
        if os.path.exists(recorded):
            return recorded
        parts = Path(recorded).parts
        for base, keep in roots:
            candidate = base.joinpath(*parts[-keep:])
            if len(parts) >= keep and candidate.exists():
                return str(candidate)
        return recorded

    return paths.astype(str).map(find)
