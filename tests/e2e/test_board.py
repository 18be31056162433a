"""The demo board over real sockets: hypercorn's trio worker, httpx, a WebSocket client.

Two "tabs" (two HTTP clients with their own cookies) sign in; a card one creates shows up
live in the other's server-sent event feed, and chat messages cross over WebSockets.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import h11
import httpx
import pytest
import trio
from httpx_ws import AsyncWebSocketSession, aconnect_ws

from examples.board.app import create_app
from tests.e2e.servers import running

pytestmark = pytest.mark.e2e


class EventStream:
    """A browser tab's EventSource, on a raw socket parsed by h11 (httpx's streaming
    generators cannot be closed early without ResourceWarnings under trio)."""

    def __init__(self, base: str, path: str, cookies: httpx.Cookies) -> None:
        self.url = urlsplit(base)
        self.path = path
        self.cookie = "; ".join(f"{name}={value}" for name, value in cookies.items())
        self.connection = h11.Connection(h11.CLIENT)
        self.headers: dict[bytes, bytes] = {}
        self.buffer = b""

    async def __aenter__(self) -> EventStream:
        assert self.url.hostname is not None
        assert self.url.port is not None
        self.stream = await trio.open_tcp_stream(self.url.hostname, self.url.port)
        request = h11.Request(
            method="GET",
            target=self.path,
            headers=[("host", self.url.netloc), ("cookie", self.cookie), ("accept", "text/event-stream")],
        )
        await self.stream.send_all(self.connection.send(request) + self.connection.send(h11.EndOfMessage()))
        response = await self._next_event()
        assert isinstance(response, h11.Response), response
        self.headers = dict(response.headers)
        return self

    async def __aexit__(self, *exc_info: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.stream.aclose()  # the tab closes: the server sees the disconnect

    async def _next_event(self) -> h11.Event:
        while (event := self.connection.next_event()) is h11.NEED_DATA:
            self.connection.receive_data(await self.stream.receive_some(65536))
        assert isinstance(event, h11.Event)  # not PAUSED: the callers want a Response or Data
        return event

    async def next_line(self) -> str:
        while b"\n" not in self.buffer:
            event = await self._next_event()
            assert isinstance(event, h11.Data), event
            self.buffer += bytes(event.data)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode().removesuffix("\r")


async def sign_in(tab: httpx.AsyncClient, name: str) -> httpx.Response:
    first = await tab.get("/")
    assert first.url.path == "/signin"
    assert "Your name" in first.text
    return await tab.post("/signin", data={"name": name})


async def test_live_board_over_real_sockets(tmp_path: Path) -> None:
    app = create_app(tmp_path, secret_key="e2e-secret")
    with trio.fail_after(15):
        async with (
            running(app) as base,
            httpx.AsyncClient(base_url=base, follow_redirects=True) as tab_a,
            httpx.AsyncClient(base_url=base, follow_redirects=True) as tab_b,
        ):
            board_a = await sign_in(tab_a, "ada")
            assert board_a.status_code == 200
            assert 'id="whoami">ada<' in board_a.text
            assert (await sign_in(tab_b, "bob")).status_code == 200
            assert (await tab_a.get("/static/board.css")).headers["content-type"].startswith("text/css")

            async with EventStream(base, "/events", tab_a.cookies) as feed:
                assert feed.headers[b"content-type"] == b"text/event-stream; charset=utf-8"
                assert await feed.next_line() == ": subscribed"
                created = await tab_b.post(
                    "/cards", data={"title": "Live card"}, headers={"accept": "application/json"}
                )
                assert created.status_code == 201
                while not (line := await feed.next_line()).startswith("data: "):
                    pass
                card = json.loads(line.removeprefix("data: "))
            assert (card["title"], card["author"], card["column"]) == ("Live card", "bob", "todo")

            ws_base = base.replace("http://", "ws://")
            ada: AsyncWebSocketSession
            bob: AsyncWebSocketSession
            async with (
                aconnect_ws(f"{ws_base}/chat", tab_a) as ada,
                aconnect_ws(f"{ws_base}/chat", tab_b) as bob,
            ):
                await ada.send_text("hello bob")
                while (message := json.loads(await bob.receive_text()))["type"] == "presence":
                    pass  # who is online, before the chat line
                assert message == {"type": "chat", "author": "ada", "text": "hello bob"}

            assert "Live card" in (await tab_a.get("/")).text
