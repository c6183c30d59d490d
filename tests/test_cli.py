"""The command line: the quick main job, data set listing, verification exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ctlib.__main__ import build_parser, main


def test_quickstart_writes_the_canvas_figure(tmp_path: Path) -> None:
    assert main(["quickstart", "--out", str(tmp_path), "-q"]) == 0
    figure = tmp_path / "canvases_synthetic.png"
    with Image.open(figure) as image:
        assert image.width > 800 and image.height > 300


def test_help_names_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for command in ("datasets", "verify", "download", "canvases", "quickstart"):
        assert command in text


def test_unknown_dataset_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["canvases", "--dataset", "covid-ct", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'covid19-ct'" in capsys.readouterr().err


@pytest.mark.realdata
def test_verify_and_datasets_on_real_data(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "covid19-ct", "--root", str(data_root), "-q"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["datasets", "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "found, 746 images" in out and "found, 2481 images" in out


def test_verify_missing_data_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "covid19-ct", "--root", str(tmp_path), "-q"]) == 2
    assert "not found" in capsys.readouterr().err
