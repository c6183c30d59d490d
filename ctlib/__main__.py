"""``python -m ctlib``: the command line (:mod:`ctlib.cli`)."""

import sys

from ctlib.cli import main

if __name__ == "__main__":
    sys.exit(main())
