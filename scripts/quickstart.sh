#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the kit's main job in quick mode: the canvas figure
# (python -m ctlib quickstart), then every numbered notebook headless (papermill) on the
# CPU with the synthetic data set. Outputs (git-ignored): outputs/quick/ and
# outputs/notebooks/ (executed notebooks, figures/, runs/).
#   bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_ALBUMENTATIONS_UPDATE=1
.venv/bin/python -m ctlib quickstart --out outputs/quick
bash scripts/run_notebooks.sh
