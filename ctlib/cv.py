"""Cross-validation: the paper's protocol, the patient-level one, the official split.

Protocols (``protocol=``):

* ``"paper"`` -- Alshazly et al. (2020, Sec. 4): stratified k-fold at *image* level
  (k = 5); train on k - 1 folds for the whole schedule, test the final model on the
  held-out fold, average the metrics over the k test folds. Slices of one patient can
  land in both training and test folds.
* ``"patient"`` -- stratified *grouped* k-fold on patient IDs: no patient in two
  folds. Needs a data set with patient IDs (COVID19-CT, synthetic).
* ``"pseudo-patient"`` -- stratified grouped k-fold on *derived* scan groups, for a
  data set without patient IDs (SARS-CoV-2 CT): :func:`ctlib.study.audit.build_pseudo_patients`
  clusters look-alike slices, and the groups ship with the kit
  (:func:`ctlib.data.with_pseudo_patients`; the audit explains and checks the grouping).
  An approximation of the patient protocol.
* ``"official"`` -- COVID19-CT's official train/val/test split: train on train, pick
  the epoch (lowest validation loss) and the threshold (best validation accuracy) on
  val only, test once on test. One "fold", numbered 0.

Results on disk are the interface to everything that reports (tables, notebooks)::

    <out>/<dataset>/<protocol>/<run>/folds.csv          path, label, patient_id, fold
    <out>/<dataset>/<protocol>/<run>/fold<k>/config.json
                                              history.json       per-epoch loss, lr, seconds
                                              checkpoint.pt      training state (resume;
                                                                 removed when finished)
                                              model.pt           the final model (ctlib checkpoint)
                                              predictions.csv    path, label, prob, fold, patient_id
                                              metrics.json       accuracy, precision, ... tp

``<run>`` is :attr:`ctlib.train.TrainConfig.run_name`: the architecture's name, with
``-scratch`` for a random initialisation and ``-flat`` for the padding-geometry probe.

A fold with ``metrics.json`` is finished and skipped on a rerun; a fold killed at any
moment resumes from its last epoch checkpoint. An output folder written with another
configuration is refused rather than mixed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from tqdm.auto import tqdm

from ctlib.data import CTDataset, check_readable, with_pseudo_patients
from ctlib.files import FolderLock, atomic_write, write_json
from ctlib.metrics import binary_metrics
from ctlib.models import create_model, get_spec, save_checkpoint
from ctlib.train import (
    CHECKPOINT,
    TrainConfig,
    fit,
    predict,
    recipe_of,
    resolve_device,
    seed_everything,
)
from ctlib.transforms import CanvasDataset, CanvasStore

__all__ = ["PROTOCOLS", "fold_dir", "make_folds", "run_cv", "run_fold", "trained_fold"]

log = logging.getLogger(__name__)

#: held in a fold folder while a process trains that fold
LOCK_FILE = "train.lock"

PROTOCOLS = ("paper", "patient", "pseudo-patient", "official")


def make_folds(
    frame: pd.DataFrame, protocol: str = "paper", n_folds: int = 5, seed: int = 0
) -> pd.Series:
    """Assign each image to a fold.

    Returns:
        For ``paper``/``patient``: the test fold (0..k-1) of each row. For
        ``official``: the row's official split (``train``/``val``/``test``).

    Raises:
        ValueError: an unknown protocol, a data set without patient IDs for
            ``patient``, without a ``pseudo_patient`` column for ``pseudo-patient``, or
            without an official split for ``official``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}; choose from {PROTOCOLS}.")
    labels = frame["label"].to_numpy(dtype=int)
    if protocol == "official":
        if "official_split" not in frame or frame["official_split"].isna().any():
            raise ValueError(
                "The 'official' protocol needs an official train/val/test split, "
                "which only covid19-ct has."
            )
        return frame["official_split"].astype(str).rename("fold")
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}.")
    folds = np.full(len(frame), -1)
    if protocol == "paper":
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(frame)), labels)
    else:
        column = "patient_id" if protocol == "patient" else "pseudo_patient"
        if column not in frame or frame[column].isna().any():
            if protocol == "patient":
                raise ValueError(
                    "The 'patient' protocol needs a patient ID for every image; this "
                    "data set has none (sars-cov-2-ct publishes none). Use "
                    "protocol='paper', or 'pseudo-patient' with derived groups."
                )
            raise ValueError(
                "The 'pseudo-patient' protocol needs a 'pseudo_patient' group for every "
                "image (ctlib.data.with_pseudo_patients adds the shipped ones)."
            )
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(len(frame)), labels, groups=frame[column].astype(str))
    smallest = int(min(np.sum(labels == 0), np.sum(labels == 1)))
    if n_folds > smallest // 2:
        raise ValueError(
            f"{n_folds} folds are too many for {len(frame)} images ({smallest} in the smaller "
            f"class): every test fold needs at least two images of each class. Use at most "
            f"{max(smallest // 2, 2)} folds (the paper: 5)."
        )
    for k, (_, test) in enumerate(splits):
        folds[test] = k
    per_fold = pd.crosstab(folds, labels)
    if (per_fold.reindex(columns=[0, 1], fill_value=0) < 2).any(axis=None):
        raise ValueError(
            f"With {n_folds} {protocol} folds some test fold holds fewer than two images of a "
            f"class ({per_fold.to_dict('index')}): its metrics would be undefined. Use fewer "
            "folds."
        )
    return pd.Series(folds, index=frame.index, name="fold")


def _file_key(path: str) -> str:
    """``<class folder>/<file name>`` of an image path: where the copy lies does not count."""
    parts = Path(str(path)).parts
    return "/".join(parts[-2:])


def fold_dir(out: str | os.PathLike[str], dataset: str, protocol: str, run: str, fold: int) -> Path:
    """``<out>/<dataset>/<protocol>/<run>/fold<k>`` (``run``: ``TrainConfig.run_name``)."""
    return Path(out) / dataset / protocol / run / f"fold{fold}"


def _run_record(
    config: TrainConfig, dataset: str, protocol: str, n_folds: int, fold: int
) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "protocol": protocol,
        "n_folds": n_folds,
        "fold": fold,
        "train": config.to_dict(),
    }


def _claim(folder: Path, record: dict[str, Any]) -> None:
    """Write ``config.json`` or check that the one there matches; refuse to mix runs."""
    path = folder / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        # a setting added to TrainConfig after the run started counts as equal when it
        # holds its default (the run was made with that behaviour)
        defaults = TrainConfig().to_dict()
        for key, value in record["train"].items():
            if key not in old.get("train", {}) and value == defaults.get(key):
                old.setdefault("train", {})[key] = value
        # runtime settings (device, amp, workers...) may change between sessions: the run
        # learns the same, so it resumes
        old_recipe = {**old, "train": recipe_of(old.get("train", {}))}
        new_recipe = {**record, "train": recipe_of(record["train"])}
        if old_recipe != new_recipe:
            diff = sorted(
                k
                for k in set(old_recipe["train"]) | set(new_recipe["train"])
                if old_recipe["train"].get(k) != new_recipe["train"].get(k)
            )
            diff += sorted(k for k in record if k != "train" and old.get(k) != record.get(k))
            raise ValueError(
                f"{folder} holds a run with another configuration (differs in {diff}). Use "
                "another output folder, or delete this one to start again; nothing was changed."
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_json(record, path)


def run_fold(
    dataset: CTDataset,
    config: TrainConfig,
    folds: pd.Series,
    fold: int,
    *,
    protocol: str,
    out: str | os.PathLike[str],
    progress: bool = True,
    resume: bool = True,
) -> dict[str, float] | None:
    """Train and test one fold; returns its metrics (also in ``metrics.json``).

    ``resume=False`` restarts an unfinished fold from epoch 0 (a finished fold is
    still skipped: delete its folder to run it again). While one process trains a fold it
    holds ``<fold>/train.lock``: a second process given the same fold skips it (returns
    None, with a warning) instead of training it twice; a lock left by a killed process is
    taken over.
    """
    n_folds = 1 if protocol == "official" else int(folds.max()) + 1
    folder = fold_dir(out, dataset.name, protocol, config.run_name, fold)
    _claim(folder, _run_record(config, dataset.name, protocol, n_folds, fold))
    if (folder / "metrics.json").is_file():
        log.info("%s is finished; skipped", folder)
        return json.loads((folder / "metrics.json").read_text())
    lock = FolderLock(folder / LOCK_FILE)
    if not lock.acquire():
        holder = lock.holder
        log.warning(
            "%s is being trained by process %s on %s (lock file %s); skipped here. Run the "
            "command again once it has finished to collect its results; if that process is "
            "gone, delete the lock file.",
            folder,
            holder.get("pid", "?"),
            holder.get("host", "?"),
            lock.path,
        )
        return None
    with lock:
        return _train_fold(
            dataset,
            config,
            folds,
            fold,
            folder,
            protocol=protocol,
            progress=progress,
            resume=resume,
        )


def _train_fold(
    dataset: CTDataset,
    config: TrainConfig,
    folds: pd.Series,
    fold: int,
    folder: Path,
    *,
    protocol: str,
    progress: bool,
    resume: bool,
) -> dict[str, float]:
    if (folder / "metrics.json").is_file():  # finished by another process meanwhile
        return json.loads((folder / "metrics.json").read_text())
    frame = dataset.frame
    if protocol == "official":
        train_mask, val_mask, test_mask = (folds == "train"), (folds == "val"), (folds == "test")
    else:
        test_mask = folds == fold
        train_mask, val_mask = ~test_mask, None
    spec = get_spec(config.arch)
    size = config.input_size
    # every image of the data set drawn on this canvas once (cached on disk for the next fold)
    store = CanvasStore(frame["path"], size, content=config.content, progress=progress)
    norm = {"mean": spec.mean, "std": spec.std, "content": config.content, "store": store}
    train_set = CanvasDataset(
        frame[train_mask.to_numpy()],
        size,
        train=True,
        seed=config.seed,
        augment=config.augment,
        **norm,
    )
    test_set = CanvasDataset(frame[test_mask.to_numpy()], size, **norm)
    val_set = (
        CanvasDataset(frame[val_mask.to_numpy()], size, **norm) if val_mask is not None else None
    )
    train_set.precache(progress=progress)
    seed_everything(config.seed)  # the new head's (or a random network's) initial weights
    model = create_model(
        config.arch, pretrained=config.pretrained, strategy=config.strategy, progress=progress
    )
    started = time.perf_counter()
    fit(model, train_set, config, folder, progress=progress, val_set=val_set, resume=resume)
    threshold = config.threshold
    if val_set is not None and (folder / "best.pt").is_file():
        model.load_state_dict(torch.load(folder / "best.pt", weights_only=True)["model"])
        val_probs, val_labels = predict(model, val_set, config, progress=False, return_labels=True)
        candidates = np.unique(np.concatenate([[0.5], val_probs]))
        accuracy = [np.mean((val_probs >= t) == val_labels) for t in candidates]
        threshold = float(candidates[int(np.argmax(accuracy))])
    probs = predict(model, test_set, config, progress=progress)
    test = frame[test_mask.to_numpy()]
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
    save_checkpoint(
        model,
        folder / "model.pt",
        config.arch,
        # what prediction needs travels with the weights, so a model.pt moved away from its
        # run folder still draws its images on the canvas it was trained at
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
    history = json.loads((folder / "history.json").read_text())
    metrics["train_seconds"] = float(sum(h["seconds"] for h in history))
    metrics["wall_seconds_this_session"] = round(time.perf_counter() - started, 2)
    write_json(metrics, folder / "metrics.json")  # last: marks the fold finished
    # the fold's model and predictions are saved: the rolling training state (weights and
    # both LAMB moments) and the best epoch's weights are not needed any more
    for name in (CHECKPOINT, "best.pt"):
        (folder / name).unlink(missing_ok=True)
    return metrics


def run_cv(
    dataset: CTDataset,
    config: TrainConfig,
    *,
    protocol: str = "paper",
    n_folds: int = 5,
    only_folds: list[int] | None = None,
    out: str | os.PathLike[str] = "runs",
    progress: bool = True,
    resume: bool = True,
) -> pd.DataFrame:
    """Cross-validate one architecture on one data set; returns one metrics row per fold.

    Args:
        dataset: from :func:`ctlib.data.load_dataset`.
        config: the training recipe (``config.arch`` is the architecture).
        protocol: ``"paper"``, ``"patient"``, ``"pseudo-patient"`` or ``"official"`` (see
            the module docstring).
        n_folds: k (5 in the paper); ignored by ``official``.
        only_folds: run only these folds (e.g. to spread folds over GPUs).
        out: the results folder.
        progress: progress bars.
        resume: continue unfinished folds from their last epoch checkpoint.
    """
    resolve_device(config.device)  # a GPU asked for but absent fails before anything is written
    if protocol == "pseudo-patient" and "pseudo_patient" not in dataset.frame:
        dataset = replace(dataset, frame=with_pseudo_patients(dataset.frame, dataset.name))
    folds = make_folds(dataset.frame, protocol, n_folds, config.seed)
    # a broken image is found now, not after the training schedule: all of them, by name
    check_readable(dataset.frame["path"].tolist(), name=dataset.name, progress=progress)
    base = Path(out) / dataset.name / protocol / config.run_name
    base.mkdir(parents=True, exist_ok=True)
    columns = ["path", "label", "patient_id"] + (
        ["pseudo_patient"] if protocol == "pseudo-patient" else []
    )
    assignment = dataset.frame[columns].assign(fold=folds.to_numpy())
    folds_file = base / "folds.csv"
    if folds_file.is_file():
        old = pd.read_csv(folds_file, dtype={"fold": str})
        # compared by class folder and file name, so a run folder still matches after the
        # data set (or the whole kit) has moved to another place
        if not (
            [_file_key(p) for p in old["path"]] == [_file_key(p) for p in assignment["path"]]
            and old["fold"].tolist() == assignment["fold"].astype(str).tolist()
        ):
            raise ValueError(
                f"{folds_file} holds another fold assignment (other data, seed or "
                "number of folds); use another output folder."
            )
    else:
        atomic_write(folds_file, lambda tmp: assignment.to_csv(tmp, index=False))
    fold_ids = [0] if protocol == "official" else list(range(n_folds))
    if only_folds is not None:
        bad = sorted(set(only_folds) - set(fold_ids))
        if bad:
            raise ValueError(f"Folds {bad} do not exist; this run has folds {fold_ids}.")
        fold_ids = [f for f in fold_ids if f in only_folds]
    rows = []
    for fold in tqdm(
        fold_ids, desc=f"{config.arch} {protocol} CV", unit="fold", disable=not progress
    ):
        metrics = run_fold(
            dataset,
            config,
            folds,
            fold,
            protocol=protocol,
            out=out,
            progress=progress,
            resume=resume,
        )
        if metrics is None:  # another process holds the fold
            continue
        rows.append(
            {
                "dataset": dataset.name,
                "protocol": protocol,
                "arch": config.run_name,
                "fold": fold,
                **metrics,
            }
        )
    return pd.DataFrame(rows)


def trained_fold(
    results: str | os.PathLike[str],
    dataset: CTDataset | str,
    config: Any = None,
    *,
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
