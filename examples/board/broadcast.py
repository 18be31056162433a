"""A broadcast service: one publisher side, any number of subscribers, run on app.nursery.

Publishing never waits for subscribers: each subscriber has a small buffer, and one that
falls behind by more than that is dropped (its stream ends) rather than slowing the
others or growing memory without bound.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

Event = dict[str, Any]


class Broadcast:
    def __init__(self, buffer: int = 64) -> None:
        self._buffer = buffer
        self._inbox_send, self._inbox = trio.open_memory_channel[Event](math.inf)
        self._subscribers: set[trio.MemorySendChannel[Event]] = set()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: Event) -> None:
        """Queue ``event`` for every subscriber; returns at once."""
        self._inbox_send.send_nowait(event)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The service: fan each published event out. Start it with ``await app.nursery.start(...)``."""
        task_status.started()
        try:
            async for event in self._inbox:
                for subscriber in list(self._subscribers):
                    try:
                        subscriber.send_nowait(event)
                    except trio.WouldBlock:  # too slow: drop it, its stream ends
                        self._subscribers.discard(subscriber)
                        subscriber.close()
                    except trio.BrokenResourceError:
                        self._subscribers.discard(subscriber)
        finally:
            for subscriber in self._subscribers:
                subscriber.close()
            self._subscribers.clear()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        send, receive = trio.open_memory_channel[Event](self._buffer)
        self._subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()
