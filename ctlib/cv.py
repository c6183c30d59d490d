"""Cross-validation (Sec. 4): train on k - 1 folds, test on the held-out one, k = 5.

:func:`run_cv` is the paper's loop; :func:`train_and_test` is one fold. The paper splits at
*image* level (:func:`paper_folds`); the honest protocols split by patient
(:func:`patient_folds`), by derived scan groups (``pseudo-patient``), or use COVID19-CT's official
train/val/test split (:func:`official_split`); ``external`` trains on all of one data set and
tests on all of another (:func:`external_split`). Results folders, locks and resuming are described
in ``docs/DEVELOPERS.md``; a fold with ``metrics.json`` is finished and skipped on a rerun.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from tqdm.auto import tqdm

from ctlib.config import Runtime, TrainConfig, recipe_differences
from ctlib.data import CTDataset, check_readable, with_pseudo_patients
from ctlib.errors import CheckpointError
from ctlib.files import FolderLock, atomic_write, write_json
from ctlib.handlers import CHECKPOINT
from ctlib.metrics import binary_metrics
from ctlib.models import create_model, get_spec, save_checkpoint
from ctlib.models.weights import read_weights_file
from ctlib.runfiles import read_config, read_folds, read_history, read_metrics
from ctlib.runtime import resolve_device, seed_everything
from ctlib.train import fit, predict
from ctlib.transforms import CanvasDataset, CanvasStore

__all__ = [
    "PROTOCOLS",
    "external_split",
    "fold_dir",
    "make_folds",
    "official_split",
    "paper_folds",
    "patient_folds",
    "run_cv",
    "run_fold",
    "train_and_test",
    "trained_fold",
]

log = logging.getLogger(__name__)

#: held in a fold folder while a process trains that fold
LOCK_FILE = "train.lock"
PROTOCOLS = ("paper", "patient", "pseudo-patient", "official", "external")
#: the protocols with one fixed split instead of k folds
SINGLE_SPLIT = ("official", "external")


def run_cv(
    dataset: CTDataset,
    config: TrainConfig,
    *,
    runtime: Runtime | None = None,
    protocol: str = "paper",
    n_folds: int = 5,
    only_folds: list[int] | None = None,
    out: str | os.PathLike[str] = "runs",
    progress: bool = True,
    resume: bool = True,
    test_dataset: CTDataset | None = None,
) -> pd.DataFrame:
    """Cross-validate one architecture on one data set; returns one metrics row per fold.

    Args:
        dataset: from :func:`ctlib.data.load_dataset`.
        config: the training recipe (``config.arch`` is the architecture).
        runtime: device, precision, workers... (default: auto).
        protocol: ``"paper"``, ``"patient"``, ``"pseudo-patient"``, ``"official"`` or
            ``"external"`` (train on all of ``dataset``, test on all of ``test_dataset``; the
            run is filed under the protocol ``external-<test set>``).
        n_folds: k (5 in the paper); ignored by ``official`` and ``external``.
        only_folds: run only these folds (e.g. to spread folds over GPUs).
        out: the results folder.
        progress: progress bars.
        resume: continue unfinished folds from their last epoch checkpoint.
        test_dataset: the external test set (``external`` only).
    """
    runtime = runtime or Runtime()
    resolve_device(runtime.device)  # a GPU asked for but absent fails before anything is written
    folds = None  # from the protocol (assign_folds), except for external validation
    if protocol == "external":
        dataset, folds, protocol = external_split(dataset, test_dataset)
    elif test_dataset is not None:
        raise ValueError(f"test_dataset is for protocol='external', not {protocol!r}.")
    dataset, folds = assign_folds(dataset, protocol, n_folds, config, out, progress, folds)
    how = {"protocol": protocol, "out": out, "runtime": runtime, "progress": progress}
    run = {"dataset": dataset.name, "protocol": protocol, "arch": config.run_name}
    rows, held = [], []
    for fold in tqdm(fold_ids(protocol, n_folds, only_folds), desc=f"{config.arch} {protocol} CV",
                     unit="fold", disable=not progress):  # fmt: skip
        # train on the other folds, test on this one
        metrics = run_fold(dataset, config, folds, fold, resume=resume, **how)
        if metrics is None:  # another process holds this fold: skipped here
            held.append(fold)
        else:
            rows.append({**run, "fold": fold, **metrics})
    results = pd.DataFrame(rows)
    results.attrs["held"] = held  # the folds another process trains (run again later)
    return results


# --- which image is tested in which fold --------------------------------------------------


def paper_folds(frame: pd.DataFrame, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """The paper's split: stratified k-fold over *images*; returns each row's test fold."""
    splits = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(
        np.zeros(len(frame)), frame["label"].to_numpy(dtype=int)
    )
    return _test_fold_of_each_row(len(frame), splits)


def patient_folds(
    frame: pd.DataFrame, n_folds: int = 5, seed: int = 0, column: str = "patient_id"
) -> np.ndarray:
    """Stratified *grouped* k-fold: all slices of a patient (``column``) in one fold."""
    _require_groups(frame, column)
    splits = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(
        np.zeros(len(frame)), frame["label"].to_numpy(dtype=int), groups=frame[column].astype(str)
    )
    return _test_fold_of_each_row(len(frame), splits)


def official_split(frame: pd.DataFrame) -> pd.Series:
    """COVID19-CT's official ``train``/``val``/``test`` split of each row."""
    if "official_split" not in frame or frame["official_split"].isna().any():
        raise ValueError(
            "The 'official' protocol needs an official train/val/test split, "
            "which only covid19-ct has."
        )
    return frame["official_split"].astype(str).rename("fold")


def external_split(train: CTDataset, test: CTDataset | None) -> tuple[CTDataset, pd.Series, str]:
    """Train on every image of ``train``, test on every image of ``test``, a data set from
    another source (external validation).

    Returns:
        The two sets as one data set (named after ``train``, so its runs are filed under it),
        each row's part (``train``/``test``) and the protocol's folder name,
        ``external-<test set>``.

    Raises:
        ValueError: no test set, the two share a name or an image, or an image is unlabelled.
    """
    if test is None:
        raise ValueError(
            "The 'external' protocol needs a test data set from another source: "
            "run_cv(..., protocol='external', test_dataset=load_dataset(NAME)) or "
            "`--test-dataset NAME` on the command line."
        )
    if test.name == train.name:
        raise ValueError(
            f"Training and test set are both named {train.name!r}; external validation tests "
            "on another data set (give a variant its own name: dataclasses.replace(test, "
            "name='...'))."
        )
    shared = set(train.frame["path"].astype(str)) & set(test.frame["path"].astype(str))
    if shared:
        raise ValueError(
            f"{len(shared)} images are in both {train.name!r} and {test.name!r} (e.g. "
            f"{sorted(shared)[0]!r}); an external test set must not hold training images."
        )
    for part in (train, test):
        if part.frame["label"].isna().any():
            raise ValueError(f"{part.name!r} has unlabelled images; both sets need labels.")
    frame = pd.concat([train.frame, test.frame], ignore_index=True)
    parts = pd.Series(["train"] * len(train) + ["test"] * len(test), name="fold")
    return replace(train, frame=frame), parts, f"external-{test.name}"


def make_folds(
    frame: pd.DataFrame, protocol: str = "paper", n_folds: int = 5, seed: int = 0
) -> pd.Series:
    """Assign each image to a fold under ``protocol``.

    Returns:
        For the k-fold protocols, the test fold (0..k-1) of each row; for ``official``, the
        row's official split (``train``/``val``/``test``).

    Raises:
        ValueError: an unknown protocol, a data set without the groups or split the protocol
            needs, or more folds than the smaller class can fill.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose from {PROTOCOLS}.")
    if protocol == "official":
        return official_split(frame)
    if protocol == "external":
        raise ValueError("The 'external' split needs two data sets: see external_split.")
    _check_fold_count(frame, n_folds)
    if protocol == "paper":
        folds = paper_folds(frame, n_folds, seed)
    else:
        column = "patient_id" if protocol == "patient" else "pseudo_patient"
        folds = patient_folds(frame, n_folds, seed, column)
    _check_each_fold_has_both_classes(folds, frame, n_folds, protocol)
    return pd.Series(folds, index=frame.index, name="fold")


def _test_fold_of_each_row(n: int, splits: Iterator[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    folds = np.full(n, -1)
    for k, (_, test) in enumerate(splits):
        folds[test] = k
    return folds


def _require_groups(frame: pd.DataFrame, column: str) -> None:
    if column in frame and not frame[column].isna().any():
        return
    if column == "patient_id":
        raise ValueError(
            "The 'patient' protocol needs a patient ID for every image; this data set has "
            "none (sars-cov-2-ct publishes none). Use protocol='paper', or 'pseudo-patient' "
            "with derived groups."
        )
    raise ValueError(
        "The 'pseudo-patient' protocol needs a 'pseudo_patient' group for every image "
        "(ctlib.data.with_pseudo_patients adds the shipped ones)."
    )


def _check_fold_count(frame: pd.DataFrame, n_folds: int) -> None:
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}.")
    labels = frame["label"].to_numpy(dtype=int)
    smallest = int(min(np.sum(labels == 0), np.sum(labels == 1)))
    if n_folds > smallest // 2:
        raise ValueError(
            f"{n_folds} folds are too many for {len(frame)} images ({smallest} in the smaller "
            f"class): every test fold needs at least two images of each class. Use at most "
            f"{max(smallest // 2, 2)} folds (the paper: 5)."
        )


def _check_each_fold_has_both_classes(
    folds: np.ndarray, frame: pd.DataFrame, n_folds: int, protocol: str
) -> None:
    per_fold = pd.crosstab(folds, frame["label"].to_numpy(dtype=int))
    if (per_fold.reindex(columns=[0, 1], fill_value=0) < 2).any(axis=None):
        raise ValueError(
            f"With {n_folds} {protocol} folds some test fold holds fewer than two images of a "
            f"class ({per_fold.to_dict('index')}): its metrics would be undefined. Use fewer "
            "folds."
        )


def fold_ids(protocol: str, n_folds: int, only_folds: list[int] | None = None) -> list[int]:
    """The folds a run trains: ``0..k-1`` (one fold, 0, for ``official`` and ``external``), or
    ``only_folds``."""
    ids = [0] if _single_split(protocol) else list(range(n_folds))
    if only_folds is None:
        return ids
    bad = sorted(set(only_folds) - set(ids))
    if bad:
        raise ValueError(f"Folds {bad} do not exist; this run has folds {ids}.")
    return [f for f in ids if f in only_folds]


def assign_folds(
    dataset: CTDataset,
    protocol: str,
    n_folds: int,
    config: TrainConfig,
    out: str | os.PathLike[str],
    progress: bool = True,
    folds: pd.Series | None = None,
) -> tuple[CTDataset, pd.Series]:
    """The folds of a run (``folds``, else :func:`make_folds`), recorded in (or checked against)
    its ``folds.csv``; every image is checked readable first, so a broken one is named now,
    not after the schedule."""
    if protocol == "pseudo-patient" and "pseudo_patient" not in dataset.frame:
        dataset = replace(dataset, frame=with_pseudo_patients(dataset.frame, dataset.name))
    if folds is None:
        folds = make_folds(dataset.frame, protocol, n_folds, config.seed)
    check_readable(dataset.frame["path"].tolist(), name=dataset.name, progress=progress)
    base = Path(out) / dataset.name / protocol / config.run_name
    base.mkdir(parents=True, exist_ok=True)
    extra = ["pseudo_patient"] if protocol == "pseudo-patient" else []
    assignment = dataset.frame[["path", "label", "patient_id", *extra]].assign(
        fold=folds.to_numpy()
    )
    folds_file = base / "folds.csv"
    if not folds_file.is_file():
        atomic_write(folds_file, lambda tmp: assignment.to_csv(tmp, index=False))
    elif not _same_assignment(read_folds(folds_file), assignment):
        raise ValueError(
            f"{folds_file} holds another fold assignment (other data, seed or "
            "number of folds); use another output folder."
        )
    return dataset, folds


def _single_split(protocol: str) -> bool:
    """``official`` or ``external-<test set>``: one fixed split, fold 0."""
    return protocol.partition("-")[0] in SINGLE_SPLIT


def _same_assignment(old: pd.DataFrame, new: pd.DataFrame) -> bool:
    """Compared by class folder and file name, so a runs folder still matches after the data
    set (or the whole kit) moved."""
    return [_file_key(p) for p in old["path"]] == [_file_key(p) for p in new["path"]] and old[
        "fold"
    ].tolist() == new["fold"].astype(str).tolist()


def _file_key(path: str) -> str:
    """``<class folder>/<file name>`` of an image path: where the copy lies does not count."""
    return "/".join(Path(str(path)).parts[-2:])


# --- one fold: claimed, trained, tested ---------------------------------------------------


def fold_dir(out: str | os.PathLike[str], dataset: str, protocol: str, run: str, fold: int) -> Path:
    """``<out>/<dataset>/<protocol>/<run>/fold<k>`` (``run``: ``TrainConfig.run_name``)."""
    return Path(out) / dataset / protocol / run / f"fold{fold}"


def run_fold(
    dataset: CTDataset,
    config: TrainConfig,
    folds: pd.Series,
    fold: int,
    *,
    protocol: str,
    out: str | os.PathLike[str],
    runtime: Runtime | None = None,
    progress: bool = True,
    resume: bool = True,
) -> dict[str, float] | None:
    """Train and test one fold unless it is finished; returns its metrics (``metrics.json``).

    Returns None when another process holds the fold's lock (it is skipped here, with a
    warning). ``resume=False`` restarts an unfinished fold from epoch 0; a finished fold is
    still skipped (delete its folder to run it again).
    """
    n_folds = 1 if _single_split(protocol) else int(folds.max()) + 1
    folder = fold_dir(out, dataset.name, protocol, config.run_name, fold)
    record = {"dataset": dataset.name, "protocol": protocol, "n_folds": n_folds, "fold": fold}
    with claim_fold(folder, {**record, "train": config.to_dict()}) as claimed:
        if claimed is None:
            return None
        if (folder / "metrics.json").is_file():
            log.info("%s is finished; skipped", folder)
            return read_metrics(folder / "metrics.json")
        return train_and_test(
            dataset,
            config,
            folds,
            fold,
            folder,
            protocol=protocol,
            runtime=runtime or Runtime(),
            progress=progress,
            resume=resume,
        )


@contextlib.contextmanager
def claim_fold(folder: Path, record: dict[str, Any]) -> Iterator[Path | None]:
    """Hold ``folder`` for this process: its ``config.json`` written (or checked to be this
    run's: another recipe is refused, not mixed), and its lock taken unless the fold is
    finished. Yields the folder, or None when another live process holds the lock."""
    _check_or_write_config(folder, record)
    lock = FolderLock(folder / LOCK_FILE)
    if (folder / "metrics.json").is_file():
        _tidy_finished(folder, lock)
        yield folder
        return
    try:  # released however this ends, even by a Ctrl-C the moment after acquiring
        if not lock.acquire():
            holder = lock.holder
            log.warning(
                "%s is being trained by process %s on %s (lock file %s); skipped here. Run "
                "the command again once it has finished to collect its results; if that "
                "process is gone, delete the lock file.",
                folder,
                holder.get("pid", "?"),
                holder.get("host", "?"),
                lock.path,
            )
            yield None
            return
        for left in folder.glob(".*.tmp*"):  # a killed write's temporary file; we hold the fold
            left.unlink(missing_ok=True)
        yield folder
    finally:
        lock.release()  # only if held: another process's lock is never touched


def _tidy_finished(folder: Path, lock: FolderLock) -> None:
    """A finished fold keeps no checkpoint and no lock: a run killed between writing
    ``metrics.json`` and removing them left them behind (a live holder's lock is kept)."""
    for name in (CHECKPOINT, "best.pt"):
        (folder / name).unlink(missing_ok=True)
    if (folder / LOCK_FILE).exists() and lock.acquire():  # free or stale: ours, then gone
        lock.release()


def _check_or_write_config(folder: Path, record: dict[str, Any]) -> None:
    path = folder / "config.json"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_json(record, path)
        return
    old = read_config(path)
    differ = recipe_differences(old.get("train", {}), TrainConfig.from_dict(record["train"]))
    differ += sorted(k for k in record if k != "train" and old.get(k) != record.get(k))
    if differ:
        raise ValueError(
            f"{folder} holds a run with another configuration (differs in {differ}). Use "
            "another output folder, or delete this one to start again; nothing was changed."
        )


def train_and_test(
    dataset: CTDataset,
    config: TrainConfig,
    folds: pd.Series,
    fold: int,
    folder: Path,
    *,
    protocol: str,
    runtime: Runtime,
    progress: bool = True,
    resume: bool = True,
) -> dict[str, float]:
    """Train on every fold but ``fold`` (on ``train`` for ``official``), test on ``fold``; write
    the fold's predictions, model and metrics, and remove its training state."""
    train_set, val_set, test_set, test = fold_datasets(
        dataset.frame, config, folds, fold, protocol, progress
    )
    seed_everything(config.seed)  # the new head's (or a random network's) initial weights
    # a fold that resumes takes every weight from its checkpoint: the ImageNet file is neither
    # read again nor needed (a requeued SLURM task on a node without the weights goes on)
    resuming = resume and (folder / CHECKPOINT).is_file()
    model = create_model(
        config.arch,
        pretrained=config.pretrained and not resuming,
        strategy=config.strategy,
        progress=progress,
    )
    started = time.perf_counter()
    fit(
        model,
        train_set,
        config,
        folder,
        runtime=runtime,
        progress=progress,
        val_set=val_set,
        resume=resume,
    )
    threshold = config.threshold
    if val_set is not None and (folder / "best.pt").is_file():  # official: chosen on val only
        best = read_weights_file(folder / "best.pt")  # names the file if it is torn
        if not isinstance(best, dict) or not isinstance(best.get("model"), dict):
            raise CheckpointError(folder / "best.pt", "it holds no 'model' weights")
        model.load_state_dict(best["model"])
        threshold = _best_threshold(model, val_set, config, runtime)
    probs = predict(model, test_set, config, runtime=runtime, progress=progress)
    return _save_fold(folder, model, config, test, probs, threshold, fold, protocol, started)


def fold_datasets(
    frame: pd.DataFrame,
    config: TrainConfig,
    folds: pd.Series,
    fold: int,
    protocol: str,
    progress: bool = True,
) -> tuple[CanvasDataset, CanvasDataset | None, CanvasDataset, pd.DataFrame]:
    """The fold's training, validation (``official`` only) and test sets on the recipe's canvas,
    and the test rows. Every image is drawn on the canvas once (cached on disk for the next
    fold)."""
    if protocol == "official":
        train, val, test = (folds == "train"), (folds == "val"), (folds == "test")
    elif _single_split(protocol):  # external: no validation part
        train, val, test = (folds == "train"), None, (folds == "test")
    else:
        test = folds == fold
        train, val = ~test, None
    spec, size = get_spec(config.arch), config.input_size
    store = CanvasStore(frame["path"], size, content=config.content, progress=progress)
    norm = {"mean": spec.mean, "std": spec.std, "content": config.content, "store": store}
    train_set = CanvasDataset(
        frame[train.to_numpy()], size, train=True, seed=config.seed, augment=config.augment, **norm
    )
    val_set = CanvasDataset(frame[val.to_numpy()], size, **norm) if val is not None else None
    test_set = CanvasDataset(frame[test.to_numpy()], size, **norm)
    train_set.precache(progress=progress)
    return train_set, val_set, test_set, frame[test.to_numpy()]


def _best_threshold(
    model: torch.nn.Module, val_set: CanvasDataset, config: TrainConfig, runtime: Runtime
) -> float:
    """The threshold with the best validation accuracy (0.5 among the candidates)."""
    probs, labels = predict(
        model, val_set, config, runtime=runtime, progress=False, return_labels=True
    )
    candidates = np.unique(np.concatenate([[0.5], probs]))
    accuracy = [np.mean((probs >= t) == labels) for t in candidates]
    return float(candidates[int(np.argmax(accuracy))])


def _save_fold(folder, model, config, test, probs, threshold, fold, protocol, started) -> dict:  # noqa: ANN001
    """``predictions.csv``, ``model.pt`` (with what prediction needs: canvas, normalisation,
    threshold), then ``metrics.json``, written last: it marks the fold finished. The rolling
    training state and the best epoch's weights are removed."""
    predictions = pd.DataFrame(
        {
            "path": test["path"].to_numpy(),
            "label": test["label"].to_numpy(dtype=int),
            "prob": probs,
            "fold": fold,
            "patient_id": test["patient_id"].to_numpy() if "patient_id" in test else pd.NA,
        }
    )
    atomic_write(folder / "predictions.csv", lambda tmp: predictions.to_csv(tmp, index=False))
    spec = get_spec(config.arch)
    save_checkpoint(
        model,
        folder / "model.pt",
        config.arch,
        extra={
            "threshold": threshold,
            "fold": fold,
            "protocol": protocol,
            "canvas": list(config.input_size),
            "mean": list(spec.mean),
            "std": list(spec.std),
            "content": config.content,
        },
    )
    metrics = binary_metrics(predictions["label"], predictions["prob"], threshold)
    history = read_history(folder / "history.json")
    metrics["train_seconds"] = float(history["seconds"].sum())
    metrics["wall_seconds_this_session"] = round(time.perf_counter() - started, 2)
    write_json(metrics, folder / "metrics.json")  # last: marks the fold finished
    for name in (CHECKPOINT, "best.pt"):
        (folder / name).unlink(missing_ok=True)
    return metrics


def trained_fold(
    results: str | os.PathLike[str],
    dataset: CTDataset | str,
    config: Any = None,
    *,
    runtime: Runtime | None = None,
    arch: str | None = None,
    protocol: str = "patient",
    fold: int = 0,
    n_folds: int = 5,
    progress: bool = False,
) -> Path:
    """The folder of one trained fold, ``<results>/<dataset>/<protocol>/<run>/fold<k>``
    (``<run>``: ``config.run_name``, else ``arch``: e.g. ``efficientnet_lite0-scratch``).

    With a training recipe (``config``, a :class:`ctlib.train.TrainConfig`) a missing fold
    is trained first with :func:`ctlib.cv.run_cv` (``only_folds=[fold]``); a finished fold
    is reused and an interrupted one resumed, so a second call costs nothing. Without a
    recipe nothing is trained: a missing fold raises, naming the command that makes it.

    Args:
        results: the results folder.
        dataset: the :class:`ctlib.data.CTDataset` (needed to train), or its name.
        config: the training recipe, or None to only look for a finished fold.
        runtime: where a missing fold trains (default: auto).
        arch: the architecture, or the run's folder name (``resnet18-scratch``) when no
            recipe is given; defaults to ``config.arch``.
        protocol: ``"paper"``, ``"patient"`` or ``"official"`` (see :mod:`ctlib.cv`).
        fold: the test fold.
        n_folds: folds of the cross-validation.
        progress: progress bars while training.

    Raises:
        FileNotFoundError: the fold has no ``model.pt`` and there is no recipe to train it.
        ValueError: no architecture is named, or ``arch`` and ``config.arch`` differ.
    """
    name = dataset if isinstance(dataset, str) else dataset.name
    if config is not None:
        if arch is not None and get_spec(arch.partition("-")[0]).name != config.arch:
            raise ValueError(f"arch={arch!r} but the recipe trains {config.arch!r}; pass one.")
        if isinstance(dataset, str):
            raise ValueError(
                f"To train, pass the data set itself, not its name {dataset!r} "
                "(e.g. ctlib.data.load_dataset(name))."
            )
        arch = config.arch
        run_cv(
            dataset,
            config,
            runtime=runtime,
            protocol=protocol,
            n_folds=n_folds,
            only_folds=[fold],
            out=results,
            progress=progress,
        )
    if arch is None:
        raise ValueError("Name the architecture: arch=... (or pass a training recipe).")
    head, _, variant = arch.partition("-")  # a run name: the architecture, then what differs
    run = (
        config.run_name
        if config is not None
        else get_spec(head).name + (f"-{variant}" * bool(variant))
    )
    folder = fold_dir(results, name, protocol, run, fold)
    if not (folder / "model.pt").is_file():
        raise FileNotFoundError(
            f"No trained network in {str(folder)!r}. Train it first, e.g. `python -m ctlib cv "
            f"--dataset {name} --arch {arch} --protocol {protocol} --folds {n_folds} --out "
            f"{results}` (all folds; on a GPU), then run this again."
        )
    return folder
