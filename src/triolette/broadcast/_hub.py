"""The in-process half of a broadcast: channels, their local subscribers, and fan-out.

Everything here is synchronous: delivering a message is a ``send_nowait`` into each
subscriber's bounded queue, so a publisher never waits for a subscriber. What happens when a
queue is full is the subscriber's policy (``SlowPolicy``). The hub tells its backend when a
channel gains its first local subscriber and when it loses its last one, so that the engine
(Redis) is subscribed to exactly the channels somebody in this process listens to.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator

import trio


class SubscriberTooSlow(Exception):
    """A subscriber's queue was full when a message arrived, so it was ended.

    Raised by ``async for`` on the subscriber, after the messages already queued. An SSE or
    WebSocket handler that lets it propagate closes its connection and the client reconnects.
    """


class BroadcastUnavailable(Exception):
    """The broadcast's engine cannot be reached (Redis down for longer than the grace period)."""


class SlowPolicy(enum.Enum):
    """What happens to a subscriber whose queue is full when a message arrives."""

    END = "end"  # end it: its iteration raises SubscriberTooSlow
    DROP_OLDEST = "drop_oldest"  # make room by dropping its oldest queued message


class Subscriber:
    """One local subscription to a channel: iterate it to receive that channel's messages.

    Made by ``Broadcast.subscribe()``; the iteration ends cleanly when the broadcast closes or
    the app drains, and raises ``SubscriberTooSlow`` or ``BroadcastUnavailable`` when it was
    ended for that reason. ``dropped`` counts the messages dropped under the drop-oldest policy.
    """

    __slots__ = ("_ended", "_error", "_policy", "_receive", "_send", "channel", "dropped")

    def __init__(self, channel: str, queue_size: int, policy: SlowPolicy) -> None:
        self.channel = channel
        self.dropped = 0
        self._policy = policy
        self._send, self._receive = trio.open_memory_channel[str](queue_size)
        self._error: Exception | None = None
        self._ended = False

    def __repr__(self) -> str:
        return f"<Subscriber channel={self.channel!r} queued={self.queued} dropped={self.dropped}>"

    @property
    def queued(self) -> int:
        """How many messages wait in this subscriber's queue."""
        return self._receive.statistics().current_buffer_used

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> str:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self._error is not None:
                error, self._error = self._error, None
                raise error from None
            raise StopAsyncIteration from None

    def offer(self, message: str) -> bool:
        """Queue ``message`` without waiting; False if this subscriber has to be ended for it."""
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            if self._policy is SlowPolicy.END:
                return False
            self._receive.receive_nowait()
            self.dropped += 1
            self._send.send_nowait(message)
        except trio.ClosedResourceError:
            pass  # already ended; the hub forgets it
        return True

    def end(self, error: Exception | None = None) -> None:
        """Let the iteration finish the queued messages, then stop (or raise ``error``)."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._send.close()

    def close(self) -> None:
        """Drop the queue: the subscriber has been left."""
        self._ended = True
        self._send.close()
        self._receive.close()


class Hub:
    """The table of local subscribers by channel, and fan-out to them."""

    def __init__(self, on_first: Callable[[str], None], on_last: Callable[[str], None]) -> None:
        self._channels: dict[str, set[Subscriber]] = {}
        self._on_first = on_first
        self._on_last = on_last

    def channels(self) -> Iterator[str]:
        """The channels with at least one local subscriber."""
        return iter(self._channels)

    def subscribers(self, channel: str | None = None) -> int:
        """How many local subscribers there are, on ``channel`` or on all channels."""
        if channel is not None:
            return len(self._channels.get(channel, ()))
        return sum(len(members) for members in self._channels.values())

    def add(self, subscriber: Subscriber) -> None:
        members = self._channels.get(subscriber.channel)
        if members is None:
            self._channels[subscriber.channel] = {subscriber}
            self._on_first(subscriber.channel)
        else:
            members.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        members = self._channels.get(subscriber.channel)
        if members is None or subscriber not in members:
            return
        members.discard(subscriber)
        if not members:
            del self._channels[subscriber.channel]
            self._on_last(subscriber.channel)

    def deliver(self, channel: str, message: str) -> int:
        """Offer ``message`` to the channel's local subscribers; returns how many took it."""
        members = self._channels.get(channel)
        if not members:
            return 0
        slow = [subscriber for subscriber in members if not subscriber.offer(message)]
        delivered = len(members) - len(slow)
        for subscriber in slow:
            subscriber.end(
                SubscriberTooSlow(
                    f"A subscriber to {channel!r} still had {subscriber.queued} messages queued when another "
                    "arrived, so it was ended; read faster, raise queue_size, or pass on_slow='drop_oldest'."
                )
            )
            self.remove(subscriber)
        return delivered

    def end_all(self, make_error: Callable[[], Exception] | None = None) -> None:
        """End every subscriber (cleanly, or with a fresh ``make_error()`` each) and forget them."""
        for channel, members in list(self._channels.items()):
            for subscriber in members:
                subscriber.end(make_error() if make_error else None)
            del self._channels[channel]
            self._on_last(channel)
