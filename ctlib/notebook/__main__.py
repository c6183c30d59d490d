"""``python -m ctlib.notebook run|strip ...``: see :mod:`ctlib.notebook.tools`."""

import sys

from ctlib.notebook.tools import main

if __name__ == "__main__":
    sys.exit(main())
