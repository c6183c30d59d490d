"""The notebooks' hygiene and anatomy, and the helpers they call (ctlib.notebook and others).

nbval runs the notebooks themselves (``notebooks/``, see pyproject.toml); these tests check
what a committed notebook must look like: no outputs except checked cells, the same opening
in every notebook (title, Colab badge, run times, set-up, one ``parameters`` cell, one
imports cell), exercises and key points at the end, short cells.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from ctlib.notebook import (
    Mode,
    ensure_results,
    get_dataset,
    get_mode,
    output_dir,
    results_dir,
)
from ctlib.notebook.colab import repository
from ctlib.ops.notebooks.colab import WIDGET_NOTEBOOKS, badge, setup_cell
from ctlib.ops.notebooks.run import run_notebooks
from ctlib.ops.notebooks.strip import is_checked, strip_outputs
from ctlib.recipes import recipe, recipe_runtime, recipe_table, schedule_table
from ctlib.study.describe import overview, padding_stats
from ctlib.study.paper import (
    canvas_columns,
)
from ctlib.train import TrainConfig
from ctlib.widgets import SliceViewer

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_LINES = 15
QUICK = Mode(True, "test", gpu=False)
FULL = Mode(False, "test", gpu=True)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _python(source: str) -> ast.Module:
    """Parse a cell as Python after IPython's transforms (``!cmd``, ``%magic``)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return ast.parse(TransformerManager().transform_cell(source))


ids = [p.name for p in NOTEBOOKS]


# --------------------------------------------------------------------------- hygiene
def test_the_numbered_notebooks_exist() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01_data_exploration.ipynb", "02_finetune.ipynb", "03_cross_validation.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_name_format_and_kernelspec(path: Path) -> None:
    assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", path.name), (
        "notebooks are named NN_snake_case.ipynb"
    )
    nb = _read(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        "papermill needs a kernelspec"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_without_outputs_except_checked_cells(path: Path) -> None:
    nb = _read(path)
    for number, cell in enumerate(_code(nb), start=1):
        if is_checked(cell.source):
            assert cell.outputs, (
                f"checked cell {number} needs its reference output (python -m ctlib.notebook strip)"
            )
            assert cell.execution_count == number, "strip_outputs numbers checked cells by position"
        else:
            assert cell.outputs == [], (
                f"{path.name}: code cell {number} carries outputs; strip them with "
                "`python -m ctlib.notebook strip`"
            )
            assert cell.execution_count is None, (
                f"{path.name}: code cell {number} has an execution count"
            )
    assert "widgets" not in nb.metadata and "papermill" not in nb.metadata


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_anatomy(path: Path) -> None:
    nb = _read(path)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "a title first"
    assert badge(repository(ROOT / "pyproject.toml"), path.name) in first.source, (
        "an Open-in-Colab badge to itself, or why there is none (python -m ctlib.notebook colab)"
    )
    assert "What you will learn" in first.source
    assert re.search(r"Run time.*quick.*full", first.source, re.S), (
        "expected run times, quick and full"
    )
    assert "CTLIB_QUICK" in first.source and "MODE" in first.source, "say how the mode is chosen"
    setup, parameters, imports = _code(nb)[:3]
    assert setup.source == setup_cell(
        repository(ROOT / "pyproject.toml"), widgets=path.name in WIDGET_NOTEBOOKS
    ), "the set-up cell as python -m ctlib.notebook colab writes it"
    assert re.search(r"^MODE = None\b", parameters.source, re.M), "the lesson's own mode choice"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [parameters], "exactly one cell tagged `parameters`, the second code cell"
    assert all(
        isinstance(node, (ast.Import, ast.ImportFrom)) for node in _python(imports.source).body
    ), "the third code cell imports, and only imports"
    # a worked solution imports what it adds, so that it reads on its own
    others = [
        c
        for c in _code(nb)[3:]
        if re.search(r"^\s*(from \S+ )?import ", c.source, re.M)
        and "solution" not in c.metadata.get("tags", [])
    ]
    assert not others, "one imports cell: no imports further down (solutions apart)"
    headings = [
        c.source.splitlines()[0]
        for c in nb.cells
        if c.cell_type == "markdown" and c.source.startswith("#")
    ]
    assert headings[-2:] == ["## Exercises", "## Key points"], (
        "ends with exercises, then key points"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_parameters_cell_is_plain_literals(path: Path) -> None:
    """papermill overrides parameters by injecting literals: keep them literal, upper case."""
    parameters = _code(_read(path))[1]
    for node in _python(parameters.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.unparse(node)
        target = node.targets[0]
        assert isinstance(target, ast.Name) and target.id.isupper(), ast.unparse(node)
        ast.literal_eval(node.value)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_cells_narrate_and_ctlib_computes(path: Path) -> None:
    for number, cell in enumerate(_code(_read(path)), start=1):
        if number == 1:  # the set-up cell runs before ctlib is installed: it cannot call it
            continue  # (it is written by python -m ctlib.notebook colab, folded, and tested)
        lines = cell.source.splitlines()
        assert len(lines) <= MAX_LINES, (
            f"{path.name}: code cell {number} has {len(lines)} lines; move code into ctlib"
        )
        for node in ast.walk(_python(cell.source)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert node.end_lineno - node.lineno < 3, (
                    f"{path.name}: cell {number} defines {node.name}"
                )
        assert "sys.path" not in cell.source, "the kit is installed, never put on sys.path"


def test_checked_marker_follows_nbval() -> None:
    assert is_checked("# NBVAL_CHECK_OUTPUT\nprint(1)")
    assert is_checked("x = 1\n  #  NBVAL_CHECK_OUTPUT  \n")
    assert not is_checked("# NBVAL_CHECK_OUTPUT: with words after it nbval ignores the marker")
    assert not is_checked("print('# NBVAL_CHECK_OUTPUT')")


def test_strip_outputs_keeps_only_checked_cells(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "print(1)",
                execution_count=3,
                outputs=[nbformat.v4.new_output("stream", text="1\n")],
            ),
            nbformat.v4.new_code_cell(
                "# NBVAL_CHECK_OUTPUT\nprint(2)",
                execution_count=9,
                outputs=[nbformat.v4.new_output("stream", text="old\n")],
            ),
        ]
    )
    run = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(
                "# NBVAL_CHECK_OUTPUT\nprint(2)",
                execution_count=1,
                outputs=[nbformat.v4.new_output("stream", text="2\n")],
            ),
        ]
    )
    path, executed = tmp_path / "a.ipynb", tmp_path / "run.ipynb"
    nbformat.write(nb, path)
    nbformat.write(run, executed)
    assert strip_outputs(path, executed) == 1
    cells = _read(path).cells
    assert cells[0].outputs == [] and cells[0].execution_count is None
    assert cells[1].outputs[0]["text"] == "2\n" and cells[1].execution_count == 2
    text = path.read_text()
    assert strip_outputs(path) == 1 and path.read_text() == text, "idempotent"


# --------------------------------------------------------------------------- mode
@pytest.mark.parametrize(
    ("value", "gpu", "quick"),
    [
        ("1", False, True),
        ("1", True, True),
        ("true", True, True),
        ("YES", True, True),
        ("on", True, True),
        ("0", False, False),
        ("0", True, False),
        ("false", False, False),
        ("No", True, False),
        ("", False, True),
        ("", True, True),
        (None, False, True),
        (None, True, True),
        ("  ", True, True),
    ],
)
def test_mode_from_the_environment(value: str | None, gpu: bool, quick: bool) -> None:
    environ = {} if value is None else {"CTLIB_QUICK": value}
    mode = get_mode(None, environ, gpu=gpu)
    assert mode.quick is quick and mode.name == ("quick" if quick else "full")
    assert ("CTLIB_QUICK" in mode.reason) and mode.name in str(mode)
    assert "CTLIB_QUICK=" in str(mode) and 'MODE = "' in str(mode), "how to switch"


def test_mode_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(ValueError, match="CTLIB_QUICK='maybe'.*CTLIB_QUICK=1"):
        get_mode(None, {"CTLIB_QUICK": "maybe"}, gpu=False)
    with pytest.raises(ValueError, match="MODE = 'fast' is not understood"):
        get_mode("fast", {}, gpu=False)


def test_the_lesson_decides_its_mode_not_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a Colab GPU runtime
    mode = get_mode(None, {}, quick_time="2 min", full_time="an hour on a GPU")
    assert mode.quick and "GPU runtime too" in mode.reason
    assert "about 2 min" in str(mode) and "an hour on a GPU" in str(mode)
    assert not get_mode("full", {}).quick, "the learner chooses full"
    assert get_mode("quick", {"CTLIB_QUICK": "0"}).quick, "the parameters cell comes first"
    assert not get_mode(None, {"CTLIB_QUICK": "0"}).quick
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "far slower" in str(get_mode("full", {}))


def test_output_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTLIB_OUTPUT_DIR", str(tmp_path / "out"))
    assert (
        output_dir("figures") == tmp_path / "out" / "figures"
        and (tmp_path / "out" / "figures").is_dir()
    )
    assert results_dir(QUICK) == tmp_path / "out" / "runs"
    assert results_dir(FULL) == ROOT / "runs", "full mode shares the CLI's results folder"
    monkeypatch.delenv("CTLIB_OUTPUT_DIR")
    assert output_dir(create=False) == ROOT / "outputs" / "notebooks"
    assert "outputs/" in (ROOT / ".gitignore").read_text().splitlines()


# --------------------------------------------------------------------------- recipe
def test_full_mode_is_the_papers_recipe() -> None:
    config = recipe("lesson", mode=FULL)
    assert config == TrainConfig(arch="resnet101")
    assert (recipe_table(config)["differs"] == "").all()
    assert recipe("lesson", "densenet201", mode=FULL).input_size == (349, 253)


def test_quick_mode_says_where_it_deviates() -> None:
    config = recipe("lesson", mode=QUICK)
    device = recipe_runtime("lesson", mode=QUICK).device
    assert (config.arch, config.epochs, config.lr, device) == (
        "efficientnet_lite0",
        5,
        1e-2,
        "cpu",
    )
    width, height = config.input_size
    assert width == 128 and abs(width / height - 349 / 253) < 0.02, "Table 1's shape, smaller"
    table = recipe_table(config)
    differs = set(table.index[table["differs"] != ""])
    assert {
        "architecture",
        "epochs",
        "initial learning rate",
        "canvas (w × h)",
        "batch size",
    } <= differs
    assert "weight decay" not in differs and "optimizer" not in differs


def test_every_override_of_a_notebook_recipe_is_taken() -> None:
    for mode in (QUICK, FULL):
        config = recipe("lesson", mode=mode, epochs=8, batch_size=4, canvas_width=96, seed=3)
        assert (config.epochs, config.batch_size, config.input_size[0], config.seed) == (
            8,
            4,
            96,
            3,
        )


def test_another_learning_rate_keeps_the_schedules_ratios() -> None:
    paper = TrainConfig()
    for mode in (QUICK, FULL):
        config = recipe("lesson", mode=mode, lr=6e-4)
        assert config.lr == 6e-4
        np.testing.assert_allclose(
            np.array(config.lr_values) / config.lr, np.array(paper.lr_values) / paper.lr
        )
    assert recipe("lesson", mode=FULL, lr=3e-4).lr_values == paper.lr_values


def test_schedule_table_of_the_paper() -> None:
    table = schedule_table(TrainConfig())
    assert table.index.tolist() == ["1–50", "51–70", "71–80", "81–90", "91–100"]
    assert table["learning rate"].tolist() == ["0.0003", "0.0001", "3e-05", "1e-05", "3e-06"]
    short = schedule_table(TrainConfig(epochs=4))
    assert short.index.tolist() == ["1–2", "3", "4"]


# --------------------------------------------------------------------------- data helpers
def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": [1, 1, 0, 0, 0],
            "patient_id": ["a", "a", "b", "c", "c"],
            "width": [200, 300, 400, 100, 100],
            "height": [100, 100, 200, 100, 50],
        }
    )


def test_overview_counts_images_and_patients() -> None:
    table = overview({"toy": _frame(), "anon": _frame().assign(patient_id=pd.NA)})
    assert (
        table.loc[("toy", "COVID"), "images"] == 2
        and table.loc[("toy", "COVID"), "patients"] == "1"
    )
    assert table.loc[("toy", "non-COVID"), "patients"] == "2"
    assert table.loc[("toy", "non-COVID"), "width"] == "100–400"
    assert table.loc[("toy", "COVID"), "aspect median"] == 2.5
    assert table.loc[("anon", "COVID"), "patients"] == "not published"


def test_padding_stats_against_hand_computed_cases() -> None:
    frame = pd.DataFrame({"width": [200], "height": [100], "label": [1]})
    stats = padding_stats({"one": frame}, {"square": (200, 200), "wide": (200, 100)}, square=224)
    assert stats.loc["one", "padding 200×200"] == "50%"  # 200×100 on 200×200: half is padding
    assert stats.loc["one", "padding 200×100"] == "0%"
    assert stats.loc["one", "squashed 224×224"] == "50%"  # aspect 2 -> 1: squashed to half


def test_canvas_columns_group_table1() -> None:
    columns = canvas_columns()
    assert len(columns) == 5 and columns["ResNets, ResNeXts, DenseNets"] == (349, 253)
    assert columns["InceptionV3"] == (331, 267)


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory: pytest.TempPathFactory):  # -> CTDataset
    from ctlib.data import load_dataset
    from ctlib.data.synthetic import SyntheticConfig

    return load_dataset(
        "synthetic",
        tmp_path_factory.mktemp("synth"),
        synthetic=SyntheticConfig(n_patients=6),
        progress=False,
    )


def test_get_dataset_subsamples_by_label_and_renames() -> None:
    full = get_dataset("synthetic")
    small = get_dataset("synthetic", max_images=20, seed=1)
    assert len(small) == 20 and small.name == "synthetic-20"
    assert set(small.frame["label"]) == {0, 1}
    assert set(small.frame["path"]) <= set(full.frame["path"])
    assert get_dataset("synthetic", max_images=20, seed=1).frame.equals(small.frame), (
        "deterministic"
    )
    assert get_dataset("synthetic", max_images=10_000) is not None


def test_get_dataset_missing_real_set_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctlib.errors import DataError

    monkeypatch.setenv("CTLIB_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="download"):
        get_dataset("covid19-ct")


def test_slice_viewer_callbacks_without_a_browser(tiny_synthetic) -> None:
    viewer = SliceViewer(tiny_synthetic)
    first = bytes(viewer.image.value)
    assert first.startswith(b"\x89PNG") and "as stored" in viewer.caption.value
    viewer.menu.value = "ResNets, ResNeXts, DenseNets"
    assert bytes(viewer.image.value) != first and "349×253 canvas" in viewer.caption.value
    picture, _ = viewer.render(0, "ResNets, ResNeXts, DenseNets")
    assert picture.shape == (253, 349)
    squashed, caption = viewer.render(0, viewer.options[1])
    assert squashed.shape == (224, 224) and "aspect ratio lost" in caption
    before = bytes(viewer.image.value)
    viewer.slider.value = len(tiny_synthetic) - 1
    assert bytes(viewer.image.value) != before


# --------------------------------------------------------------------------- results
def test_run_notebooks_needs_at_least_one_worker(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="workers must be at least 1"):
        run_notebooks([tmp_path / "a.ipynb"], tmp_path, workers=0)


def test_full_mode_never_trains_without_results(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m ctlib cv --arch resnet101"):
        ensure_results(tmp_path, FULL)


# --------------------------------------------------------------------------- running
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_run_notebooks_reports_time_and_errors(tmp_path: Path, workers: int) -> None:
    good = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("X = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("print(X * 2)"),
        ]
    )
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 / 0")])
    for nb in (good, bad):
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
    nbformat.write(good, tmp_path / "good.ipynb")
    nbformat.write(bad, tmp_path / "bad.ipynb")
    report = run_notebooks(
        [tmp_path / "good.ipynb", tmp_path / "bad.ipynb"],
        tmp_path / "out",
        parameters={"X": 21},
        workers=workers,
    )
    assert report["notebook"].tolist() == ["good.ipynb", "bad.ipynb"]  # in the order given
    assert report["error"].tolist()[0] == "" and "ZeroDivisionError" in report["error"].tolist()[1]
    executed = json.loads((tmp_path / "out" / "good.ipynb").read_text())
    assert "42" in "".join(executed["cells"][-1]["outputs"][0]["text"])


def test_one_setting_moves_every_run_e_g_to_google_drive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctlib.cli import build_parser

    monkeypatch.setenv("CTLIB_RUNS_DIR", str(tmp_path / "drive"))
    assert results_dir(QUICK) == tmp_path / "drive" / "quick"
    assert results_dir(FULL) == tmp_path / "drive"
    assert results_dir(QUICK, recipe("lesson", mode=QUICK)).parent == tmp_path / "drive" / "quick"
    for command in (["cv"], ["train"], ["sweep"]):
        assert build_parser().parse_args(command).out == str(tmp_path / "drive")
