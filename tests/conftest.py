"""Shared fixtures: the default twin (built once if missing) and small helpers."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import settings

import twin
from twin.io import default_twin_dir
from twin.synth.build import build_twin

# Property tests are deterministic: the same examples on every run and machine (no example database), so a CI run
# never fails at random; a test that wants more variety raises max_examples, not randomness.
settings.register_profile("twin", derandomize=True, database=None, print_blob=False)
settings.load_profile("twin")


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
    from twin.incidents.catalogue import load_catalogue

    return load_catalogue()
