"""Shared fixtures: where the real data lie, a private cache, the small synthetic set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def real_data_dir() -> Path | None:
    """``CTLIB_DATA_DIR`` if set, else ``../shared/data`` beside the repository, if present."""
    env = os.environ.get("CTLIB_DATA_DIR")
    if env:
        return Path(env)
    guess = Path(__file__).resolve().parents[2] / "shared" / "data"
    return guess if guess.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder holding the real data sets; skips (with the reason) when absent."""
    root = real_data_dir()
    if root is None or not (root / "covid19-ct").is_dir():
        pytest.skip(
            "real data sets not found: set CTLIB_DATA_DIR to the folder holding covid19-ct/"
        )
    return root


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep each test session's caches (synthetic set, verification stamps) private."""
    if "CTLIB_TEST_CACHE_DIR" in os.environ:
        os.environ["CTLIB_CACHE_DIR"] = os.environ["CTLIB_TEST_CACHE_DIR"]
    else:
        os.environ["CTLIB_CACHE_DIR"] = str(tmp_path_factory.mktemp("ctlib-cache"))


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory):  # -> CTDataset
    """A small synthetic set (12 patients) for the cross-validation and bad-input tests."""
    from ctlib.data import load_dataset
    from ctlib.data.synthetic import SyntheticConfig

    return load_dataset(
        "synthetic",
        tmp_path_factory.mktemp("synth"),
        synthetic=SyntheticConfig(n_patients=12),
        progress=False,
    )
