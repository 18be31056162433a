"""End to end: ``python -m triolette app:app --workers 2`` on ``redis://``, with a real redis-server.

A message published through one worker reaches the SSE clients of both workers; a ``kill -9``
of Redis mid-stream and a restart on the same port are invisible to the subscribers (the
grace period is longer than the outage); when the clients leave, each worker is back to the
number of tasks it had before they came. Every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.test_serve import Server
from tests.redis_server import RedisServer, running_redis_server

pytestmark = [pytest.mark.e2e, pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning")]

SRC = Path(__file__).resolve().parents[2] / "src"

APP = """
import os
from contextlib import asynccontextmanager

import trio

from triolette.applications import Triolette
from triolette.broadcast import Broadcast, BroadcastUnavailable
from triolette.responses import JSONResponse, PlainTextResponse
from triolette.routing import Route
from triolette.sse import EventSourceResponse, ServerSentEvent


@asynccontextmanager
async def lifespan(app):
    async with Broadcast(os.environ["BROADCAST_URL"], app=app, grace=30) as broadcast:
        yield {"broadcast": broadcast}


async def feed(request):
    broadcast = request.state.broadcast

    async def events():
        async with broadcast.subscribe("feed") as subscriber:
            yield ServerSentEvent(str(os.getpid()), event="hello")
            async for message in subscriber:
                yield ServerSentEvent(message)

    return EventSourceResponse(events(), ping=None)


async def publish(request):
    try:
        await request.state.broadcast.publish("feed", (await request.body()).decode())
    except BroadcastUnavailable as exc:
        return PlainTextResponse(str(exc), status_code=503)
    return JSONResponse({"pid": os.getpid()})


def count_tasks(task):
    return 1 + sum(count_tasks(child) for nursery in task.child_nurseries for child in nursery.child_tasks)


async def tasks(request):
    return JSONResponse(
        {
            "pid": os.getpid(),
            "tasks": count_tasks(trio.lowlevel.current_root_task()),
            "subscribers": request.state.broadcast.subscribers(),
        }
    )


app = Triolette(
    routes=[Route("/feed", feed), Route("/publish", publish, methods=["POST"]), Route("/tasks", tasks)],
    lifespan=lifespan,
)
"""


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis_server() as server:
        yield server
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unclosed <MemoryObject", ResourceWarning)
        gc.collect()


class Client:
    """One SSE client: which worker it reached, and the messages it received."""

    def __init__(self) -> None:
        self.pid = ""
        self.messages: list[str] = []
        self.connected = trio.Event()

    async def run(self, url: str) -> None:
        async with httpx.AsyncClient(timeout=None) as http, http.stream("GET", f"{url}/feed") as response:
            event = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    if event == "hello":
                        self.pid = line[6:]
                        self.connected.set()
                    else:
                        self.messages.append(line[6:])
                elif not line:
                    event = ""


async def fresh_get(url: str) -> Any:
    async with httpx.AsyncClient(headers={"connection": "close"}) as http:
        while True:
            try:
                return (await http.get(url)).json()
            except httpx.TransportError:  # a worker still starting
                await trio.sleep(0.05)


async def task_counts(url: str) -> dict[str, dict[str, int]]:
    """Ask until both workers answered (the kernel picks the worker of each connection)."""
    seen: dict[str, dict[str, int]] = {}
    with trio.fail_after(20):
        while len(seen) < 2:
            answer = await fresh_get(f"{url}/tasks")
            seen[str(answer["pid"])] = {"tasks": answer["tasks"], "subscribers": answer["subscribers"]}
    return seen


async def publish(url: str, text: str) -> httpx.Response:
    async with httpx.AsyncClient(headers={"connection": "close"}) as http:
        return await http.post(f"{url}/publish", content=text)


async def wait_for(predicate: Any, what: str, limit: float = 20) -> None:
    with trio.move_on_after(limit):
        while not predicate():  # noqa: ASYNC110 - the state is in other processes
            await trio.sleep(0.05)
        return
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
async def workers(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[tuple[Server, RedisServer]]:
    (tmp_path / "e2e_broadcast_app.py").write_text(APP)
    environment = {**os.environ, "PYTHONPATH": str(SRC), "BROADCAST_URL": redis_server.url}
    command = [sys.executable, "-m", "triolette", "e2e_broadcast_app:app", "--port", "0", "--workers", "2"]
    command += ["--graceful-timeout", "5"]
    process = await trio.lowlevel.open_process(command, cwd=tmp_path, env=environment, stderr=subprocess.PIPE)
    server = Server(process, tmp_path)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.read_stderr)
            await server.wait_serving()
            with trio.fail_after(20):
                while len(re.findall(r"Serving on \S+$", server.stderr, re.MULTILINE)) < 2:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            yield server, redis_server
            process.send_signal(signal.SIGTERM)
            assert await server.wait_exit(30) == 0, server.stderr
    finally:
        if process.returncode is None:  # pragma: no cover - only when a test failed
            process.kill()
            await process.wait()


async def test_two_workers_on_redis_share_messages_and_survive_a_redis_restart(
    workers: tuple[Server, RedisServer],
) -> None:
    server, redis = workers
    with trio.fail_after(90):
        before = await task_counts(server.url)
        assert {counts["subscribers"] for counts in before.values()} == {0}
        clients: list[Client] = []
        async with trio.open_nursery() as nursery:
            # connect SSE clients until both workers have some (at most 40)
            while len({client.pid for client in clients}) < 2 and len(clients) < 40:
                client = Client()
                clients.append(client)
                nursery.start_soon(client.run, server.url)
                with trio.fail_after(10):
                    await client.connected.wait()
            assert {client.pid for client in clients} == set(before), "the clients reached both workers"

            first = await publish(server.url, "one")
            assert first.status_code == 200
            await wait_for(lambda: all(client.messages == ["one"] for client in clients), "'one' everywhere")

            redis.kill()  # kill -9, mid-stream
            await trio.to_thread.run_sync(redis.start)  # the same port, empty
            # publish until it goes through and reaches every client: the workers resubscribed
            published = False

            def everyone_has_two() -> bool:
                return all(client.messages[-1:] == ["two"] for client in clients)

            with trio.fail_after(30):
                while not published or not everyone_has_two():
                    if not published or not everyone_has_two():
                        answer = await publish(server.url, "two")
                        published = answer.status_code == 200
                    await trio.sleep(0.2)
            for client in clients:
                assert client.messages[0] == "one"
                assert set(client.messages[1:]) == {"two"}  # no error, no gap other than the outage
            nursery.cancel_scope.cancel()

        # every worker is back where it started: no subscriber, no task left behind
        async def settled() -> bool:
            after = await task_counts(server.url)
            return all(after[pid]["subscribers"] == 0 and after[pid]["tasks"] <= before[pid]["tasks"] for pid in before)

        with trio.fail_after(20):
            while not await settled():  # noqa: ASYNC110 - the tasks are in other processes
                await trio.sleep(0.1)
