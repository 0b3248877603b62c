"""Push-feed latency: commit → event on N concurrent ``GET /events`` subscribers (Server-Sent Events).

``measure_sse(base_url, n_subscribers, n_events, api_key=…)`` opens ``n_subscribers`` streams (``kind=worker.status``),
then commits ``n_events`` worker status changes through ``POST /workers/{id}/status`` (100 ms apart) and times each
event from just before its POST is sent (so the figure includes the write, its commit and the feed poll) to its
arrival on every subscriber. Returns ``sse_p50_ms``, ``sse_p99_ms``, ``sse_max_ms``, ``sse_p99_after_ack_ms``
(from the POST's response instead: the commit happened between the two), the delivery count and whether every
subscriber got every event in order. ``benchmarks/load.py`` calls it against its running server.

Standalone (``.venv/bin/python benchmarks/sse.py [--subscribers 200] [--events 10]``) it starts ``uvicorn`` in a
subprocess on the default twin with a throwaway SQLite store and a district key, so the server does not share the
client's interpreter; or give ``--base-url`` and ``--key`` for a running service. Last line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

__all__ = ["measure_sse"]


_VERSION = re.compile(rb'"status_version":(\d+)')


async def _subscriber(base_url: str, headers: dict[str, str], connected: list[int], all_in: asyncio.Event,
                      n_subscribers: int, want: int, arrivals: list[tuple[int, float]]) -> None:
    """One SSE stream on a bare asyncio connection (an HTTP client library's per-line parsing would make 200
    streams in one Python process measure the client, not the server)."""
    u = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(u.hostname, u.port or 80)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET /events?kind=worker.status HTTP/1.1\r\nHost: {u.netloc}\r\n{head}"
                 "Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError("the server closed the stream before its headers")
            buf += chunk
        status = buf.split(b"\r\n", 1)[0]
        if b" 200 " not in status:
            raise ConnectionError(f"GET /events: {status.decode(errors='replace')}")
        connected[0] += 1
        if connected[0] == n_subscribers:
            all_in.set()
        buf = buf.split(b"\r\n\r\n", 1)[1]
        while len(arrivals) < want:
            cut = buf.rfind(b"\n") + 1  # complete lines only: a line split across reads waits for its end
            for m in _VERSION.finditer(buf, 0, cut):
                arrivals.append((int(m.group(1)), time.perf_counter()))
            buf = buf[cut:]
            if len(arrivals) >= want:
                break
            chunk = await reader.read(65536)
            if not chunk:
                return
            buf += chunk
    finally:
        writer.close()


async def _measure(base_url: str, n_subscribers: int, n_events: int, api_key: str, worker_id: str | None,
                   timeout_s: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=n_subscribers + 20, max_keepalive_connections=20)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=httpx.Timeout(timeout_s)) as client:
        if worker_id is None:
            r = await client.get("/workers", headers=headers)
            r.raise_for_status()
            rows = r.json()["workers"]
            if not rows:
                raise SystemExit("the key sees no workers (use a district/town/community key, not an analyst's)")
            worker_id = str(rows[0]["worker_id"])
        connected, all_in = [0], asyncio.Event()
        arrivals: list[list[tuple[int, float]]] = [[] for _ in range(n_subscribers)]
        tasks = [asyncio.create_task(_subscriber(base_url, headers, connected, all_in, n_subscribers, n_events,
                                                 arrivals[i])) for i in range(n_subscribers)]
        await asyncio.wait_for(all_in.wait(), timeout_s)
        sent: dict[int, float] = {}
        acked: dict[int, float] = {}
        for i in range(n_events):
            t0 = time.perf_counter()
            r = await client.post(f"/workers/{worker_id}/status", headers=headers,
                                  json={"status": "online" if i % 2 == 0 else "offline"})
            r.raise_for_status()
            v = int(r.json()["status_version"])
            sent[v], acked[v] = t0, time.perf_counter()
            await asyncio.sleep(0.1)
        done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for t in pending:
            t.cancel()
    versions = sorted(sent)
    lat = [(at - sent[v]) * 1000 for a in arrivals for v, at in a if v in sent]
    after_ack = [(at - acked[v]) * 1000 for a in arrivals for v, at in a if v in acked]
    in_order = all([v for v, _ in a] == versions for a in arrivals)
    a = np.asarray(lat) if lat else np.asarray([np.nan])
    b = np.asarray(after_ack) if after_ack else np.asarray([np.nan])
    return {"sse_p50_ms": round(float(np.percentile(a, 50)), 1), "sse_p99_ms": round(float(np.percentile(a, 99)), 1),
            "sse_max_ms": round(float(np.max(a)), 1),
            "sse_p99_after_ack_ms": round(float(np.percentile(b, 99)), 1), "subscribers": n_subscribers,
            "events": n_events, "delivered": len(lat), "expected": n_subscribers * n_events, "in_order": in_order}


def measure_sse(base_url: str, n_subscribers: int, n_events: int, *, api_key: str | None = None,
                worker_id: str | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
    """Commit → arrival latency (ms) of ``n_events`` worker-status events on ``n_subscribers`` SSE streams.

    ``api_key`` (default ``$TWIN_API_KEY``) must be allowed to change a worker's status (district/town/community);
    ``worker_id`` defaults to the first worker the key sees. The worker's status is toggled online/offline.
    """
    key = api_key or os.environ.get("TWIN_API_KEY")
    if not key:
        raise SystemExit("measure_sse needs api_key= or $TWIN_API_KEY (a district key: `twin users add … district`)")
    return asyncio.run(_measure(base_url.rstrip("/"), n_subscribers, n_events, key, worker_id, timeout_s))


def _serve(tmp: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """uvicorn in a subprocess on the default twin with a throwaway store; returns (process, base url, key)."""
    from twin.access import auth
    from twin.access.audit import use_audit_dir
    from twin.store.sql import Store

    url = str(tmp / "state.sqlite")
    st = Store(url)
    use_audit_dir(st, tmp / "audit")
    key = auth.add_user(st, "sse-bench", "district")
    st.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TWIN_DATABASE_URL": url, "TWIN_AUDIT_DIR": str(tmp / "audit")}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "twin.service.app:app_from_env",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"], env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base, key
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"uvicorn exited with {proc.returncode}")
        time.sleep(0.2)
    proc.terminate()
    raise SystemExit("the service did not start within 120 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url")
    ap.add_argument("--key", help="API key (default $TWIN_API_KEY); needed with --base-url")
    ap.add_argument("--subscribers", type=int, default=200)
    ap.add_argument("--events", type=int, default=10)
    args = ap.parse_args()
    if args.base_url:
        res = measure_sse(args.base_url, args.subscribers, args.events, api_key=args.key)
    else:
        with tempfile.TemporaryDirectory() as d:
            proc, base, key = _serve(Path(d))
            try:
                res = measure_sse(base, args.subscribers, args.events, api_key=key)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    res["load_avg"] = round(os.getloadavg()[0], 2)
    print(f"{res['subscribers']} subscribers x {res['events']} events: delivered {res['delivered']}/{res['expected']}"
          f", in order {res['in_order']}; commit -> screen p50 {res['sse_p50_ms']} ms, p99 {res['sse_p99_ms']} ms, "
          f"max {res['sse_max_ms']} ms; p99 after the write's response {res['sse_p99_after_ack_ms']} ms "
          f"(load {res['load_avg']})")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
