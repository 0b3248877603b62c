"""Every test of the app stops the live-feed threads its app runs started (``AppTest`` runs the pages in this
process): a feed left running ticks for the rest of the session and into interpreter shutdown."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True)
def _stop_live_feeds() -> Iterator[None]:
    yield
    from apps.live_feed import stop_feeds

    stop_feeds()
