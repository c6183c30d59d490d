"""``python -m ctlib.notebook run|strip|student|pages|colab ...``: the maintainers' notebook
tools, which live in :mod:`ctlib.ops.notebooks` (this command stays, as the docs write it)."""

import sys

from ctlib.ops.notebooks.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
