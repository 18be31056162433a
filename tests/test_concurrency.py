"""Running blocking code from trio: worker threads, one shared limiter, iterators."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import http_scope
from triolette.concurrency import iterate_in_threadpool, run_in_threadpool, run_until_first_complete, thread_limiter
from triolette.exceptions import TrioletteDeprecationWarning
from triolette.types import Message, Receive, Send


async def test_run_in_threadpool_with_args_and_kwargs() -> None:
    def work(a: int, b: int = 0) -> tuple[int, str]:
        return a + b, threading.current_thread().name

    total, thread = await run_in_threadpool(work, 1, b=2)
    assert total == 3
    assert thread != threading.current_thread().name
    assert (await run_in_threadpool(work, 5))[0] == 5


async def test_run_in_threadpool_raises_the_functions_error() -> None:
    def fail() -> None:
        raise LookupError("from the thread")

    with pytest.raises(LookupError, match="from the thread"):
        await run_in_threadpool(fail)


async def test_thread_limiter_is_trios_default() -> None:
    limiter = thread_limiter()
    assert limiter is trio.to_thread.current_default_thread_limiter()
    assert limiter.total_tokens == 40


async def test_iterate_in_threadpool() -> None:
    threads: set[str] = set()

    def numbers() -> Iterator[int]:
        for n in range(3):
            threads.add(threading.current_thread().name)
            yield n

    assert [n async for n in iterate_in_threadpool(numbers())] == [0, 1, 2]
    nothing: list[int] = []
    assert [n async for n in iterate_in_threadpool(nothing)] == []
    assert threading.current_thread().name not in threads


async def test_iterate_in_threadpool_raises_the_iterators_error() -> None:
    def broken() -> Iterator[int]:
        yield 1
        raise ValueError("broken iterator")

    seen: list[int] = []
    with pytest.raises(ValueError, match="broken iterator"):  # noqa: PT012
        async for n in iterate_in_threadpool(broken()):
            seen.append(n)
    assert seen == [1]


async def test_run_until_first_complete_is_deprecated_and_cancels_the_rest(autojump_clock: trio.abc.Clock) -> None:
    finished: list[str] = []
    cancelled: list[str] = []

    async def quick(name: str) -> None:
        await trio.sleep(1)
        finished.append(name)

    async def slow(name: str) -> None:
        try:
            await trio.sleep(10)
            finished.append(name)  # pragma: no cover - cancelled
        except trio.Cancelled:
            cancelled.append(name)
            raise

    with pytest.warns(TrioletteDeprecationWarning, match="run_until_first_complete is deprecated"):
        await run_until_first_complete((quick, {"name": "quick"}), (slow, {"name": "slow"}))
    assert finished == ["quick"]
    assert cancelled == ["slow"]
    assert trio.current_time() == 1


# -- a cancel scope around the ASGI call, cancelled by the app ----------------------------------
# Seen in FastAPI's suite: an endpoint that ran something in a worker thread (a sync dependency),
# then cancelled a scope that the caller holds around the whole ASGI call, and returned. The wait
# for the thread let the disconnect watcher start and block in the server's receive(); the
# cancellation reached it there, and its Cancelled replaced the response the app then sent.


def _cancelling_app(outer: trio.CancelScope, *, checkpoint_after: bool) -> Any:
    from triolette.applications import Triolette
    from triolette.requests import Request
    from triolette.responses import JSONResponse
    from triolette.routing import Route

    async def endpoint(request: Request) -> JSONResponse:
        assert await run_in_threadpool(lambda: 42) == 42
        outer.cancel()
        if checkpoint_after:
            await trio.lowlevel.checkpoint()
        return JSONResponse({"ok": True})

    return Triolette(routes=[Route("/", endpoint)])


def _server() -> tuple[Receive, Send, list[Message]]:
    """receive/send as httpx's ASGITransport: the body, then nothing until the response is complete."""
    sent: list[Message] = []
    complete = trio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            complete.set()

    return receive, send, sent


async def test_response_survives_outer_cancel_after_run_in_threadpool() -> None:
    receive, send, sent = _server()
    with trio.fail_after(5):
        with trio.CancelScope() as outer:
            await _cancelling_app(outer, checkpoint_after=False)(http_scope("/"), receive, send)
    assert outer.cancel_called
    assert not outer.cancelled_caught  # the call returned: nothing was lost on the way
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200
    assert sent[1]["body"] == b'{"ok":true}'


async def test_outer_cancel_after_run_in_threadpool_still_cancels_at_the_apps_next_checkpoint() -> None:
    receive, send, sent = _server()
    with trio.fail_after(5):
        with trio.CancelScope() as outer:
            await _cancelling_app(outer, checkpoint_after=True)(http_scope("/"), receive, send)
            pytest.fail("the cancellation must propagate")  # pragma: no cover
    assert outer.cancelled_caught
    assert sent == []


async def test_sync_endpoints_and_iterators_run_in_anyio_worker_threads() -> None:
    import anyio.from_thread

    from triolette.applications import Triolette
    from triolette.requests import Request
    from triolette.responses import PlainTextResponse, Response, StreamingResponse
    from triolette.routing import Route
    from triolette.testclient import AsyncTestClient

    async def double(value: int) -> int:
        await trio.lowlevel.checkpoint()
        return 2 * value

    def borrowed() -> int:
        return thread_limiter().borrowed_tokens

    def endpoint(request: Request) -> Response:
        values = [anyio.from_thread.run(double, 1), trio.from_thread.run(double, 2)]
        values.append(anyio.from_thread.run_sync(borrowed))  # this thread holds a token of the one limiter
        return PlainTextResponse(" ".join(map(str, values)))

    def numbers() -> Iterator[str]:
        yield str(anyio.from_thread.run(double, 3))
        yield str(trio.from_thread.run(double, 4))

    def stream(request: Request) -> Response:
        return StreamingResponse(numbers())

    app = Triolette(routes=[Route("/", endpoint), Route("/stream", stream)])
    async with AsyncTestClient(app) as client:
        assert (await client.get("/")).text == "2 4 1"
        assert (await client.get("/stream")).text == "68"
    assert await run_in_threadpool(anyio.from_thread.run, double, 5) == 10
