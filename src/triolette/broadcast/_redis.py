"""The ``redis://`` / ``rediss://`` backend, on coredis (anyio-based, so it runs under trio).

One process holds exactly two Redis connections, whatever its number of subscribers: one
for ``PUBLISH`` (coredis multiplexes concurrent commands on it) and one pub/sub connection
subscribed to the channels that have at least one local subscriber. Messages are fanned out
to the local subscribers by the hub.

When the pub/sub connection is lost the backend reconnects with exponential backoff and
subscribes again to what is wanted then. Subscribers notice nothing unless the outage lasts
longer than ``grace`` seconds; then they are ended with ``BroadcastUnavailable``. Messages
published while this process was not subscribed are lost: delivery is at most once.

The state of the link is an explicit table (``TRANSITIONS``), kept apart from the I/O.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import anyio
import coredis
import trio
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.patterns.pubsub import PubSub
from coredis.retry import NoRetryPolicy

from triolette.broadcast._hub import BroadcastUnavailable, Hub

# What a lost connection looks like: coredis's error, a timeout, a socket error, or one of
# the anyio streams inside coredis's connection closed under its reader.
LINK_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    TimeoutError,
    OSError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
)


class Link(enum.Enum):
    CONNECTING = "connecting"  # before the first connection: a failure fails startup
    UP = "up"
    DOWN = "down"  # lost, reconnecting, within the grace period: subscribers wait
    UNAVAILABLE = "unavailable"  # lost for longer than the grace period: subscribers ended


class LinkEvent(enum.Enum):
    CONNECTED = "connected"
    LOST = "lost"  # the connection broke, or a reconnection attempt failed
    GRACE_EXPIRED = "grace expired"


TRANSITIONS: dict[tuple[Link, LinkEvent], Link] = {
    (Link.CONNECTING, LinkEvent.CONNECTED): Link.UP,
    (Link.UP, LinkEvent.LOST): Link.DOWN,
    (Link.DOWN, LinkEvent.LOST): Link.DOWN,
    (Link.DOWN, LinkEvent.CONNECTED): Link.UP,
    (Link.DOWN, LinkEvent.GRACE_EXPIRED): Link.UNAVAILABLE,
    (Link.UNAVAILABLE, LinkEvent.LOST): Link.UNAVAILABLE,
    (Link.UNAVAILABLE, LinkEvent.CONNECTED): Link.UP,
}


def link_error(exc: BaseException) -> Exception | None:
    """The connection error ``exc`` stands for, if all it holds is connection errors; else None."""
    if isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(LINK_ERRORS)
        if match is None or rest is not None:
            return None
        leaf: BaseException = match
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        exc = leaf
    return exc if isinstance(exc, LINK_ERRORS) else None


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class RedisBackend:
    """Publishes with PUBLISH and listens on one shared pub/sub connection."""

    def __init__(
        self,
        url: str,
        hub: Hub,
        *,
        grace: float,
        backoff: tuple[float, float] = (0.05, 2.0),
        connect_timeout: float = 2,
    ) -> None:
        self._url = url
        self._hub = hub
        self._grace = grace
        self._backoff = backoff
        self._connect_timeout = connect_timeout
        self.state = Link.CONNECTING
        self.reconnects = 0
        self._subscribed: set[str] = set()
        self._dirty = trio.Event()
        self._progress = trio.Event()
        self._grace_scope: trio.CancelScope | None = None
        self._last_error: Exception | None = None
        self._publisher: coredis.Redis[str] | None = None
        self._stopping = trio.Event()

    def __repr__(self) -> str:
        return f"RedisBackend({redacted(self._url)!r}, state={self.state.value!r})"

    def _client(self) -> coredis.Redis[str]:
        return coredis.Redis.from_url(
            self._url,
            decode_responses=True,
            max_connections=1,
            retry_policy=NoRetryPolicy(),
            connect_timeout=self._connect_timeout,
        )

    # --- the service ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the publishing client and the listener; started once Redis answered."""
        async with trio.open_nursery() as nursery:
            self._publisher = await nursery.start(self._run_publisher)
            await nursery.start(self._run_listener, nursery)
            task_status.started()

    async def _run_publisher(self, *, task_status: trio.TaskStatus[coredis.Redis[str]]) -> None:
        async with self._client() as client:
            try:
                await client.ping()  # connect now: fail startup early, and publish without the wait
            except LINK_ERRORS as exc:
                raise self._unreachable(exc) from exc
            task_status.started(client)
            await self._stopping.wait()

    @asynccontextmanager
    async def _listening(self) -> AsyncIterator[PubSub[str]]:
        async with (
            self._client() as client,
            client.pubsub(retry_policy=NoRetryPolicy(), ignore_subscribe_messages=True) as pubsub,
        ):
            yield pubsub

    async def _run_listener(self, nursery: trio.Nursery, *, task_status: trio.TaskStatus[None]) -> None:
        delay = self._backoff[0]
        while not self._stopping.is_set():
            try:
                async with self._listening() as pubsub:
                    self._subscribed.clear()
                    wanted = set(self._hub.channels())
                    if wanted:
                        await pubsub.subscribe(*wanted)
                        self._subscribed |= wanted
                    first = self.state is Link.CONNECTING
                    self._on(LinkEvent.CONNECTED)
                    if first:
                        task_status.started()
                    delay = self._backoff[0]
                    await self._session(pubsub)
            except BaseException as exc:
                error = link_error(exc)
                if error is None:  # pragma: no cover - a bug, not an outage: let it out
                    raise
                if self._stopping.is_set():  # pragma: no cover - timing: the link broke as we closed
                    return
                if self.state is Link.CONNECTING:
                    raise self._unreachable(error) from error
                self._last_error = error
                if self.state is Link.UP:
                    nursery.start_soon(self._expire_after_grace)
                self._on(LinkEvent.LOST)
            with trio.move_on_after(delay):
                await self._stopping.wait()
            delay = min(delay * 2, self._backoff[1])

    async def _session(self, pubsub: PubSub[str]) -> None:
        """Deliver what arrives until the connection breaks (raises) or ``close()`` (returns).

        On close the pub/sub context is left normally, with its connection still up, so that
        coredis unsubscribes and closes it in order; cancelling it all at once would not."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._reconcile, pubsub)
            nursery.start_soon(self._cancel_on_stop, nursery.cancel_scope)
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True)
                if message is not None and message["type"] == "message":
                    self._hub.deliver(str(message["channel"]), str(message["data"]))

    async def _cancel_on_stop(self, scope: trio.CancelScope) -> None:
        await self._stopping.wait()
        scope.cancel(reason="broadcast closed")

    async def _reconcile(self, pubsub: PubSub[str]) -> None:
        """Keep the engine subscribed to exactly the channels with local subscribers."""
        while True:
            self._dirty = trio.Event()
            wanted = set(self._hub.channels())
            added = wanted - self._subscribed
            if added:
                await pubsub.subscribe(*added)
                self._subscribed |= added
                self._progressed()
            gone = self._subscribed - wanted
            if gone:
                self._subscribed -= gone
                await pubsub.unsubscribe(*gone)
            await self._dirty.wait()

    async def _expire_after_grace(self) -> None:
        with trio.CancelScope() as self._grace_scope:
            await trio.sleep(self._grace)
            self._on(LinkEvent.GRACE_EXPIRED)
            self._hub.end_all(self._unavailable)

    def _on(self, event: LinkEvent) -> None:
        self.state = TRANSITIONS[self.state, event]
        if event is LinkEvent.CONNECTED:
            if self._grace_scope is not None:
                self._grace_scope.cancel()
                self._grace_scope = None
            if self._last_error is not None:
                self.reconnects += 1
                self._last_error = None
        elif event is LinkEvent.LOST:
            self._subscribed.clear()
        self._progressed()

    def _progressed(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    def _unreachable(self, error: Exception) -> BroadcastUnavailable:
        return BroadcastUnavailable(
            f"Could not reach Redis at {redacted(self._url)!r} ({error}); start Redis or fix the broadcast URL."
        )

    def _unavailable(self) -> BroadcastUnavailable:
        return BroadcastUnavailable(
            f"Redis at {redacted(self._url)!r} has been unreachable for more than {self._grace} seconds "
            f"({self._last_error}); the subscription was ended. Subscribe again later."
        )

    # --- what the Broadcast calls ----------------------------------------------------------

    def close(self) -> None:
        """Stop: unsubscribe, close both connections, and let ``run`` return."""
        self._stopping.set()
        if self._grace_scope is not None:  # closing while Redis is down: no need to wait for it
            self._grace_scope.cancel()

    def listen(self, channel: str) -> None:
        self._dirty.set()

    def unlisten(self, channel: str) -> None:
        self._dirty.set()

    async def ready(self, channel: str) -> None:
        """Wait until Redis confirmed the subscription to ``channel`` (not while reconnecting)."""
        await trio.lowlevel.checkpoint()
        while channel not in self._subscribed and self.state is not Link.DOWN:
            if self.state is Link.UNAVAILABLE:
                raise self._unavailable()
            await self._progress.wait()

    async def publish(self, channel: str, message: str) -> None:
        if self._publisher is None:  # pragma: no cover - Broadcast publishes only once open
            raise RuntimeError("The Redis backend is not running")
        try:
            await self._publisher.publish(channel, message)
        except LINK_ERRORS as exc:
            raise BroadcastUnavailable(
                f"Could not publish to {channel!r}: Redis at {redacted(self._url)!r} is unreachable ({exc}); "
                "the message was not sent."
            ) from exc
