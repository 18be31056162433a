"""Background tasks: run after the response, in order, sync ones in a worker thread."""

from __future__ import annotations

import threading

import trio

from triolette.applications import Triolette
from triolette.background import BackgroundTask, BackgroundTasks
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Route
from triolette.testclient import TestClient
from triolette.types import Message


async def test_async_and_sync_tasks_with_arguments() -> None:
    calls: list[tuple[str, str, str]] = []

    async def async_task(a: str, *, b: str) -> None:
        calls.append(("async", a, b))

    def sync_task(a: str, *, b: str) -> None:
        calls.append(("sync", a, threading.current_thread().name))

    task = BackgroundTask(async_task, "x", b="y")
    assert (task.func, task.args, task.kwargs, task.is_async) == (async_task, ("x",), {"b": "y"}, True)
    await task()
    sync = BackgroundTask(sync_task, "z", b="w")
    assert sync.is_async is False
    await sync()
    assert calls[0] == ("async", "x", "y")
    assert calls[1][:2] == ("sync", "z")
    assert calls[1][2] != threading.current_thread().name


async def test_tasks_run_in_the_order_added() -> None:
    order: list[int] = []

    async def add(n: int) -> None:
        await trio.lowlevel.checkpoint()
        order.append(n)

    tasks = BackgroundTasks([BackgroundTask(add, 1)])
    tasks.add_task(add, 2)
    tasks.add_task(order.append, 3)
    await tasks()
    assert order == [1, 2, 3]
    await BackgroundTasks()()  # no tasks: nothing to do
    assert order == [1, 2, 3]


def test_tasks_finish_before_the_client_gets_the_response() -> None:
    done: list[str] = []

    async def handler(request: Request) -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(done.append, "first")
        tasks.add_task(done.append, "second")
        return PlainTextResponse("ok", background=tasks)

    response = TestClient(Triolette(routes=[Route("/", handler)])).get("/")
    assert response.text == "ok"
    assert done == ["first", "second"]


async def test_background_survives_the_client_leaving(autojump_clock: trio.abc.Clock) -> None:
    """Shielded from the disconnect: the task runs to the end after the client has gone."""
    finished: list[float] = []
    gone = trio.Event()

    async def slow_task() -> None:
        gone.set()
        await trio.sleep(5)
        finished.append(trio.current_time())

    async def handler(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(slow_task))

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        pass

    app = Triolette(routes=[Route("/", handler)])
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    with trio.fail_after(60):
        await app(scope, receive, send)
    assert finished == [5]


async def test_background_work_is_cancelled_when_the_request_was_cancelled_before_it_started() -> None:
    """A drain (or a closing test client) that cancels the request between the end of the
    response and the start of its background work: the work is cancelled, not run shielded."""
    from triolette._scope import get_request_scope

    log: list[str] = []

    async def work() -> None:
        await trio.lowlevel.checkpoint()
        log.append("ran")

    async def handler(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(work))

    app = Triolette(routes=[Route("/", handler)])
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}

    async def receive() -> Message:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            rs = get_request_scope(scope)
            assert rs is not None
            rs.cancel(reason="server shutting down")

    with trio.fail_after(5):
        await app(scope, receive, send)
    assert log == []
