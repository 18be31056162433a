"""A WebSocket echo with a heartbeat task in the connection's own nursery.

Run it from the repository's root:

    python -m triolette examples.websocket_echo:app

Then connect a WebSocket client to ws://127.0.0.1:8000/echo (for instance, after
`pip install websockets`: `python -m websockets ws://127.0.0.1:8000/echo`): it answers each text message with
{"type": "echo", "text": ...} and sends {"type": "heartbeat"} every 10 s.
"""

from __future__ import annotations

import trio

from triolette.applications import Triolette
from triolette.routing import WebSocketRoute
from triolette.websockets import WebSocket, WebSocketDisconnect


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()

    async def heartbeat() -> None:  # cancelled when the client goes away
        while True:
            await trio.sleep(10)
            await websocket.send_json({"type": "heartbeat"})

    websocket.nursery.start_soon(heartbeat)
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_json({"type": "echo", "text": text})
    except WebSocketDisconnect:
        pass


app = Triolette(routes=[WebSocketRoute("/echo", echo)])
