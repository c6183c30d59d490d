"""One machine trains, the room reuses: the lesson pack exported where the networks trained,
imported into an empty folder, after which nothing trains; and every unsafe archive refused
before anything is written."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from ctlib.cli import main
from ctlib.config import Runtime
from ctlib.cv import run_cv
from ctlib.notebook.folders import results_dir
from ctlib.notebook.mode import get_mode
from ctlib.ops.lessonpack import (
    PACK_INDEX,
    LessonPackError,
    export_lesson_pack,
    import_lesson_pack,
)
from ctlib.train import TrainConfig

QUICK = get_mode("quick", gpu=False)
TINY = TrainConfig(arch="shufflenet", epochs=1, batch_size=8, canvas=(64, 48), pretrained=False)


@pytest.fixture
def trained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, synth) -> Path:  # noqa: ANN001
    """One tiny finished fold in the quick results folder of machine A; returns its run."""
    monkeypatch.setenv("CTLIB_OUTPUT_DIR", str(tmp_path / "machine-a"))
    monkeypatch.delenv("CTLIB_RUNS_DIR", raising=False)
    torch.manual_seed(0)
    run_cv(synth, TINY, runtime=Runtime(device="cpu"), protocol="patient", only_folds=[0],
           n_folds=2, out=results_dir(QUICK, TINY), progress=False)  # fmt: skip
    return results_dir(QUICK, TINY) / synth.name / "patient"


def test_a_pack_moves_finished_folds_and_nothing_trains_after(
    trained: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    synth,  # noqa: ANN001
) -> None:
    pack = tmp_path / "lessons.zip"
    files = export_lesson_pack(pack, QUICK, folders=[trained])
    assert any(name.endswith("fold0/model.pt") for name in files)
    assert not any(name.endswith(("checkpoint.pt", "train.lock")) for name in files)
    monkeypatch.setenv("CTLIB_OUTPUT_DIR", str(tmp_path / "machine-b"))  # an empty laptop
    added = import_lesson_pack(pack, QUICK)
    fold = results_dir(QUICK, TINY) / synth.name / "patient" / "shufflenet-scratch" / "fold0"
    assert added == [fold] and (fold / "metrics.json").is_file()
    assert (fold / "model.pt").read_bytes() == (
        trained / "shufflenet-scratch" / "fold0" / "model.pt"
    ).read_bytes()

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a fold from the pack was trained again")

    monkeypatch.setattr("ctlib.cv.fit", no_training)
    run_cv(synth, TINY, runtime=Runtime(device="cpu"), protocol="patient", only_folds=[0],
           n_folds=2, out=results_dir(QUICK, TINY), progress=False)  # fmt: skip
    assert import_lesson_pack(pack, QUICK) == []  # a second import adds nothing


def _rewrite(pack: Path, out: Path, change) -> Path:  # noqa: ANN001
    """A copy of ``pack`` with its members and index passed through ``change``."""
    with zipfile.ZipFile(pack) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    index = json.loads(members.pop(PACK_INDEX))
    change(members, index)
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.writestr(PACK_INDEX, json.dumps(index))
    return out


def test_an_altered_or_unsafe_pack_is_refused_before_anything_is_written(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = tmp_path / "lessons.zip"
    export_lesson_pack(pack, QUICK, folders=[trained])
    monkeypatch.setenv("CTLIB_OUTPUT_DIR", str(tmp_path / "machine-b"))

    def altered(members: dict, index: dict) -> None:
        name = next(n for n in members if n.endswith("model.pt"))
        members[name] = members[name][:-1] + bytes([members[name][-1] ^ 1])

    def escaping(members: dict, index: dict) -> None:
        members["../../evil.py"] = b"print('pwned')"
        index["files"]["../../evil.py"] = "0" * 64

    def unlisted(members: dict, index: dict) -> None:
        members["extra.pt"] = b"x"

    def other_mode(members: dict, index: dict) -> None:
        index["mode"] = "full"

    for change, message in ((altered, "differs from its recorded SHA-256"),
                            (escaping, "would land outside the runs folder"),
                            (unlisted, "'extra.pt' is not in its pack.json"),
                            (other_mode, "full-mode networks, this is quick mode")):  # fmt: skip
        bad = _rewrite(pack, tmp_path / f"{change.__name__}.zip", change)
        with pytest.raises(LessonPackError, match=message):
            import_lesson_pack(bad, QUICK)
        leftovers = [p for p in results_dir(QUICK).rglob("*") if p.is_file()]
        assert leftovers == [], (change.__name__, leftovers)
    assert not (tmp_path / "evil.py").exists()


def test_the_command_line_packs_and_refuses_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("CTLIB_OUTPUT_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("CTLIB_QUICK", "1")
    with pytest.raises(FileNotFoundError, match="prepare-workshop --no-rehearse"):
        export_lesson_pack(tmp_path / "none.zip", QUICK)
    (tmp_path / "junk.zip").write_text("not a zip")
    assert main(["lesson-pack", "import", str(tmp_path / "junk.zip")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Cannot import") and "not a readable zip" in err
