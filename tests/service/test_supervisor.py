"""``twin serve --workers N`` (:mod:`twin.service.supervisor`): one ``SO_REUSEPORT`` socket per worker, so that a
burst of connections is spread over the workers; a worker that dies is replaced on its socket; stopping ends all."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import uvicorn

from twin.service import supervisor

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT spreading is Linux behaviour")


def _pid(port: int) -> int:
    with httpx.Client(timeout=10) as c:  # a new connection each time
        return int(c.get(f"http://127.0.0.1:{port}/").text)


def test_reuseport_sockets_share_one_port() -> None:
    socks = supervisor.reuseport_sockets("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in socks}
        assert len(ports) == 1 and ports != {0}
    finally:
        for s in socks:
            s.close()


def test_workers_share_connections_and_a_dead_worker_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # the spawned workers import _pid_app from here
    socks = supervisor.reuseport_sockets("127.0.0.1", 0, 2)
    port = socks[0].getsockname()[1]
    config = uvicorn.Config("_pid_app:app", host="127.0.0.1", port=port, workers=2, log_level="warning")
    stop, started = threading.Event(), []
    th = threading.Thread(target=supervisor.serve, args=(config, 2),
                          kwargs={"sockets": socks, "stop": stop, "on_start": started.append}, daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _pid(port)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the workers did not start"
                time.sleep(0.2)
        first = started[-1]
        seen = Counter(_pid(port) for _ in range(200))
        assert set(seen) == set(first)  # both workers answer new connections: 200 connections, no worker idle
        assert min(seen.values()) >= 40
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(started) < 2:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.1)
        replaced = started[-1]
        assert replaced[1] == first[1] and replaced[0] != first[0]
        deadline = time.monotonic() + 60
        while replaced[0] not in {_pid(port) for _ in range(20)}:  # the new worker answers on the same port
            assert time.monotonic() < deadline, "the new worker never answered"
            time.sleep(0.2)
    finally:
        stop.set()
        th.join(60)
    assert not th.is_alive()
    for pid in started[-1]:
        with pytest.raises(ProcessLookupError):  # every worker ended (and was reaped)
            os.kill(pid, 0)
