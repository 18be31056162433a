"""Running blocking code from trio: worker threads, one shared limiter, iterators."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from triolette.concurrency import iterate_in_threadpool, run_in_threadpool, run_until_first_complete, thread_limiter
from triolette.exceptions import TrioletteDeprecationWarning


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
    assert [n async for n in iterate_in_threadpool([])] == []
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
