"""The app that tests/e2e/test_hostile.py attacks, served by ``python -m triolette`` in its own process.

``HOSTILE_STATIC`` names the directory served under ``/static``; it holds ``public.txt`` and
``sub/inner.txt``, and its parent a ``secret.txt`` that must never be served. Limits are
short so that the attacks on them end quickly: 3 s to send a body, 1 s for a client to take
a chunk of the response.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from triolette.applications import Triolette
from triolette.middleware import Middleware
from triolette.middleware.sessions import SessionMiddleware
from triolette.middleware.trustedhost import TrustedHostMiddleware
from triolette.requests import Request
from triolette.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from triolette.routing import Mount, Route
from triolette.staticfiles import StaticFiles

STATIC = Path(os.environ.get("HOSTILE_STATIC", "."))
SECRET_KEY = "hostile-e2e-secret-key-0123456789"

in_flight = 0  # requests inside /slow
streams_open = 0  # /big responses that have not run their finally yet


def task_count() -> int:
    """Every task of this trio run, the root included."""
    root = trio.lowlevel.current_root_task()
    assert root is not None  # called inside trio.run
    count, tasks = 0, [root]
    while tasks:
        task = tasks.pop()
        count += 1
        for nursery in task.child_nurseries:
            tasks.extend(nursery.child_tasks)
    return count


def memory() -> int:
    """This process's resident memory, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")  # pragma: no cover - Linux always has it


async def ping(request: Request) -> Response:
    return PlainTextResponse("pong")


async def stats(request: Request) -> Response:
    return JSONResponse(
        {
            "tasks": task_count(),
            "fds": len(os.listdir("/proc/self/fd")),
            "memory": memory(),
            "in_flight": in_flight,
            "streams_open": streams_open,
        }
    )


async def form(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.form())))


async def json_body(request: Request) -> Response:
    try:
        data = await request.json()
    except ValueError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    return PlainTextResponse(type(data).__name__)


async def body(request: Request) -> Response:
    return PlainTextResponse(str(len(await request.body())))


async def typed(request: Request) -> Response:
    return PlainTextResponse(repr(request.path_params["n"]))


async def session(request: Request) -> Response:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return JSONResponse(request.session)


async def slow(request: Request) -> Response:
    global in_flight
    in_flight += 1
    try:
        await trio.sleep(float(request.query_params.get("s", "1")))
    finally:
        in_flight -= 1
    return PlainTextResponse(f"done, draining={request.app.draining.is_set()}")


async def big(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        global streams_open
        streams_open += 1
        try:
            for _ in range(1024):  # 64 MiB
                yield b"x" * 65536
        finally:
            streams_open -= 1

    return StreamingResponse(chunks(), media_type="application/octet-stream")


async def file(request: Request) -> Response:
    return FileResponse(STATIC / "public.txt")


app = Triolette(
    routes=[
        Route("/", ping),
        Route("/stats", stats),
        Route("/form", form, methods=["POST"]),
        Route("/json", json_body, methods=["POST"]),
        Route("/body", body, methods=["POST"]),
        Route("/int/{n:int}", typed),
        Route("/float/{n:float}", typed),
        Route("/uuid/{n:uuid}", typed),
        Route("/session", session),
        Route("/slow", slow),
        Route("/big", big),
        Route("/file", file),
        Mount("/static", app=StaticFiles(directory=STATIC)),
    ],
    middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "*.example.org"]),
        Middleware(SessionMiddleware, secret_key=SECRET_KEY),
    ],
    body_timeout=3,  # long enough for a 15 MiB upload on a loaded machine, apart from keep-alive (5 s)
    send_timeout=1,
)
