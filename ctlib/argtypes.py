"""The command line's number options: each with its range, refused before any work starts.

:class:`Number` is an ``argparse`` type (``type=Number(int, 1)``); argparse names the option
in its message. Every numeric option of every command uses one (``tests/test_bad_inputs.py``
reads them all from the parser and tries values out of each range).
"""

from __future__ import annotations

import argparse
import math

__all__ = ["Number"]


class Number:
    """An argparse type: a finite number of ``kind`` within its bounds, refused before any
    work starts with a message that names the option (argparse adds it).

    Args:
        kind: ``int`` or ``float``.
        low: the smallest value allowed (None: no lower bound).
        high: the largest value allowed (None: no upper bound).
        above: a bound the value must exceed (e.g. a learning rate: above 0).
    """

    def __init__(
        self, kind: type, low: float | None = None, high: float | None = None, *,
        above: float | None = None,
    ) -> None:  # fmt: skip
        self.kind, self.low, self.high, self.above = kind, low, high, above
        self.__name__ = kind.__name__  # argparse names the type in its message

    def describe(self) -> str:
        """The range in words, e.g. ``an integer >= 1``."""
        what = "an integer" if self.kind is int else "a finite number"
        parts = [f"> {self.above:g}"] if self.above is not None else []
        parts += [f">= {self.low:g}"] if self.low is not None else []
        parts += [f"<= {self.high:g}"] if self.high is not None else []
        return f"{what} {' and '.join(parts)}".strip()

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text!r}") from None
        if not math.isfinite(value) or not (
            (self.above is None or value > self.above)
            and (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
        ):
            raise argparse.ArgumentTypeError(f"expected {self.describe()}, got {text}")
        return value

    def bad_values(self) -> list[str]:
        """Values this type refuses (for the tests that try every option)."""
        bad = ["x"] + (["nan", "inf"] if self.kind is float else ["1.5"])
        if self.above is not None:
            bad.append(str(self.kind(self.above)))
        if self.low is not None:
            bad.append(str(self.kind(self.low) - 1))
        if self.high is not None:
            bad.append(str(self.kind(self.high) + 1))
        return bad

    def __repr__(self) -> str:
        return f"Number({self.describe()})"
