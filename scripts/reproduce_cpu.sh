#!/usr/bin/env bash
# The kit's real-data runs on a CPU: EfficientNet-Lite0 with its genuine offline ImageNet
# weights under the paper's image-level protocol and the honest ones. Every run is resumable:
# run this script again after an interruption (or in the next session) and finished folds are
# skipped, an unfinished fold resumes from its rolling checkpoint (at most 5 minutes lost).
#
#   CTLIB_DATA_DIR=../shared/data nohup nice bash scripts/reproduce_cpu.sh > cpu-runs.log 2>&1 &
#   bash scripts/reproduce_cpu.sh --list     # print the runs, run nothing
#   CTLIB_ONLY="covid-paper sars-paper" bash scripts/reproduce_cpu.sh   # some runs only
#
# Runs go to $CTLIB_RUNS (default ../runs/cpu-e24, outside the repository: checkpoints are
# large). Every fold is exported as soon as its run step ends into $CTLIB_STAGE (default
# results/cpu-e24/, same layout one level down, so `ctlib table results` does not mix it with
# the reference runs until it is complete); a new machine is seeded from there first.
# `python -m ctlib table results/cpu-e24` shows the staged runs.
#
# The recipe (issue 15's learning curve, results/learning-curve/: 24 epochs at 224 x 162 was
# the best affordable point on COVID19-CT fold 0): a 224 x 162 canvas (Table 1's 349 x 253
# shape, 0.41 of its pixels), 24 epochs on COVID19-CT and 12 on SARS-CoV-2 CT (3.3 times the
# images: about 1.7 times COVID19-CT's optimiser steps), the paper's schedule shape (drops at
# 50/70/80/90 % of the run) scaled to start at lr 1e-3, batch 16, fp32 (bf16 autocast and
# torch.compile were slower on these CPUs: benchmarks/bench_precision.py), and the CPU path's
# augmentations seeded per transform (ctlib.transforms.seed_augment). The earlier runs (12 and
# 6 epochs, coupled augmentations; in results/earlier/e12-coupled/ where a run here replaced
# them) were made by this script at commit 50eb2f7. A run whose folds are all done is moved from
# the stage to results/<dataset>/ by hand (git mv the older one to results/earlier/ first).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [[ "${1:-}" == "--list" ]]; then
  ROOT=${CTLIB_DATA_DIR:-'$CTLIB_DATA_DIR'}
else
  ROOT=${CTLIB_DATA_DIR:?set CTLIB_DATA_DIR to the folder holding the data sets}
fi
OUT=${CTLIB_RUNS:-../runs/cpu-e24}
STAGE=${CTLIB_STAGE:-results/cpu-e24}
COMMON=(--root "$ROOT" --out "$OUT" --canvas 224 162 --batch-size 16 --lr 1e-3
        --amp "${CTLIB_AMP:-off}" -q)
COVID=(--dataset covid19-ct --epochs 24)
SARS=(--dataset sars-cov-2-ct --epochs 12)

runs=(
  # name | arguments. Fold 0 of each data set first: the figures (t-SNE, Grad-CAM) need it.
  "covid-paper-fold0|${COVID[*]} --protocol paper --only-folds 0"
  "sars-paper-fold0|${SARS[*]} --protocol paper --only-folds 0"
  "covid-paper|${COVID[*]} --protocol paper"
  "covid-patient|${COVID[*]} --protocol patient"
  "covid-official|${COVID[*]} --protocol official"
  "sars-paper|${SARS[*]} --protocol paper"
  "sars-pseudo|${SARS[*]} --protocol pseudo-patient"
  # The probes beside them, at the same recipe (issue 29): random initialisation (what ImageNet
  # pre-training buys) and the padding-geometry probe (the slice replaced by a flat gray box).
  "covid-resnet18-scratch|${COVID[*]} --protocol paper --arch resnet18 --no-pretrained"
  "covid-scratch|${COVID[*]} --protocol paper --no-pretrained"
  "covid-flat|${COVID[*]} --protocol paper --content flat"
  "sars-flat|${SARS[*]} --protocol paper --content flat"
)

if [[ "${1:-}" != "--list" ]] && compgen -G "$STAGE/*/*/*/fold*/metrics.json" > /dev/null; then
  "$PY" -m ctlib import-results "$STAGE" "$OUT" --root "$ROOT"
fi

for entry in "${runs[@]}"; do
  name=${entry%%|*}
  args=${entry#*|}
  if [[ "${1:-}" == "--list" ]]; then
    echo "$name: python -m ctlib cv $args ${COMMON[*]}"
    continue
  fi
  if [[ -n "${CTLIB_ONLY:-}" && " $CTLIB_ONLY " != *" ${name%-fold0} "* && " $CTLIB_ONLY " != *" $name "* ]]; then
    continue
  fi
  echo "=== $(date -u +%FT%TZ) $name"
  # shellcheck disable=SC2086
  "$PY" -m ctlib cv $args "${COMMON[@]}" || echo "!!! $name failed (exit $?); going on"
  "$PY" -m ctlib export-results "$OUT" "$STAGE" > /dev/null || true
done
[[ "${1:-}" == "--list" ]] || echo "=== $(date -u +%FT%TZ) done"
