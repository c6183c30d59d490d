"""The static pages' alt text (``ctlib.ops.notebooks.pages``): every image says what it shows,
from the figure's own title, a ``# caption:`` line, the cell's leading comment or the section
it sits in; never empty, never just "figure"."""

from __future__ import annotations

import base64
import io
import re
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import nbformat
import pytest
from IPython.core.formatters import DisplayFormatter
from IPython.core.pylabtools import print_figure
from matplotlib.figure import Figure

from ctlib.ops.notebooks.pages import (
    build_pages,
    caption_figures,
    figure_caption,
    fold_solutions,
    image_alt_texts,
)

ROOT = Path(__file__).resolve().parents[1]


def _png(seed: int) -> str:
    """A small PNG (base64), different for each seed."""
    figure, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, seed + 1])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=20)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode() + "\n"


def _image(seed: int, alt: str | None = None) -> nbformat.NotebookNode:
    metadata = {"image/png": {"alt": alt}} if alt is not None else {}
    return nbformat.v4.new_output(
        "display_data", data={"image/png": _png(seed), "text/plain": "<Figure>"}, metadata=metadata
    )


def _lesson() -> nbformat.NotebookNode:
    """An executed notebook with an image of each kind of caption."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    cells = [
        md("# 09 · A tiny lesson\n\nIt draws lines."),
        md("## 1 · Sizes and aspect ratios\n\nEach slice has its own size. More text follows."),
        code("keep_figure(plot_sizes(frames))", outputs=[_image(0, "Image sizes per data set")]),
        code("# caption: two lines that cross\nplt.plot([0, 1])", outputs=[_image(1)]),
        code("# the same, reversed\nplt.plot([1, 0])", outputs=[_image(2)]),
        code("plt.plot([1, 1])", outputs=[_image(3), _image(4)]),
        code("plt.plot([2, 1])", outputs=[_image(5, "figure")]),
        code(
            "# Solution 1: the line, steeper\nplt.plot([0, 9])",
            outputs=[_image(6)],
            metadata={"tags": ["solution"]},
        ),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}  # fmt: skip
    return notebook


def test_each_image_says_what_it_shows() -> None:
    alts = image_alt_texts(_lesson())
    assert alts == {
        (2, 0): "Image sizes per data set",  # the figure's own title
        (3, 0): "two lines that cross",  # a # caption: line
        (4, 0): "the same, reversed",  # the cell's leading comment
        # no words of its own: the section's heading and first sentence, numbered
        (5, 0): "Sizes and aspect ratios — Each slice has its own size. (figure 1 of 2)",
        (5, 1): "Sizes and aspect ratios — Each slice has its own size. (figure 2 of 2)",
        (6, 0): "Sizes and aspect ratios — Each slice has its own size.",  # "figure" says nothing
        (7, 0): "Solution 1: the line, steeper",
    }


def test_the_page_carries_the_alt_texts_also_in_folded_solutions(tmp_path: Path) -> None:
    source = tmp_path / "09_tiny.ipynb"
    nbformat.write(_lesson(), source)
    page, index = build_pages([source], tmp_path / "pages", execute=False)
    body = page.read_text()
    alts = re.findall(r'<img[^>]*\balt="([^"]*)"', body)
    assert len(re.findall(r"<img\b", body)) == len(alts) == 7
    assert "Image sizes per data set" in alts and "two lines that cross" in alts
    assert "Solution 1: the line, steeper" in alts  # inside the folded solution
    assert all(alt.strip() and alt.strip().lower() != "figure" for alt in alts), alts
    assert 'alt="figure"' not in body


def test_a_figure_is_captioned_by_its_titles() -> None:
    figure, (left, right) = plt.subplots(1, 2)
    figure.suptitle("Test accuracy by protocol\nCOVID19-CT")
    left.set_title("image-level")
    right.set_title("patient-level")
    right.set_title("b", loc="left")
    assert (
        figure_caption(figure)
        == "Test accuracy by protocol COVID19-CT; image-level; b; patient-level"
    )
    plt.close(figure)
    bare = Figure()
    bare.add_subplot().plot([0, 1])
    assert figure_caption(bare) == ""


def test_the_kernel_records_each_figures_caption_with_its_image() -> None:
    formatter = DisplayFormatter()
    formatter.formatters["image/png"].for_type(
        Figure, partial(print_figure, fmt="png", base64=True)
    )  # what matplotlib's inline backend registers in a kernel
    shell = SimpleNamespace(display_formatter=formatter)
    assert caption_figures(shell)
    figure, ax = plt.subplots()
    ax.set_title("Reliability of P(COVID)")
    data, metadata = formatter.format(figure)
    assert data["image/png"] and metadata["image/png"] == {"alt": "Reliability of P(COVID)"}
    plain, _ = plt.subplots()
    data, metadata = formatter.format(plain)
    assert data["image/png"] and "image/png" not in metadata  # nothing to say: no alt recorded
    plt.close("all")
    assert not caption_figures(SimpleNamespace(display_formatter=DisplayFormatter()))
    assert not caption_figures(None)


def test_folding_without_alt_texts_computes_them() -> None:
    notebook = _lesson()
    assert fold_solutions(notebook) == 1
    assert 'alt="Solution 1: the line, steeper"' in notebook.cells[-1].source


@pytest.mark.slow
def test_an_executed_page_takes_the_figure_titles_from_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this checkout's ctlib
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    notebook = nbformat.v4.new_notebook(cells=[
        md("# 09 · A tiny lesson\n\nIt draws two lines."),
        code("import matplotlib.pyplot as plt\n\nfigure, ax = plt.subplots()\n"
             "ax.plot([0, 1])\nfigure.suptitle('Image sizes of both data sets');"),
        code("figure, ax = plt.subplots()\nax.plot([1, 0]);"),
    ])  # fmt: skip
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}  # fmt: skip
    source = tmp_path / "09_tiny.ipynb"
    nbformat.write(notebook, source)
    page, _ = build_pages([source], tmp_path / "pages")
    executed = nbformat.read(tmp_path / "pages" / "executed" / source.name, 4)
    (titled,) = executed.cells[1].outputs
    assert titled.metadata["image/png"]["alt"] == "Image sizes of both data sets"
    alts = re.findall(r'<img[^>]*\balt="([^"]*)"', page.read_text())
    assert alts == ["Image sizes of both data sets", "A tiny lesson — It draws two lines."]
