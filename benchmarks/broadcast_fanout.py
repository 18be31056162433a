"""Fan-out benchmark for triolette.broadcast: one publisher, many SSE subscribers.

    python benchmarks/broadcast_fanout.py                      # 1000 subscribers, 100 messages
    python benchmarks/broadcast_fanout.py --subscribers 200 --messages 20

Three runs, one after the other, each against a real ``python -m triolette`` server on
127.0.0.1 and (for the first two) a real redis-server started here:

- ``redis-shared``: 2 workers, ``Broadcast("redis://...")``: one pub/sub connection per
  worker, fanned out inside the worker;
- ``redis-naive``: 2 workers, one coredis pub/sub connection per SSE client (what code
  without a channel layer does);
- ``memory``: 1 worker, ``Broadcast("memory://")``.

The publisher POSTs each message (stamped with the wall clock) through one keep-alive
connection; the subscribers are plain sockets in this process that read the SSE stream.
Latency is from just before the POST to the subscriber reading the event (so it includes
the POST's handling); p50 and p99 are over every delivery. RSS per subscriber is the
growth of the workers' summed VmRSS from before the subscribers connect to when all are
subscribed, divided by their number.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TypedDict

import httpx
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer, find_redis_server  # noqa: E402

APP = """
import os
from contextlib import asynccontextmanager

import coredis
from coredis.retry import NoRetryPolicy

from triolette.applications import Triolette
from triolette.broadcast import Broadcast
from triolette.responses import PlainTextResponse
from triolette.routing import Route
from triolette.sse import EventSourceResponse, ServerSentEvent

URL = os.environ["BROADCAST_URL"]


@asynccontextmanager
async def lifespan(app):
    async with Broadcast(URL, app=app, queue_size=256) as broadcast:
        yield {"broadcast": broadcast}


async def feed(request):
    broadcast = request.state.broadcast

    async def events():
        async with broadcast.subscribe("bench") as subscriber:
            yield ServerSentEvent(str(os.getpid()), event="hello")
            async for message in subscriber:
                yield ServerSentEvent(message)

    return EventSourceResponse(events(), ping=None)


async def naive(request):
    async def events():
        async with (
            coredis.Redis.from_url(URL, decode_responses=True, max_connections=1) as client,
            client.pubsub(retry_policy=NoRetryPolicy(), ignore_subscribe_messages=True) as pubsub,
        ):
            await pubsub.subscribe("bench")
            yield ServerSentEvent(str(os.getpid()), event="hello")
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True)
                if message is not None and message["type"] == "message":
                    yield ServerSentEvent(message["data"])

    return EventSourceResponse(events(), ping=None)


async def publish(request):
    await request.state.broadcast.publish("bench", (await request.body()).decode())
    return PlainTextResponse("ok")


app = Triolette(
    routes=[Route("/feed", feed), Route("/naive", naive), Route("/publish", publish, methods=["POST"])],
    lifespan=lifespan,
)
"""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class Subscriber:
    def __init__(self) -> None:
        self.pid = ""
        self.latencies_ms: list[float] = []
        self.ready = trio.Event()

    async def run(self, port: int, path: str) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
            buffer = b""
            event = b""
            while True:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for line in lines:
                    if line.startswith(b"event: "):
                        event = line[7:]
                    elif line.startswith(b"data: "):
                        if event == b"hello":
                            self.pid = line[6:].decode()
                            self.ready.set()
                        else:
                            stamp = int(line[6:].split(b":")[1])
                            self.latencies_ms.append((time.time_ns() - stamp) / 1e6)
                    elif not line:
                        event = b""


class Result(TypedDict):
    """One scenario's figures, as ``main`` prints them."""

    name: str
    workers: int
    pids: int
    delivered: int
    expected: int
    p50_ms: float
    p99_ms: float
    rss_kib_per_subscriber: float
    seconds: float


async def scenario(
    name: str, url: str, workers: int, path: str, subscribers: int, messages: int, interval: float
) -> Result:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "bench_broadcast_app.py").write_text(APP)
        environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}", "BROADCAST_URL": url}
        command = [sys.executable, "-m", "triolette", "bench_broadcast_app:app", "--port", "0"]
        command += ["--workers", str(workers), "--graceful-timeout", "2"]
        process = await trio.lowlevel.open_process(command, cwd=directory, env=environment, stderr=subprocess.PIPE)
        stderr = b""
        assert process.stderr is not None
        with trio.fail_after(30):
            while len(re.findall(rb"Serving on http://127\.0\.0\.1:(\d+)", stderr)) < workers:
                stderr += await process.stderr.receive_some(4096)
        port = int(re.findall(rb"Serving on http://127\.0\.0\.1:(\d+)", stderr)[0])
        worker_pids = children(process.pid) if workers > 1 else [process.pid]
        await trio.sleep(1)
        rss_before = sum(rss_kib(pid) for pid in worker_pids)
        clients = [Subscriber() for _ in range(subscribers)]
        try:
            async with trio.open_nursery() as nursery:
                for client in clients:  # one at a time: each is subscribed before the next connects
                    nursery.start_soon(client.run, port, path)
                    with trio.fail_after(30):
                        await client.ready.wait()
                await trio.sleep(1)
                rss_after = sum(rss_kib(pid) for pid in worker_pids)
                started = time.monotonic()
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=None) as publisher:
                    for n in range(messages):
                        await publisher.post("/publish", content=f"{n}:{time.time_ns()}")
                        await trio.sleep(interval)
                with trio.move_on_after(120):
                    while sum(len(client.latencies_ms) for client in clients) < subscribers * messages:  # noqa: ASYNC110
                        await trio.sleep(0.05)
                elapsed = time.monotonic() - started
                nursery.cancel_scope.cancel()
        finally:
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(20):
                await process.wait()
            if process.returncode is None:
                process.kill()
    latencies = sorted(latency for client in clients for latency in client.latencies_ms)
    delivered = len(latencies)
    return {
        "name": name,
        "workers": workers,
        "pids": len({client.pid for client in clients}),
        "delivered": delivered,
        "expected": subscribers * messages,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": latencies[int(0.99 * (delivered - 1))] if latencies else float("nan"),
        "rss_kib_per_subscriber": (rss_after - rss_before) / subscribers,
        "seconds": elapsed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between two messages")
    args = parser.parse_args()
    executable = find_redis_server()
    if executable is None:
        raise SystemExit("redis-server not found; install it (apt-get install redis-server)")
    redis = RedisServer(executable)
    redis.start()
    try:
        results: list[Result] = []
        for name, url, workers, path in (
            ("redis-shared", redis.url, 2, "/feed"),
            ("redis-naive", redis.url, 2, "/naive"),
            ("memory", "memory://", 1, "/feed"),
        ):
            results.append(await scenario(name, url, workers, path, args.subscribers, args.messages, args.interval))
            print(results[-1], flush=True)
    finally:
        redis.stop()
    print()
    print(f"{args.subscribers} SSE subscribers, {args.messages} messages, one every {args.interval} s")
    print(f"{'scenario':<14} {'workers':>7} {'delivered':>12} {'p50 ms':>8} {'p99 ms':>8} {'RSS KiB/sub':>12}")
    for result in results:
        print(
            f"{result['name']:<14} {result['workers']:>7} {result['delivered']:>6}/{result['expected']:<6}"
            f"{result['p50_ms']:>8.2f} {result['p99_ms']:>8.2f} {result['rss_kib_per_subscriber']:>12.1f}"
        )


if __name__ == "__main__":
    trio.run(main)
