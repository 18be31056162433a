"""The ASGI lifespan protocol around an async context manager, with mounted apps' lifespans.

A ``Router`` (and so every ``Triolette`` app) runs its own lifespan context, then the
lifespans of the apps mounted in it (``Mount``/``Host``, at any depth) that have one:
startup from the outside in, shutdown from the inside out. The mounted apps are found by
walking the route tree once, at startup; requests pay nothing for it.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

import trio

from triolette._utils import raise_child
from triolette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from triolette.applications import Triolette

# The Triolette apps whose lifespan is running in this trio run: what serve() drains on a signal.
_RUNNING: trio.lowlevel.RunVar[list[Triolette]] = trio.lowlevel.RunVar("triolette_running_apps")


def running_apps() -> list[Triolette]:
    """The Triolette apps whose lifespan is running in the current trio run, outermost first."""
    try:
        return list(_RUNNING.get())
    except (LookupError, RuntimeError):  # none registered yet, or not in a trio run at all
        return []


@contextmanager
def registered(app: Triolette) -> Iterator[None]:
    """Count ``app`` among :func:`running_apps` for the duration of the block."""
    try:
        apps = _RUNNING.get()
    except LookupError:
        apps = []
        _RUNNING.set(apps)
    apps.append(app)
    try:
        yield
    finally:
        apps.remove(app)


# In a lifespan scope: the ids of the apps whose lifespans run in this lifespan tree, shared by
# the whole tree, so that an app mounted twice (or mounted in its own sub-app) runs once.
# Filled by routing's walk over the mounted apps (``routing.mounted_apps``).
LIFESPAN_TREE_KEY = "triolette.lifespan_tree"


async def run_lifespan(
    context: Callable[[Any], AbstractAsyncContextManager[Any]],
    scope: Scope,
    receive: Receive,
    send: Send,
    mounted: Sequence[ASGIApp] = (),
) -> None:
    """Enter ``context(app)`` on ``lifespan.startup``, leave it on ``lifespan.shutdown``.

    State the context yields is merged into ``scope["state"]``, which the server copies
    into every request's scope (``request.state``). The lifespans of the ``mounted`` apps
    run inside the context, in order, sharing the same state. A failure is reported to the
    server as ``lifespan.startup.failed`` / ``lifespan.shutdown.failed`` with the
    traceback (its last line is the error's message), then re-raised.
    """
    started = False
    app = scope.get("app")
    await receive()
    try:
        async with context(app) as state:
            if state is not None:
                if "state" not in scope:
                    raise RuntimeError('The server does not support "state" in the lifespan scope.')
                scope["state"].update(state)
            async with _mounted_lifespans(mounted, scope):
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()
    except BaseException:
        text = traceback.format_exc()
        kind = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
        await send({"type": kind, "message": text})
        raise
    await send({"type": "lifespan.shutdown.complete"})


@asynccontextmanager
async def _mounted_lifespans(apps: Sequence[ASGIApp], scope: Scope) -> AsyncIterator[None]:
    """Start each app's lifespan in turn; on the way out, shut them down in reverse order."""
    if not apps:
        yield
        return
    running: list[_MountedLifespan] = []
    try:
        async with trio.open_nursery() as nursery:
            for app in apps:
                mounted = _MountedLifespan(app, _child_scope(scope))
                await nursery.start(mounted.run)
                running.append(mounted)
            try:
                yield
            finally:
                for mounted in reversed(running):
                    await mounted.shutdown()
    except BaseExceptionGroup as group:
        raise_child(group)


def _child_scope(scope: Scope) -> Scope:
    child: Scope = {"type": "lifespan", "asgi": scope.get("asgi", {"version": "3.0", "spec_version": "2.0"})}
    if "state" in scope:
        child["state"] = scope["state"]  # shared: what a mounted lifespan yields reaches request.state too
    if "app" in scope:
        child["app"] = scope["app"]  # a mounted Router's lifespan gets the enclosing app
    if LIFESPAN_TREE_KEY in scope:
        child[LIFESPAN_TREE_KEY] = scope[LIFESPAN_TREE_KEY]
    return child


class _MountedLifespan:
    """One mounted app's lifespan, driven through the ASGI messages like a server would."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self.app = app
        self.scope = scope
        self._stop = trio.Event()
        self._done = trio.Event()
        self._asked_startup = False
        self._started = False
        self._failure: str | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async def receive() -> Message:
            if not self._asked_startup:
                self._asked_startup = True
                return {"type": "lifespan.startup"}
            await self._stop.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete" and not self._started:
                self._started = True
                task_status.started()
            elif kind in ("lifespan.startup.failed", "lifespan.shutdown.failed"):
                self._failure = str(message.get("message", ""))

        try:
            await self.app(self.scope, receive, send)
        finally:
            self._done.set()
        if self._failure is not None:
            stage = "shutdown" if self._started else "startup"
            raise RuntimeError(f"The lifespan of the mounted app {self.app!r} failed at {stage}: {self._failure}")
        if not self._started:
            raise RuntimeError(f"The lifespan of the mounted app {self.app!r} ended before its startup completed.")

    async def shutdown(self) -> None:
        self._stop.set()
        await self._done.wait()
