"""The ``memory://`` backend: one process, no engine; publishing is delivering."""

from __future__ import annotations

import trio

from triolette.broadcast._hub import Hub


class MemoryBackend:
    """Delivers each message straight to this process's subscribers."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._stopping = trio.Event()

    def __repr__(self) -> str:
        return "MemoryBackend()"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self._stopping.wait()

    def close(self) -> None:
        self._stopping.set()

    def listen(self, channel: str) -> None:
        pass  # nothing to subscribe to

    def unlisten(self, channel: str) -> None:
        pass

    async def ready(self, channel: str) -> None:
        await trio.lowlevel.checkpoint()

    async def publish(self, channel: str, message: str) -> None:
        await trio.lowlevel.checkpoint()
        self._hub.deliver(channel, message)
