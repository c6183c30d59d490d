#!/usr/bin/env bash
# Rebuild everything under results/ and the README's generated block from finished runs
# (scripts/reproduce_cpu.sh) and the data sets:
#
#   CTLIB_DATA_DIR=../shared/data bash scripts/make_results.sh [RUNS]     # RUNS: ../runs/cpu
#
# 1. the small files of every finished fold (no checkpoints) -> results/<dataset>/...
# 2. the leakage and shortcut audit of both data sets -> results/audit/<dataset>.json
# 3. Grad-CAM heat on padding / outside the body, each fold's network on 30 of its own test
#    images -> results/explain/heat_<dataset>_paper_efficientnet_lite0.csv
# 4. the README block (python -m ctlib table results --readme README.md) and the figures
#    figures/honest_evaluation.png and figures/confusion_matrices.png (Fig. 9's layout)
# 5. the opening talk's slides (python -m ctlib slides), whose numbers come from the same files
#
# CTLIB_SKIP_AUDIT=1 keeps the committed audit JSONs (they depend on the data and the folds
# only, not on the runs; recomputing them takes a few CPU minutes per data set).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
RUNS=${1:-${CTLIB_RUNS:-../runs/cpu}}
: "${CTLIB_DATA_DIR:?set CTLIB_DATA_DIR to the folder holding the data sets}"

"$PY" -m ctlib export-results "$RUNS" results
for dataset in covid19-ct sars-cov-2-ct; do
  if [ -z "${CTLIB_SKIP_AUDIT:-}" ]; then
    "$PY" -m ctlib audit report "$dataset" --out results/audit -q
  fi
  if [ -d "$RUNS/$dataset/paper/efficientnet_lite0" ]; then
    "$PY" -m ctlib heat "$RUNS" --dataset "$dataset" --images 30 --out results/explain -q
  fi
done
"$PY" -m ctlib table results --readme README.md
"$PY" -m ctlib table results --honest --figures figures > /dev/null
"$PY" -m ctlib table results --figures figures > /dev/null
"$PY" -m ctlib slides --results results --out docs/slides/paper-in-ten-minutes.md
