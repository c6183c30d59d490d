"""A runs folder written before the recipe and the runtime were apart still resumes, and to the
same numbers.

``fixtures/old-runs/`` was written by the kit as of commit c3dfb1e (``fixtures/make_old_runs.py``):
a two-fold patient-level run of a tiny random ShuffleNet on the 12-patient synthetic set, fold 0
finished, fold 1 stopped after its first epoch with a lock a killed trainer left behind. Its
``config.json`` files hold the runtime settings inside ``"train"``, as that version wrote them.
Weights are not kept in git: the test makes fold 1's checkpoint again and gives it the old
file's recipe record (``checkpoint.meta.json``); ``expected/`` holds what that version's
uninterrupted fold 1 predicted.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import ctlib.cv
from ctlib.config import Runtime, TrainConfig
from ctlib.cv import run_cv
from ctlib.data import load_dataset
from ctlib.data.synthetic import SyntheticConfig
from ctlib.explain import load_trained
from ctlib.models import create_model, save_checkpoint

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "old-runs"
RUN = Path("synthetic") / "patient" / "shufflenet-scratch"
CONFIG = TrainConfig(arch="shufflenet", pretrained=False, epochs=2, batch_size=8, canvas=(64, 48))
RUNTIME = Runtime(device="cpu", checkpoint_every=1)


@pytest.fixture(scope="module")
def old_synth(tmp_path_factory: pytest.TempPathFactory):  # -> CTDataset
    """The data set the old run was made on (the synthetic set is drawn from its seed)."""
    root = tmp_path_factory.mktemp("old-synth")
    return load_dataset("synthetic", root, synthetic=SyntheticConfig(n_patients=12), progress=False)


class _Stop(Exception):
    pass


def _first_epoch_checkpoint(data, out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fold 1 trained by today's kit and stopped after epoch 1: its rolling checkpoint."""
    original = ctlib.cv.fit

    def stop_after_one_epoch(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        def stop(record: dict) -> None:
            if record["epoch"] == 1:
                raise _Stop

        return original(*args, **kwargs, on_epoch_end=stop)

    with monkeypatch.context() as patch:
        patch.setattr(ctlib.cv, "fit", stop_after_one_epoch)
        with pytest.raises(_Stop):
            run_cv(data, CONFIG, runtime=RUNTIME, protocol="patient", n_folds=2, only_folds=[1],
                   out=out, progress=False)  # fmt: skip
    return out / RUN / "fold1" / "checkpoint.pt"


def _old_folder(tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURE / "runs", runs)
    lock = runs / RUN / "fold1" / "train.lock"  # a killed trainer's lock on this machine
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "host": socket.gethostname()}))
    return runs


def test_an_old_runs_folder_resumes_to_the_old_numbers(
    old_synth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _old_folder(tmp_path)
    fold1 = runs / RUN / "fold1"
    meta = json.loads((fold1 / "checkpoint.meta.json").read_text())
    state = torch.load(_first_epoch_checkpoint(old_synth, tmp_path / "again", monkeypatch))
    assert sorted(state) == meta["keys"] and state["epoch"] == meta["epoch"]
    assert state["history"][0]["train_loss"] == meta["history"][0]["train_loss"]
    assert "device" in meta["config"] and "device" not in state["config"]
    torch.save({**state, "config": meta["config"]}, fold1 / "checkpoint.pt")  # the old record
    old_config = (fold1 / "config.json").read_text()

    table = run_cv(old_synth, CONFIG, runtime=RUNTIME, protocol="patient", n_folds=2, out=runs,
                   progress=False)  # fmt: skip

    assert table["fold"].tolist() == [0, 1]
    finished = json.loads((runs / RUN / "fold0" / "metrics.json").read_text())
    assert table.iloc[0]["accuracy"] == finished["accuracy"], "fold 0 was read, not retrained"
    expected = pd.read_csv(FIXTURE / "expected" / "fold1" / "predictions.csv")
    resumed = pd.read_csv(fold1 / "predictions.csv")
    assert np.array_equal(resumed["prob"].to_numpy(), expected["prob"].to_numpy())
    history = json.loads((fold1 / "history.json").read_text())
    old = json.loads((FIXTURE / "expected" / "fold1" / "history.json").read_text())
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in old]
    assert (fold1 / "config.json").read_text() == old_config, "the old record is kept as it is"
    assert not (fold1 / "checkpoint.pt").exists() and not (fold1 / "train.lock").exists()


def test_an_old_runs_folder_refuses_another_recipe(old_synth, tmp_path: Path) -> None:
    runs = _old_folder(tmp_path)
    other = TrainConfig(
        arch="shufflenet", pretrained=False, epochs=3, batch_size=8, canvas=(64, 48)
    )
    with pytest.raises(ValueError, match=r"another configuration \(differs in \['epochs'\]\)"):
        run_cv(old_synth, other, runtime=RUNTIME, protocol="patient", n_folds=2, out=runs,
               progress=False)  # fmt: skip


def test_old_config_files_read_as_recipes_and_model_files_keep_their_format(tmp_path: Path) -> None:
    record = json.loads((FIXTURE / "runs" / RUN / "fold0" / "config.json").read_text())
    assert "device" in record["train"]
    assert TrainConfig.from_dict(record["train"]) == CONFIG
    meta = json.loads((FIXTURE / "runs" / RUN / "fold0" / "model.meta.json").read_text())
    torch.manual_seed(0)
    model = create_model("shufflenet", pretrained=False, progress=False)
    save_checkpoint(model, tmp_path / "model.pt", "shufflenet", extra=meta["extra"])
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert sorted(saved) == meta["keys"]
    assert {k: saved[k] for k in ("format", "version", "arch", "num_classes")} == {
        k: meta[k] for k in ("format", "version", "arch", "num_classes")
    }
    _, info = load_trained(tmp_path / "model.pt")
    assert list(info["canvas"]) == meta["extra"]["canvas"]
