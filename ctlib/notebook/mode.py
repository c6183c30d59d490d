"""Quick or full: one environment variable decides, no cell is edited.

Every notebook runs either

* **quick** -- on a CPU, in minutes: the synthetic data set, EfficientNet-Lite0, a few
  epochs at a small canvas; or
* **full** -- on a GPU, the paper's settings: its data sets, architectures and 100-epoch
  recipe.

The mode comes from ``CTLIB_QUICK``, read by :func:`get_mode`: ``1``/``true``/``yes``/``on``
means quick, ``0``/``false``/``no``/``off`` means full, and unset (or empty) means *quick
exactly when PyTorch sees no CUDA GPU*. Each notebook's ``parameters`` cell (papermill) can
still override any knob.

Example:
    >>> from ctlib.notebook import get_mode
    >>> mode = get_mode()          # doctest: +SKIP
    >>> print(mode)                # doctest: +SKIP
    quick mode (CTLIB_QUICK is unset and PyTorch sees no GPU): CPU, synthetic data, a few ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

__all__ = ["QUICK_ENV", "Mode", "get_mode", "runs_here"]


QUICK_ENV = "CTLIB_QUICK"


_TRUE = {"1", "true", "yes", "on"}


_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Mode:
    """Quick or full, and why.

    Attributes:
        quick: True for quick mode (CPU, minutes), False for full mode (the paper's settings).
        reason: how the mode was chosen, in words.
        gpu: whether PyTorch sees a CUDA GPU.
    """

    quick: bool
    reason: str
    gpu: bool

    @property
    def name(self) -> str:
        """``"quick"`` or ``"full"``."""
        return "quick" if self.quick else "full"

    def __str__(self) -> str:
        what = (
            "CPU, synthetic data, a few epochs: minutes"
            if self.quick
            else "the paper's data sets and 100-epoch recipe"
            + ("" if self.gpu else " (no GPU: slow!)")
        )
        return f"{self.name} mode ({self.reason}): {what}"


def get_mode(environ: Mapping[str, str] | None = None, *, gpu: bool | None = None) -> Mode:
    """Quick or full mode, from ``CTLIB_QUICK`` (see the module docstring).

    Args:
        environ: the environment to read (default ``os.environ``).
        gpu: whether a GPU is present (default: ``torch.cuda.is_available()``).

    Raises:
        ValueError: ``CTLIB_QUICK`` holds something other than 1/0, true/false, yes/no, on/off.
    """
    environ = os.environ if environ is None else environ
    if gpu is None:
        gpu = bool(torch.cuda.is_available())
    raw = environ.get(QUICK_ENV, "").strip()
    value = raw.lower()
    if value in _TRUE:
        return Mode(True, f"{QUICK_ENV}={raw}", gpu)
    if value in _FALSE:
        return Mode(False, f"{QUICK_ENV}={raw}", gpu)
    if value:
        raise ValueError(
            f"{QUICK_ENV}={raw!r} is not understood; use {QUICK_ENV}=1 for quick mode, "
            f"{QUICK_ENV}=0 for full mode, or leave it unset (quick without a GPU)."
        )
    if gpu:
        return Mode(False, f"{QUICK_ENV} is unset and PyTorch sees a GPU", gpu)
    return Mode(True, f"{QUICK_ENV} is unset and PyTorch sees no GPU", gpu)


def runs_here(needs: str, mode: Mode) -> bool:
    """Whether a solution that needs ``needs`` (e.g. ``"a GPU and the real data sets"``) runs
    in ``mode``: in quick mode it does not, and the reason is printed instead of silence.

    Example:
        >>> if runs_here("a GPU", get_mode()):  # doctest: +SKIP
        ...     run_the_long_job()
    """
    if mode.quick:
        print(
            f"Skipped in quick mode: this solution needs {needs}. Run the notebook in full "
            "mode (CTLIB_QUICK=0) where you have it."
        )
        return False
    return True
