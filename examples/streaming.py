"""Streaming: a body produced as it is computed; leaving early cancels the producer.

Run it from the repository's root:

    python -m triolette examples.streaming:app

Then open http://127.0.0.1:8000/countdown?start=5, or: curl -N http://127.0.0.1:8000/countdown?start=5
(Ctrl+C on curl before the end cancels the producer.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import trio

from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import StreamingResponse
from triolette.routing import Route

stopped_early: list[int] = []  # what the generators' finally blocks saw, for the tests


async def countdown(request: Request) -> StreamingResponse:
    start = int(request.query_params.get("start", "10"))

    async def lines() -> AsyncIterator[str]:
        n = start
        try:
            while n >= 0:
                yield f"{n}\n"
                n -= 1
                await trio.sleep(1)
        finally:
            if n >= 0:  # the client left (or the server shut down) before the end
                stopped_early.append(n)

    return StreamingResponse(lines(), media_type="text/plain")


app = Triolette(routes=[Route("/countdown", countdown)])
