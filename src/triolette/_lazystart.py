"""Start the disconnect watcher lazily: the one module that knows how trio suspends a task.

A request answered without ever blocking needs no watcher. ``drive()`` awaits the app's
coroutine as ``await`` would, step by step, and asks the RequestScope, each time the app is
about to yield to trio, whether the watcher now has a job; if so it starts it then.

To tell a pure schedule point (a send that went through at once) from a real wait, it
compares what the app yields with what trio's own schedule point yields, read once at
import time (``probe()``). Should a future trio change that in a way the probe cannot read,
``SCHEDULE_POINT`` is None and ``drive()`` starts the watcher eagerly: slower, never wrong.

The app's frames stay on the task's await chain (``drive`` is a generator-based coroutine
that delegates with ``send``/``throw``), so ``Task.iter_await_frames()`` and stack dumps
still show the endpoint.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any

import trio


def probe() -> object | None:
    """What trio's pure schedule point yields to the scheduler; None if that cannot be read."""
    try:
        checkpoint = trio.lowlevel.cancel_shielded_checkpoint()  # noqa: ASYNC105 - driven by hand, once
        try:
            point: object = checkpoint.send(None)
            return point
        finally:
            checkpoint.close()
    except Exception:
        return None


SCHEDULE_POINT = probe()


@types.coroutine
def drive(
    awaitable: Awaitable[None], needed: Callable[[object], bool], start: Callable[[], None]
) -> Generator[Any, Any, None]:
    """Await ``awaitable``; call ``start()`` the first time it is about to yield a ``trap``
    for which ``needed(trap)`` is true (at once, when the schedule point is unknown)."""
    if SCHEDULE_POINT is None or not isinstance(awaitable, types.CoroutineType | types.GeneratorType):
        start()
        yield from awaitable.__await__()
        return
    coro: Coroutine[Any, Any, None] | Generator[Any, Any, None] = awaitable
    value: Any = None
    error: BaseException | None = None
    started = False
    while True:
        try:
            trap = coro.send(value) if error is None else coro.throw(error)
        except StopIteration:
            return
        finally:  # trio's Error outcome holds an exception whose traceback holds this frame
            value = error = None
        if not started and needed(trap):
            started = True
            start()
        try:
            value = yield trap
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:
            error = exc


def is_schedule_point(trap: object) -> bool:
    """Whether ``trap`` is trio's pure schedule point (a yield that does not wait)."""
    return trap is SCHEDULE_POINT
