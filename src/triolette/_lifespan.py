"""The ASGI lifespan protocol around an async context manager."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from triolette.types import Receive, Scope, Send


async def run_lifespan(
    context: Callable[[Any], AbstractAsyncContextManager[Any]], scope: Scope, receive: Receive, send: Send
) -> None:
    """Enter ``context(app)`` on ``lifespan.startup``, leave it on ``lifespan.shutdown``.

    State the context yields is merged into ``scope["state"]``, which the server copies
    into every request's scope (``request.state``). A failure is reported to the server
    as ``startup.failed`` / ``shutdown.failed`` with the traceback, then re-raised.
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
            await send({"type": "lifespan.startup.complete"})
            started = True
            await receive()
    except BaseException:
        text = traceback.format_exc()
        kind = "lifespan.shutdown.failed" if started else "lifespan.startup.failed"
        await send({"type": kind, "message": text})
        raise
    await send({"type": "lifespan.shutdown.complete"})
