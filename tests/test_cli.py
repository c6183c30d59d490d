"""The command line: the quick main job, data set listing, verification exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from ctlib.cli import build_parser, main


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


def test_unknown_dataset_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["canvases", "--dataset", "covid-ct", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'covid19-ct'" in capsys.readouterr().err


@pytest.mark.realdata
def test_verify_and_datasets_on_real_data(
    data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "covid19-ct", "--root", str(data_root), "-q"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["datasets", "--root", str(data_root)]) == 0
    out = capsys.readouterr().out
    assert "found, 746 images" in out and "found, 2481 images" in out


def test_verify_missing_data_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "covid19-ct", "--root", str(tmp_path), "-q"]) == 2
    assert "not found" in capsys.readouterr().err


def test_quick_cv_through_the_cli_then_table_and_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The engine's done-when: a quick CV via the CLI gives Table 2 and Fig. 9 outputs."""
    out = tmp_path / "runs"
    assert (
        main(
            [
                "cv",
                "--quick",
                "--epochs",
                "1",
                "--folds",
                "2",
                "--canvas",
                "96",
                "64",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert "results in" in capsys.readouterr().out
    fold0 = out / "synthetic" / "paper" / "efficientnet_lite0" / "fold0"
    assert (fold0 / "predictions.csv").is_file() and (fold0 / "metrics.json").is_file()
    assert (
        main(
            [
                "table",
                str(out),
                "--markdown",
                "--csv",
                str(tmp_path / "t2.csv"),
                "--figures",
                str(tmp_path / "fig"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| synthetic | paper | efficientnet_lite0 |" in text and " ± " in text
    assert (tmp_path / "fig" / "confusion_matrices.png").is_file()
    table = (tmp_path / "t2.csv").read_text()
    assert "accuracy" in table and "efficientnet_lite0" in table
    predictions = (fold0 / "predictions.csv").read_text().splitlines()[1:3]
    files = [line.split(",")[0] for line in predictions]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"")
    assert main(["predict", "--checkpoint", str(fold0 / "model.pt"), *files, str(bad), "-q"]) == 0
    text = capsys.readouterr().out
    assert "COVID" in text and "empty" in text


def test_cv_bad_inputs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cv", "--arch", "resnet-18", "--quick", "--out", str(tmp_path)]) == 2
    assert "did you mean 'resnet18'" in capsys.readouterr().err
    assert (
        main(["cv", "--arch", "inceptionv3", "--canvas", "40", "40", "--out", str(tmp_path)]) == 2
    )
    assert "too small" in capsys.readouterr().err


def test_external_protocol_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "runs")
    assert main(["cv", "--protocol", "external", "--quick", "--out", out, "-q"]) == 2
    assert "--test-dataset NAME goes with --protocol external" in capsys.readouterr().err
    assert main(["cv", "--test-dataset", "covid19-ct", "--quick", "--out", out, "-q"]) == 2
    assert "--test-dataset NAME goes with --protocol external" in capsys.readouterr().err
    # the synthetic set tested on itself is refused: external means another source
    assert main(["cv", "--protocol", "external", "--test-dataset", "synthetic", "--quick",
                 "--out", out, "-q"]) == 2  # fmt: skip
    assert "both named 'synthetic'" in capsys.readouterr().err
