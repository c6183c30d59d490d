"""The kit's error types, in one place.

Every error a user can cause (a missing data set, a corrupt image, a failed download, an
unreachable weight file, a diverged training) is an instance of :class:`CtlibError`, so a
notebook can catch them all and the command line turns each into one message. Each type
also derives from the built-in exception it refines (``ValueError``, ``OSError``,
``RuntimeError``), so code that caught those before still catches them.

Messages say what came in, what was expected and how to fix it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_HELD",
    "CheckpointError",
    "CtlibError",
    "DataError",
    "DataVerificationError",
    "DownloadError",
    "ImageReadError",
    "RunFileError",
    "TrainingDivergedError",
    "UnsafeArchiveError",
    "WeightsUnavailableError",
]

#: The exit status of ``python -m ctlib cv`` when a requested fold is being trained by another
#: process: not failed, not done; run it again later (EX_TEMPFAIL of sysexits.h). The sweep
#: reports such a cell as held elsewhere.
EXIT_HELD = 75


class CtlibError(Exception):
    """Base class of the kit's errors: its message names the file or value and the fix."""


class DataError(CtlibError, ValueError):
    """A data set folder is missing, laid out wrongly or holds the wrong files."""


class DataVerificationError(DataError):
    """Files of a data set are missing, undecodable or altered; see ``.report``."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


class ImageReadError(CtlibError, OSError):
    """An image file could not be decoded; the message names the file and the fix."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"Cannot read image {str(self.path)!r}: {reason}.")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across DataLoader workers
        return type(self), (str(self.path), self.reason)


class DownloadError(CtlibError, RuntimeError):
    """A data set could not be fetched; the message says what was tried and what to do."""


class UnsafeArchiveError(DownloadError):
    """An archive holds a member that would be written outside the destination."""


class WeightsUnavailableError(CtlibError, RuntimeError):
    """Pretrained weights were asked for but could be found neither on disk nor on the hub."""


class TrainingDivergedError(CtlibError, RuntimeError):
    """The loss became NaN or infinite."""


class RunFileError(CtlibError, ValueError):
    """A file of a runs or results folder (metrics, config, history, predictions, folds) is
    malformed; the message names it, says what is wrong and how to recover."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(
            f"{str(self.path)!r} is not a valid {self.path.name}: {problem}. The fold it belongs "
            "to is damaged: copy it again from where it came from, or train it again (delete "
            "its folder and run the same command)."
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (str(self.path), self.problem)


class CheckpointError(CtlibError, ValueError):
    """A training checkpoint cannot be resumed from: corrupt, truncated, foreign or unsafe."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"Cannot resume from {str(self.path)!r}: {reason}. Start this fold again with "
            "--no-resume (resume=False in Python), or delete the file; nothing was changed."
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (str(self.path), self.reason)
