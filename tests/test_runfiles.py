"""The kit's own files of a runs or results folder are read only through their readers
(ctlib.runfiles), which refuse a malformed file by name; image paths are found again on
another machine (issue 30: "everything read back is validated")."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

import ctlib
from ctlib.cli import main
from ctlib.cv import fold_dir, run_cv
from ctlib.errors import RunFileError
from ctlib.explain import fold_split
from ctlib.notebook import committed_results
from ctlib.results import collect_predictions, collect_results, export_results, import_results
from ctlib.runfiles import (
    locate_images,
    read_config,
    read_folds,
    read_history,
    read_metrics,
    read_predictions,
)
from ctlib.train import TrainConfig

KIT = Path(ctlib.__file__).resolve().parent
#: each kit file and its one reader, (module, function); None: any function of the module
READERS = {
    **dict.fromkeys(
        ("metrics.json", "config.json", "history.json", "predictions.csv", "folds.csv"),
        ("runfiles.py", None),
    ),
    "checkpoint.pt": ("handlers.py", "load_training_state"),
    "best.pt": ("weights.py", "read_weights_file"),
    "model.pt": ("weights.py", "read_weights_file"),
    "train.lock": ("files.py", "_read"),
}
KIT_FILES = set(READERS)
#: kit functions that move these files as bytes, after a reader has checked them (copies
#: into results, a lesson pack's checksummed members), never interpreting them
BYTE_MOVERS = {("results.py", "_copy"), ("lessonpack.py", "export_lesson_pack"),
               ("lessonpack.py", "import_lesson_pack"), ("files.py", "sha256_file")}  # fmt: skip
TINY = TrainConfig(arch="shufflenet", pretrained=False, epochs=1, batch_size=8, canvas=(64, 48))

#: while a (folders, found) pair is on it, reads of kit files under those folders are recorded
_recording: list[tuple[tuple[Path, ...], list[str]]] = []


def _audit(event: str, args: tuple) -> None:
    if event != "open" or not _recording or not isinstance(args[0], (str, Path)):
        return
    path, mode = Path(str(args[0])), args[1]
    if path.name not in KIT_FILES or (isinstance(mode, str) and any(m in mode for m in "wax+")):
        return
    folders, found = _recording[-1]
    if not any(path.resolve().is_relative_to(f) for f in folders):
        return  # e.g. the synthetic set's own config.json: not a run's file
    innermost, frame = None, sys._getframe(1)  # noqa: SLF001 - the reader is on the stack
    while frame is not None:
        file = Path(frame.f_code.co_filename).resolve()
        if file.is_relative_to(KIT):
            where = (file.name, frame.f_code.co_name)
            module, function = READERS[path.name]
            if (file.name == module and function in (None, where[1])) or where in BYTE_MOVERS:
                return
            innermost = innermost or f"{file.relative_to(KIT)}:{where[1]}"
        frame = frame.f_back
    if innermost is not None:  # read by the kit, through no reader (a test's own reads pass)
        found.append(f"{path.name} read by {innermost}")


sys.addaudithook(_audit)


def test_every_kit_file_is_read_through_its_reader(synth, tmp_path: Path, capsys) -> None:
    """Train, resume, tabulate, export, import, explain and draw a tiny run, recording every
    read of metrics, config, history, predictions and folds: each comes from ctlib.runfiles."""
    runs, seen = tmp_path / "runs", []
    _recording.append(((tmp_path.resolve(),), seen))
    try:
        for _ in range(2):  # the second time, the finished fold is read back, not trained
            run_cv(synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=runs,
                   progress=False)  # fmt: skip
        collect_results(runs)
        collect_predictions(runs)
        export_results(runs, tmp_path / "exported")
        import_results(tmp_path / "exported", tmp_path / "imported", root=synth.root.parent)
        fold = fold_dir(runs, "synthetic", "patient", TINY.run_name, 0)
        fold_split(fold)
        assert main(["table", str(runs)]) == 0
        image = str(fold_split(fold)["path"].iloc[0])
        assert main(["predict", image, "--checkpoint", str(fold / "model.pt"), "-q"]) == 0
        figures = ["figures", str(runs), "--dataset", "synthetic", "--protocol", "patient"]
        figures += ["--run", TINY.run_name, "--perplexity", "5", "-q"]
        figures += ["--figures", str(tmp_path / "figures"), "--out", str(tmp_path / "numbers")]
        assert main(figures) == 0  # fmt: skip
    finally:
        _recording.pop()
    capsys.readouterr()
    assert seen == [], "kit files read outside ctlib.runfiles:\n" + "\n".join(sorted(set(seen)))


def test_the_audit_sees_a_read_outside_the_readers(tmp_path: Path) -> None:
    """The check above can fail: a kit module reading metrics.json itself is caught."""
    (tmp_path / "metrics.json").write_text('{"accuracy": 0.5}')
    seen: list[str] = []
    _recording.append(((tmp_path.resolve(),), seen))
    try:
        from ctlib import files

        files.FolderLock._read(tmp_path / "metrics.json")  # a kit function, not its reader
        read_metrics(tmp_path / "metrics.json")  # the reader: not recorded
    finally:
        _recording.pop()
    assert seen == ["metrics.json read by files.py:_read"]


# --------------------------------------------------------------------------- each reader
@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("metrics.json", "[1, 2]", "not an object of metrics"),
        ("metrics.json", '{"recall": 0.5}', r"lacks \['accuracy'\]"),
        ("metrics.json", '{"accuracy": 0.9, "n": -3}', "out of range"),
        ("metrics.json", b"\xff\xfe", "cannot be read"),
        ("config.json", '{"train": [1]}', "'train' entry .* is not an object"),
        ("config.json", '"text"', "not an object"),
        ("history.json", '{"epoch": 1}', "not a list of per-epoch records"),
        ("history.json", '[{"epoch": 1}]', r"epoch record 0 lacks \['seconds'\]"),
        ("history.json", '[{"epoch": 1, "seconds": "long"}]', "not numbers"),
        ("predictions.csv", "path,label,prob\na.png,1,1.5\n", "not within 0..1"),
        ("predictions.csv", "path,label,prob\na.png,3,0.5\n", "other than 0 and 1"),
        ("predictions.csv", '"unclosed\n', "not a readable CSV|lacks the column"),
        ("folds.csv", "path,label\na.png,1\n", r"lacks the column\(s\) \['fold'\]"),
        ("folds.csv", "path,label,fold\na.png,1,\n", "some images have no fold"),
        ("folds.csv", "path,label,fold\n,1,0\n", "have no path"),
    ],
)
def test_a_malformed_kit_file_is_refused_by_name(
    tmp_path: Path, name: str, text: str | bytes, problem: str
) -> None:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    reader = {"metrics.json": read_metrics, "config.json": read_config,
              "history.json": read_history, "predictions.csv": read_predictions,
              "folds.csv": read_folds}[name]  # fmt: skip
    with pytest.raises(RunFileError, match=problem) as refused:
        reader(path)
    assert str(path) in str(refused.value) and "train it again" in str(refused.value)


def test_the_readers_accept_every_committed_result() -> None:
    """What the kit wrote, at every version committed, reads back."""
    base = committed_results()
    folds = sorted(base.rglob("fold*/metrics.json"))
    assert len(folds) > 20
    for metrics in folds:
        read_metrics(metrics)
        for name, reader in (("config.json", read_config), ("history.json", read_history),
                             ("predictions.csv", read_predictions)):  # fmt: skip
            if (metrics.parent / name).is_file():
                reader(metrics.parent / name)
    for table in base.rglob("folds.csv"):
        read_folds(table)


def test_images_are_found_again_after_the_cache_moved(synth, tmp_path: Path, monkeypatch) -> None:
    """A lesson pack made on the teacher's machine names the images where they were there; on
    a learner's machine the same synthetic set lies in another cache."""
    from ctlib.data import load_dataset
    from ctlib.data.synthetic import SyntheticConfig

    config = SyntheticConfig(n_patients=4)
    teacher = load_dataset("synthetic", synthetic=config, progress=False)
    recorded = teacher.frame["path"].astype(str)
    monkeypatch.setenv("CTLIB_CACHE_DIR", str(tmp_path / "learner-cache"))
    learner = load_dataset("synthetic", synthetic=config, progress=False)
    moved = recorded.str.replace(str(teacher.root.parents[1]), str(tmp_path / "gone"), regex=False)
    found = locate_images(moved, "synthetic")
    assert found.tolist() == learner.frame["path"].astype(str).tolist()
    assert locate_images(pd.Series(["/nowhere/x.png"]), "synthetic").tolist() == ["/nowhere/x.png"]
    # exported results keep <class folder>/<file>: found under the data folder
    real = tmp_path / "data" / "covid19-ct" / "CT_COVID"
    real.mkdir(parents=True)
    (real / "a.png").write_bytes(b"")
    monkeypatch.setenv("CTLIB_DATA_DIR", str(tmp_path / "data"))
    assert locate_images(pd.Series(["CT_COVID/a.png"]), "covid19-ct").tolist() == [
        str(real / "a.png")
    ]


def test_a_fold_split_follows_its_images_to_their_new_place(synth, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_cv(synth, TINY, protocol="patient", n_folds=2, only_folds=[0], out=runs, progress=False)
    fold = fold_dir(runs, "synthetic", "patient", TINY.run_name, 0)
    before = fold_split(fold)
    moved = tmp_path / "moved"
    shutil.move(str(synth.root), moved)  # the set moves; the run folder keeps old paths
    try:
        with pytest.raises(FileNotFoundError, match="no longer where the run found them"):
            fold_split(fold)  # not under this machine's cache either: named, with the fix
    finally:
        shutil.move(str(moved), synth.root)
    assert fold_split(fold)["path"].tolist() == before["path"].tolist()
    assert json.loads((fold / "metrics.json").read_text())["accuracy"] >= 0
