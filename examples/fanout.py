"""Fan-out on the request nursery: ask several backends at once, answer with the fastest.

Every lookup is a task in ``request.nursery``: when the first answer arrives the others
are cancelled, and when the client leaves, all of them are.

Run it from the repository's root:

    python -m triolette examples.fanout:app

Then open:
    http://127.0.0.1:8000/fastest     the first backend to answer; the others are cancelled
    http://127.0.0.1:8000/everything  every backend, asked at once
"""

from __future__ import annotations

import trio

from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import JSONResponse
from triolette.routing import Route

BACKENDS = {"near": 0.05, "far": 0.5, "very-far": 5.0}  # simulated latency in seconds


async def lookup(name: str, delay: float, answers: trio.MemorySendChannel[str]) -> None:
    await trio.sleep(delay)  # stands in for a network call
    await answers.send(name)


async def fastest(request: Request) -> JSONResponse:
    started = trio.current_time()
    send, receive = trio.open_memory_channel[str](len(BACKENDS))
    async with trio.open_nursery() as lookups:  # a child of the request nursery's scope
        for name, delay in BACKENDS.items():
            lookups.start_soon(lookup, name, delay, send)
        winner = await receive.receive()
        lookups.cancel_scope.cancel(reason="an answer arrived")
    return JSONResponse({"fastest": winner, "elapsed": round(trio.current_time() - started, 3)})


async def everything(request: Request) -> JSONResponse:
    """All backends, concurrently, started straight on request.nursery."""
    results: dict[str, float] = {}

    async def one(name: str, delay: float) -> None:
        await trio.sleep(delay)
        results[name] = delay

    done = trio.Event()

    async def all_of_them() -> None:
        async with trio.open_nursery() as group:
            for name, delay in BACKENDS.items():
                group.start_soon(one, name, delay)
        done.set()

    request.nursery.start_soon(all_of_them)
    await done.wait()
    return JSONResponse(sorted(results))


app = Triolette(routes=[Route("/fastest", fastest), Route("/everything", everything)])
