"""Quick or full: the notebook's ``MODE``, else ``CTLIB_QUICK``, decides; no cell is edited.

**quick** runs on a CPU in minutes (the synthetic set, EfficientNet-Lite0, a few epochs at a
small canvas); **full** is the paper's Sec. 4 on a GPU (its data sets, architectures and
100-epoch recipe). ``CTLIB_QUICK`` reads ``1``/``true``/``yes``/``on`` as quick and
``0``/``false``/``no``/``off`` as full; with neither set, the mode is quick, on a GPU runtime
too: the lesson decides, not the runtime. See docs/DEVELOPERS.md, *Modes (notebook.mode)*.
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
    quick_time: str = "minutes"
    full_time: str = "hours on a GPU"

    @property
    def name(self) -> str:
        """``"quick"`` or ``"full"``."""
        return "quick" if self.quick else "full"

    def __str__(self) -> str:
        if self.quick:
            what = f"CPU-sized: synthetic data, a few epochs; about {self.quick_time}"
            switch = (
                f'For the paper\'s full run ({self.full_time}): MODE = "full" in the '
                "parameters cell, or CTLIB_QUICK=0."
            )
        else:
            what = f"the paper's data sets and 100-epoch recipe; {self.full_time}" + (
                "" if self.gpu else " (PyTorch sees no GPU: far slower here!)"
            )
            switch = 'Back to quick: MODE = "quick" in the parameters cell, or CTLIB_QUICK=1.'
        return f"{self.name} mode ({self.reason}): {what}.\n{switch}"


def get_mode(
    choice: str | Mode | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    gpu: bool | None = None,
    quick_time: str = "minutes",
    full_time: str = "hours on a GPU",
) -> Mode:
    """Quick or full mode (see the module docstring): the notebook's ``choice`` first, then
    ``CTLIB_QUICK``, else quick -- whatever the runtime has.

    Args:
        choice: the notebook's ``MODE`` parameter: ``"quick"``, ``"full"``, a :class:`Mode`, or
            None (let ``CTLIB_QUICK`` decide).
        environ: the environment to read (default ``os.environ``).
        gpu: whether a GPU is present (default: ``torch.cuda.is_available()``); it never
            chooses the mode, but full mode without one says it will be slow.
        quick_time: about how long the notebook takes in quick mode (printed).
        full_time: the same for full mode.

    Raises:
        ValueError: ``choice`` or ``CTLIB_QUICK`` holds something not understood.
    """
    if isinstance(choice, Mode):
        return choice
    environ = os.environ if environ is None else environ
    if gpu is None:
        gpu = bool(torch.cuda.is_available())
    times = {"quick_time": quick_time, "full_time": full_time}
    if choice is not None:
        value = str(choice).strip().lower()
        if value not in ("quick", "full"):
            raise ValueError(f'MODE = {choice!r} is not understood; use "quick", "full" or None.')
        return Mode(value == "quick", f"MODE = {value!r} in the parameters cell", gpu, **times)
    raw = environ.get(QUICK_ENV, "").strip()
    value = raw.lower()
    if value in _TRUE:
        return Mode(True, f"{QUICK_ENV}={raw}", gpu, **times)
    if value in _FALSE:
        return Mode(False, f"{QUICK_ENV}={raw}", gpu, **times)
    if value:
        raise ValueError(
            f"{QUICK_ENV}={raw!r} is not understood; use {QUICK_ENV}=1 for quick mode, "
            f"{QUICK_ENV}=0 for full mode, or leave it unset (quick)."
        )
    where = "a GPU runtime too" if gpu else "no GPU here"
    return Mode(True, f"neither MODE nor {QUICK_ENV} chose, so quick; {where}", gpu, **times)


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
            'mode (MODE = "full", or CTLIB_QUICK=0) where you have it.'
        )
        return False
    return True
