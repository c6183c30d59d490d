#!/usr/bin/env bash
# The kit's real-data runs on a CPU (issue 7): EfficientNet-Lite0 with its genuine offline
# ImageNet weights under the paper's image-level protocol and the honest ones, plus the
# random-initialisation references. Every run is resumable: run this script again after an
# interruption (or in the next session) and finished folds are skipped, an unfinished fold
# resumes from its last epoch checkpoint.
#
#   CTLIB_DATA_DIR=../shared/data nohup nice bash scripts/reproduce_cpu.sh > cpu-runs.log 2>&1 &
#   bash scripts/reproduce_cpu.sh --list     # print the runs, run nothing
#
# Results go to $CTLIB_RUNS (default ../runs/cpu, outside the repository: checkpoints are
# large); `python -m ctlib export-results $CTLIB_RUNS results` then copies the small CSV/JSON
# files into results/ in the same layout, and `python -m ctlib table --results results`
# rebuilds every number the README shows.
#
# The CPU budget (why these settings differ from the paper's, see README "Real-data runs"):
# a 224 x 162 canvas (Table 1's 349 x 253 aspect, 0.41 of its pixels), 12 epochs with the
# paper's schedule shape (drops at 50/70/80/90 % of the run) scaled to lr 1e-3 for the
# shorter run, batch 16, fp32 (bf16 autocast and torch.compile were slower on these CPUs:
# benchmarks/bench_precision.py; the runs in results/ were made with bf16, and resume across).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [[ "${1:-}" == "--list" ]]; then
  ROOT=${CTLIB_DATA_DIR:-'$CTLIB_DATA_DIR'}
else
  ROOT=${CTLIB_DATA_DIR:?set CTLIB_DATA_DIR to the folder holding the data sets}
fi
OUT=${CTLIB_RUNS:-../runs/cpu}
COMMON=(--root "$ROOT" --out "$OUT" --canvas 224 162 --batch-size 16 --lr 1e-3
        --amp "${CTLIB_AMP:-off}" -q)

runs=(
  # name | arguments
  "covid-paper|--dataset covid19-ct --protocol paper --epochs 12"
  "covid-patient|--dataset covid19-ct --protocol patient --epochs 12"
  "covid-official|--dataset covid19-ct --protocol official --epochs 12"
  "sars-paper|--dataset sars-cov-2-ct --protocol paper --epochs 6"
  "sars-pseudo|--dataset sars-cov-2-ct --protocol pseudo-patient --epochs 6"
  "covid-padding|--dataset covid19-ct --protocol paper --epochs 6 --content flat"
  "sars-padding|--dataset sars-cov-2-ct --protocol paper --epochs 6 --content flat"
  "covid-paper-scratch|--dataset covid19-ct --protocol paper --epochs 12 --no-pretrained"
  "covid-paper-resnet18-scratch|--dataset covid19-ct --protocol paper --epochs 12 --no-pretrained --arch resnet18"
)

# A new machine (or the next session) starts with an empty $OUT: seed it with the folds that
# finished earlier and were exported to results/, so that only the missing ones are trained.
if [[ "${1:-}" != "--list" && -d results ]] && compgen -G "results/*/*/*/fold*/metrics.json" > /dev/null; then
  "$PY" -m ctlib import-results results "$OUT" --root "$ROOT"
fi

for entry in "${runs[@]}"; do
  name=${entry%%|*}
  args=${entry#*|}
  if [[ "${1:-}" == "--list" ]]; then
    echo "$name: python -m ctlib cv $args ${COMMON[*]}"
    continue
  fi
  if [[ -n "${CTLIB_ONLY:-}" && " $CTLIB_ONLY " != *" $name "* ]]; then
    continue
  fi
  echo "=== $(date -u +%FT%TZ) $name"
  # shellcheck disable=SC2086
  "$PY" -m ctlib cv $args "${COMMON[@]}" || echo "!!! $name failed (exit $?); going on"
done
echo "=== $(date -u +%FT%TZ) done"
