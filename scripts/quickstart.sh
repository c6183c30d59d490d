#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the kit's main job in quick mode.
#   bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NO_ALBUMENTATIONS_UPDATE=1
.venv/bin/python -m ctlib quickstart --out outputs/quick
