"""Static HTML pages of the notebooks, executed in quick mode, for readers without a kernel:
``python -m ctlib.notebook pages --out build/pages`` (one self-contained page per notebook,
worked solutions folded, an ``index.html``; see docs/DEVELOPERS.md, *Notebook tools*).

Every image on a page has alt text a screen reader can read out (:func:`image_alt_texts`): the
figure's own title (the kernel that runs the notebooks records it, :func:`caption_figures`),
else a ``# caption: ...`` line in the cell, else the cell's leading comment, else the section
heading and first sentence of the nearest markdown cell above.
"""

from __future__ import annotations

import base64
import html
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ctlib.notebook.mode import QUICK_ENV
from ctlib.ops.notebooks.run import run_notebooks

__all__ = [
    "CAPTION",
    "build_pages",
    "caption_figures",
    "figure_caption",
    "fold_solutions",
    "image_alt_texts",
]

_SOLUTION = "solution"

#: A code cell's comment that gives its figures their alt text: ``# caption: what it shows``.
CAPTION = "# caption:"

#: the image types a page shows as ``<img>``
_IMAGES = ("image/png", "image/jpeg")
#: alt texts that tell a screen-reader user nothing
_SAYS_NOTHING = {
    "",
    "figure",
    "image",
    "plot",
    "graph",
    "picture",
    "no description has been provided for this image",  # nbconvert's stand-in
}
#: longest alt text, in characters (a screen reader reads all of it, every time)
_ALT_MAX = 300


def _plain(text: str) -> str:
    """Markdown or a figure's text as one plain line: no markup, links as their words."""
    text = re.sub(r"<[^>]+>", " ", text)  # HTML tags
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [words](link), ![alt](src)
    text = re.sub(r"`([^`]*)`", r"\1", text)  # `code`
    text = re.sub(r"\*{1,3}([^*]+)\*{1,3}", r"\1", text)  # *em*, **strong**
    text = re.sub(r"(?<!\w)_{1,2}([^_]+)_{1,2}(?!\w)", r"\1", text)  # _em_, not snake_case
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > _ALT_MAX:
        text = text[: _ALT_MAX - 1].rsplit(" ", 1)[0] + "…"
    return text


def figure_caption(figure: Any) -> str:
    """A matplotlib figure's own words: its suptitle and other figure texts, then its axes'
    titles, as one line (``""`` when it has none).

    Example:
        >>> import matplotlib.pyplot as plt
        >>> figure, ax = plt.subplots(); _ = ax.set_title("Training curve")
        >>> figure_caption(figure)
        'Training curve'
    """
    words: list[str] = []
    texts = [text.get_text() for text in figure.texts]
    texts += [ax.get_title(loc) for ax in figure.axes for loc in ("left", "center", "right")]
    for text in texts:
        line = _plain(text)
        if line and line not in words:
            words.append(line)
    return _plain("; ".join(words))


def caption_figures(shell: Any) -> bool:
    """From now on, every matplotlib figure this IPython shell displays carries its caption
    (:func:`figure_caption`) as ``alt`` in the output's ``image/png`` metadata, which
    :func:`build_pages` writes into the page. Returns whether the shell displays figures as
    PNG at all (no inline backend: nothing to caption).

    Args:
        shell: the IPython shell (``get_ipython()`` in a kernel; None: nothing done).
    """
    if shell is None:
        return False
    import matplotlib  # lazy: the kernel's plotting, only when asked
    import matplotlib.pyplot as plt  # lazy: as above
    from matplotlib.figure import Figure  # lazy: as above

    # load the backend now (pyplot loads it at the first figure): the inline backend
    # registers its PNG printer when loaded, and that printer is the one wrapped below
    plt.switch_backend(matplotlib.get_backend())
    formatter = shell.display_formatter.formatters["image/png"]
    try:
        draw = formatter.lookup_by_type(Figure)
    except KeyError:  # no inline backend: nothing displays figures as PNG here
        return False

    def with_caption(figure: Figure) -> tuple[Any, dict[str, str]] | Any:
        png = draw(figure)
        caption = figure_caption(figure)
        return (png, {"alt": caption}) if caption and png is not None else png

    formatter.for_type(Figure, with_caption)
    return True


#: the kernel start-up file :func:`build_pages` gives the notebooks it runs
_STARTUP = (
    "from ctlib.ops.notebooks.pages import caption_figures\n"
    "caption_figures(get_ipython())  # figures keep their titles as alt text (ctlib pages)\n"
)


def _cell_caption(source: str) -> str:
    """A code cell's own words for its figures: a ``# caption:`` line, else its leading
    comment (``# Solution 4: the first such pair, side by side``)."""
    lines = [line.strip() for line in source.splitlines()]
    for line in lines:
        if line.lower().startswith(CAPTION):
            return _plain(line[len(CAPTION) :])
    first = lines[0] if lines else ""
    if first.startswith("#") and not first.startswith(("#@", "# NBVAL", "# Parameters")):
        return _plain(first.lstrip("#"))
    return ""


def _section_caption(markdown: str) -> str:
    """The nearest markdown's heading and first sentence: ``Sizes and aspect ratios: ...
    -- ImageNet networks are usually fed squares (224 × 224).``"""
    heading, paragraph = "", []
    for line in markdown.splitlines():
        if line.lstrip().startswith("#"):
            heading = heading or _plain(re.sub(r"^#+\s*(\d+\s*·\s*)?", "", line.strip()))
        elif line.strip() or paragraph:
            paragraph.append(line)
    first = re.split(r"(?<=[.!?])\s", _plain(" ".join(paragraph)), maxsplit=1)[0]
    return _plain(" — ".join(part for part in (heading, first) if part))


def image_alt_texts(notebook: Any) -> dict[tuple[int, int], str]:
    """Alt text for each image output, by ``(cell index, output index)``: never empty, never
    just "figure".

    In order: the figure's title recorded with the output (``alt`` in its metadata, see
    :func:`caption_figures`); a ``# caption: ...`` line in the cell; the cell's leading
    comment; the heading and first sentence of the nearest markdown cell above; the
    notebook's title. Several images of one cell with the same text are numbered
    ("... (figure 2 of 3)").
    """
    title = next(
        (_section_caption(c.source) for c in notebook.cells if c.cell_type == "markdown"), ""
    )
    alts: dict[tuple[int, int], str] = {}
    section = ""
    for i, cell in enumerate(notebook.cells):
        if cell.cell_type == "markdown":
            section = _section_caption(cell.source) or section
            continue
        images = [
            (j, output)
            for j, output in enumerate(cell.get("outputs", []))
            if any(kind in output.get("data", {}) for kind in _IMAGES)
        ]
        context = section or title or f"cell {i + 1} of the notebook"
        fallback = _cell_caption(cell.source)
        fallback = context if fallback.lower() in _SAYS_NOTHING else fallback
        texts = []
        for j, output in images:
            metadata = output.get("metadata", {})
            own = next((metadata[k].get("alt") for k in _IMAGES if k in metadata), None)
            own = _plain(own or "")
            texts.append((j, fallback if own.lower() in _SAYS_NOTHING else own))
        for j, text in texts:
            same = [k for k, other in texts if other == text]
            if len(same) > 1:
                text = f"{text} (figure {same.index(j) + 1} of {len(same)})"
            alts[(i, j)] = text
    return alts


def _attribute(text: str) -> str:
    return html.escape(text, quote=True)


def _pre(text: str, css: str = "") -> str:
    """Preformatted text on one line (newlines as entities): a blank line would end the HTML
    block of the markdown cell that holds it."""
    escaped = html.escape(text).replace("\n", "&#10;")
    return f"<pre{f' class={css!r}' if css else ''}>{escaped}</pre>"


def _output_html(output: Any, alt: str) -> str:
    """One output of a solution cell as HTML (images embedded with ``alt``, text as it was
    printed)."""
    kind = output.get("output_type")
    if kind == "stream":
        return _pre(output.get("text", ""))
    if kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        for mime in _IMAGES:
            if mime in data:
                image = data[mime]
                image = image if isinstance(image, str) else base64.b64encode(image).decode()
                return f'<img src="data:{mime};base64,{image.strip()}" alt="{_attribute(alt)}">'
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


def fold_solutions(notebook: Any, alts: dict[tuple[int, int], str] | None = None) -> int:
    """Turn each solution cell of an executed notebook into a folded ``<details>`` block (a
    markdown cell holding the code and its outputs as HTML). Returns the number folded.

    Args:
        notebook: the executed notebook; changed in place.
        alts: alt text of its images (default: :func:`image_alt_texts`).
    """
    import nbformat  # lazy: in the notebooks extra, not the core dependencies

    alts = image_alt_texts(notebook) if alts is None else alts
    folded = 0
    cells = []
    for i, cell in enumerate(notebook.cells):
        if _SOLUTION not in cell.metadata.get("tags", []):
            cells.append(cell)
            continue
        folded += 1
        lines = cell.source.strip().splitlines() or [""]
        title = lines[0].lstrip("#").strip() or "Solution"
        if cell.cell_type == "code":
            body = _pre(cell.source, "solution-code") + "".join(
                _output_html(o, alts.get((i, j), title))
                for j, o in enumerate(cell.get("outputs", []))
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


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (the kernels it starts inherit them)."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _image_key(output: Any) -> str:
    """An image output's base64 data without white space: how its ``<img>`` is found."""
    data = next(output["data"][kind] for kind in _IMAGES if kind in output["data"])
    data = data if isinstance(data, str) else base64.b64encode(data).decode()
    return re.sub(r"\s", "", data)


_IMG = re.compile(r"<img\b[^>]*>")
_SRC = re.compile(r'src="data:image/[a-z]+;base64,([^"]*)"')
_ALT = re.compile(r'\salt="([^"]*)"')


def _with_alt_texts(body: str, by_image: dict[str, str], fallback: str) -> str:
    """Give each ``<img>`` of an exported page that has no alt text its own (looked up by its
    data), else ``fallback``."""

    def add(match: re.Match[str]) -> str:
        tag = match.group(0)
        given = _ALT.search(tag)
        if given and html.unescape(given.group(1)).strip().lower() not in _SAYS_NOTHING:
            return tag  # alt text of its own (a markdown image's)
        src = _SRC.search(tag)
        alt = by_image.get(re.sub(r"\s", "", src.group(1))) if src else None
        tag = _ALT.sub("", tag)
        return f'<img alt="{_attribute(alt or fallback)}"{tag[4:]}'

    return _IMG.sub(add, body)


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

    Each image gets alt text (:func:`image_alt_texts`); with ``execute``, the figure's own
    title, recorded by the kernel (:func:`caption_figures`).

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
        with tempfile.TemporaryDirectory() as profile:
            # the kernels start with caption_figures(): each figure keeps its title as alt text
            startup = Path(profile, "profile_default", "startup")
            startup.mkdir(parents=True)
            (startup / "50-ctlib-captions.py").write_text(_STARTUP)
            # pages show the quick lesson, on any machine
            with _environment({QUICK_ENV: "1", "IPYTHONDIR": profile}):
                report = run_notebooks(paths, target / "executed")
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
        alts = image_alt_texts(notebook)
        by_image = {_image_key(notebook.cells[i].outputs[j]): alt for (i, j), alt in alts.items()}
        fold_solutions(notebook, alts)
        body, _ = exporter.from_notebook_node(notebook)
        body = _with_alt_texts(body, by_image, f"a figure of {source.stem}")
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
