"""Running blocking code from async code, on trio's worker threads.

Every sync endpoint, sync background task and sync iterator runs through
``anyio.to_thread.run_sync``, which under trio is ``trio.to_thread.run_sync`` with
trio's default ``CapacityLimiter`` for the run: one shared limiter, 40 tokens unless
you change them with ``thread_limiter().total_tokens = n``. The threads are AnyIO
worker threads as well as trio's, so code in them may call ``anyio.from_thread.run``
(as libraries written for Starlette do) or ``trio.from_thread.run``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
import trio

from triolette.exceptions import TrioletteDeprecationWarning

__all__ = ["iterate_in_threadpool", "run_in_threadpool", "run_until_first_complete", "thread_limiter"]

P = ParamSpec("P")
T = TypeVar("T")


def thread_limiter() -> trio.CapacityLimiter:
    """The limiter shared by every worker thread triolette starts in this trio run."""
    return trio.to_thread.current_default_thread_limiter()


async def run_in_threadpool(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``func(*args, **kwargs)`` in a worker thread and wait for its result.

    Cancellation waits for the thread to finish: a thread cannot be interrupted.
    """
    if kwargs:
        return await anyio.to_thread.run_sync(functools.partial(func, *args, **kwargs))
    return await anyio.to_thread.run_sync(func, *args)


class _Exhausted(Exception):
    """StopIteration cannot cross a thread boundary as itself; this carries it."""


def _next_or_exhausted(iterator: Iterator[T]) -> T:
    try:
        return next(iterator)
    except StopIteration:
        raise _Exhausted from None


async def iterate_in_threadpool(iterator: Iterable[T]) -> AsyncIterator[T]:
    """Iterate a blocking iterator, one ``next()`` per worker-thread call."""
    it = iter(iterator)
    while True:
        try:
            item = await anyio.to_thread.run_sync(_next_or_exhausted, it)
        except _Exhausted:
            return
        yield item


async def run_until_first_complete(*args: tuple[Callable[..., Awaitable[Any]], dict[str, Any]]) -> None:
    """Deprecated: run each ``func(**kwargs)`` concurrently; return when the first one returns."""
    warnings.warn(
        "run_until_first_complete is deprecated and will be removed in a future version; "
        "use a trio nursery and cancel its scope when the first task returns.",
        TrioletteDeprecationWarning,
        stacklevel=2,
    )
    async with trio.open_nursery() as nursery:

        async def run(func: Callable[..., Awaitable[Any]], kwargs: dict[str, Any]) -> None:
            await func(**kwargs)
            nursery.cancel_scope.cancel(reason="run_until_first_complete: a task returned")

        for func, kwargs in args:
            nursery.start_soon(run, func, kwargs)
