"""Static HTML pages of the notebooks, executed in quick mode, for readers without a kernel:
``python -m ctlib.notebook pages --out build/pages`` (one self-contained page per notebook,
worked solutions folded, an ``index.html``; see docs/DEVELOPERS.md, *Notebook tools*).
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ctlib.notebook.mode import QUICK_ENV
from ctlib.ops.notebooks.run import run_notebooks

__all__ = ["build_pages", "fold_solutions"]

_SOLUTION = "solution"


def _pre(text: str, css: str = "") -> str:
    """Preformatted text on one line (newlines as entities): a blank line would end the HTML
    block of the markdown cell that holds it."""
    escaped = html.escape(text).replace("\n", "&#10;")
    return f"<pre{f' class={css!r}' if css else ''}>{escaped}</pre>"


def _output_html(output: Any) -> str:
    """One output of a solution cell as HTML (images embedded, text as it was printed)."""
    kind = output.get("output_type")
    if kind == "stream":
        return _pre(output.get("text", ""))
    if kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        if "image/png" in data:
            png = data["image/png"]
            png = png if isinstance(png, str) else base64.b64encode(png).decode()
            return f'<img src="data:image/png;base64,{png.strip()}" alt="figure">'
        if "text/html" in data:
            return (
                data["text/html"]
                if isinstance(data["text/html"], str)
                else "".join(data["text/html"])
            )
        if "text/plain" in data:
            return f"<pre>{html.escape(str(data['text/plain']))}</pre>"
    if kind == "error":
        return _pre(f"{output.get('ename', '')}: {output.get('evalue', '')}", "error")
    return ""


def fold_solutions(notebook: Any) -> int:
    """Turn each solution cell of an executed notebook into a folded ``<details>`` block (a
    markdown cell holding the code and its outputs as HTML). Returns the number folded."""
    import nbformat  # lazy: in the notebooks extra, not the core dependencies

    folded = 0
    cells = []
    for cell in notebook.cells:
        if _SOLUTION not in cell.metadata.get("tags", []):
            cells.append(cell)
            continue
        folded += 1
        lines = cell.source.strip().splitlines() or [""]
        title = lines[0].lstrip("#").strip() or "Solution"
        if cell.cell_type == "code":
            body = _pre(cell.source, "solution-code") + "".join(
                _output_html(o) for o in cell.get("outputs", [])
            )
            summary = f"<summary>{html.escape(title)}</summary>"
            block = f"<details class='solution'>{summary}\n{body}\n</details>"
        else:  # a written answer: markdown inside the fold (blank lines keep it markdown)
            block = (
                f"<details class='solution'><summary>{html.escape(title)}</summary>\n\n"
                f"{cell.source}\n\n</details>"
            )
        cells.append(nbformat.v4.new_markdown_cell(block))
    notebook.cells = cells
    return folded


def build_pages(
    notebooks: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    execute: bool = True,
) -> list[Path]:
    """Run ``notebooks`` in quick mode and write each as a static HTML page into ``out``.

    Args:
        notebooks: the notebooks (e.g. ``notebooks/[0-9][0-9]_*.ipynb``).
        out: the folder for ``<name>.html`` and ``index.html``; the executed copies go to
            ``out/executed/``.
        execute: run them first (False: convert them as they are, e.g. already executed).

    Returns:
        The pages written, ``index.html`` last.

    Raises:
        RuntimeError: a notebook failed to run; its error is named (a page with an error
            cell is never written as if it were fine).
    """
    import nbformat  # lazy: in the notebooks extra, not the core dependencies
    from nbconvert import HTMLExporter  # lazy: as above

    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in notebooks]
    if execute:
        previous = os.environ.get(QUICK_ENV)
        os.environ[QUICK_ENV] = "1"  # pages show the quick lesson, on any machine
        try:
            report = run_notebooks(paths, target / "executed")
        finally:
            if previous is None:
                os.environ.pop(QUICK_ENV, None)
            else:
                os.environ[QUICK_ENV] = previous
        failed = report[report["error"] != ""]
        if len(failed):
            raise RuntimeError(
                "Notebooks failed, no pages written for them: "
                + "; ".join(f"{r.notebook}: {r.error}" for r in failed.itertuples())
            )
        sources = [Path(p) for p in report["output"]]
    else:
        sources = paths
    exporter = HTMLExporter(template_name="lab")
    pages = []
    for source in sources:
        notebook = nbformat.read(source, as_version=4)
        fold_solutions(notebook)
        body, _ = exporter.from_notebook_node(notebook)
        page = target / f"{source.stem}.html"
        page.write_text(body, encoding="utf-8")
        pages.append(page)
    links = "\n".join(f'<li><a href="{p.name}">{html.escape(p.stem)}</a></li>' for p in pages)
    index = target / "index.html"
    index.write_text(
        "<!doctype html><meta charset='utf-8'><title>ctlib notebooks</title>"
        "<h1>ctlib: the notebooks, executed in quick mode</h1>"
        f"<ul>\n{links}\n</ul>\n",
        encoding="utf-8",
    )
    return [*pages, index]
