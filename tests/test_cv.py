"""Cross-validation: fold assignment per protocol, results folders, skipping, refusing to mix."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctlib.cv import fold_dir, make_folds, run_cv
from ctlib.data import load_dataset
from ctlib.train import Runtime, TrainConfig

TINY = TrainConfig(arch="shufflenet", pretrained=False, epochs=1, batch_size=8, canvas=(64, 48))


def _frame(n_patients: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = p % 2
        for _ in range(rng.integers(1, 6)):
            rows.append({"path": f"p{p}_{len(rows)}.png", "label": label, "patient_id": f"P{p}"})
    return pd.DataFrame(rows)


def test_paper_folds_are_stratified() -> None:
    frame = _frame()
    folds = make_folds(frame, "paper", 5, seed=0)
    assert sorted(folds.unique()) == [0, 1, 2, 3, 4]
    ratio = frame["label"].mean()
    for k in range(5):
        assert abs(frame.loc[folds == k, "label"].mean() - ratio) < 0.05
    assert make_folds(frame, "paper", 5, seed=0).equals(folds)
    assert not make_folds(frame, "paper", 5, seed=1).equals(folds)


def test_patient_folds_keep_patients_together() -> None:
    frame = _frame()
    folds = make_folds(frame, "patient", 5, seed=0)
    assert (frame.assign(fold=folds).groupby("patient_id")["fold"].nunique() == 1).all()
    # the image-level protocol does split patients: the reason for the patient protocol
    paper = make_folds(frame, "paper", 5, seed=0)
    assert (frame.assign(fold=paper).groupby("patient_id")["fold"].nunique() > 1).any()


def test_protocol_errors() -> None:
    frame = _frame().assign(patient_id=pd.NA)
    with pytest.raises(ValueError, match="patient ID"):
        make_folds(frame, "patient")
    with pytest.raises(ValueError, match="official"):
        make_folds(frame, "official")
    with pytest.raises(ValueError, match="Unknown protocol"):
        make_folds(frame, "leave-one-out")


@pytest.mark.realdata
def test_real_folds(data_root: Path) -> None:
    covid = load_dataset("covid19-ct", data_root, progress=False).frame
    folds = make_folds(covid, "patient", 5)
    assert (covid.assign(fold=folds).groupby("patient_id")["fold"].nunique() == 1).all()
    official = make_folds(covid, "official")
    assert official.value_counts().to_dict() == {"train": 425, "test": 203, "val": 118}
    sars = load_dataset("sars-cov-2-ct", data_root, progress=False).frame
    with pytest.raises(ValueError, match="sars-cov-2-ct publishes none"):
        make_folds(sars, "patient")


def test_run_cv_writes_results_skips_finished_and_refuses_mixing(synth, tmp_path: Path) -> None:
    results = run_cv(synth, TINY, protocol="patient", n_folds=2, out=tmp_path, progress=False)
    assert list(results["fold"]) == [0, 1]
    folds = pd.read_csv(tmp_path / "synthetic" / "patient" / TINY.run_name / "folds.csv")
    assert len(folds) == len(synth)
    for k in (0, 1):
        folder = fold_dir(tmp_path, "synthetic", "patient", TINY.run_name, k)
        predictions = pd.read_csv(folder / "predictions.csv")
        assert {"path", "label", "prob", "fold", "patient_id"} <= set(predictions.columns)
        assert set(predictions["path"]) == set(folds.loc[folds["fold"] == k, "path"])
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["n"] == len(predictions)
        assert (folder / "model.pt").is_file() and (folder / "history.json").is_file()
        # the rolling training state goes once the model and predictions are saved
        assert not (folder / "checkpoint.pt").exists()
    # rerun: finished folds are skipped (nothing rewritten)
    stamp = (
        (fold_dir(tmp_path, "synthetic", "patient", TINY.run_name, 0) / "metrics.json")
        .stat()
        .st_mtime_ns
    )
    again = run_cv(synth, TINY, protocol="patient", n_folds=2, out=tmp_path, progress=False)
    assert again["accuracy"].tolist() == results["accuracy"].tolist()
    assert (
        fold_dir(tmp_path, "synthetic", "patient", TINY.run_name, 0) / "metrics.json"
    ).stat().st_mtime_ns == stamp
    # another configuration in the same folder is refused, nothing changed
    with pytest.raises(ValueError, match="another configuration"):
        run_cv(
            synth,
            replace(TINY, epochs=2),
            protocol="patient",
            n_folds=2,
            out=tmp_path,
            progress=False,
        )
    with pytest.raises(ValueError, match="another fold assignment"):
        run_cv(synth, TINY, protocol="patient", n_folds=3, out=tmp_path, progress=False)
    assert (
        fold_dir(tmp_path, "synthetic", "patient", TINY.run_name, 0) / "metrics.json"
    ).stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="do not exist"):
        run_cv(
            synth, TINY, protocol="patient", n_folds=2, only_folds=[7], out=tmp_path, progress=False
        )


def test_pseudo_patient_folds_keep_groups_together() -> None:
    frame = _frame().rename(columns={"patient_id": "pseudo_patient"}).assign(patient_id=pd.NA)
    folds = make_folds(frame, "pseudo-patient", 5, seed=0)
    assert (frame.assign(fold=folds).groupby("pseudo_patient")["fold"].nunique() == 1).all()
    with pytest.raises(ValueError, match="pseudo_patient"):
        make_folds(frame.drop(columns="pseudo_patient"), "pseudo-patient")


def test_run_names_keep_variants_apart(synth, tmp_path: Path) -> None:
    assert TINY.run_name == "shufflenet-scratch"
    assert TrainConfig().run_name == "efficientnet_lite0"
    flat = TrainConfig(arch="shufflenet", pretrained=False, content="flat").run_name
    assert flat == "shufflenet-scratch-flat"
    with pytest.raises(ValueError, match="content"):
        TrainConfig(content="blank")
    # the flat probe and the image run share data set, protocol and architecture but not a folder
    run_cv(synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False)
    probe = TrainConfig.from_dict({**TINY.to_dict(), "content": "flat"})
    run_cv(
        synth, probe, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False
    )
    base = tmp_path / "synthetic" / "patient"
    assert sorted(p.name for p in base.iterdir()) == [
        "shufflenet-scratch",
        "shufflenet-scratch-flat",
    ]
    config = json.loads((base / "shufflenet-scratch-flat" / "fold0" / "config.json").read_text())
    assert config["train"]["content"] == "flat"


def test_a_run_from_before_a_new_setting_still_resumes(synth, tmp_path: Path) -> None:
    """config.json written before TrainConfig gained `content` (at its default) is the same run."""
    run_cv(synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False)
    path = fold_dir(tmp_path, "synthetic", "patient", TINY.run_name, 0) / "config.json"
    record = json.loads(path.read_text())
    del record["train"]["content"]
    path.write_text(json.dumps(record))
    again = run_cv(
        synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False
    )
    assert len(again) == 1
    # but a setting that differs from the default still counts as another configuration
    record["train"]["content"] = "flat"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="another configuration"):
        run_cv(
            synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False
        )


def _other_source(root: Path):  # -> CTDataset
    """A synthetic set from another 'hospital': other patients, wider margins, more noise."""
    from ctlib.data.synthetic import SyntheticConfig

    other = SyntheticConfig(n_patients=8, seed=7, fill_range=(0.55, 0.7), noise_sigma=(6.0, 8.0))
    return replace(load_dataset("synthetic", root, synthetic=other, progress=False), name="other")


def test_external_protocol_trains_on_one_set_and_tests_on_the_other(synth, tmp_path: Path) -> None:
    other = _other_source(tmp_path / "other")
    table = run_cv(synth, TINY, protocol="external", test_dataset=other, out=tmp_path / "runs",
                   progress=False)  # fmt: skip
    assert table[["dataset", "protocol", "fold"]].values.tolist() == [
        ["synthetic", "external-other", 0]
    ]
    folder = fold_dir(tmp_path / "runs", "synthetic", "external-other", TINY.run_name, 0)
    predictions = pd.read_csv(folder / "predictions.csv")
    assert sorted(predictions["path"]) == sorted(other.frame["path"])  # all of the other set
    assert predictions["patient_id"].notna().all()  # its patients, for the intervals
    folds = pd.read_csv(folder.parent / "folds.csv")
    assert (folds["fold"] == "train").sum() == len(synth)
    assert (folds["fold"] == "test").sum() == len(other)
    config = json.loads((folder / "config.json").read_text())
    assert (config["protocol"], config["n_folds"]) == ("external-other", 1)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n"] == len(other)
    # finished: a second call reads it
    again = run_cv(synth, TINY, protocol="external", test_dataset=other, out=tmp_path / "runs",
                   progress=False)  # fmt: skip
    assert again["accuracy"].tolist() == table["accuracy"].tolist()


def test_external_protocol_refuses_what_is_not_external(synth, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    with pytest.raises(ValueError, match="needs a test data set"):
        run_cv(synth, TINY, protocol="external", out=out, progress=False)
    with pytest.raises(ValueError, match="both named 'synthetic'"):
        run_cv(synth, TINY, protocol="external", test_dataset=synth, out=out, progress=False)
    with pytest.raises(ValueError, match=r"images are in both 'synthetic' and 'copy'"):
        copy = replace(synth, name="copy")
        run_cv(synth, TINY, protocol="external", test_dataset=copy, out=out, progress=False)
    with pytest.raises(ValueError, match="test_dataset is for protocol='external'"):
        run_cv(synth, TINY, protocol="patient", test_dataset=copy, out=out, progress=False)
    with pytest.raises(ValueError, match="needs two data sets"):
        make_folds(synth.frame, "external")
    assert not out.exists(), "nothing is written before the check"


def test_a_fold_that_resumes_does_not_load_the_imagenet_weights_again(
    synth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A requeued cell takes every weight from its checkpoint: the pretrained file is asked for
    only when a fold starts from scratch (a compute node without it can resume)."""
    import ctlib.cv
    from ctlib.models import create_model

    asked: list[bool] = []

    def recording(arch: str, pretrained: bool = True, **kwargs: object):  # noqa: ANN202
        asked.append(pretrained)
        return create_model(arch, pretrained=False, **kwargs)  # no download in a test

    real_fit = ctlib.cv.fit

    class Killed(Exception):
        pass

    def killed_after_one_epoch(*args: object, **kwargs: object) -> object:
        def stop(record: dict) -> None:
            raise Killed

        return real_fit(*args, **{**kwargs, "on_epoch_end": stop})

    config = replace(TINY, pretrained=True, epochs=2)
    runtime = Runtime(device="cpu", checkpoint_every=1)
    monkeypatch.setattr(ctlib.cv, "create_model", recording)
    monkeypatch.setattr(ctlib.cv, "fit", killed_after_one_epoch)
    with pytest.raises(Killed):
        run_cv(synth, config, runtime=runtime, protocol="patient", n_folds=2, only_folds=[0],
               out=tmp_path, progress=False)  # fmt: skip
    monkeypatch.setattr(ctlib.cv, "fit", real_fit)
    run_cv(synth, config, runtime=runtime, protocol="patient", n_folds=2, only_folds=[0],
           out=tmp_path, progress=False)  # fmt: skip
    assert asked == [True, False]


def test_a_fold_held_by_another_process_is_skipped_with_its_own_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """cv --only-folds 0 while another process trains fold 0: no traceback, the held fold named,
    exit EXIT_HELD (neither failed nor done: the sweep tries again later)."""
    import json
    import socket
    import subprocess
    import sys

    from ctlib.cli import main
    from ctlib.errors import EXIT_HELD

    out = tmp_path / "runs"
    args = ["cv", "--dataset", "synthetic", "--protocol", "patient", "--folds", "2",
            "--only-folds", "0", "--out", str(out), "--epochs", "1", "--batch-size", "8",
            "--canvas", "64", "48", "--no-pretrained", "-q"]  # fmt: skip
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        from ctlib.cli import build_parser
        from ctlib.options import training_settings

        config, _ = training_settings(build_parser().parse_args(args))
        folder = fold_dir(out, "synthetic", "patient", config.run_name, 0)
        folder.mkdir(parents=True)
        lock = {"pid": other.pid, "host": socket.gethostname(), "since": 0}
        (folder / "train.lock").write_text(json.dumps(lock))
        assert main(args) == EXIT_HELD
    finally:
        other.kill()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "not finished here: fold(s) 0, being trained by another process" in captured.err
    assert not (folder / "metrics.json").exists()
