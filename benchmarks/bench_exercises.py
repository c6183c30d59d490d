"""How long each exercise's worked solution runs in quick mode: the measured side of the
labels (``[CPU · 5 min]``). A table to commit, not a timed test.

Runs the numbered notebooks headless in quick mode (papermill, the same path as
``scripts/run_notebooks.sh``), reads each solution's cell durations from the executed copies
and writes one row per exercise: its label, the seconds its solution's code ran, and whether
the solution was skipped (it needs a GPU or the real data, which quick mode never uses).
``tests/test_exercise_times.py`` fails when a label promises fewer minutes than its solution
took here, or when an exercise has no row (measure again after adding one).

Usage (the machine's other work slows it down; run it alone):
    python benchmarks/bench_exercises.py --out results/lessons
    python benchmarks/bench_exercises.py notebooks/01_data_exploration.ipynb --out /tmp/t
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import pandas as pd

from ctlib.ops.notebooks.exercises import exercise_times
from ctlib.ops.notebooks.run import run_notebooks

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="default: notebooks/NN_*.ipynb")
    parser.add_argument("--out", default="results/lessons", help="where the CSVs go")
    args = parser.parse_args()
    os.environ["CTLIB_QUICK"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    paths = [Path(p) for p in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )
    with tempfile.TemporaryDirectory(prefix="ctlib-exercises-") as scratch:
        os.environ["CTLIB_OUTPUT_DIR"] = scratch  # quick runs and figures: nothing in the clone
        runs = run_notebooks(paths, Path(scratch) / "executed")
        failed = runs[runs["error"] != ""]
        if len(failed):
            raise SystemExit(f"notebooks failed, nothing written:\n{failed.to_string()}")
        table = pd.concat([exercise_times(p) for p in runs["output"]], ignore_index=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    table["machine"] = machine
    runs = runs[["notebook", "seconds"]].assign(machine=machine)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "exercise_times.csv", index=False)
    runs.to_csv(out / "notebook_times.csv", index=False)
    print(table.to_string(index=False))
    print(runs.to_string(index=False))


if __name__ == "__main__":
    main()
