"""Google Colab: where the kit lives for a Colab user, and whether this is Colab."""

from __future__ import annotations

import sys

__all__ = ["GITHUB_REPO", "in_colab"]


GITHUB_REPO = "ctlib/ctlib"
"""``owner/name`` of the kit's GitHub repository: the notebooks' Colab badges and set-up
cells clone it (``tests/test_notebooks.py`` checks they agree with this value)."""


def in_colab() -> bool:
    """Whether this Python runs inside Google Colab."""
    return "google.colab" in sys.modules
