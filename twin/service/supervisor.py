"""Several uvicorn worker processes, each listening on its own ``SO_REUSEPORT`` socket of the same address.

With one shared listening socket (uvicorn's own ``--workers``), the worker whose event loop wakes first accepts the
whole backlog: a burst of connections — a wall of screens, a load generator — can land 64/0 or 45/19 on two
workers, and the busier one sets every latency. With one socket per worker the kernel spreads new connections over
the sockets by a hash of their addresses, so each worker gets its share (64 connections on 2 workers: 32 ± 4).

:func:`serve` starts the workers with uvicorn's own worker process class, restarts a worker that dies (on its
socket, so its share of new connections waits in that socket's backlog meanwhile) and stops them all on SIGINT or
SIGTERM. Linux ≥ 3.9 (``SO_REUSEPORT``); elsewhere use one shared socket (``uvicorn.run(..., workers=n)``).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Process

__all__ = ["reuseport_sockets", "serve"]

def reuseport_sockets(host: str, port: int, n: int, *, backlog: int = 2048) -> list[socket.socket]:
    """``n`` listening TCP sockets bound to the same ``host:port`` with ``SO_REUSEPORT`` (``port`` 0: a free port,
    the same for all)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    out: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(family, kind, proto)
            out.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(addr)
            if addr[1] == 0:  # the first picked a free port: the others join it
                addr = (addr[0], s.getsockname()[1], *addr[2:])
            s.listen(backlog)
            s.set_inheritable(True)
    except OSError:
        for s in out:
            s.close()
        raise
    return out


def serve(config: Config, workers: int, *, sockets: list[socket.socket] | None = None,
          stop: threading.Event | None = None, on_start: Callable[[list[int]], None] | None = None) -> int:
    """Run ``workers`` uvicorn worker processes of ``config`` (an import string app; ``config.host``/``port``), one
    ``SO_REUSEPORT`` socket each (``sockets``: already made by :func:`reuseport_sockets`), until SIGINT/SIGTERM or
    ``stop`` is set; 1 when a worker could not start. ``on_start(pids)`` is called with the worker process ids each
    time a worker is started."""
    socks = sockets if sockets is not None else reuseport_sockets(config.host, config.port, workers,
                                                                   backlog=config.backlog)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        def _stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _stop)
    procs = [Process(config, [s]) for s in socks]
    for p in procs:
        p.start()
    if on_start is not None:
        on_start([p.pid or 0 for p in procs])
    code = 0
    try:
        while not stop.wait(0.5):
            for i, p in enumerate(procs):
                if p.process.is_alive():
                    continue
                p.process.join()
                if p.exitcode == STARTUP_FAILURE:  # the app cannot start: restarting would not help
                    code = 1
                    stop.set()
                    break
                procs[i] = Process(config, [socks[i]])  # a new worker on the dead one's socket
                procs[i].start()
                if on_start is not None:
                    on_start([q.pid or 0 for q in procs])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        for s in socks:
            s.close()
    return code
