"""The apps ``e2e_served.py`` serves: triolette hello and a bare ASGI app (the stack's ceiling)."""

from __future__ import annotations

from typing import Any

from triolette.applications import Triolette
from triolette.responses import PlainTextResponse
from triolette.routing import Route, WebSocketRoute
from triolette.websockets import WebSocket, WebSocketDisconnect


async def _hello(request: Any) -> PlainTextResponse:
    return PlainTextResponse("Hello, world!")


hello = Triolette(routes=[Route("/", _hello)])

_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]


async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_bytes(await websocket.receive_bytes())
    except WebSocketDisconnect:
        pass


# A WebSocket echo that accepts messages of up to 1 MiB (ws_big_frame.py).
ws_limited = Triolette(
    routes=[Route("/", _hello), WebSocketRoute("/ws", _echo)], websocket_max_message_size=1024 * 1024
)
