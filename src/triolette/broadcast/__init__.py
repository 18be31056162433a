"""Publish/subscribe for SSE and WebSockets, in one process or across many.

``Broadcast`` is opened in the lifespan, on ``app.nursery``; requests publish to channels
and subscribe to them::

    async with Broadcast("redis://localhost:6379/0", app=app) as broadcast:
        ...
    await broadcast.publish("feed", "hello")
    async with broadcast.subscribe("feed") as subscriber:
        async for message in subscriber:
            ...

``memory://`` (the default) keeps everything in this process; ``redis://`` and
``rediss://`` go through Redis (extra ``triolette[redis]``), so that a message published by
one worker reaches the subscribers of every worker. Each subscriber has a bounded queue;
see ``SlowPolicy`` for what happens when it falls behind. Delivery is at most once.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol

import trio

from triolette._utils import raise_single
from triolette.broadcast._hub import BroadcastUnavailable, Hub, SlowPolicy, Subscriber, SubscriberTooSlow

if TYPE_CHECKING:
    from triolette.applications import Triolette

__all__ = ["Broadcast", "BroadcastUnavailable", "SlowPolicy", "Subscriber", "SubscriberTooSlow"]

SCHEMES = ("memory://", "redis://", "rediss://")


class Backend(Protocol):  # pragma: no cover - a type, not code
    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...
    def close(self) -> None: ...
    def listen(self, channel: str) -> None: ...
    def unlisten(self, channel: str) -> None: ...
    async def ready(self, channel: str) -> None: ...
    async def publish(self, channel: str, message: str) -> None: ...


def _backend(url: str, hub: Hub, grace: float) -> Backend:
    if url.startswith("memory://"):
        from triolette.broadcast._memory import MemoryBackend

        return MemoryBackend(hub)
    try:
        from triolette.broadcast._redis import RedisBackend
    except ImportError as exc:  # pragma: no cover - coredis is a dev dependency
        raise ImportError(f"Broadcast({url!r}) needs coredis: pip install 'triolette[redis]' ({exc})") from None
    return RedisBackend(url, hub, grace=grace)


def _check_channel(channel: object) -> str:
    if not isinstance(channel, str) or not channel:
        raise TypeError(f"A broadcast channel is a non-empty str, got {channel!r}")
    return channel


class Broadcast:
    """A channel layer: ``publish(channel, message)`` and ``subscribe(channel)``.

    Arguments:
        url: ``memory://`` (one process), or ``redis://host:port/db`` / ``rediss://...``
            (across processes and machines, through Redis).
        app: the application whose ``app.nursery`` runs the broadcast's service and whose
            ``app.draining`` ends every subscriber cleanly. Without it the broadcast runs
            its service in a nursery of its own and ends subscribers when it is closed.
        queue_size: how many messages a subscriber may have waiting.
        on_slow: ``"end"`` (end a subscriber whose queue is full with ``SubscriberTooSlow``)
            or ``"drop_oldest"`` (drop its oldest queued message to make room).
        grace: Redis only: how many seconds an outage may last before subscribers are ended
            with ``BroadcastUnavailable``. Shorter outages are invisible to them.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        app: Triolette | None = None,
        queue_size: int = 64,
        on_slow: Literal["end", "drop_oldest"] | SlowPolicy = "end",
        grace: float = 5.0,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(SCHEMES):
            raise ValueError(f"Broadcast URL must start with memory://, redis:// or rediss://, got {url!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be a positive int, got {queue_size!r}")
        try:
            policy = SlowPolicy(on_slow)
        except ValueError:
            raise ValueError(f"on_slow must be 'end' or 'drop_oldest', got {on_slow!r}") from None
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace < math.inf:
            raise ValueError(f"grace must be a number of seconds >= 0, got {grace!r}")
        self.url = url
        self.queue_size = queue_size
        self.on_slow = policy
        self._app = app
        self._hub = Hub(self._first_subscriber, self._last_subscriber)
        self._backend = _backend(url, self._hub, float(grace))
        self._state: Literal["new", "open", "draining", "closed"] = "new"
        self._stack = AsyncExitStack()
        self._service_scope = trio.CancelScope()
        self._stopped = trio.Event()

    def __repr__(self) -> str:
        return f"<Broadcast {self._backend!r} {self._state} subscribers={self._hub.subscribers()}>"

    def _first_subscriber(self, channel: str) -> None:
        self._backend.listen(channel)

    def _last_subscriber(self, channel: str) -> None:
        self._backend.unlisten(channel)

    def subscribers(self, channel: str | None = None) -> int:
        """How many subscribers this process has, on ``channel`` or on all channels."""
        return self._hub.subscribers(channel)

    # --- opening and closing ---------------------------------------------------------------

    async def __aenter__(self) -> Broadcast:
        if self._state != "new":
            raise RuntimeError(f"This Broadcast is {self._state}; make a new one for each 'async with'.")
        try:
            async with AsyncExitStack() as stack:
                if self._app is not None:
                    nursery = self._app.nursery
                    draining: trio.Event | None = self._app.draining
                else:
                    nursery = await stack.enter_async_context(trio.open_nursery())
                    draining = None
                await nursery.start(self._service, draining)
                self._stack = stack.pop_all()
        except BaseExceptionGroup as group:  # startup failed: raise what failed, not the nesting
            raise_single(group)
        self._state = "open"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = "closed"
        self._hub.end_all()
        self._backend.close()  # in order: unsubscribe, then close the connections
        with trio.CancelScope(shield=True):
            with trio.move_on_after(2):
                await self._stopped.wait()
            self._service_scope.cancel(reason="broadcast closed")  # if it could not stop in time
            with trio.move_on_after(5):
                await self._stopped.wait()
        await self._stack.aclose()

    async def _service(self, draining: trio.Event | None, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            with self._service_scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self._run_backend, nursery.cancel_scope)
                    if draining is not None:
                        nursery.start_soon(self._end_on_drain, draining)
                    task_status.started()
        finally:
            self._hub.end_all()
            self._stopped.set()

    async def _run_backend(self, done: trio.CancelScope, *, task_status: trio.TaskStatus[None]) -> None:
        await self._backend.run(task_status=task_status)
        done.cancel(reason="broadcast closed")  # the backend has stopped: so does the drain watcher

    async def _end_on_drain(self, draining: trio.Event) -> None:
        await draining.wait()
        if self._state == "open":
            self._state = "draining"
        self._hub.end_all()

    def _check_open(self, what: str) -> None:
        if self._state == "new":
            raise RuntimeError(
                f"Broadcast.{what}() before the broadcast was opened; "
                "open it in the lifespan: 'async with Broadcast(url, app=app) as broadcast:'."
            )
        if self._state == "closed":
            raise RuntimeError(f"Broadcast.{what}() after the broadcast was closed (the app has shut down).")

    # --- publishing and subscribing --------------------------------------------------------

    async def publish(self, channel: str, message: str) -> None:
        """Send ``message`` to every subscriber of ``channel``, in every process.

        Returns once the message is handed over (to Redis, or to the local subscribers'
        queues); it never waits for a subscriber. Raises ``BroadcastUnavailable`` if Redis
        cannot be reached: the message was not sent.
        """
        self._check_open("publish")
        _check_channel(channel)
        if not isinstance(message, str):
            raise TypeError(
                f"Broadcast messages are str, got {type(message).__name__} {message!r:.80}; "
                "encode it first, for example with json.dumps()."
            )
        await self._backend.publish(channel, message)

    def subscribe(self, channel: str) -> AbstractAsyncContextManager[Subscriber]:
        """Listen to ``channel`` for the length of an ``async with``; iterate what it gives.

        The subscription is live when the ``async with`` is entered: a message published after
        that reaches it. Leaving the block (also by cancellation) unsubscribes.
        """
        self._check_open("subscribe")
        return self._subscription(_check_channel(channel))

    @asynccontextmanager
    async def _subscription(self, channel: str) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(channel, self.queue_size, self.on_slow)
        try:
            if self._state == "open":
                self._hub.add(subscriber)
                await self._backend.ready(channel)
            else:  # draining or closed: the iteration ends at once
                subscriber.end()
            yield subscriber
        finally:
            self._hub.remove(subscriber)
            subscriber.close()
