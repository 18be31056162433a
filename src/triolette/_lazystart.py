"""Start the disconnect watcher lazily: the one module that knows how trio suspends a task.

A request answered without ever blocking needs no watcher. ``drive()`` awaits the app's
coroutine as ``await`` would, step by step, and asks the RequestScope, each time the app is
about to yield to trio, whether the watcher now has a job; if so it starts it then.

To tell a pure schedule point (a send that went through at once) from a real wait, it
compares what the app yields with what trio's own schedule point yields, read once at
import time (``probe()``). Should a future trio change that in a way the probe cannot read,
``SCHEDULE_POINT`` is None and ``drive()`` starts the watcher eagerly: slower, never wrong.

The app's frames stay on the task's await chain: ``drive`` hands back a relay that the
caller awaits and that looks like a coroutine to ``Task.iter_await_frames()``, so stack
dumps of a request's task still show the endpoint.
"""

from __future__ import annotations

import types
from collections.abc import Awaitable, Generator
from typing import Any, Protocol

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


_STEPPABLE = (types.CoroutineType, types.GeneratorType)  # a tuple: ``A | B`` would build a union per call


class Watched(Protocol):
    """What ``drive`` asks, each time the awaited coroutine is about to yield to trio."""

    def watcher_needed(self, trap: object) -> bool:
        """Whether yielding ``trap`` now leaves the watcher a job."""
        ...

    def start_watcher(self) -> None:
        """Start the watcher (called once)."""
        ...


class _Relay:
    """``await drive(awaitable, owner)``: awaits ``awaitable`` and calls
    ``owner.start_watcher()`` the first time it is about to yield a ``trap`` for which
    ``owner.watcher_needed(trap)`` is true (at once, when the schedule point is unknown or
    ``awaitable`` is not a coroutine or generator, which are then awaited as they are).

    Otherwise the relay itself steps the coroutine for the caller's ``await``, looking at
    each trap it yields. It looks like a coroutine to ``Task.iter_await_frames()``
    (``cr_frame``, ``cr_await``), so that a stack dump of the request's task goes on
    through the app down to the endpoint.
    """

    __slots__ = ("_coro", "_owner")

    def __init__(self, coro: Awaitable[None], owner: Watched) -> None:
        # A coroutine or generator when the relay steps it (``__await__`` checks); Any, for
        # the one path that awaits another kind of awaitable as it is.
        self._coro: Any = coro
        self._owner: Watched | None = owner  # None once the watcher is started

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self._coro
        if SCHEDULE_POINT is None or not isinstance(coro, _STEPPABLE):
            owner = self._owner
            if owner is not None:
                self._owner = None
                owner.start_watcher()
            awaited: Generator[Any, Any, None] = coro.__await__()
            return awaited
        return self  # type: ignore[return-value]  # it is one, step by step; not a subclass

    def __iter__(self) -> _Relay:
        return self

    def __next__(self) -> object:
        trap = self._coro.send(None)
        if self._owner is not None:
            self._look(trap)
        return trap

    # In send and throw, the frame must not keep what it passed on: trio's Error outcome (the
    # value), or an exception, holds an exception whose traceback holds this frame: a cycle.

    def send(self, value: object) -> object:
        try:
            trap = self._coro.send(value)
        finally:
            del value
        if self._owner is not None:
            self._look(trap)
        return trap

    def throw(self, error: BaseException) -> object:
        try:
            trap = self._coro.throw(error)
        finally:
            del error
        if self._owner is not None:
            self._look(trap)
        return trap

    def close(self) -> None:
        self._coro.close()

    def _look(self, trap: object) -> None:
        owner = self._owner
        if owner is not None and owner.watcher_needed(trap):
            self._owner = None  # started once: from now on the relay only passes traps on
            owner.start_watcher()

    @property
    def cr_frame(self) -> types.FrameType | None:
        coro = self._coro
        return coro.cr_frame if isinstance(coro, types.CoroutineType) else coro.gi_frame

    @property
    def cr_await(self) -> object:
        coro = self._coro
        return coro.cr_await if isinstance(coro, types.CoroutineType) else coro.gi_yieldfrom


def is_schedule_point(trap: object) -> bool:
    """Whether ``trap`` is trio's pure schedule point (a yield that does not wait)."""
    return trap is SCHEDULE_POINT


drive = _Relay  # one object per request: the relay is its own awaitable
