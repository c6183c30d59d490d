#!/usr/bin/env bash
# Create .venv beside this repository and install ctlib into it (editable) with its
# development and notebook extras (CTLIB_EXTRAS chooses others). Safe to run again: it
# only adds what is missing.
#
#   bash scripts/setup.sh
#
# PyTorch: by default pip picks the torch/torchvision build for your platform. To
# choose one (a CUDA build, a CPU-only build, a pinned version), set CTLIB_TORCH_SPEC,
# and for a CUDA or CPU wheel index CTLIB_TORCH_INDEX, e.g.
#   CTLIB_TORCH_SPEC="torch torchvision" CTLIB_TORCH_INDEX=https://download.pytorch.org/whl/cpu bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
TORCH_SPEC="${CTLIB_TORCH_SPEC:-torch torchvision}"
if [ -n "${CTLIB_TORCH_INDEX:-}" ]; then
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install --quiet $TORCH_SPEC --index-url "$CTLIB_TORCH_INDEX"
else
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install --quiet $TORCH_SPEC
fi
# extras: dev and notebooks by default; CI adds browser (CTLIB_EXTRAS=dev,notebooks,browser)
.venv/bin/python -m pip install --quiet -e ".[${CTLIB_EXTRAS:-dev,notebooks}]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
.venv/bin/python -c "import ctlib, torch; print(f'ctlib {ctlib.__version__} with torch {torch.__version__} is ready in .venv')"
