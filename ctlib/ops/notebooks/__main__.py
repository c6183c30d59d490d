"""``python -m ctlib.ops.notebooks run|strip|student|pages|colab ...`` (also, as the docs write
it, ``python -m ctlib.notebook ...``): the notebooks' own tooling, one subcommand per module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ctlib.notebook.folders import repo_root
from ctlib.notebook.mode import get_mode
from ctlib.ops.notebooks.colab import write_colab
from ctlib.ops.notebooks.pages import build_pages
from ctlib.ops.notebooks.run import run_notebooks
from ctlib.ops.notebooks.strip import strip_outputs
from ctlib.ops.notebooks.student import student_copies

__all__ = ["build_parser", "main"]

_NOTEBOOKS_HELP = "notebooks (default: notebooks/[0-9][0-9]_*.ipynb)"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m ctlib.notebook``: one subcommand per tool."""
    parser = argparse.ArgumentParser(
        prog="python -m ctlib.notebook",
        description="The numbered notebooks: run them, clean them for a commit, or write the "
        "students' copies (no solutions, no outputs).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks headless (papermill), print timings")
    run.add_argument("notebooks", nargs="*", help=_NOTEBOOKS_HELP)
    run.add_argument("--out", help="folder for the executed copies (default: outputs/notebooks)")
    strip = sub.add_parser(
        "strip", help="remove outputs, keeping those of # NBVAL_CHECK_OUTPUT cells"
    )
    strip.add_argument("notebooks", nargs="*", help=_NOTEBOOKS_HELP)
    strip.add_argument(
        "--checked-from", help="folder of executed copies whose checked outputs to keep"
    )
    colab = sub.add_parser(
        "colab", help="write badges, set-up cells and README's Colab lines from pyproject.toml"
    )
    colab.add_argument("notebooks", nargs="*", help=_NOTEBOOKS_HELP)
    colab.add_argument("--check", action="store_true", help="only say what would change")
    colab.add_argument("--readme", help="README to update (default: the repository's)")
    pages = sub.add_parser(
        "pages", help="static HTML pages of the notebooks, executed in quick mode (no kernel)"
    )
    pages.add_argument("notebooks", nargs="*", help=_NOTEBOOKS_HELP)
    pages.add_argument("--out", default="build/pages", help="folder (default: build/pages)")
    student = sub.add_parser("student", help="the students' copies: no solutions, no outputs")
    student.add_argument(
        "notebooks", nargs="*", help="notebooks or a folder of them (default: notebooks/)"
    )
    student.add_argument("--out", default="student", help="folder to write to (default: student)")
    return parser


def _notebook_paths(given: Sequence[str]) -> list[str]:
    """The notebooks named (a folder: its ``NN_*.ipynb``), else the repository's."""
    paths: list[str] = []
    for item in given:
        folder = Path(item)
        paths += sorted(map(str, folder.glob("[0-9][0-9]_*.ipynb"))) if folder.is_dir() else [item]
    return paths or sorted(
        str(p) for p in ((repo_root() or Path.cwd()) / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ctlib.notebook run|strip|student|pages|colab ...``: run notebooks headless,
    strip their outputs, write learners' copies without the solutions, static pages, or the
    Colab badges and set-up cells."""
    args = build_parser().parse_args(argv)
    paths = _notebook_paths(args.notebooks)
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 2
    if args.command == "pages":
        written = build_pages(paths, args.out)
        print(f"{len(written) - 1} page(s) and an index in {args.out}: open {written[-1]}")
        return 0
    if args.command == "colab":
        readme = args.readme or ((repo_root() or Path.cwd()) / "README.md")
        changed = write_colab(paths, readme=readme, check=args.check)
        verb = "would change" if args.check else "changed"
        for path in changed:
            print(f"{verb}: {path}")
        if args.check and changed:
            print("run `python -m ctlib.notebook colab` to write them", file=sys.stderr)
            return 1
        return 0
    if args.command == "student":
        written = student_copies(paths, args.out)
        print(f"wrote {len(written)} students' copies (no solutions, no outputs) to {args.out}")
        return 0
    if args.command == "strip":
        for path in paths:
            executed = Path(args.checked_from) / Path(path).name if args.checked_from else None
            print(f"{path}: {strip_outputs(path, executed)} checked cell(s) kept")
        return 0
    print(str(get_mode()))
    report = run_notebooks(paths, args.out)
    print(report[["notebook", "seconds", "error"]].to_string(index=False))
    print(f"executed copies in {Path(report['output'].iloc[0]).parent}")
    return 1 if (report["error"] != "").any() else 0


if __name__ == "__main__":
    sys.exit(main())
