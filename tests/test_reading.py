"""Lesson 01 shows real CT without a download: the reading examples (what COVID-19 looks like)
and the committed figures rendered from the real data sets."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from ctlib.data import DataError, read_manifest
from ctlib.data.reading import READING_EXAMPLES, reading_examples
from ctlib.notebook import committed_root, show_committed_figure

ROOT = Path(__file__).resolve().parent.parent
LESSON = ROOT / "notebooks" / "01_data_exploration.ipynb"


def test_the_reading_examples_are_images_of_their_data_sets_with_their_labels() -> None:
    table = reading_examples()
    assert {"ground-glass opacity", "consolidation"} <= set(table["finding"])
    assert set(table["label"]) == {0, 1}  # both classes: non-COVID is shown too
    for row in table.itertuples():
        manifest = read_manifest(row.dataset).set_index("relpath")
        assert manifest.loc[row.relpath, "label"] == row.label
        assert row.where.strip(), row.relpath


def test_a_reading_example_that_is_not_in_the_manifest_is_refused(tmp_path: Path) -> None:
    table = pd.read_csv(READING_EXAMPLES)
    bad = tmp_path / "examples.csv"
    table.assign(relpath=table["relpath"].where(table.index > 0, "COVID/none.png")).to_csv(bad)
    with pytest.raises(DataError, match=r"examples\.csv.*'COVID/none\.png' is not an image"):
        reading_examples(bad)


def test_a_reading_example_with_the_wrong_label_is_refused(tmp_path: Path) -> None:
    table = pd.read_csv(READING_EXAMPLES)
    bad = tmp_path / "examples.csv"
    table.assign(label=1 - table["label"]).to_csv(bad, index=False)
    with pytest.raises(DataError, match="labelled"):
        reading_examples(bad)
    table.drop(columns="where").to_csv(bad, index=False)
    with pytest.raises(DataError, match="lacks the column"):
        reading_examples(bad)


def _committed_names() -> list[str]:
    """Every figure notebook 01 shows with show_committed_figure, the f-strings expanded over
    the parameters cell's DATASETS."""
    nb = nbformat.read(LESSON, as_version=4)
    parameters = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    datasets = re.search(r"DATASETS = (\[.*?\])", parameters.source)
    assert datasets, "the parameters cell names no DATASETS"
    names = []
    for cell in nb.cells:
        for literal in re.findall(r"show_committed_figure\(f?\"([^\"]+)\"", cell.source):
            names += [literal.format(name=n) for n in eval(datasets.group(1))]  # noqa: S307
    return sorted(set(names))


def test_every_figure_lesson_01_shows_without_the_data_is_committed() -> None:
    names = _committed_names()
    assert len(names) >= 6, names  # examples and canvases per set, augmentations, reading
    root = committed_root()
    assert root is not None
    missing = [n for n in names if not (root / "figures" / n).is_file()]
    assert not missing, f"render them: CTLIB_QUICK=0 bash scripts/run_notebooks.sh {LESSON.name}"


def test_show_committed_figure_shows_a_committed_figure_and_skips_a_missing_one(capsys) -> None:
    assert (
        show_committed_figure("01_reading.png") == committed_root() / "figures" / "01_reading.png"
    )
    assert "real data" in capsys.readouterr().out
    assert show_committed_figure("no_such_figure.png") is None
    assert "no_such_figure.png" in capsys.readouterr().out
