"""Shared fixtures: the default twin (built once if missing) and small helpers."""

from __future__ import annotations

import pandas as pd
import pytest

import twin
from twin.build import build_twin
from twin.io import default_twin_dir


@pytest.fixture(scope="session")
def default_twin() -> twin.Twin:
    """The default twin (seed 20231), built into data/generated/default if it is not there yet."""
    root = default_twin_dir()
    if not (root / "manifest.json").exists():
        build_twin(root, progress=False)
    return twin.load(root)


@pytest.fixture(scope="session")
def cat() -> pd.DataFrame:
    """The shipped incident catalogue (grid item types with levels and time limits)."""
    from twin.incident_catalogue import load_catalogue

    return load_catalogue()
