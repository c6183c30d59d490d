"""Bad inputs end in a clear error that names the file or value and the fix, and leave
nothing behind that blocks the corrected command."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctlib.argtypes import Number
from ctlib.cli import build_parser, main
from ctlib.cv import LOCK_FILE, fold_dir, make_folds, run_cv
from ctlib.data import load_dataset, load_folder, read_grayscale
from ctlib.errors import DataError, DataVerificationError, ImageReadError
from ctlib.explain import load_trained, predict_files
from ctlib.files import FolderLock
from ctlib.models import load_checkpoint
from ctlib.train import TrainConfig

TINY = TrainConfig(arch="shufflenet", pretrained=False, epochs=1, batch_size=8, canvas=(64, 48))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    Image.fromarray(np.full(size[::-1], 90, dtype=np.uint8)).save(path)
    return path


def test_an_image_over_the_pixel_limit_is_an_unreadable_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = _png(tmp_path / "huge.png", (200, 200))
    small = _png(tmp_path / "fine.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40 000 > 2 x 1000: a "bomb"
    with pytest.raises(ImageReadError, match="larger than Pillow's limit") as error:
        read_grayscale(big)
    assert "huge.png" in str(error.value)
    folder = load_folder(tmp_path)  # a folder with it loads the rest and lists it
    assert folder.frame["path"].tolist() == [str(small)]
    assert "larger than Pillow's limit" in folder.skipped["reason"].iloc[0]


def test_too_many_folds_are_refused_before_anything_is_written(synth, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too many") as error:
        make_folds(synth.frame, "paper", 100)
    assert "at most" in str(error.value)
    with pytest.raises(ValueError, match="too many"):
        run_cv(synth, TINY, n_folds=100, out=tmp_path, progress=False)
    assert not any(tmp_path.rglob("folds.csv"))


def test_a_gpu_asked_for_but_absent_blocks_nothing(synth, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    from ctlib.config import Runtime

    with pytest.raises(ValueError, match="no CUDA GPU"):
        run_cv(
            synth,
            TINY,
            runtime=Runtime(device="cuda"),
            n_folds=2,
            only_folds=[0],
            out=tmp_path,
            progress=False,
        )
    assert not any(tmp_path.rglob("*.json")) and not any(tmp_path.rglob("folds.csv"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cv", "--lr", "nan", "--quick"], "argument --lr: expected a finite number > 0"),
        (["cv", "--lr", "-1", "--quick"], "argument --lr: expected a finite number > 0"),
        (["cv", "--device", "tpu", "--quick"], "device must be"),
        (
            ["cv", "--num-workers", "-1", "--quick"],
            "argument --num-workers: expected an integer >= 0",
        ),
        (["cv", "--folds", "100", "--quick"], "too many"),
        (
            ["cv", "--canvas", "100000", "100000", "--quick"],
            "argument --canvas: expected an integer >= 1 and <= 4096",
        ),
    ],
)
def test_bad_cli_values_end_in_one_message_and_write_nothing(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    try:
        code = main([*argv, "--out", str(tmp_path), "-q"])
    except SystemExit as exit_:  # argparse's own refusal: usage, then one error line
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not any(tmp_path.rglob("*.json")) and not any(tmp_path.rglob("folds.csv"))


def test_a_model_file_carries_its_canvas_and_a_folder_is_not_one(synth, tmp_path: Path) -> None:
    run_cv(
        synth,
        TINY,
        protocol="patient",
        n_folds=2,
        only_folds=[0],
        out=tmp_path / "runs",
        progress=False,
    )
    folder = fold_dir(tmp_path / "runs", "synthetic", "patient", TINY.run_name, 0)
    moved = tmp_path / "elsewhere" / "model.pt"
    moved.parent.mkdir()
    shutil.copy(folder / "model.pt", moved)  # no config.json beside it any more
    _, info = load_trained(moved)
    assert info["canvas"] == (64, 48) and info["threshold"] == 0.5
    with pytest.raises(FileNotFoundError, match="is a folder") as error:
        load_checkpoint(folder)
    assert "model.pt" in str(error.value)
    frame = predict_files([synth.frame["path"].iloc[0]], moved, progress=False)
    assert frame["error"].tolist() == [""]


@pytest.mark.realdata
def test_quick_verification_finds_an_empty_file(tmp_path: Path, data_root: Path) -> None:
    source = data_root / "covid19-ct"
    copy = tmp_path / "covid19-ct"
    for cls in ("CT_COVID", "CT_NonCOVID"):
        shutil.copytree(source / cls, copy / cls)
    victim = sorted((copy / "CT_COVID").iterdir())[0]
    victim.write_bytes(b"")
    with pytest.raises(DataVerificationError, match="empty file, 0 bytes") as error:
        load_dataset("covid19-ct", tmp_path, progress=False)
    assert error.value.report.undecodable == [f"CT_COVID/{victim.name}"]


# --------------------------------------------------------------- files a run would read
def test_every_broken_image_is_named_before_training(synth, tmp_path: Path) -> None:
    from dataclasses import replace

    frame = synth.frame.copy()
    broken = []
    for i, content in ((0, b"not a png at all"), (len(frame) - 1, b"")):
        bad = tmp_path / f"broken{i}.png"
        bad.write_bytes(content)
        frame.loc[frame.index[i], "path"] = str(bad)
        broken.append(bad)
    with pytest.raises(DataError) as error:
        run_cv(replace(synth, frame=frame), TINY, n_folds=2, out=tmp_path / "runs", progress=False)
    message = str(error.value)
    assert all(str(p) in message for p in broken), "every broken file, not only the first"
    assert "empty" in message and "nothing was trained" in message
    assert not (tmp_path / "runs").exists(), "found before anything was written"


# --------------------------------------------------------------- two runs, one folder
def _lock_of(out: Path) -> Path:
    return fold_dir(out, "synthetic", "patient", TINY.run_name, 0) / LOCK_FILE


def test_a_fold_held_by_a_live_process_is_skipped_not_trained_twice(
    synth, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = _lock_of(tmp_path)
        lock.parent.mkdir(parents=True)
        lock.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "since": 0}))
        rows = run_cv(
            synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False
        )
    finally:
        other.kill()
        other.wait()
    assert rows.empty and not (lock.parent / "checkpoint.pt").exists()
    assert f"process {other.pid}" in caplog.text and str(lock) in caplog.text
    assert lock.is_file(), "another process's lock is left alone"


def test_a_stale_lock_of_a_killed_process_is_taken_over(synth, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = _lock_of(tmp_path)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": 0}))
    rows = run_cv(
        synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False
    )
    assert rows["fold"].tolist() == [0] and (lock.parent / "metrics.json").is_file()
    assert not lock.exists(), "the lock goes when the fold is finished"


def test_a_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    first, second = FolderLock(tmp_path / "x.lock"), FolderLock(tmp_path / "x.lock")
    assert first.acquire() and not second.acquire()
    assert first.holder["pid"] == os.getpid()
    first.release()
    assert second.acquire()
    second.release()
    assert not (tmp_path / "x.lock").exists()


# --------------------------------------------------------------- every command, bad inputs
def _bad_commands(tmp: Path) -> list[list[str]]:
    empty = tmp / "empty"
    empty.mkdir()
    wrong = tmp / "wrong-layout" / "covid19-ct"
    (wrong / "COVID").mkdir(parents=True)
    _png(wrong / "COVID" / "a.png")
    image = _png(tmp / "slice.png")
    corrupt = tmp / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    truncated = tmp / "model.pt"
    truncated.write_bytes(b"PK\x03\x04 not a whole file")
    a_file = tmp / "a-file"
    a_file.write_text("x")
    port = _closed_port()
    return [
        ["verify", "covid19-ct", "--root", str(empty)],
        ["verify", "covid19-ct", "--root", str(wrong.parent)],
        ["download", "covid19-ct", "--dest", str(a_file)],
        [
            "download",
            "covid19-ct",
            "--dest",
            str(tmp / "d"),
            "--mirror",
            f"http://127.0.0.1:{port}",
        ],
        ["canvases", "--dataset", "no-such-set", "--out", str(tmp / "c")],
        ["canvases", "--archs", "resnet-9000", "--out", str(tmp / "c")],
        ["train", "--arch", "resnet-9000", "--quick", "--out", str(tmp / "r")],
        ["train", "--fold", "7", "--quick", "--out", str(tmp / "r")],
        ["cv", "--lr", "inf", "--quick", "--out", str(tmp / "r")],
        ["cv", "--epochs", "0", "--quick", "--out", str(tmp / "r")],
        ["cv", "--batch-size", "0", "--quick", "--out", str(tmp / "r")],
        ["cv", "--canvas", "8", "6", "--quick", "--out", str(tmp / "r")],
        ["cv", "--amp", "fp16", "--device", "cpu", "--quick", "--out", str(tmp / "r")],
        ["cv", "--dataset", "covid19-ct", "--root", str(empty), "--quick", "--out", str(tmp / "r")],
        ["cv", "--dataset", "nope", "--quick", "--out", str(tmp / "r")],
        ["table", str(tmp / "no-such-runs")],
        ["table", str(empty)],
        ["sweep", "--archs", "resnet-9000", "--dry-run", "--out", str(tmp / "s")],
        ["sweep", "--folds", "1", "--dry-run", "--out", str(tmp / "s")],
        ["sweep", "--retries", "-1", "--dry-run", "--out", str(tmp / "s")],
        ["sweep", "--per-gpu", "0", "--dry-run", "--out", str(tmp / "s")],
        ["sweep", "--executor", "pbs", "--dry-run", "--out", str(tmp / "s")],
        ["sweep", "--epochz", "3", "--dry-run", "--out", str(tmp / "s")],
        ["sweep", "--executor", "slurm", "--retries", "2", "--dry-run", "--out", str(tmp / "s")],
        ["sweep", "--datasets", "covid19-ct", "--root", str(empty), "--out", str(tmp / "s")],
        ["heat", str(tmp / "no-such-runs"), "--dataset", "synthetic"],
        ["road", str(tmp / "no-such-runs"), "--dataset", "covid19-ct"],
        ["road", str(empty), "--dataset", "covid19-ct", "--images", "0"],
        ["cv", "--protocol", "external", "--quick", "--out", str(tmp / "r")],
        ["figures", str(tmp / "no-such-runs"), "--dataset", "covid19-ct"],
        ["figures", str(empty), "--dataset", "covid19-ct", "--fold", "9"],
        ["export-results", str(tmp / "no-such-runs"), str(tmp / "e")],
        ["import-results", str(tmp / "no-such-results"), str(tmp / "i")],
        ["audit", "pseudo-patients", "covid19-ct", "--root", str(empty)],
        ["predict", str(image), "--checkpoint", str(tmp / "no-such.pt")],
        ["predict", str(image), "--checkpoint", str(empty)],
        ["predict", str(image), "--checkpoint", str(truncated)],
        ["predict", str(corrupt), "--checkpoint", str(truncated)],
        ["predict", str(tmp / "no-such-image.png"), "--checkpoint", str(truncated)],
        ["prepare-workshop", "--notebooks", str(tmp / "no-such.ipynb")],
        ["lesson-pack", "import", str(a_file)],
        ["lesson-pack", "import", str(tmp / "no-such.zip")],
        ["quickstart", "--out", str(a_file)],
        ["slides", "--results", str(tmp / "no-such-results"), "--out", str(tmp / "deck.md")],
        ["slides", "--results", str(empty), "--out", str(a_file / "deck.md")],
        # every other option that takes a value (tests/test_sweep.py tries the sweep's own)
        ["canvases", "--dataset", "covid19-ct", "--root", str(empty), "--out", str(tmp / "c")],
        ["train", "--dataset", "nope", "--quick", "--out", str(tmp / "r")],
        [
            "train",
            "--dataset",
            "covid19-ct",
            "--root",
            str(a_file),
            "--quick",
            "--out",
            str(tmp / "r"),
        ],
        [
            "train",
            "--protocol",
            "external",
            "--test-dataset",
            "nope",
            "--quick",
            "--out",
            str(tmp / "r"),
        ],
        ["train", "--device", "tpu", "--quick", "--out", str(tmp / "r")],
        ["cv", "--arch", "resnet-9000", "--quick", "--out", str(tmp / "r")],
        [
            "cv",
            "--protocol",
            "external",
            "--test-dataset",
            "synthetic",
            "--quick",
            "--out",
            str(tmp / "r"),
        ],
        ["table", str(tmp / "no-such-runs"), "--csv", str(a_file / "t.csv")],
        ["table", str(empty), "--figures", str(a_file)],
        ["table", str(empty), "--readme", str(tmp / "no-such-readme.md")],
        ["table", str(empty), "--check-readme", str(tmp / "no-such-readme.md")],
        ["slides", "--figures", str(a_file), "--out", str(tmp / "deck.md")],
        ["heat", str(empty), "--dataset", "synthetic", "--protocol", "nope", "--run", "nope"],
        ["heat", str(empty), "--dataset", "synthetic", "--out", str(a_file / "x")],
        ["road", str(empty), "--dataset", "synthetic", "--protocol", "nope", "--run", "nope"],
        ["road", str(empty), "--dataset", "synthetic", "--out", str(a_file / "x")],
        ["figures", str(empty), "--dataset", "synthetic", "--protocol", "nope", "--run", "nope"],
        ["figures", str(empty), "--dataset", "synthetic", "--method", "nope"],
        ["figures", str(empty), "--dataset", "synthetic", "--figures", str(a_file)],
        ["figures", str(empty), "--dataset", "synthetic", "--out", str(a_file / "x")],
        ["import-results", str(tmp / "no-such-results"), str(tmp / "i"), "--root", str(a_file)],
        ["audit", "pseudo-patients", "covid19-ct", "--root", str(empty), "--out", str(a_file)],
        ["prepare-workshop", "--pack", str(a_file / "pack.zip"), "--no-rehearse"],
        ["sweep", "--slots", "gpu:x", "--dry-run", "--out", str(tmp / "s")],
        ["sweep", "--setup", "", "--dry-run", "--out", str(tmp / "s")],
        ["sweep", "--job-name", "x", "--dry-run", "--out", str(tmp / "s")],
    ]


#: options whose bad values tests/test_sweep.py tries (its one-error-line test)
TRIED_ELSEWHERE = {("sweep", "--gpu-figures"), ("sweep", "--partition"), ("sweep", "--sbatch")}
#: options that only list or look: no value is wrong for them
NOTHING_TO_REFUSE = {("datasets", "--root")}


def test_every_option_of_every_command_is_tried_with_a_bad_value(tmp_path: Path) -> None:
    """Read from the parser: an option that takes a value is either a Number (tried by the
    test above), a choice (argparse refuses another), or tried here (or in the sweep's
    tests) with a bad value; an option added later without one fails this test."""
    tried = {(argv[0], token) for argv in _bad_commands(tmp_path) for token in argv[1:]}
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    untried = []
    for name, command in commands.items():
        for action in command._actions:  # noqa: SLF001
            if action.nargs == 0 or not action.option_strings:  # a flag, or a positional
                continue
            if isinstance(action.type, Number) or action.choices is not None:
                continue
            key = (name, action.option_strings[-1])
            if not {key, (name, action.option_strings[0])} & (
                tried | TRIED_ELSEWHERE | NOTHING_TO_REFUSE
            ):
                untried.append(" ".join(key))
    assert untried == [], "options no test gives a bad value: add them to _bad_commands"


def test_every_command_answers_bad_input_with_a_message_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctlib.data import fetch

    monkeypatch.setattr(fetch, "_BACKOFF_S", 0.0)
    monkeypatch.setitem(sys.modules, "kagglehub", None)
    commands = _bad_commands(tmp_path)
    covered = {argv[0] for argv in commands}
    parser_commands = set(build_parser()._subparsers._group_actions[0].choices)  # noqa: SLF001
    # datasets only lists; check fails only on an unready machine (tests/test_selfcheck.py)
    assert parser_commands - covered <= {"datasets", "check"}, (
        "every command that can fail is tried"
    )
    failures = []
    for argv in commands:
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own refusal: usage and one line, exit 2
            code = exit_.code
        except BaseException as error:  # noqa: BLE001 - the point: nothing may escape
            failures.append(f"{argv}: {type(error).__name__}: {error}")
            continue
        err = capsys.readouterr().err
        if code == 0 or "Traceback" in err or not err.strip():
            failures.append(f"{argv}: exit {code}, stderr {err[-300:]!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.slow
def _numeric_options() -> list[tuple[str, argparse.Action]]:
    """Every option of every command that takes a number, as the parser holds it."""
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    return [
        (name, action)
        for name, command in commands.items()
        for action in command._actions  # noqa: SLF001
        if action.type in (int, float) or isinstance(action.type, Number)
    ]


def test_every_number_option_of_every_command_has_a_range_and_refuses_what_lies_outside(
    capsys: pytest.CaptureFixture,
) -> None:
    """Read from the parser, so that an option added later is tried too: each numeric option
    is a Number (a bare int or float would take any value), and each value out of its range
    ends in argparse's one-line error naming the option, before any work starts."""
    options = _numeric_options()
    assert len(options) >= 40, "the commands' numeric options were found"
    bare = [f"{name} {a.option_strings}" for name, a in options if not isinstance(a.type, Number)]
    assert bare == [], "options that take any number: give each a Number range"
    parser = build_parser()
    for name, action in options:
        flag = action.option_strings[0] if action.option_strings else None
        for bad in action.type.bad_values():
            values = [bad] * (action.nargs if isinstance(action.nargs, int) else 1)
            with pytest.raises(SystemExit) as refused:
                parser.parse_args([name, *([flag] if flag else []), *values])
            err = capsys.readouterr().err
            assert refused.value.code == 2, (name, flag, bad)
            assert f"argument {flag or action.dest}: expected" in err, (name, flag, bad, err)


def test_the_real_entry_point_prints_no_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ctlib",
            "predict",
            str(_png(tmp_path / "s.png")),
            "--checkpoint",
            str(tmp_path / "none.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stderr.startswith("error:"), done.stderr
    assert "Traceback" not in done.stderr and "none.pt" in done.stderr


def test_a_runs_folder_still_matches_after_the_data_moved(synth, tmp_path: Path) -> None:
    import pandas as pd

    run_cv(synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False)
    folds_file = fold_dir(tmp_path, "synthetic", "patient", TINY.run_name, 0).parent / "folds.csv"
    folds = pd.read_csv(folds_file)
    folds["path"] = [f"/elsewhere/{Path(p).parent.name}/{Path(p).name}" for p in folds["path"]]
    folds.to_csv(folds_file, index=False)  # as if written on another machine
    rows = run_cv(
        synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False
    )
    assert rows["fold"].tolist() == [0], "the finished fold is found, not refused"
    folds.loc[0, "fold"] = 1 - folds.loc[0, "fold"]
    folds.to_csv(folds_file, index=False)
    with pytest.raises(ValueError, match="another fold assignment"):
        run_cv(synth, TINY, protocol="patient", n_folds=2, out=tmp_path, progress=False)


def test_predict_fails_when_no_file_could_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from ctlib.models import create_model, save_checkpoint

    model = create_model("shufflenet", pretrained=False, progress=False)
    checkpoint = save_checkpoint(model, tmp_path / "model.pt", extra={"canvas": [64, 48]})
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["predict", str(broken), "--checkpoint", str(checkpoint), "-q"]) == 1
    assert "none of the 1 file(s) could be read" in capsys.readouterr().err
    image = _png(tmp_path / "slice.png")
    assert main(["predict", str(broken), str(image), "--checkpoint", str(checkpoint), "-q"]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"canvas": [20_000, 64]}, "from 1 to 4096"),
        ({"canvas": [64, 48], "std": [0.0, 0.0, 0.0]}, "every prediction would be NaN"),
        ({"canvas": [64, 48], "std": [float("nan")] * 3}, "not three finite"),
        ({"canvas": [64, 48], "mean": [0.5]}, "not three finite"),
        ({"canvas": [64, 48], "threshold": 2.0}, "outside 0..1"),
    ],
    ids=["huge-canvas", "zero-std", "nan-std", "one-mean", "threshold"],
)
def test_a_model_file_with_impossible_settings_is_refused_before_predicting(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: dict, message: str
) -> None:
    """A stored canvas past the bound (no canvas allocated), or a normalisation that would
    turn every probability into NaN (which used to be labelled non-COVID, exit 0)."""
    from ctlib.models import create_model, save_checkpoint

    model = create_model("shufflenet", pretrained=False, progress=False)
    checkpoint = save_checkpoint(model, tmp_path / "model.pt", extra=extra)
    with pytest.raises(ValueError, match=message) as refused:
        load_trained(checkpoint)
    assert str(checkpoint) in str(refused.value) and "export the model again" in str(refused.value)
    image = _png(tmp_path / "slice.png")
    assert main(["predict", str(image), "--checkpoint", str(checkpoint), "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_huge_canvas_given_to_predict_is_refused_before_the_model_is_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = _png(tmp_path / "slice.png")
    missing = tmp_path / "no-model-here.pt"  # never opened: the option is checked first
    argv = ["predict", str(image), "--checkpoint", str(missing), "--canvas", "60000", "60000"]
    with pytest.raises(SystemExit) as refused:  # by the parser, before anything is opened
        main([*argv, "-q"])
    err = capsys.readouterr().err
    assert (
        refused.value.code == 2 and "argument --canvas: expected an integer >= 1 and <= 4096" in err
    )
    assert "does not exist" not in err


def test_the_canvas_bound_leaves_room_over_the_largest_slice_of_the_data_sets() -> None:
    from ctlib.canvas import MAX_CANVAS_SIDE
    from ctlib.data.manifest import read_manifest
    from ctlib.models import get_spec, list_models

    largest = max(
        int(read_manifest(name)[["width", "height"]].to_numpy().max())
        for name in ("covid19-ct", "sars-cov-2-ct")
    )
    assert 2 * largest <= MAX_CANVAS_SIDE <= 4 * largest
    assert max(max(get_spec(a).canvas) for a in list_models()) < MAX_CANVAS_SIDE


def test_a_planted_weights_file_is_refused_without_torchs_advice_to_trust_it(
    tmp_path: Path,
) -> None:
    import datetime

    from ctlib.models.weights import read_weights_file

    planted = tmp_path / "weights.pt"
    torch.save({"state": datetime.date(2020, 1, 1)}, planted)  # not a tensor: refused
    with pytest.raises(ValueError, match="could run code") as refused:
        read_weights_file(planted)
    assert "weights_only=False will" not in str(refused.value)
    assert "do not load it with weights_only=False" in str(refused.value)


def test_a_finished_fold_keeps_no_checkpoint_and_no_stale_lock(synth, tmp_path: Path) -> None:
    """Issue 30: a run killed right after writing metrics.json left its checkpoint and lock."""
    run_cv(synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False)
    lock = _lock_of(tmp_path)
    folder = lock.parent
    assert (folder / "metrics.json").is_file()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "since": 0}))
    (folder / "checkpoint.pt").write_bytes(b"left behind")
    (folder / "best.pt").write_bytes(b"left behind")
    rows = run_cv(
        synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=tmp_path, progress=False
    )
    assert rows["fold"].tolist() == [0], "the finished fold is read, not trained again"
    assert not lock.exists() and not (folder / "checkpoint.pt").exists()
    assert not (folder / "best.pt").exists()
