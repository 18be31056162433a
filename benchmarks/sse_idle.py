"""Idle server-sent event streams at scale: ping intervals, memory, tasks and objects per stream.

Starts ``python -m triolette sse_idle:app --port 0`` (this module is also the app) and opens
N idle ``EventSourceResponse`` streams to it from this process (a trio client, with its own
garbage collector off so that its pauses are not counted as the server's). Each stream's
source yields nothing: only the server's pings arrive, one per ``--ping`` seconds. After
every stream is open, the client records each stream's ping arrival times for ``--cycles``
ping periods, then reports:

- the p50/p90/p99/max interval between two pings on the same stream (the target: < 16 s
  for a 15 s ping; with ``--ping 5`` compare against ping + 1 s);
- the server's RSS per stream (VmRSS in /proc/<pid>/status, before and after opening);
- trio tasks and GC-tracked objects per stream (the app's ``/stats`` endpoint counts
  ``len(gc.get_objects())`` and walks trio's task tree), and the server's longest full
  collection (gen 2) while the streams were open.

``SSE_GC`` in the server's environment picks the GC policy (``--gc``): ``default``, ``freeze``
(``gc.freeze()`` once each stream has started, so that older objects are never scanned again)
``startup-freeze`` (``gc.freeze()`` when the app is created, before any stream), ``tuned``
(``gc.set_threshold(10_000, 10, 10)``) or ``off``. Run: ``python benchmarks/sse_idle.py -n 5000 --ping 5``.
Run time is bounded: about ramp-up + (cycles + 1) x ping seconds.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the app (imported by the server process) ---------------------------------------------

_gc_pauses: list[float] = []
_gc_started = [0.0]


def _gc_callback(phase: str, info: dict[str, Any]) -> None:
    if info["generation"] != 2:
        return
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        _gc_pauses.append(time.perf_counter() - _gc_started[0])


def _count_tasks() -> int:
    count = 0
    root = trio.lowlevel.current_root_task()
    assert root is not None  # called inside trio.run
    pending = [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def _make_app() -> Any:
    from triolette.applications import Triolette
    from triolette.responses import JSONResponse
    from triolette.routing import Route
    from triolette.sse import EventSourceResponse

    policy = os.environ.get("SSE_GC", "default")
    ping = float(os.environ.get("SSE_PING", "15"))
    opened = [0]

    async def nothing() -> Any:
        await trio.sleep_forever()
        yield  # type: ignore[unreachable]  # pragma: no cover - never reached: an idle source

    async def stream(request: Any) -> EventSourceResponse:
        opened[0] += 1
        return EventSourceResponse(nothing(), ping=ping, send_timeout=None)

    async def stats(request: Any) -> JSONResponse:
        objects = gc.get_objects()  # counted before a freeze: frozen objects are not listed
        types = Counter(type(obj).__qualname__ for obj in objects) if request.query_params.get("types") else {}
        if request.query_params.get("freeze") and policy == "freeze":
            gc.freeze()
        if request.query_params.get("reset"):
            _gc_pauses.clear()
        return JSONResponse(
            {
                "pid": os.getpid(),
                "objects": len(objects),
                "types": dict(types),
                "tasks": _count_tasks(),
                "opened": opened[0],
                "gc_max": max(_gc_pauses, default=0.0),
                "gc_count": len(_gc_pauses),
                "frozen": gc.get_freeze_count(),
            }
        )

    _raise_nofile()
    gc.callbacks.append(_gc_callback)
    if policy == "off":
        gc.disable()
    elif policy == "startup-freeze":
        gc.freeze()  # what the server could do by itself: freeze what exists before any stream
    elif policy == "tuned":
        gc.set_threshold(10_000, 10, 10)  # young collections 14x rarer: fewer transients promoted
    return Triolette(routes=[Route("/stream", stream), Route("/stats", stats)])


if os.environ.get("SSE_IDLE_SERVER"):
    app = _make_app()


# -- the client (this process) ----------------------------------------------------------------


async def _get_json(port: int, path: str) -> dict[str, Any]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        data = b""
        with trio.fail_after(120):
            while chunk := await stream.receive_some(65536):
                data += chunk
    return dict(json.loads(data.split(b"\r\n\r\n", 1)[1]))


def _rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    if match is None:
        raise RuntimeError(f"no VmRSS in /proc/{pid}/status")
    return int(match.group(1))


class _Streams:
    def __init__(self, count: int) -> None:
        self.arrivals: list[list[float]] = [[] for _ in range(count)]
        self.open = 0
        self.failed = 0
        self.recording = False
        self.all_open = trio.Event()
        self.count = count

    async def one(self, port: int, index: int, limiter: trio.CapacityLimiter) -> None:
        try:
            async with limiter:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                await stream.send_all(b"GET /stream HTTP/1.1\r\nHost: bench\r\n\r\n")
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = await stream.receive_some(65536)
                    if not chunk:
                        raise OSError("closed before the response head")
                    head += chunk
        except OSError:
            self.failed += 1
            self._counted()
            return
        self.open += 1
        self._counted()
        arrivals = self.arrivals[index]
        async with stream:
            while chunk := await stream.receive_some(65536):
                if self.recording and b"ping" in chunk:
                    arrivals.append(trio.current_time())

    def _counted(self) -> None:
        if self.open + self.failed == self.count:
            self.all_open.set()


async def _client(args: argparse.Namespace, port: int, pid: int) -> dict[str, Any]:
    before = await _get_json(port, "/stats?types=1")
    rss_before = _rss_kib(pid)
    streams = _Streams(args.streams)
    limiter = trio.CapacityLimiter(100)
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        for index in range(args.streams):
            nursery.start_soon(streams.one, port, index, limiter)
        with trio.fail_after(args.ramp_limit):
            await streams.all_open.wait()
        ramp = time.monotonic() - started
        opened = await _get_json(port, "/stats?freeze=1&reset=1&types=1")
        await trio.sleep(args.ping)  # every stream's next ping is now on its way
        streams.recording = True
        await trio.sleep(args.ping * args.cycles + 1)
        streams.recording = False
        after = await _get_json(port, "/stats")
        rss_after = _rss_kib(pid)
        nursery.cancel_scope.cancel()
    intervals = sorted(b - a for arrivals in streams.arrivals for a, b in itertools.pairwise(arrivals))
    count = max(streams.open, 1)
    types = {name: round((n - before["types"].get(name, 0)) / count, 1) for name, n in opened["types"].items()}
    if args.types:
        print(json.dumps(dict(sorted(types.items(), key=lambda item: -item[1])[:40])))

    def pct(q: float) -> float:
        return intervals[min(len(intervals) - 1, int(q * len(intervals)))] if intervals else float("nan")

    return {
        "streams": streams.open,
        "failed": streams.failed,
        "ramp_s": round(ramp, 1),
        "intervals": len(intervals),
        "p50": round(pct(0.50), 2),
        "p90": round(pct(0.90), 2),
        "p99": round(pct(0.99), 2),
        "max": round(intervals[-1], 2) if intervals else float("nan"),
        "mean": round(statistics.fmean(intervals), 2) if intervals else float("nan"),
        "rss_per_stream_kib": round((rss_after - rss_before) / count, 1),
        "rss_after_mib": round(rss_after / 1024, 1),
        "tasks_per_stream": round((after["tasks"] - before["tasks"]) / count, 2),
        "objects_per_stream": round((opened["objects"] - before["objects"]) / count, 1),
        "gc_full_max_s": round(after["gc_max"], 3),
        "gc_full_count": after["gc_count"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--streams", type=int, default=5000)
    parser.add_argument("--ping", type=float, default=15.0, help="the server's ping interval, seconds")
    parser.add_argument("--cycles", type=int, default=4, help="ping periods recorded once all streams are open")
    parser.add_argument("--gc", choices=["default", "freeze", "startup-freeze", "tuned", "off"], default="default")
    parser.add_argument("--types", action="store_true", help="also print GC-tracked objects per stream by type")
    parser.add_argument("--ramp-limit", type=float, default=300.0, help="seconds allowed to open every stream")
    args = parser.parse_args()
    _raise_nofile()
    gc.disable()  # the client's own collections must not show as late pings
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{HERE}",
        "SSE_IDLE_SERVER": "1",
        "SSE_PING": str(args.ping),
        "SSE_GC": args.gc,
    }
    command = [sys.executable, "-m", "triolette", "sse_idle:app", "--port", "0", "--graceful-timeout", "1"]
    server = subprocess.Popen(command, cwd=HERE, env=env, stderr=subprocess.PIPE, text=True)
    try:
        port = 0
        assert server.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = server.stderr.readline()
            if not line:
                break
            match = re.search(r"Serving on http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        if not port:
            raise RuntimeError("the server did not say where it serves")
        threading.Thread(target=server.stderr.read, daemon=True).start()  # drain the log
        result = trio.run(_client, args, port, server.pid)
        print(json.dumps({"gc": args.gc, "ping": args.ping, **result}))
    finally:
        server.send_signal(2)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
