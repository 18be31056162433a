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
    from triolette.routing import Router

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
_TREE_KEY = "triolette.lifespan_tree"


def mounted_apps(router: Router, scope: Scope) -> list[ASGIApp]:
    """The apps mounted in ``router`` whose lifespan must run inside its own, in route order.

    A mounted ``Triolette`` always has one (its ``app.nursery`` opens with it); a mounted
    ``Router`` has one when it was given ``lifespan=`` or mounts an app that has one (a
    ``Mount(routes=[...])`` is looked through). An app whose lifespan already runs in this
    lifespan tree (the enclosing apps, an app mounted twice) is left out.
    """
    tree: set[int] = scope.setdefault(_TREE_KEY, set())
    tree.add(id(router))
    if "app" in scope:
        tree.add(id(scope["app"]))
    found: list[ASGIApp] = []
    for app, base in _children(router):
        if id(base) not in tree and _has_lifespan(base, set(tree)):
            tree.add(id(base))
            found.append(app)
    return found


def _children(router: Router) -> Iterator[tuple[ASGIApp, Any]]:
    """(what to call, the app under any mount-level middleware) for each Mount/Host."""
    from triolette.routing import Host, Mount

    for route in router.routes:
        if isinstance(route, Mount):
            yield route.app, route._base_app
        elif isinstance(route, Host):
            yield route.app, route.app


def _has_lifespan(app: Any, seen: set[int]) -> bool:
    from triolette.applications import Triolette
    from triolette.routing import Router, _no_lifespan

    if isinstance(app, Triolette):
        return True
    if not isinstance(app, Router):
        return False  # any other ASGI app is Starlette's business: it gets no lifespan
    if app.lifespan_context is not _no_lifespan:
        return True
    seen = seen | {id(app)}
    return any(id(base) not in seen and _has_lifespan(base, seen) for _, base in _children(app))


def walk_apps(router: Router) -> Iterator[Any]:
    """Every app reachable from ``router`` through Mount/Host (Routers looked through), once each."""
    from triolette.applications import Triolette
    from triolette.routing import Router

    seen: set[int] = {id(router)}
    stack = [router]
    while stack:
        for _, base in _children(stack.pop()):
            if id(base) in seen:
                continue
            seen.add(id(base))
            yield base
            if isinstance(base, Triolette):
                stack.append(base.router)
            elif isinstance(base, Router):
                stack.append(base)


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
    if _TREE_KEY in scope:
        child[_TREE_KEY] = scope[_TREE_KEY]
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



