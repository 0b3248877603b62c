"""The per-version twin cache: the base twin, and the twins of the newest partition versions with query indexes.

A version's twin is built once (checkout + query indexes, ≈ 40–100 ms on the default twin) by ONE background builder
thread per process (ended by :meth:`Twins.close`), never on a reader's request path nor under a lock readers wait on;
under ``twin serve`` it mostly adopts the parts the builder process made (:mod:`twin.service.build_process`, 15 ms):

* a read of ``head`` (the default) whose head is not built yet asks the builder for it and is answered at once
  from the newest version already built (the answer names its version: body field and ``X-Twin-Version``);
  only a process that has built no version yet (not warmed) waits;
* a read of an explicit version waits for that version's build (the caller asked for exactly it);
* an edit returns when its version is durable in the store; the build follows in the background, and
  :meth:`Twins.wait_ready` (``GET /versions/{v}/ready?wait=5``) lets a client wait for it;
* builds nobody waits for are coalesced: edits arriving faster than builds build only the newest
  version, at most one such build per ``min_build_interval_s``, so a stream of edits costs readers at most one
  build's CPU at a time per process.

Every worker process builds each new head its readers need (one that died mid-build builds it again at warm-up); a
version first built anywhere is announced once on the push feed (``version.ready``, :func:`twin.store.feed.publish`).

Live records (:mod:`twin.live`): once change events are committed, :meth:`Twins.at` answers from the *live view* of
the version's twin (:meth:`twin.live.state.LiveTwin.twin_for`: the records with every committed change, the
version's grids), derived by ONE background thread per process (``twin live views``): it polls the change head
(:func:`twin.live.events.head_seq`, every ``live_poll_s``) so another process's commit becomes visible, and is woken
at once by a commit of this process. Readers never wait on a derivation: they get the last derived view, and the
version id returned (:class:`AnsweredVersion`) names the change head it reflects (``X-Twin-Changes``). While no
change was ever committed, readers get the plain built twin (no extra cost). A version's build derives its live
view before it is published.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from twin.live.events import head_seq
from twin.live.state import LiveTwin
from twin.model import Twin, load
from twin.partition.model import partition_from_twin
from twin.partition.versions import BASE_VERSION, ensure_base, prepare_checkouts, resolve_version
from twin.service._background import build_loop, live_loop, stop
from twin.service._head import HeadCache
from twin.service._params import parse_version
from twin.service._versioned import (
    EXAMPLE_AREA,
    AnsweredVersion,
    SupersededBuild,
    announce_ready,
    check_version,
    warm_edits,
)
from twin.service._versioned import build_indexes as _build_indexes  # a module global: tests replace it
from twin.service.build_process import await_parts, checkout_prepared
from twin.store.sql import Store

__all__ = ["EXAMPLE_AREA", "AnsweredVersion", "SupersededBuild", "Twins", "check_version"]

class Twins:
    """The twins one service process answers from.

    Parameters
    ----------
    twin_root : twin directory (``None``: :func:`twin.io.default_twin_dir`); loaded on first use.
    store : the shared store holding the partition versions.
    base : an already loaded base twin (tests).
    keep_versions : how many built versions to keep.
    min_build_interval_s : least time between the end of one build and the start of a build nobody waits for
        (edits faster than builds are coalesced; awaited builds start at once).
    live_poll_s : how often (seconds) the live-view thread reads the change head from the store.
    head_ttl_s : how long a ``head`` read trusts the head last read from the store (:class:`._head.HeadCache`).
    parts_dir : the directory of the host's builder process (:mod:`twin.service.build_process`), whose parts of a
        version a build uses instead of making them (``None``: every build is made here in full).
    parts_wait_s : how long a build waits for the builder process's parts (while that process is alive).
    """

    def __init__(self, twin_root: Path | None, store: Store, base: Twin | None = None, *,
                 keep_versions: int = 4, min_build_interval_s: float = 1.0, live_poll_s: float = 0.2,
                 head_ttl_s: float = 0.2, parts_dir: Path | None = None, parts_wait_s: float = 10.0) -> None:
        self.twin_root = twin_root
        self.store = store
        self.base = base
        self.keep_versions = keep_versions
        self.ready = self.warmed = self.closed = False
        self.built: dict[int, Twin] = {}
        self.build_seconds: dict[int, float] = {}
        self._lock = threading.Lock()
        self._builds: dict[int, Future[Twin]] = {}
        self._queue: queue.Queue[int] = queue.Queue()
        self._builder: threading.Thread | None = None
        self._on_ready: list[Callable[[int], None]] = [self._announce]
        self._awaited: set[int] = set()
        self.min_build_interval_s = min_build_interval_s
        self._last_build_end = -1e9
        self.live_poll_s = live_poll_s
        self.head = HeadCache(store, head_ttl_s)
        self.parts_dir = Path(parts_dir) if parts_dir is not None else None
        self.parts_wait_s = parts_wait_s
        self.parts_used: dict[int, bool] = {}  # version → built from the builder process's parts (tests, benchmarks)
        self.live_seq = 0  # the newest change event this process knows of (set by the live-view thread)
        self.live_derive_seconds: list[float] = []  # the last derivations' durations (benchmarks)
        self._live: LiveTwin | None = None
        self._views: dict[int, tuple[int, Twin, Twin]] = {}  # version → (change seq, built twin, live view)
        self._wanted: set[int] = set()
        self._wake = threading.Event()
        self._deriver: threading.Thread | None = None

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the background threads and wait for them (:func:`._background.stop`; the service's shutdown)."""
        stop(self, timeout_s)

    @property
    def loaded(self) -> bool:
        """Whether the base twin is in memory."""
        return self.base is not None

    def base_twin(self) -> Twin:
        """The base twin (loaded once; its partition registered as the store's base version)."""
        if self.base is None or not self.ready:
            with self._lock:
                if self.base is None:
                    self.base = load(self.twin_root)
                if not self.ready:
                    ensure_base(self.store, self.base)
                    self.ready = True
        if self._deriver is None:
            self._start_deriver()
        return self.base

    def at(self, version: str | None) -> tuple[Twin, int]:
        """The twin as of ``version`` (a number, ``base`` or ``head``; default head) and the resolved version id.

        ``head`` does not wait for a build once this process has built a version: an unbuilt head is queued and
        the newest built version older than it answers. An explicit version waits for its own build, and so does
        ``head`` in a process that has built nothing yet (not warmed: ``create_app(warm=False)``), rather than answering
        from the base partition. Once changes are committed the twin is the version's live view (see the module
        docstring) and the id an :class:`AnsweredVersion` naming the change head it reflects.
        """
        base = self.base_twin()
        v = parse_version(version)
        vid = self._resolve(v)
        if vid == BASE_VERSION:
            return self._live_of(base, vid)
        hit = self.built.get(vid)
        if hit is not None:
            return self._live_of(hit, vid)
        older = [x for x in list(self.built) if x < vid]
        if v == "head" and (older or self.warmed):
            self.request_build(vid)
            return self._live_of(self.built[max(older)], max(older)) if older else self._live_of(base, BASE_VERSION)
        # an explicit version, or a cold process that has built nothing yet
        return self._live_of(self.request_build(vid, wait=True).result(), vid)

    def _resolve(self, v: str) -> int:
        """The version id of ``v`` (``head``, ``base`` or digits): ``head`` from :class:`HeadCache`; a version this
        process has built needs no store query (versions are never deleted)."""
        if v == "head":
            return self.head.get()
        if v.isdigit() and int(v) in self.built:
            return int(v)
        return resolve_version(self.store, v)

    def note_head(self, vid: int) -> None:
        """This process has just made ``vid`` the head (an edit it committed): its next ``head`` reads use it."""
        self.head.note(vid)

    # -- live views ------------------------------------------------------------------------------------------
    def _live_of(self, t: Twin, vid: int) -> tuple[Twin, AnsweredVersion]:
        """``t`` (version ``vid``'s built twin) or, once changes are committed, its last derived live view; never
        waits (a missing or stale view is asked of the live-view thread)."""
        if self.live_seq == 0:
            return t, AnsweredVersion(vid, 0)
        hit = self._views.get(vid)
        if hit is None or hit[0] < self.live_seq or hit[1] is not t:
            if vid not in self._wanted or hit is None:
                with self._lock:
                    self._wanted.add(vid)
                self._wake.set()
        if hit is not None and hit[1] is t:
            return hit[2], AnsweredVersion(vid, hit[0])
        return t, AnsweredVersion(vid, 0)

    def live_twin(self) -> LiveTwin:
        """This process's :class:`LiveTwin` over the base twin and the store (made once; its commits wake the
        live-view thread)."""
        if self._live is None:
            base = self.base_twin()
            with self._lock:
                if self._live is None:
                    lt = LiveTwin(base, self.store)
                    lt.on_commit(lambda seq: self._wake.set())
                    self._live = lt
        return self._live

    def wait_live(self, seq: int, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds until ``head`` answers reflect change ``seq`` (tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while True:
            vid = self.newest_built()
            hit = self._views.get(vid)
            if hit is not None and hit[0] >= seq:
                return True
            if time.monotonic() >= deadline:
                return False
            with self._lock:
                self._wanted.add(vid)
            self._wake.set()
            time.sleep(0.01)

    def _start_deriver(self) -> None:
        with self._lock:
            if self._deriver is None and not self.closed:
                self._deriver = threading.Thread(target=live_loop, args=(weakref.ref(self), self._wake),
                                                 name="twin live views", daemon=True)
                self._deriver.start()

    def _derive_views(self) -> None:
        """Catch up with the change head and derive the live view of every version readers need (the newest
        built and those read since), newest first."""
        if self._live is None and head_seq(self.store) == 0:
            return
        lt = self.live_twin()
        seq = lt.refresh()
        if seq == 0:
            return
        self.live_seq = seq
        with self._lock:
            built = dict(self.built)
            targets = {v for v in self._wanted if v in built or v == BASE_VERSION}
            self._wanted = set(targets)
        targets.add(max(built) if built else BASE_VERSION)
        for vid in sorted(targets, reverse=True):
            pt = self.base_twin() if vid == BASE_VERSION else built[vid]
            hit = self._views.get(vid)
            if hit is None or hit[0] < seq or hit[1] is not pt:
                self._derive(lt, vid, pt)
        for vid in [v for v in list(self._views) if v not in built and v != BASE_VERSION]:
            self._views.pop(vid, None)

    def _derive(self, lt: LiveTwin, vid: int, pt: Twin) -> None:
        t0 = time.perf_counter()
        view = lt.twin_for(pt)
        seq = int(view.manifest.get("live_seq", 0))
        with self._lock:
            hit = self._views.get(vid)
            if hit is None or hit[1] is not pt or hit[0] <= seq:
                self._views[vid] = (seq, pt, view)
        self.live_derive_seconds = [*self.live_derive_seconds[-99:], time.perf_counter() - t0]

    def request_build(self, vid: int, *, wait: bool = False) -> Future[Twin]:
        """The future of ``vid``'s built twin; queues the build for the background builder if it is not built.

        ``wait``: the caller will wait for exactly this version. Builds nobody waits for are coalesced: when
        several are queued only the newest is built (at most one such build per ``min_build_interval_s``), and
        the futures of the skipped ones fail with :class:`SupersededBuild`.
        """
        base = self.base_twin()
        with self._lock:
            if wait:
                self._awaited.add(vid)
            fut = self._builds.get(vid)
            if fut is not None:
                return fut
            fut = self._builds[vid] = Future()
            hit = self.built.get(vid) if vid != BASE_VERSION else base
            if hit is not None:
                fut.set_result(hit)
                return fut
            self._start_builder()
        self._queue.put(vid)
        return fut

    def wait_ready(self, version: str, timeout_s: float) -> tuple[int, bool]:
        """The resolved version and whether this process has it built (waits up to ``timeout_s`` seconds)."""
        self.base_twin()
        vid = self._resolve(parse_version(version))
        if vid == BASE_VERSION or vid in self.built:
            return vid, True
        fut = self.request_build(vid, wait=True)
        try:
            fut.result(timeout=max(0.0, timeout_s))
        except TimeoutError:
            return vid, False
        return vid, True

    def newest_built(self) -> int:
        """The newest version this process answers ``head`` reads from."""
        return max(self.built, default=BASE_VERSION)

    def on_ready(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(version)`` in the builder thread each time a version is built (errors are ignored)."""
        self._on_ready.append(fn)

    # -- the builder thread ----------------------------------------------------------------------------------
    def _next(self, first: int) -> int:
        """The next version to build (``first`` was taken from the queue): an awaited one (oldest first), else the
        newest queued; the older queued versions nobody waits for are dropped (their futures fail with
        :class:`SupersededBuild`)."""
        queued = {first}
        while True:
            with self._lock:
                awaited = sorted(v for v in queued if v in self._awaited)
            if awaited:
                pick = awaited[0]
                break
            wait_s = self._last_build_end + self.min_build_interval_s - time.monotonic()
            if wait_s <= 0:
                pick = max(queued)
                break
            try:  # coalesce what arrives while the interval runs
                queued.add(self._queue.get(timeout=wait_s))
            except queue.Empty:
                pass
        for v in queued - {pick}:
            with self._lock:
                keep = v in self._awaited or v > pick
            if keep:
                self._queue.put(v)
            else:
                with self._lock:
                    fut = self._builds.pop(v, None)
                if fut is not None and not fut.done():
                    fut.set_exception(SupersededBuild(f"version {v} was not built: version {pick} is newer."))
        return pick

    def _start_builder(self) -> None:
        """Start the builder thread unless it runs or the twins are closed (call with ``self._lock`` held)."""
        if not self.closed and (self._builder is None or not self._builder.is_alive()):
            self._builder = threading.Thread(target=build_loop, args=(weakref.ref(self), self._queue),
                                             name="twin version builder", daemon=True)
            self._builder.start()

    def _build_next(self, first: int) -> None:
        """Build the next version (``first`` was just taken from the queue) and hand it to its waiters."""
        vid = self._next(first)
        with self._lock:
            fut = self._builds.get(vid)
        if fut is None or fut.done():
            return
        try:
            t0 = time.perf_counter()
            t = self._build(vid)
            self.build_seconds[vid] = time.perf_counter() - t0
        except BaseException as e:  # noqa: BLE001 - handed to the waiters; a later request retries
            with self._lock:
                self._builds.pop(vid, None)
                self._awaited.discard(vid)
            fut.set_exception(e)
            return
        finally:
            self._last_build_end = time.monotonic()
        with self._lock:
            self._awaited.discard(vid)
        fut.set_result(t)
        for fn in list(self._on_ready):
            try:
                fn(vid)
            except Exception:  # noqa: BLE001 - a listener must not stop the builder
                pass

    def _build(self, vid: int) -> Twin:
        base = self.base_twin()
        prepared = await_parts(self.parts_dir, vid, self.parts_wait_s) if self.parts_dir is not None else None
        t, self.parts_used[vid] = checkout_prepared(base, self.store, vid, prepared)
        _build_indexes(t)  # what was not installed from the builder process
        if self.live_seq > 0:  # published with its live view
            self._derive(self.live_twin(), vid, t)
        with self._lock:
            self.built[vid] = t
            for old in sorted(self.built)[: max(0, len(self.built) - self.keep_versions)]:
                del self.built[old]
                self._builds.pop(old, None)
                self.parts_used.pop(old, None)
            keep = {f"checkout:{self.store.url}:{v}" for v in self.built}
            for k in [k for k in base.cache if isinstance(k, str) and k.startswith("checkout:") and k not in keep]:
                base.cache.pop(k, None)
        return t

    def _announce(self, vid: int) -> None:
        announce_ready(self.store, vid)

    def warm(self) -> None:
        """Load the twin and build the head version and its query indexes before the first request (a version
        committed but never built — e.g. the builder was killed — is built here)."""
        base = self.base_twin()
        _build_indexes(base)
        vid = resolve_version(self.store, "head")
        if vid != BASE_VERSION:
            self.request_build(vid, wait=True).result()
        partition_from_twin(base)  # cached: edits and diffs start from it
        prepare_checkouts(base)
        warm_edits(self.store, base, vid)
        with self._lock:
            self._start_builder()
        self._derive_views()  # committed changes: the head's live view before the first request
        self.warmed = True
