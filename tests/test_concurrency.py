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
