"""Where a notebook's outputs go, and where the committed results are.

Quick runs write into a git-ignored folder: ``$CTLIB_OUTPUT_DIR`` if set, else
``outputs/notebooks/`` in the repository (or in the working directory when ctlib is not
installed from a clone). Full runs write results to ``runs/`` (the CLI's default, so the
command line and the notebooks share results) and figures worth keeping to ``figures/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ctlib.notebook.mode import Mode
from ctlib.plots import save_figure
from ctlib.recipes import describe_recipe, recipe_id
from ctlib.train import TrainConfig

__all__ = [
    "RUNS_ENV",
    "OUTPUT_ENV",
    "committed_figures",
    "committed_results",
    "committed_root",
    "committed_source",
    "committed_table",
    "figure_dir",
    "glossary",
    "keep_figure",
    "output_dir",
    "repo_root",
    "results_dir",
    "show_committed_figure",
]


OUTPUT_ENV = "CTLIB_OUTPUT_DIR"

#: where runs go instead of ``runs/`` and ``<output_dir>/runs`` (e.g. Google Drive on Colab)
RUNS_ENV = "CTLIB_RUNS_DIR"


def repo_root() -> Path | None:
    """The repository ctlib is installed from (editable install), or None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


def output_dir(*parts: str, create: bool = True) -> Path:
    """The git-ignored folder for quick-mode outputs, ``/``-joined with ``parts``.

    ``$CTLIB_OUTPUT_DIR`` if set, else ``<repository>/outputs/notebooks`` (or
    ``./outputs/notebooks`` outside a clone).
    """
    env = os.environ.get(OUTPUT_ENV, "").strip()
    base = Path(env).expanduser() if env else (repo_root() or Path.cwd()) / "outputs" / "notebooks"
    path = base.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(mode: Mode, config: TrainConfig | None = None) -> Path:
    """Where a notebook's cross-validation results live, one folder per recipe.

    Quick mode: ``<output_dir>/runs/<recipe id>`` (:func:`ctlib.recipes.recipe_id`), so that
    a rerun with another learning rate, epoch count or canvas trains into its own folder and
    the same recipe finds its finished folds again. Full mode: ``runs/`` (where ``python -m
    ctlib cv`` and ``sweep`` write) for the paper's recipe, ``runs/<recipe id>`` for any
    other. Without ``config``: the base folder itself. ``CTLIB_RUNS_DIR`` replaces both bases
    (quick runs in its ``quick/``), as it replaces the command line's default ``--out``: on
    Colab, a folder on Google Drive keeps runs through a recycled runtime.
    """
    runs = os.environ.get(RUNS_ENV, "").strip()
    if runs:  # e.g. Google Drive on Colab: the runs outlive the runtime
        base = Path(runs).expanduser() / ("quick" if mode.quick else "")
    else:
        base = output_dir("runs") if mode.quick else (repo_root() or Path.cwd()) / "runs"
    if config is None or (not mode.quick and describe_recipe(config) == "the paper's"):
        return base
    return base / recipe_id(config)


#: where a wheel holds the repository's results/ and figures/ (copied by setup.py at build time)
PACKAGED = Path(__file__).resolve().parents[1] / "_committed"


def committed_root() -> Path | None:
    """The folder holding the committed ``results/`` and ``figures/``: the clone ctlib is
    installed from, else the copy a wheel carries (``ctlib/_committed``), else None."""
    root = repo_root()
    if root is not None and (root / "results").is_dir():
        return root
    return PACKAGED if (PACKAGED / "results").is_dir() else None


def glossary(term: str | None = None) -> MarkdownText:
    """The kit's glossary (``docs/GLOSSARY.md``), or one term's entry, as text a notebook shows
    as Markdown: where the notebooks' link to it does not open (Colab, a
    wheel, the static pages), ``glossary("ROC-AUC")`` does.

    Raises:
        ValueError: no entry for ``term`` (the message names the closest ones).
        FileNotFoundError: this copy of the kit carries no glossary.
    """
    import difflib  # lazy: only a learner looking a word up needs it

    root = committed_root()
    path = root / "docs" / "GLOSSARY.md" if root is not None else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "This copy of ctlib carries no glossary (docs/GLOSSARY.md); install the kit from "
            "its repository or from a wheel built there."
        )
    text = path.read_text(encoding="utf-8")
    if term is not None:
        entries = {
            re.sub(r"[^a-z0-9]+", " ", m.group(2).lower()).strip(): m.group(0)
            for m in re.finditer(r"^- <a id=\"([^\"]+)\"></a>\*\*([^*]+)\*\*.*?(?=^- |\Z)",
                                 text, re.M | re.S)
        }  # fmt: skip
        key = re.sub(r"[^a-z0-9]+", " ", term.lower()).strip()
        found = [entry for name, entry in entries.items() if key == name or key in name.split()]
        if not found:
            close = difflib.get_close_matches(key, list(entries), n=3)
            raise ValueError(
                f"No glossary entry for {term!r}"
                + (f"; the closest: {', '.join(close)}." if close else ".")
            )
        text = "\n".join(entry.strip() for entry in found)
    return MarkdownText(text)


class MarkdownText(str):
    """Text that a notebook shows as Markdown when a cell ends with it (and is a ``str``)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def committed_results() -> Path:
    """``results/`` of the repository: the small CSV/JSON files of the kit's real-data runs
    on a CPU (issue 7), committed so that every reader sees the same numbers; in a clone, or
    the copy an installed wheel carries.

    Raises:
        FileNotFoundError: this copy of ctlib has neither (a wheel built without them).
    """
    root = committed_root()
    if root is None:
        raise FileNotFoundError(
            "The committed results/ folder is not here: install ctlib from a clone of its "
            "repository (pip install -e .) or from a wheel built from one (pip wheel . "
            "--no-deps), which carries results/ and figures/."
        )
    return root / "results"


def committed_figures(*names: str) -> list[Path]:
    """The figures of that name in the repository's ``figures/`` (rendered from the kit's
    real-data runs by ``python -m ctlib figures`` and committed), in the order given; those
    missing, or all when ctlib is not installed from a clone (a wheel on Colab), are left out
    with a note printed, so a notebook cell that shows them never fails."""
    root = committed_root()
    found = [root / "figures" / name for name in names] if root else []
    found = [path for path in found if path.is_file()]
    missing = [name for name in names if all(path.name != name for path in found)]
    if missing:
        where = root / "figures" if root else "this copy (it carries no committed figures)"
        print(f"not in {where}: {', '.join(missing)}")
    return found


def show_committed_figure(
    name: str, *, width: int | None = None, source: str | None = None
) -> Path | None:
    """Show the committed figure ``figures/<name>`` in the notebook under a line that says it
    is a committed real-data figure, not this run's, and where it comes from, and return its
    path; None, with the note :func:`committed_figures` prints, when this copy lacks it.

    Args:
        name: the file name in ``figures/``.
        width: display width in pixels (None: the image's own).
        source: where it comes from, e.g. :func:`committed_source`'s answer; None: a figure
            of the data sets themselves (notebook 01), rendered where they were downloaded.
    """
    # lazy: IPython only when a notebook shows a figure, not for the command line
    from IPython.display import Image, display

    found = committed_figures(name)
    if not found:
        return None
    where = source or (
        "rendered where the data sets were downloaded; download them to draw it here "
        "(notebook 01, section 1)"
    )
    print(f"committed figure, real data (figures/{name}): {where}")
    display(Image(filename=str(found[0]), width=width))
    return found[0]


def committed_source(kind: str, dataset: str) -> str:
    """Which run and fold a committed real-data figure shows, read from the name of the CSV
    written beside it (``results/explain/<kind>_<dataset>_<protocol>_<run>_fold<k>.csv``),
    e.g. ``"fold 1 of the paper-protocol run efficientnet_lite0 (results/explain/...)"``: a
    lesson prints this instead of typing the fold.

    Args:
        kind: ``"tsne"``, ``"gallery"`` or ``"road"``.
        dataset: a real data set's name.

    Raises:
        FileNotFoundError: no such file in this copy's committed results.
    """
    folder = committed_results() / "explain"
    pattern = re.compile(
        rf"^{re.escape(kind)}_{re.escape(dataset)}_(?P<protocol>[a-z-]+)_(?P<run>.+)"
        rf"_fold(?P<fold>\d+)\.csv$"
    )
    for path in sorted(folder.glob(f"{kind}_{dataset}_*_fold*.csv")):
        match = pattern.match(path.name)
        if match:
            return (
                f"fold {match['fold']} of the {match['protocol']}-protocol run {match['run']} "
                f"(results/explain/{path.name})"
            )
    raise FileNotFoundError(
        f"No results/explain/{kind}_{dataset}_<protocol>_<run>_fold<k>.csv in {folder}: "
        f"`python -m ctlib figures RUNS --dataset {dataset}` writes it with its figure."
    )


def committed_table(pattern: str) -> pd.DataFrame | None:
    """The CSV files under the repository's ``results/`` that match ``pattern`` (e.g.
    ``"explain/tsne_*.csv"``), one below the other; other files the pattern matches are left
    out. None, with a note printed, when there are none or ctlib is not installed from a
    clone."""
    root = committed_root()
    files = sorted((root / "results").glob(pattern)) if root else []
    files = [path for path in files if path.suffix == ".csv"]
    if not files:
        print(f"no committed results/{pattern} in this copy")
        return None
    return pd.concat([pd.read_csv(path) for path in files], ignore_index=True)


def figure_dir(mode: Mode) -> Path:
    """Where figures go: ``figures/`` from full runs, the quick output folder otherwise."""
    if mode.quick:
        return output_dir("figures")
    path = (repo_root() or Path.cwd()) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_figure(figure: Figure, name: str, mode: Mode) -> Path:
    """Save ``figure`` as ``<figure_dir(mode)>/<name>.png`` and return the path."""
    return save_figure(figure, figure_dir(mode) / f"{name}.png")
