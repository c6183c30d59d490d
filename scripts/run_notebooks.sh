#!/usr/bin/env bash
# Run the numbered notebooks headless (papermill), in quick mode unless CTLIB_QUICK=0.
# Executed copies, figures and quick results go to outputs/notebooks/ (git-ignored;
# CTLIB_OUTPUT_DIR moves them). Prints each notebook's run time; fails if one fails.
#
#   bash scripts/run_notebooks.sh                                 # all of notebooks/NN_*.ipynb
#   bash scripts/run_notebooks.sh notebooks/02_finetune.ipynb     # some
#   CTLIB_QUICK=0 bash scripts/run_notebooks.sh                   # full mode (a GPU, the real data)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export CTLIB_QUICK="${CTLIB_QUICK:-1}" NO_ALBUMENTATIONS_UPDATE=1
if [ "$CTLIB_QUICK" = 1 ]; then
  export HF_HUB_OFFLINE=1  # quick mode needs no hub: fail fast instead of waiting on one
fi
exec "$PY" -m ctlib.notebook run "$@"
