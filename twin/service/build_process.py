"""One version builder process per host: makes the costly parts of each new head version once, off the workers.

Every service worker answers from its own built twin of each partition version (:mod:`twin.service._twins`). Most of
a version's build is its :class:`~twin.partition.versions.VersionParts` (grid polygons re-derived from cells,
workers re-assigned: ≈ 50 of ≈ 75 ms on the default twin), and a build in a worker's thread holds that worker's GIL,
so its readers wait. ``twin serve`` therefore starts this process (``python -m twin.service.build_process``); it
loads the twin at the server's priority, then builds at a lower one (``nice`` 10): it polls the store's head and
writes each new head's parts to a directory the workers read (:func:`await_parts`). A worker then only assembles
the version (≈ 15 ms).

The directory (made by ``twin serve`` with :func:`make_parts_dir`, mode 0700, removed when it stops) holds:

* ``server.pid``: the process id of the ``twin serve`` that made it. A server killed outright (SIGKILL, power
  loss) cannot remove its directory; the next ``twin serve`` on the host removes every such directory whose
  server is gone (:func:`sweep_parts_dirs`);

* ``v{N}.parts``: the parts of version ``N`` (pickle; written to a temporary name and renamed, so never read half
  written);
* ``v{N}.error``: the build of ``N`` failed here (the worker builds it itself and reports the error);
* ``builder.json``: ``{"pid", "beat", "building", "seen"}``: a heartbeat (wall time, rewritten every
  ``BEAT_S``), the version being built (0: none) and the newest head seen.

A worker waits for parts only while the builder is alive (heartbeat newer than ``STALE_S``) and has not passed the
version by; otherwise it builds the whole version itself, as a process without a builder does. So a builder that
crashes, hangs or is still loading costs speed, never an answer. Heads that follow each other faster than builds
are coalesced: the builder builds the newest, and a worker builds a skipped version itself if asked for it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from twin.encoding import dumps
from twin.errors import PartitionError
from twin.model import Twin, load
from twin.partition.versions import (
    BASE_VERSION,
    VersionParts,
    checkout,
    ensure_base,
    head_version,
    load_partition,
    prepare_checkouts,
    twin_with_partition,
    version_parts,
)
from twin.service._versioned import IndexSeeds, build_indexes, index_seeds, seed_indexes
from twin.store.sql import Store, open_store

__all__ = ["BEAT_S", "PARTS_PREFIX", "STALE_S", "Prepared", "await_parts", "checkout_prepared", "lower_priority",
           "make_parts_dir", "parts_path", "prepare", "read_status", "run", "start", "sweep_parts_dirs", "write_parts"]

BEAT_S = 0.5
"""Seconds between heartbeats of the builder process."""
STALE_S = 5.0
"""A builder whose heartbeat is older than this (seconds) is taken as gone."""
KEEP = 16
"""How many versions' parts the directory keeps (older ones are removed)."""
NICE = 10
"""The builder's ``nice`` increment once it has loaded: on a machine the workers keep busy it gets a small share of
the CPU for its builds."""
_STATUS = "builder.json"


@dataclass(frozen=True)
class Prepared:
    """What the builder process makes of a version: its :class:`~twin.partition.versions.VersionParts` and its
    query indexes (:class:`~twin.service._versioned.IndexSeeds`)."""

    parts: VersionParts
    seeds: IndexSeeds | None = None


PARTS_PREFIX = "twin-versions-"
"""Name prefix of the parts directories (in the temporary directory)."""
_OWNER = "server.pid"


def make_parts_dir(root: Path | None = None) -> Path:
    """A new parts directory (mode 0700) under ``root`` (default: the temporary directory) naming this process as
    its server, after removing the directories of servers that are gone (:func:`sweep_parts_dirs`)."""
    root = Path(root) if root is not None else Path(tempfile.gettempdir())
    sweep_parts_dirs(root)
    directory = Path(tempfile.mkdtemp(prefix=PARTS_PREFIX, dir=root))
    (directory / _OWNER).write_text(str(os.getpid()))
    return directory


def sweep_parts_dirs(root: Path) -> list[Path]:
    """Remove the parts directories under ``root`` left by servers that died without removing them: this user's,
    naming a server process that no longer exists. A directory naming no server (or one that cannot be read) is
    left alone. Returns the directories removed."""
    removed = []
    for directory in sorted(Path(root).glob(PARTS_PREFIX + "*")):
        try:
            if directory.is_symlink() or not directory.is_dir() or directory.stat().st_uid != os.getuid():
                continue
            pid = int((directory / _OWNER).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid > 0 and not _process_exists(pid):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def prepare(base: Twin, store: Store, vid: int) -> Prepared:
    """Make version ``vid``'s parts and query indexes from ``base`` (the built twin, query indexes built)."""
    p = load_partition(store, base, vid)
    parts = version_parts(base, p)
    t = twin_with_partition(base, p, version=vid, parts=parts)
    build_indexes(t)
    return Prepared(parts, index_seeds(t))


def parts_path(directory: Path, vid: int) -> Path:
    """Where version ``vid``'s parts are written."""
    return Path(directory) / f"v{int(vid)}.parts"


def checkout_prepared(base: Twin, store: Store, vid: int, prepared: Prepared | None) -> tuple[Twin, bool]:
    """Version ``vid``'s twin made from what the builder process prepared (its parts, its query indexes installed
    where they fit: :func:`~twin.service._versioned.seed_indexes`), or in full when nothing was prepared or it was
    made for another partition; and whether the prepared parts were used. Query indexes not installed are left to
    :func:`~twin.service._versioned.build_indexes`."""
    if prepared is not None:
        try:
            t = checkout(base, vid, store=store, parts=prepared.parts)
        except PartitionError:  # made for another partition (e.g. another twin): made here, below
            pass
        else:
            if prepared.seeds is not None:
                seed_indexes(t, prepared.seeds)
            return t, True
    return checkout(base, vid, store=store), False


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # per thread: the heartbeat
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_parts(directory: Path, vid: int, parts: Prepared) -> Path:
    """Write what was prepared of version ``vid`` (atomically: a reader sees the whole file or none)."""
    path = parts_path(directory, vid)
    _atomic_write(path, pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def read_parts(directory: Path, vid: int) -> Prepared | None:
    """What was prepared of version ``vid``, or ``None`` when nothing is written (or unreadable: the caller builds
    it)."""
    try:
        data = parts_path(directory, vid).read_bytes()
    except FileNotFoundError:
        return None
    try:
        parts = pickle.loads(data)  # noqa: S301 - the service's own private directory (mode 0700)
    except Exception:  # noqa: BLE001 - a damaged file: the worker builds the version itself
        return None
    return parts if isinstance(parts, Prepared) and isinstance(parts.parts, VersionParts) else None


def _write_status(directory: Path, *, building: int, seen: int) -> None:
    _atomic_write(Path(directory) / _STATUS, dumps({"pid": os.getpid(), "beat": time.time(), "building": building,
                                                     "seen": seen}))


def read_status(directory: Path) -> dict[str, float] | None:
    """The builder's last status (``pid``, ``beat``, ``building``, ``seen``), or ``None`` when there is none or its
    heartbeat is older than :data:`STALE_S` (no builder: it never started, died or hangs)."""
    try:
        st = json.loads((Path(directory) / _STATUS).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(st, dict) or time.time() - float(st.get("beat", 0)) > STALE_S:
        return None
    return st


def await_parts(directory: Path, vid: int, timeout_s: float, *, poll_s: float = 0.05,
                check_s: float = 0.5) -> Prepared | None:
    """What the builder process prepared of version ``vid``: waits (up to ``timeout_s`` seconds) while the builder
    is alive and builds ``vid`` or has not seen it yet; ``None`` (build it yourself) when it is gone, failed on
    ``vid`` or passed it by, or on time-out. Looks for the file every ``poll_s`` (one ``stat``: a waiting worker
    thread wakes its process's GIL as little as it can) and at the builder's status every ``check_s``."""
    path = parts_path(directory, vid)
    deadline = time.monotonic() + timeout_s
    next_check = 0.0
    while True:
        if path.exists():
            return read_parts(directory, vid)
        now = time.monotonic()
        if now >= next_check:
            next_check = now + check_s
            if (Path(directory) / f"v{int(vid)}.error").exists():
                return None
            st = read_status(directory)
            if st is None:
                return None
            if int(st.get("building", 0)) != vid and int(st.get("seen", 0)) >= vid:
                return read_parts(directory, vid)  # passed by (or written just now)
        if now >= deadline:
            return None
        time.sleep(poll_s)


def _prune(directory: Path, keep: int) -> None:
    files = sorted(Path(directory).glob("v*.parts"), key=lambda p: int(p.stem[1:]) if p.stem[1:].isdigit() else 0)
    for old in files[: max(0, len(files) - keep)]:
        with contextlib.suppress(OSError):
            old.unlink()


def run(twin_root: Path | None, store: Store, directory: Path, *, poll_s: float = 0.05,
        parent_pid: int | None = None, stop: threading.Event | None = None, nice: int = 0) -> None:
    """The builder loop: load the twin, then build the parts of each new head version into ``directory`` until
    ``stop`` is set or the parent process ``parent_pid`` is gone.

    The loading runs at the caller's priority and the building at ``nice`` more (:func:`lower_priority`): loading
    at ``nice`` 10 is slow whenever the workers are busy before it is done (ready 48 s after start in one of four
    runs with wrk from the first answer, 21–22 s in the others), and the workers build every version in full
    meanwhile."""
    directory = Path(directory)
    base = load(twin_root)
    ensure_base(store, base)
    build_indexes(base)
    prepare_checkouts(base)
    if nice:
        lower_priority(nice)
    stop = stop or threading.Event()
    state = {"building": 0, "seen": 0}

    def beat() -> None:
        while not stop.wait(BEAT_S):
            if parent_pid is not None and os.getppid() != parent_pid:
                stop.set()
                return
            with contextlib.suppress(OSError):  # a full disk: the workers see a stale heartbeat and build
                _write_status(directory, **state)

    _write_status(directory, **state)
    beater = threading.Thread(target=beat, name="twin builder heartbeat", daemon=True)
    beater.start()
    done: set[int] = set()
    while not stop.is_set():
        try:
            vid = head_version(store)
        except Exception:  # noqa: BLE001 - no versions yet, or the store is unreachable for now: try again
            vid = BASE_VERSION
        if vid != BASE_VERSION and vid not in done:
            state.update(building=vid, seen=max(state["seen"], vid))
            _write_status(directory, **state)
            try:
                write_parts(directory, vid, prepare(base, store, vid))
            except Exception as e:  # noqa: BLE001 - the workers build it themselves and report the error
                _atomic_write(directory / f"v{vid}.error", repr(e).encode())
            done.add(vid)
            state.update(building=0)
            _write_status(directory, **state)
            _prune(directory, KEEP)
        stop.wait(poll_s)
    beater.join(timeout=2 * BEAT_S)


def lower_priority(nice: int) -> None:
    """Add ``nice`` to the niceness of every thread of this process (Linux sets it per thread: ``os.nice`` alone
    would leave the threads already started — Arrow's pool, jemalloc's — at the old priority); elsewhere
    ``os.nice``. Threads started later inherit it."""
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        os.nice(nice)
        return
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


def start(twin_root: Path | None, database_url: str | None, directory: Path) -> subprocess.Popen[bytes]:
    """Start the builder process for this process's workers (it ends when this process does)."""
    cmd = [sys.executable, "-m", "twin.service.build_process", "--dir", str(directory), "--parent-pid",
           str(os.getpid())]
    if twin_root is not None:
        cmd += ["--twin", str(twin_root)]
    if database_url:
        cmd += ["--database-url", str(database_url)]
    return subprocess.Popen(cmd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m twin.service.build_process", description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, required=True, help="directory the parts are written to")
    ap.add_argument("--twin", type=Path, default=None, help="twin directory (default: the default twin)")
    ap.add_argument("--database-url", default=None, help="shared store URL (as `twin serve`)")
    ap.add_argument("--parent-pid", type=int, default=None, help="stop when this process is gone")
    args = ap.parse_args(argv)
    run(args.twin, open_store(args.database_url, twin_root=args.twin), args.dir, parent_pid=args.parent_pid,
        nice=NICE)
    return 0


if __name__ == "__main__":  # run the imported module's code: what it pickles must name twin.service.build_process
    from twin.service.build_process import main as _main

    raise SystemExit(_main())
