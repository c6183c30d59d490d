"""Google Colab, the writer: each notebook's *Open in Colab* badge and set-up cell, Colab's
accelerator setting, the README's Colab lines, all from ``[tool.ctlib] repository`` in
``pyproject.toml`` (``python -m ctlib.notebook colab``; ``--check`` only compares). See
docs/DEVELOPERS.md, *Notebook tools*.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ctlib import WHEEL_GLOB
from ctlib.notebook.colab import repository

__all__ = [
    "GPU_NOTEBOOKS",
    "WIDGET_NOTEBOOKS",
    "badge",
    "colab_url",
    "setup_cell",
    "write_colab",
]

#: Notebooks whose full mode trains networks: Colab offers them a GPU runtime.
GPU_NOTEBOOKS = frozenset({"02_finetune.ipynb", "03_cross_validation.ipynb", "04_tsne.ipynb",
                           "05_gradcam.ipynb", "06_honest_evaluation.ipynb"})  # fmt: skip

#: Notebooks with an ipywidgets app: the set-up cell switches on Colab's widget manager.
WIDGET_NOTEBOOKS = frozenset({"01_data_exploration.ipynb", "05_gradcam.ipynb"})

_BADGE_LINE = re.compile(r"^(\[!\[Open In Colab\].*|\*Open in Colab\*.*)$", re.M)
_README_BLOCK = re.compile(r"(<!-- colab:start -->\n).*?(<!-- colab:end -->)", re.S)


def colab_url(repo: str, notebook: str) -> str | None:
    """Colab's address of a notebook of a GitHub repository; None for any other address."""
    match = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?", repo)
    if match is None:
        return None
    owner, name = match.groups()
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/main/notebooks/{notebook}"


def badge(repo: str, notebook: str) -> str:
    """The badge line of a notebook's first cell: a link to Colab, or why there is none."""
    url = colab_url(repo, notebook)
    if url is not None:
        return (
            f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"
        )
    where = (
        f"the kit's address ({repo}) is not on GitHub"
        if repo
        else "the kit has no public address yet"
    )
    return (
        f"*Open in Colab*: no badge, since {where}. To run this notebook on Colab, upload it "
        "with the kit (README, *On a GPU, and on Colab*); its set-up cell installs the kit."
    )


#: The set-up cell's first lines, then ``CTLIB_REPOSITORY = ...`` (:func:`setup_cell`).
_SETUP_HEAD = (
    "#@title Set-up: installs the kit on Colab (nothing to do elsewhere)",
    "# On Colab: install the kit (Colab's torch is kept); elsewhere it is installed already.",
    "# Written by `python -m ctlib.notebook colab` from pyproject.toml.",
)

#: The set-up cell after the address: on Colab, install the kit from what is there
#: (``{wheel}``: the wheel's name, :data:`ctlib.WHEEL_GLOB`).
_SETUP_INSTALL = (
    "import sys",
    'if "google.colab" in sys.modules:',
    "    import glob",
    "    import importlib",
    "    import importlib.util",
    "    import os",
    "    import site",
    "    import subprocess",
    "",
    '    home = os.environ.get("CTLIB_COLAB_HOME", "/content")',
    "",
    "    def _install(target, editable=False):",
    '        command = [sys.executable, "-m", "pip", "install", "-q"]',
    '        done = subprocess.run(command + (["-e"] if editable else []) + [target],',
    "                              capture_output=True, text=True)",
    "        if done.returncode:",
    "            raise RuntimeError(f'pip could not install the kit from {target}:\\n'",
    "                               f'{done.stderr[-2000:]}')",
    "",
    '    wheels = sorted(glob.glob(os.path.join(home, "{wheel}")))',
    '    folder = os.path.join(home, "ctlib")',
    '    if importlib.util.find_spec("ctlib") is not None:',
    '        print("ctlib is installed already.")',
    "    elif wheels:",
    "        _install(wheels[-1])",
    '    elif os.path.isfile(os.path.join(folder, "pyproject.toml")):',
    "        _install(folder, editable=True)",
    "    elif CTLIB_REPOSITORY:",
    '        done = subprocess.run(["git", "clone", "-q", "--depth", "1", CTLIB_REPOSITORY,',
    "                               folder], capture_output=True, text=True)",
    "        if done.returncode:",
    "            raise RuntimeError(",
    "                f'Could not clone the kit from {CTLIB_REPOSITORY}: '",
    "                f'{(done.stderr.strip().splitlines() or [\"git failed\"])[-1]}. '",
    "                'Check the address (or your network), or upload the kit: a wheel '",
    "                f'(pip wheel . --no-deps) as {home}/{wheel}, or its folder as '",
    "                f'{folder}/; then run this cell again.')",
    "        _install(folder, editable=True)",
    "    else:",
    "        raise RuntimeError(",
    "            'The kit has no public address yet, so this cell cannot fetch it. Upload it '",
    "            'with the file browser on the left: a wheel built with '",
    "            '`pip wheel . --no-deps` '",
    "            f'as {home}/{wheel}, or the kit\\'s folder as {folder}/ (a zip of it, '",
    "            f'then !unzip -q <the zip> -d {home}); or set CTLIB_REPOSITORY '",
    "            'above to a git address you can clone. Then run this cell again.')",
    "    site.addsitedir(site.getsitepackages()[0])  # the fresh install, without a restart",
    "    importlib.invalidate_caches()",
    "    # Runs that outlive the runtime: keep them (and the data cache) on Google Drive; a",
    "    # long run resumes after Colab recycles the machine. Uncomment these three lines:",
    '    # from google.colab import drive; drive.mount("/content/drive")',
    '    # os.environ["CTLIB_RUNS_DIR"] = "/content/drive/MyDrive/ctlib/runs"',
    '    # os.environ["CTLIB_CACHE_DIR"] = "/content/drive/MyDrive/ctlib/cache"',
)

#: The set-up cell's end in a notebook with widgets: Colab's widget manager on.
_SETUP_WIDGETS = (
    '    widgets = sys.modules.get("ipywidgets")',
    '    if widgets is not None and widgets.__version__.startswith("7."):',
    "        print('Colab had loaded ipywidgets 7; the kit needs 8. Restarting the '",
    "              'runtime once: run the notebook again from the top.', flush=True)",
    "        os.kill(os.getpid(), 9)",
    "    from google.colab import output",
    "    output.enable_custom_widget_manager()  # Colab renders ipywidgets 8 through it",
)


def setup_cell(repo: str, *, widgets: bool = False) -> str:
    """The source of a notebook's set-up cell (the first code cell): plain Python, no magics.

    On Colab, in this order: the kit already installed (nothing to do), an uploaded wheel
    ``<home>/ctlib_covid-*.whl``, an uploaded or cloned folder ``<home>/ctlib/``, a clone of
    ``repo``; otherwise a message saying what to do. ``<home>`` is ``/content`` (Colab's
    working folder; ``CTLIB_COLAB_HOME`` for tests). With ``widgets``, Colab's custom widget
    manager is switched on, and a runtime that had imported ipywidgets 7 before the kit
    brought 8 is restarted once, saying so.
    """
    lines = [
        *_SETUP_HEAD,
        f"CTLIB_REPOSITORY = {repo!r}  # the kit's git address ('': none yet: upload the kit)",
        *(line.replace("{wheel}", WHEEL_GLOB) for line in _SETUP_INSTALL),
    ]
    if widgets:
        lines += _SETUP_WIDGETS
    return "\n".join(lines)


def _readme_block(repo: str) -> str:
    url = colab_url(repo, "01_data_exploration.ipynb")
    if url is not None:
        first = (
            f"Open a notebook from its *Open in Colab* badge (e.g. [notebook 01]({url})); its "
            f"set-up cell clones {repo} and installs the kit."
        )
    else:
        first = (
            "The kit has **no public address yet** (`[tool.ctlib] repository` in "
            "`pyproject.toml` is empty), so the notebooks carry no Colab badge. To use Colab, "
            "upload the notebook and the kit: build a wheel here with `pip wheel . --no-deps` "
            "(it carries the committed `results/` and `figures/` the lessons read) "
            f"and upload `{WHEEL_GLOB}` to `/content/`, or upload the kit's folder as "
            "`/content/ctlib/` (no git needed); the set-up cell installs whichever it finds. "
            "Once the kit is published, set the address and run `python -m ctlib.notebook "
            "colab` to write the badges and set-up cells."
        )
    return (
        f"{first} Colab's torch is kept as it is (the kit leaves torch unpinned). The lessons "
        "run in quick mode on any runtime, a GPU one included; choose the paper's full run "
        'with `MODE = "full"` in a notebook\'s parameters cell (or `CTLIB_QUICK=0`). On '
        "Colab's T4 the kit trains with fp16 and gradient scaling (bf16 needs compute "
        "capability 8.0).\n"
    )


def write_colab(
    notebooks: Sequence[str | Path],
    repo: str | None = None,
    *,
    readme: str | Path | None = None,
    check: bool = False,
) -> list[Path]:
    """Write the badge, the set-up cell and Colab's accelerator setting of each notebook, and
    the README's Colab block, from ``repo`` (default: :func:`repository`).

    Returns the files that changed (with ``check``: that would change; nothing is written).
    """
    import nbformat  # lazy: in the notebooks extra, not the core dependencies

    repo = repository() if repo is None else repo
    changed: list[Path] = []
    for item in notebooks:
        path = Path(item)
        notebook = nbformat.read(path, as_version=4)
        before = nbformat.writes(notebook)
        first = notebook.cells[0]
        line = badge(repo, path.name)
        if _BADGE_LINE.search(first.source):
            first.source = _BADGE_LINE.sub(line.replace("\\", r"\\"), first.source, count=1)
        else:
            title, _, rest = first.source.partition("\n")
            first.source = f"{title}\n\n{line}\n{rest}"
        setup = next(c for c in notebook.cells if c.cell_type == "code")
        setup.source = setup_cell(repo, widgets=path.name in WIDGET_NOTEBOOKS)
        setup.metadata.setdefault("jupyter", {})["source_hidden"] = True  # plumbing, folded
        setup.metadata["cellView"] = "form"  # Colab's way of folding it
        if path.name in GPU_NOTEBOOKS:
            notebook.metadata["accelerator"] = "GPU"
            notebook.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
        if nbformat.writes(notebook) != before:
            changed.append(path)
            if not check:
                nbformat.write(notebook, path)
    if readme is not None:
        path = Path(readme)
        text = path.read_text()
        if not _README_BLOCK.search(text):
            raise ValueError(f"{path} has no <!-- colab:start --> ... <!-- colab:end --> block.")
        new = _README_BLOCK.sub(lambda m: m.group(1) + _readme_block(repo) + m.group(2), text)
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new)
    return changed
