"""A real hypercorn trio server on 127.0.0.1, in-process, for end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


@asynccontextmanager
async def running(app: Any, *, startup_timeout: float = 5) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1, on a port the OS picks; yield its base URL; stop it after."""
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 1
    config.accesslog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(startup_timeout):
            binds = await nursery.start(
                lambda task_status: serve(app, config, shutdown_trigger=stop.wait, task_status=task_status)
            )
        try:
            yield binds[0]
        finally:
            stop.set()
