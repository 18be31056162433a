"""Server-sent events: a clock ticking every second, with pings and a clean end on drain.

Run it from the repository's root:

    python -m triolette examples.sse:app

Then open http://127.0.0.1:8000/clock in a browser, or: curl -N http://127.0.0.1:8000/clock
(Ctrl+C on the server ends the stream cleanly: the server drains.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

from triolette.applications import Triolette
from triolette.requests import Request
from triolette.routing import Route
from triolette.sse import EventSourceResponse, ServerSentEvent


async def clock(request: Request) -> EventSourceResponse:
    last = request.headers.get("last-event-id")
    first = int(last) + 1 if last is not None and last.isdigit() else 0

    async def ticks() -> AsyncIterator[ServerSentEvent]:
        n = first
        while True:
            yield ServerSentEvent({"tick": n, "at": trio.current_time()}, event="tick", id=n)
            n += 1
            await trio.sleep(1)

    return EventSourceResponse(ticks(), ping=15)


app = Triolette(routes=[Route("/clock", clock)])
