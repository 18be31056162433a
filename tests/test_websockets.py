"""WebSockets on the RequestScope.

The deterministic tests drive the app through a fake server (memory channels, the test's
own trio run, virtual time); the Starlette-API tests go through ``TestClient``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from triolette import websockets
from triolette._conversation import ProtocolError
from triolette.applications import Triolette
from triolette.exceptions import WebSocketException
from triolette.middleware import Middleware
from triolette.responses import PlainTextResponse
from triolette.routing import Mount, WebSocketRoute
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send
from triolette.websockets import (
    WebSocket,
    WebSocketClose,
    WebSocketDisconnect,
    WebSocketDisconnected,
    WebSocketState,
)

Handler = Callable[[WebSocket], Awaitable[None]]


def ws_scope(path: str = "/ws", **extra: Any) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "subprotocols": [],
        **extra,
    }


class Peer:
    """The client's side of one connection: a fake server on memory channels.

    ``send_to_app`` is what the client sends; ``next()`` is the app's next message.
    The app's exception, if it ends with one, is kept in ``error``.
    """

    def __init__(self, app: Any, scope: dict[str, Any] | None = None) -> None:
        self.app = app
        self.scope = ws_scope() if scope is None else scope
        self._to_app, self._inbox = trio.open_memory_channel[Message](math.inf)
        self._outbox, self._from_app = trio.open_memory_channel[Message](math.inf)
        self.error: BaseException | None = None
        self.done = trio.Event()

    async def run(self) -> None:
        try:
            await self.app(self.scope, self._inbox.receive, self._outbox.send)
        except Exception as exc:
            self.error = exc
        finally:
            self._outbox.close()
            self.done.set()

    async def send_to_app(self, message: Message) -> None:
        await self._to_app.send(message)

    async def connect(self) -> Message:
        await self.send_to_app({"type": "websocket.connect"})
        return await self.next()

    async def text(self, text: str) -> None:
        await self.send_to_app({"type": "websocket.receive", "text": text})

    async def disconnect(self, code: int = 1001) -> None:
        await self.send_to_app({"type": "websocket.disconnect", "code": code})

    async def next(self) -> Message:
        return await self._from_app.receive()

    async def rest(self) -> list[Message]:
        """Every message the app sends from now until its ASGI call returns."""
        return [message async for message in self._from_app]


def ws_app(handler: Handler, **options: Any) -> Triolette:
    return Triolette(routes=[WebSocketRoute("/ws", handler)], **options)


async def test_echo_and_close() -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text.upper())

    peer = Peer(ws_app(echo))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            assert (await peer.connect())["type"] == "websocket.accept"
            await peer.text("hi")
            assert await peer.next() == {"type": "websocket.send", "text": "HI"}
            await peer.disconnect(1000)
            assert await peer.rest() == []
    assert peer.error is None


async def test_disconnect_cancels_the_connections_tasks_and_the_handler_gets_websocketdisconnect() -> None:
    seen: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()

        async def heartbeat() -> None:
            try:
                await trio.sleep_forever()
            except trio.Cancelled as exc:
                seen.append(("heartbeat cancelled", exc.reason))
                raise

        websocket.nursery.start_soon(heartbeat)
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen.append(("handler", exc.code))
            await trio.lowlevel.checkpoint()  # told, not cancelled: it may await its cleanup (bounded)
            seen.append("handler finished its cleanup")

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await trio.testing.wait_all_tasks_blocked()
            await peer.disconnect(1001)
            assert await peer.rest() == []
    assert sorted(seen, key=str) == [  # the heartbeat and the handler run in either order
        ("handler", 1001),
        ("heartbeat cancelled", "client disconnected"),
        "handler finished its cleanup",
    ]
    assert seen.index(("handler", 1001)) < seen.index("handler finished its cleanup")
    assert peer.error is None


async def release_at(event: trio.Event, when: float) -> None:
    """A safety net, so that a test of a handler that would never end fails instead of hanging."""
    await trio.sleep_until(when)
    event.set()


async def test_a_handler_blocked_elsewhere_is_cancelled_when_the_client_leaves(autojump_clock: trio.abc.Clock) -> None:
    news = trio.Event()  # a pub/sub feed that delivers nothing before t=50
    seen: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()

        async def read() -> None:  # the connection's reader, a task of websocket.nursery
            try:
                await websocket.receive_text()
            except WebSocketDisconnect:
                seen.append("reader saw the disconnect")

        websocket.nursery.start_soon(read)
        try:
            await news.wait()  # not a WebSocket call
        except trio.Cancelled as exc:
            seen.append(("handler cancelled", exc.reason))
            raise

    peer = Peer(ws_app(handler))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_at, news, 50)
        nursery.start_soon(peer.run)
        await peer.connect()
        await trio.sleep(1)
        await peer.disconnect()
        assert await peer.rest() == []  # the call ends without the feed delivering
        assert trio.current_time() == 1
        nursery.cancel_scope.cancel()
    assert sorted(seen, key=str) == [("handler cancelled", "client disconnected"), "reader saw the disconnect"]
    assert peer.error is None


async def test_a_handler_in_send_when_the_client_leaves_gets_websocketdisconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen: list[object] = []
    stuck = trio.Event()
    reads = trio.Event()  # the client reads again at t=50 (too late)

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.send_text("never read")
        except WebSocketDisconnect as exc:
            seen.append(("send", exc.code))
            try:
                await trio.lowlevel.checkpoint()
            except trio.Cancelled as cancelled:  # the request is cancelled too, as any request the client left
                seen.append(("then cancelled", cancelled.reason))
                raise

    to_app, inbox = trio.open_memory_channel[Message](math.inf)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "websocket.send":
            stuck.set()
            await reads.wait()  # a client that does not read

    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_at, reads, 50)
        async with trio.open_nursery() as connection:
            connection.start_soon(ws_app(handler), ws_scope(), inbox.receive, send)
            to_app.send_nowait({"type": "websocket.connect"})
            await stuck.wait()
            await trio.sleep(1)
            to_app.send_nowait({"type": "websocket.disconnect", "code": 1006})
        assert trio.current_time() == 1
        nursery.cancel_scope.cancel()
    assert seen == [("send", 1006), ("then cancelled", "client disconnected")]
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send"]


async def _lingering_handler(websocket: WebSocket, lingering: trio.Event, outcome: list[object]) -> None:
    await websocket.accept()
    try:
        await websocket.receive_text()
    except WebSocketDisconnect:
        try:
            await lingering.wait()  # a handler that lingers after the client left
        except trio.Cancelled:
            outcome.append(trio.current_time())
            raise


async def test_an_outer_cancellation_reaches_a_handler_told_of_the_disconnect(autojump_clock: trio.abc.Clock) -> None:
    outcome: list[object] = []
    lingering = trio.Event()
    peer = Peer(ws_app(lambda websocket: _lingering_handler(websocket, lingering, outcome)))
    async with trio.open_nursery() as outer:
        outer.start_soon(release_at, lingering, 50)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await peer.disconnect()
            await trio.sleep(5)
            nursery.cancel_scope.cancel()  # the server cancels the connection's task: nothing shields the handler
        outer.cancel_scope.cancel()
    assert outcome == [5]


async def test_a_handler_told_of_the_disconnect_gets_a_bounded_grace(autojump_clock: trio.abc.Clock) -> None:
    outcome: list[object] = []
    lingering = trio.Event()
    app = ws_app(lambda websocket: _lingering_handler(websocket, lingering, outcome), send_timeout=3)
    peer = Peer(app)
    async with trio.open_nursery() as outer:
        outer.start_soon(release_at, lingering, 50)
        outer.start_soon(peer.run)
        await peer.connect()
        await peer.disconnect()
        await peer.done.wait()
        outer.cancel_scope.cancel()
    assert outcome == [3]  # no handler outlives its connection by more than send_timeout
    assert peer.error is None


async def test_a_websocketdisconnect_left_uncaught_after_the_client_left_is_not_an_error() -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await peer.disconnect()
    assert peer.error is None


async def test_messages_sent_while_the_handler_is_busy_are_kept_in_order() -> None:
    go = trio.Event()
    received: list[str] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        await go.wait()
        received.extend([await websocket.receive_text() for _ in range(3)])
        await websocket.close()

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            for text in ("a", "b", "c"):
                await peer.text(text)
            await trio.testing.wait_all_tasks_blocked()  # the watcher has read some of them meanwhile
            go.set()
            assert await peer.rest() == [{"type": "websocket.close", "code": 1000, "reason": ""}]
            await peer.disconnect(1000)
    assert received == ["a", "b", "c"]


async def test_two_readers_never_race_nor_lose_a_message() -> None:
    received: list[str] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()

        async def read() -> None:
            received.append(await websocket.receive_text())

        async with trio.open_nursery() as readers:
            readers.start_soon(read)
            readers.start_soon(read)
        await websocket.close()

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await trio.testing.wait_all_tasks_blocked()
            await peer.text("one")
            await peer.text("two")
            assert await peer.rest() == [{"type": "websocket.close", "code": 1000, "reason": ""}]
    assert sorted(received) == ["one", "two"]


async def test_concurrent_sends_reach_the_server_one_at_a_time(autojump_clock: trio.abc.Clock) -> None:
    inside = 0
    most = 0
    wire: list[str] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()

        async def talk(name: str) -> None:
            for n in range(3):
                await websocket.send_text(f"{name}{n}")

        async with trio.open_nursery() as talkers:
            for name in "abcd":
                talkers.start_soon(talk, name)
        await websocket.close()

    async def slow_server_send(message: Message) -> None:  # like a socket: a send takes a while
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await trio.sleep(1)
        if message["type"] == "websocket.send":
            wire.append(message["text"])
        inside -= 1

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    with trio.fail_after(60):
        await ws_app(handler)(ws_scope(), receive, slow_server_send)
    assert most == 1
    assert sorted(wire) == sorted(f"{name}{n}" for name in "abcd" for n in range(3))
    for name in "abcd":  # each task's messages stay in its order
        assert [text for text in wire if text[0] == name] == [f"{name}0", f"{name}1", f"{name}2"]
    assert trio.current_time() == 1 + 12 + 1  # accept, 12 messages, close


async def test_a_send_after_the_client_left_raises_websocketdisconnect() -> None:
    outcome: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        message = await websocket.receive()
        outcome.append(message["type"])
        with pytest.raises(WebSocketDisconnect) as gone:
            await websocket.send_text("anyone?")
        outcome.append(gone.value.code)
        assert websocket.application_state is WebSocketState.DISCONNECTED

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await peer.disconnect()
    assert outcome == ["websocket.disconnect", 1006]
    assert peer.error is None


async def test_a_message_over_the_size_limit_closes_with_1009() -> None:
    caught: list[int] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        assert await websocket.receive_text() == "x" * 10
        try:
            await websocket.receive_bytes()
        except WebSocketDisconnect as exc:
            caught.append(exc.code)
            raise

    peer = Peer(ws_app(handler, websocket_max_message_size=10))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await peer.text("x" * 10)
            await peer.send_to_app({"type": "websocket.receive", "bytes": b"y" * 11})
            [close] = await peer.rest()
    assert close == {"type": "websocket.close", "code": 1009, "reason": "Message of 11 bytes is over the limit of 10"}
    assert caught == [1009]
    assert peer.error is None  # the connection was closed: not an error to log


async def test_an_exception_before_accept_refuses_the_connection() -> None:
    async def handler(websocket: WebSocket) -> None:
        raise RuntimeError("no database")

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.send_to_app({"type": "websocket.connect"})
            assert await peer.rest() == [{"type": "websocket.close", "code": 1011, "reason": ""}]  # the server: 403
    assert isinstance(peer.error, RuntimeError)
    assert str(peer.error) == "no database"


async def test_an_exception_after_accept_closes_with_1011_and_cancels_the_tasks() -> None:
    cancelled = trio.Event()

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()

        async def task() -> None:
            try:
                await trio.sleep_forever()
            finally:
                cancelled.set()

        websocket.nursery.start_soon(task)
        await websocket.receive_text()
        raise KeyError("user")

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await peer.text("hello")
            assert await peer.rest() == [{"type": "websocket.close", "code": 1011, "reason": ""}]
    assert isinstance(peer.error, KeyError)
    assert cancelled.is_set()


async def test_a_handler_that_returns_closes_the_connection_and_ends_its_tasks() -> None:
    cancelled: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()

        async def task() -> None:
            try:
                await trio.sleep_forever()
            except trio.Cancelled as exc:
                cancelled.append(exc.reason)
                raise

        websocket.nursery.start_soon(task)
        await websocket.send_text("bye")

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            assert await peer.rest() == [
                {"type": "websocket.send", "text": "bye"},
                {"type": "websocket.close", "code": 1000, "reason": ""},
            ]
    assert cancelled == ["websocket closed"]


async def test_a_handler_that_returns_without_accepting_refuses_the_connection() -> None:
    async def handler(websocket: WebSocket) -> None:
        pass

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.send_to_app({"type": "websocket.connect"})
            assert await peer.rest() == [{"type": "websocket.close", "code": 1000, "reason": ""}]


async def test_an_idle_connection_has_no_body_timeout(autojump_clock: trio.abc.Clock) -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())

    peer = Peer(ws_app(echo, body_timeout=1))
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await trio.sleep(600)
            await peer.text("still there")
            assert await peer.next() == {"type": "websocket.send", "text": "still there"}
            assert await peer.next() == {"type": "websocket.close", "code": 1000, "reason": ""}
    assert trio.current_time() == 600


async def test_a_client_that_does_not_read_is_dropped_after_send_timeout(autojump_clock: trio.abc.Clock) -> None:
    reasons: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text("tick")
        except trio.Cancelled as exc:
            reasons.append(exc.reason)
            raise

    sent: list[Message] = []

    async def server_send(message: Message) -> None:
        if len(sent) == 3:
            await trio.sleep_forever()  # the client stopped reading: the socket buffer is full
        sent.append(message)

    async def receive() -> Message:
        if not sent:
            return {"type": "websocket.connect"}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with trio.fail_after(100):
        await ws_app(handler, send_timeout=5)(ws_scope(), receive, server_send)
    assert trio.current_time() == 5
    assert reasons == ["client did not read within send_timeout (5 s)"]
    assert [message["type"] for message in sent] == ["websocket.accept", "websocket.send", "websocket.send"]


async def test_a_deadline_closes_an_open_connection_with_1011(autojump_clock: trio.abc.Clock) -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()

    peer = Peer(ws_app(handler, timeout=10))
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            assert await peer.rest() == [{"type": "websocket.close", "code": 1011, "reason": "Request timed out"}]
    assert trio.current_time() == 10


async def test_draining_lets_the_handler_say_goodbye(autojump_clock: trio.abc.Clock) -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        draining = websocket.app.draining

        async def goodbye() -> None:
            await draining.wait()
            await websocket.send_text("the server restarts, come back soon")
            await websocket.close(1001)

        websocket.nursery.start_soon(goodbye)
        async for _ in websocket.iter_text():
            pass

    app = ws_app(handler)
    peer = Peer(app)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            nursery.start_soon(app.drain, 30)
            assert await peer.next() == {"type": "websocket.send", "text": "the server restarts, come back soon"}
            assert await peer.next() == {"type": "websocket.close", "code": 1001, "reason": ""}
            await peer.disconnect(1001)  # the client answers the close
            assert await peer.rest() == []
    assert trio.current_time() == 0
    assert app.in_flight == 0


async def test_draining_closes_a_connection_with_1001_after_the_graceful_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    cancelled: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            async for text in websocket.iter_text():
                await websocket.send_text(text)
        except trio.Cancelled as exc:
            cancelled.append(exc.reason)
            raise

    app = ws_app(handler)
    peer = Peer(app)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            nursery.start_soon(app.drain, 30)
            assert await peer.rest() == [{"type": "websocket.close", "code": 1001, "reason": "Server shutting down"}]
    assert trio.current_time() == 30
    assert cancelled == ["server shutting down"]


async def test_draining_reaches_a_handler_lingering_after_a_disconnect(autojump_clock: trio.abc.Clock) -> None:
    outcome: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect:
            try:
                await trio.sleep_forever()  # a handler that lingers after the client left
            except trio.Cancelled as exc:
                outcome.append(exc.reason)
                raise

    app = ws_app(handler, cancel_on_disconnect=False)  # the disconnect alone does not end it
    peer = Peer(app)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await peer.disconnect()
            await trio.sleep(5)
            assert not peer.done.is_set()
            await app.drain(10)
    assert outcome == ["server shutting down"]
    assert trio.current_time() == 15
    assert app.in_flight == 0


async def test_with_cancel_on_disconnect_false_the_tasks_run_until_the_handler_returns() -> None:
    seen: list[str] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        finished = trio.Event()

        async def task() -> None:
            await trio.testing.wait_all_tasks_blocked()
            seen.append("task ran after the disconnect")
            finished.set()
            await trio.sleep_forever()

        try:
            await websocket.receive_text()
        except WebSocketDisconnect:
            websocket.nursery.start_soon(task)
            await finished.wait()

    peer = Peer(ws_app(handler, cancel_on_disconnect=False))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await peer.disconnect()
    assert seen == ["task ran after the disconnect"]


# -- Starlette's API through TestClient -------------------------------------------------


def test_testclient_session_api() -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="chat", headers=[(b"x-room", b"lobby")])
        await websocket.send_text(await websocket.receive_text())
        await websocket.send_bytes(await websocket.receive_bytes())
        await websocket.send_json(await websocket.receive_json())
        await websocket.send_json(await websocket.receive_json(mode="binary"), mode="binary")
        await websocket.close(code=1000, reason="done")

    with TestClient(ws_app(handler)) as client, client.websocket_connect("/ws", subprotocols=["chat"]) as session:
        assert session.accepted_subprotocol == "chat"
        assert session.extra_headers == [(b"x-room", b"lobby")]
        session.send_text("text")
        assert session.receive_text() == "text"
        session.send_bytes(b"\x00bytes")
        assert session.receive_bytes() == b"\x00bytes"
        session.send_json({"a": [1, "é"]})
        assert session.receive_json() == {"a": [1, "é"]}
        session.send_json([True], mode="binary")
        assert session.receive_json(mode="binary") == [True]
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_text()
    assert (closed.value.code, closed.value.reason) == (1000, "done")


def test_iter_bytes_and_iter_json_end_at_the_disconnect() -> None:
    got: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        got.extend([data async for data in websocket.iter_bytes()][:1])

    async def json_handler(websocket: WebSocket) -> None:
        await websocket.accept()
        got.extend([data async for data in websocket.iter_json()])

    app = Triolette(routes=[WebSocketRoute("/ws", handler), WebSocketRoute("/json", json_handler)])
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as session:
            session.send_bytes(b"1")
            session.close()
        with client.websocket_connect("/json") as session:
            session.send_json({"n": 2})
    assert got == [b"1", {"n": 2}]


def test_a_denial_response_reaches_the_client() -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("Sign in first", status_code=401))

    with (
        TestClient(ws_app(handler)) as client,
        pytest.raises(websockets.WebSocketDisconnect) as denied,
        client.websocket_connect("/ws"),
    ):
        pass  # pragma: no cover
    response: Any = denied.value
    assert response.status_code == 401
    assert response.text == "Sign in first"


async def test_a_denial_response_needs_the_server_extension() -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("no"))

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.send_to_app({"type": "websocket.connect"})
            assert await peer.rest() == [{"type": "websocket.close", "code": 1011, "reason": ""}]
    assert isinstance(peer.error, RuntimeError)
    assert "Denial Response extension" in str(peer.error)


async def test_a_complete_denial_response_is_not_followed_by_a_close() -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("no", status_code=403))

    peer = Peer(ws_app(handler), ws_scope(extensions={"websocket.http.response": {}}))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.send_to_app({"type": "websocket.connect"})
            kinds = [message["type"] for message in await peer.rest()]
    assert kinds == ["websocket.http.response.start", "websocket.http.response.body"]


def test_an_unknown_path_is_closed_before_accept() -> None:
    with (
        TestClient(Triolette(routes=[])) as client,
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/nowhere"),
    ):
        pass  # pragma: no cover
    assert closed.value.code == 1000


def test_websocket_exception_closes_with_its_code() -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        raise WebSocketException(code=1008, reason="policy")

    with (
        TestClient(ws_app(handler)) as client,
        client.websocket_connect("/ws") as session,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        session.receive_text()
    assert (closed.value.code, closed.value.reason) == (1008, "policy")


def test_a_mounted_websocket_route() -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.url.path)
        await websocket.close()

    app = Triolette(routes=[Mount("/api", routes=[WebSocketRoute("/ws", handler)])])
    with TestClient(app) as client, client.websocket_connect("/api/ws") as session:
        assert session.receive_text() == "/api/ws"


# -- the state machine, as Starlette's -------------------------------------------------


async def test_state_errors() -> None:
    outcome: list[str] = []

    async def handler(websocket: WebSocket) -> None:
        with pytest.raises(WebSocketDisconnected, match='Need to call "accept" first'):
            await websocket.receive_text()
        with pytest.raises(RuntimeError, match=r'Expected ASGI message "websocket\.accept"'):
            await websocket.send({"type": "websocket.send", "text": "early"})
        await websocket.accept()
        with pytest.raises(RuntimeError, match='"mode" argument should be "text" or "binary"'):
            await websocket.receive_json(mode="xml")
        with pytest.raises(RuntimeError, match='"mode" argument should be "text" or "binary"'):
            await websocket.send_json({}, mode="xml")
        with pytest.raises(RuntimeError, match=r'Expected ASGI message "websocket\.send" or "websocket\.close"'):
            await websocket.send({"type": "websocket.accept"})
        await websocket.close()
        with pytest.raises(WebSocketDisconnected, match="once a close message has been sent"):
            await websocket.send_text("late")
        message = await websocket.receive()
        outcome.append(message["type"])
        with pytest.raises(WebSocketDisconnected, match="once a disconnect message has been received"):
            await websocket.receive()

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.connect()
            await peer.disconnect(1000)
            await peer.rest()
    assert peer.error is None
    assert outcome == ["websocket.disconnect"]


async def test_the_first_message_must_be_connect() -> None:
    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()

    peer = Peer(ws_app(handler))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.text("too soon")
            await peer.rest()
    assert isinstance(peer.error, RuntimeError)
    assert str(peer.error) == "Expected ASGI message \"websocket.connect\", but got 'websocket.receive'"


def test_websocket_needs_a_websocket_scope() -> None:
    async def receive() -> Message:
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        raise AssertionError("unreachable")  # pragma: no cover

    with pytest.raises(ValueError, match="WebSocket needs a 'websocket' scope, got 'http'"):
        WebSocket({"type": "http"}, receive, send)


async def test_websocketclose_is_a_close_before_accept() -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message)

    await WebSocketClose(1008, "go away")(ws_scope(), receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "go away"}]


def test_all_is_sorted() -> None:
    assert websockets.__all__ == sorted(websockets.__all__)
    for name in websockets.__all__:
        assert hasattr(websockets, name)


# -- the order of messages: the Outbox tables, with and without a RequestScope ---------------------

DENIAL_EXTENSION: dict[str, dict[str, Any]] = {"websocket.http.response": {}}
ACCEPT: Message = {"type": "websocket.accept", "subprotocol": None, "headers": []}
CLOSE: Message = {"type": "websocket.close", "code": 1000, "reason": ""}
DENIAL_START: Message = {"type": "websocket.http.response.start", "status": 403, "headers": []}


class WrapSend:
    """A pure ASGI middleware that wraps ``send`` (the WebSocket then checks an outbox of its own)."""

    def __init__(self, app: Any, inject: Message | None = None) -> None:
        self.app = app
        self.inject = inject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped(message: Message) -> None:
            if self.inject is not None:  # a middleware that answers the handshake itself
                inject, self.inject = self.inject, None
                await send(inject)
            await send(message)

        await self.app(scope, receive, wrapped)


async def run_plain(handler: Handler, client: list[Message]) -> list[Message]:
    """``handler`` on a WebSocket made by hand: no RequestScope, a receive and send of lists."""
    wire: list[Message] = []

    async def receive() -> Message:
        return client.pop(0)

    async def send(message: Message) -> None:
        wire.append(message)

    await handler(WebSocket(ws_scope(extensions=DENIAL_EXTENSION), receive, send))
    return wire


async def run_in_app(
    handler: Handler,
    client: list[Message],
    *,
    middleware: list[Middleware] | None = None,
    disconnect_after: int | None = None,
) -> list[Message]:
    """``handler`` in a Triolette app (a RequestScope around it), through a fake server;
    with ``disconnect_after``, the client leaves once the app has sent that many messages."""
    peer = Peer(ws_app(handler, middleware=middleware or []), ws_scope(extensions=DENIAL_EXTENSION))
    wire: list[Message] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            for message in client:
                await peer.send_to_app(message)
            if disconnect_after is not None:
                wire += [await peer.next() for _ in range(disconnect_after)]
                await peer.disconnect(1000)
            wire += await peer.rest()
    assert peer.error is None
    return wire


SETUPS = ["no request scope", "request scope", "middleware wraps send"]


async def run_setup(setup: str, handler: Handler, client: list[Message]) -> list[Message]:
    if setup == "no request scope":
        return await run_plain(handler, client)
    if setup == "request scope":
        return await run_in_app(handler, client)
    return await run_in_app(handler, client, middleware=[Middleware(WrapSend)])


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize(
    ("before", "message", "error", "text"),
    [
        (
            [],
            {"type": "websocket.send", "text": "early"},
            RuntimeError,
            """Expected ASGI message "websocket.accept", "websocket.close" or "websocket.http.response.start", """
            """but got 'websocket.send'""",
        ),
        (
            [ACCEPT],
            {"type": "websocket.accept"},
            RuntimeError,
            """Expected ASGI message "websocket.send" or "websocket.close", but got 'websocket.accept'""",
        ),
        (
            [DENIAL_START],
            {"type": "websocket.send", "text": "?"},
            RuntimeError,
            """Expected ASGI message "websocket.http.response.body", but got 'websocket.send'""",
        ),
        (
            [ACCEPT, CLOSE],
            {"type": "websocket.send", "text": "late"},
            WebSocketDisconnected,
            'Cannot call "send" once a close message has been sent.',
        ),
        (
            [CLOSE],
            {"type": "websocket.accept"},
            WebSocketDisconnected,
            'Cannot call "send" once a close message has been sent.',
        ),
    ],
)
async def test_websocket_send_out_of_order_raises_starlettes_error_and_sends_nothing(
    setup: str, before: list[Message], message: Message, error: type[Exception], text: str
) -> None:
    outcome: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.receive()
        for earlier in before:
            await websocket.send(earlier)
        state = websocket.application_state
        try:
            await websocket.send(message)
        except Exception as exc:
            outcome.append(exc)
        outcome.append(websocket.application_state is state)  # a refused message changes nothing
        if before and before[-1] is DENIAL_START:
            await websocket.send({"type": "websocket.http.response.body", "body": b"no"})

    wire = await run_setup(setup, handler, [{"type": "websocket.connect"}])
    [exc, unchanged] = outcome
    assert type(exc) is error or (error is RuntimeError and isinstance(exc, ProtocolError))
    assert str(exc) == text
    assert unchanged
    kinds = [each["type"] for each in wire]
    assert wire[: len(before)] == before
    assert kinds.count(message["type"]) == [each["type"] for each in before].count(message["type"])  # not sent


@pytest.mark.parametrize(
    ("client", "text"),
    [
        (
            [{"type": "websocket.receive", "text": "hi"}],
            """Expected ASGI message "websocket.connect", but got 'websocket.receive'""",
        ),
        (
            [{"type": "websocket.connect"}, {"type": "websocket.connect"}],
            """Expected ASGI message "websocket.receive" or "websocket.disconnect", but got 'websocket.connect'""",
        ),
    ],
)
async def test_websocket_receive_out_of_order_raises_starlettes_error(client: list[Message], text: str) -> None:
    outcome: list[Exception] = []

    async def handler(websocket: WebSocket) -> None:
        for _ in range(len(client)):
            try:
                await websocket.receive()
            except RuntimeError as exc:
                outcome.append(exc)

    await run_plain(handler, client)
    [exc] = outcome
    assert isinstance(exc, ProtocolError)
    assert str(exc) == text


@pytest.mark.parametrize("setup", ["no request scope", "request scope"])
async def test_websocket_receive_after_the_disconnect_asks_the_server_nothing(setup: str) -> None:
    outcome: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        outcome.append((await websocket.receive())["type"])
        outcome.append(websocket.client_state)
        with pytest.raises(
            WebSocketDisconnected, match=r'^Cannot call "receive" once a disconnect message has been received\.$'
        ):
            await websocket.receive()

    client: list[Message] = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
    await run_setup(setup, handler, client)
    assert outcome == ["websocket.disconnect", WebSocketState.DISCONNECTED]
    if setup == "no request scope":
        assert client == []  # nothing read past the disconnect


async def test_in_a_request_scope_the_websocket_and_the_scope_share_one_state() -> None:
    states: list[WebSocketState] = []

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        websocket: WebSocket = WebSocket(scope, receive, send)
        await websocket.receive()
        await send(ACCEPT)  # the scope's own send, not the WebSocket's
        states.append(websocket.application_state)
        await websocket.send_text("one table")
        await send(CLOSE)
        states.append(websocket.application_state)

    app = Triolette(routes=[Mount("/", app=raw)])
    peer = Peer(app)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.send_to_app({"type": "websocket.connect"})
            wire = await peer.rest()
    assert peer.error is None
    assert states == [WebSocketState.CONNECTED, WebSocketState.DISCONNECTED]
    assert wire == [ACCEPT, {"type": "websocket.send", "text": "one table"}, CLOSE]


async def test_without_a_request_scope_the_websocket_keeps_its_own_state() -> None:
    states: list[WebSocketState] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.receive()
        await websocket._send(ACCEPT)  # around the WebSocket, as a raw app may: Starlette's state stays
        states.append(websocket.application_state)

    await run_plain(handler, [{"type": "websocket.connect"}])
    assert states == [WebSocketState.CONNECTING]


async def test_a_message_a_middleware_adds_is_refused_by_the_scope_in_its_own_words() -> None:
    outcome: list[Exception] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.receive()
        try:
            await websocket.send(ACCEPT)  # the WebSocket's own table allows it; the scope has one already
        except ProtocolError as exc:
            outcome.append(exc)
        await websocket.close()

    wire = await run_in_app(
        handler,
        [{"type": "websocket.connect"}],
        middleware=[Middleware(WrapSend, inject={"type": "websocket.accept"})],
    )
    [exc] = outcome
    assert str(exc) == (
        """Expected ASGI message "websocket.send" or "websocket.close" while the connection is open, """
        """but got 'websocket.accept'"""
    )
    assert [message["type"] for message in wire] == ["websocket.accept", "websocket.close"]


async def test_a_send_that_fails_leaves_the_websocket_disconnected() -> None:
    outcome: list[object] = []

    async def send(message: Message) -> None:
        if message["type"] == "websocket.send":
            raise OSError("connection reset")

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    websocket: WebSocket = WebSocket(ws_scope(), receive, send)
    await websocket.accept()
    with pytest.raises(WebSocketDisconnect) as gone:
        await websocket.send_text("lost")
    outcome.append(gone.value.code)
    outcome.append(websocket.application_state)
    with pytest.raises(WebSocketDisconnected, match=r'^Cannot call "send" once a close message has been sent\.$'):
        await websocket.close()
    assert outcome == [1006, WebSocketState.DISCONNECTED]


@pytest.mark.parametrize(
    ("message", "error", "text"),
    [
        (CLOSE, WebSocketDisconnected, 'Cannot call "send" once a close message has been sent.'),
        (ACCEPT, WebSocketDisconnected, 'Cannot call "send" once a close message has been sent.'),
    ],
)
async def test_after_closing_a_send_is_refused_even_once_the_client_left(
    message: Message, error: type[Exception], text: str
) -> None:
    outcome: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()
        await websocket.receive()  # the client's disconnect: the scope knows it has gone
        try:
            await websocket.send(message)
        except Exception as exc:
            outcome.append(exc)

    wire = await run_in_app(handler, [{"type": "websocket.connect"}], disconnect_after=2)
    assert wire == [ACCEPT, CLOSE]
    [exc] = outcome
    assert type(exc) is error
    assert str(exc) == text


async def test_once_the_client_left_a_message_out_of_order_is_still_the_order_error() -> None:
    outcome: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive()  # the client's disconnect
        try:
            await websocket.send(ACCEPT)
        except Exception as exc:
            outcome.append(exc)
        outcome.append(websocket.application_state)

    wire = await run_in_app(handler, [{"type": "websocket.connect"}], disconnect_after=1)
    assert wire == [ACCEPT]
    [exc, state] = outcome
    assert isinstance(exc, ProtocolError)
    assert str(exc) == """Expected ASGI message "websocket.send" or "websocket.close", but got 'websocket.accept'"""
    assert state is WebSocketState.CONNECTED


@pytest.mark.parametrize("setup", ["no request scope", "request scope"])
async def test_the_state_attributes_can_be_set_as_in_starlette(setup: str) -> None:
    outcome: list[object] = []

    async def handler(websocket: WebSocket) -> None:
        await websocket.receive()
        websocket.application_state = WebSocketState.DISCONNECTED  # as code written for Starlette may do
        outcome.append(websocket.application_state)
        with pytest.raises(WebSocketDisconnected, match="once a close message has been sent"):
            await websocket.accept()
        websocket.application_state = WebSocketState.CONNECTING
        await websocket.accept()
        websocket.client_state = WebSocketState.DISCONNECTED
        outcome.append(websocket.client_state)
        with pytest.raises(WebSocketDisconnected, match="once a disconnect message has been received"):
            await websocket.receive()
        with pytest.raises(ValueError, match=r"client_state must be one of WebSocketState\.CONNECTING, .* got 'open'"):
            websocket.client_state = "open"  # type: ignore[assignment]  # the wrong type on purpose
        with pytest.raises(ValueError, match=r"client_state must be one of .*, got <WebSocketState\.RESPONSE: 3>"):
            websocket.client_state = WebSocketState.RESPONSE
        await websocket.close()

    wire = await run_setup(setup, handler, [{"type": "websocket.connect"}])
    assert outcome == [WebSocketState.DISCONNECTED, WebSocketState.DISCONNECTED]
    assert [message["type"] for message in wire] == ["websocket.accept", "websocket.close"]


async def test_a_message_over_the_size_limit_before_accept_is_refused_without_a_close_of_its_own() -> None:
    outcome: list[object] = []

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        websocket: WebSocket = WebSocket(scope, receive, send)
        await websocket.receive()
        try:
            await websocket.receive()
        except WebSocketDisconnect as exc:
            outcome.extend([exc.code, websocket.client_state, websocket.application_state])

    peer = Peer(Triolette(routes=[Mount("/", app=raw)], websocket_max_message_size=3))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.run)
            await peer.send_to_app({"type": "websocket.connect"})
            await peer.text("four")
            wire = await peer.rest()
    assert outcome == [1009, WebSocketState.DISCONNECTED, WebSocketState.CONNECTING]
    assert wire == [{"type": "websocket.close", "code": 1000, "reason": ""}]  # the scope's, for a handler that returned
