"""The smallest triolette app: a greeting, and a slow route that shows cancellation.

Run it from the repository's root:

    python -m triolette examples.hello:app

(hypercorn --worker-class trio examples.hello:app works too, without the graceful drain.)

Then open:
    http://127.0.0.1:8000/                    the greeting
    http://127.0.0.1:8000/slow?seconds=5      answers after 5 s; stop loading and the handler is cancelled
    http://127.0.0.1:8000/deadline?seconds=3  past the route's 1 s timeout: 503
"""

from __future__ import annotations

import trio

from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse
from triolette.routing import Route


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


async def slow(request: Request) -> JSONResponse:
    """Takes `seconds` (default 2); if the client leaves first, this is cancelled at the sleep."""
    seconds = float(request.query_params.get("seconds", "2"))
    await trio.sleep(seconds)
    return JSONResponse({"slept": seconds})


async def deadline(request: Request) -> JSONResponse:
    """Runs under a 1 s route timeout: asking for more than that gets a 503."""
    seconds = float(request.query_params.get("seconds", "0.1"))
    await trio.sleep(seconds)
    return JSONResponse({"deadline": trio.current_effective_deadline() - trio.current_time() > -seconds})


app = Triolette(
    routes=[
        Route("/", hello),
        Route("/slow", slow),
        Route("/deadline", deadline, timeout=1),
    ]
)
