#!/usr/bin/env bash
# The CPU reference's learning curve (issue 15): EfficientNet-Lite0 (offline ImageNet weights)
# on COVID19-CT, image-level fold 0, against the number of epochs and the canvas. Each point is
# its own run folder (recipes must not share one); every finished point is exported at once to
# results/learning-curve/<point>/ (or $CTLIB_RESULTS/...) so that nothing is lost with the machine.
#
#   CTLIB_DATA_DIR=../shared/data nohup bash scripts/learning_curve.sh > curve.log 2>&1 &
#   bash scripts/learning_curve.sh --list
#
# Precision: fp32 (--amp off). On this project's 2-core CPUs bf16 autocast and torch.compile
# were slower than fp32 (benchmarks/bench_precision.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${CTLIB_RUNS:-../runs/curve}
points=(
  # name | epochs | canvas
  "e12-224x162|12|224 162"
  "e24-224x162|24|224 162"
  "e24-349x253|24|349 253"
  "e48-224x162|48|224 162"
)
for entry in "${points[@]}"; do
  IFS='|' read -r name epochs canvas <<< "$entry"
  args=(--dataset covid19-ct --protocol paper --only-folds 0 --epochs "$epochs"
        --canvas $canvas --batch-size 16 --lr 1e-3 --amp off -q)
  if [[ "${1:-}" == "--list" ]]; then
    echo "$name: python -m ctlib cv ${args[*]} --out $OUT/$name"
    continue
  fi
  if [[ -n "${CTLIB_ONLY:-}" && " $CTLIB_ONLY " != *" $name "* ]]; then
    continue
  fi
  echo "=== $(date -u +%FT%TZ) $name"
  "$PY" -m ctlib cv "${args[@]}" --root "${CTLIB_DATA_DIR:?set CTLIB_DATA_DIR}" \
    --out "$OUT/$name" || { echo "!!! $name failed"; continue; }
  "$PY" -m ctlib export-results "$OUT/$name" "${CTLIB_RESULTS:-results}/learning-curve/$name"
done
echo "=== $(date -u +%FT%TZ) done"
