"""The head partition version as one service process sees it: read from the store at most once per ``ttl_s``
instead of once per request, and set at once by this process's own edits."""

from __future__ import annotations

import time

from twin.partition.versions import resolve_version
from twin.store.sql import Store

__all__ = ["HeadCache"]


class HeadCache:
    """``head`` → version id for one store.

    Parameters
    ----------
    store : the store holding the partition versions.
    ttl_s : how long (seconds) a head read from the store is trusted; another process's edit is seen within it.
        0 reads the store every time.
    """

    def __init__(self, store: Store, ttl_s: float = 0.2) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._head: tuple[int, float] | None = None  # (version, time.monotonic() it was read)

    def get(self) -> int:
        """The head version id (:class:`NotFoundError` while the store holds no versions)."""
        h = self._head
        now = time.monotonic()
        if h is not None and now - h[1] < self.ttl_s:
            return h[0]
        vid = resolve_version(self.store, "head")
        self._head = (vid, now)
        return vid

    def note(self, vid: int) -> None:
        """This process has just made ``vid`` the head (an edit it committed): answer it from now on."""
        self._head = (int(vid), time.monotonic())
