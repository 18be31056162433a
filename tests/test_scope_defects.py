"""Regression tests for the RequestScope defects of issue 11, one behaviour per test.

Each test drives the app through hand-written ASGI servers (``FakeServer`` or a plain
``receive``) in virtual time, so every one is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.test_scope import FakeServer, call, http_scope, read_body
from tests.test_websockets import ws_scope
from triolette._driver import CONNECTION_EXTENSION, _AppQueue
from triolette._scope import get_request_scope
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.exceptions import ClientDisconnect
from triolette.middleware import Middleware
from triolette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from triolette.middleware.body_limit import RequestBodyLimitMiddleware
from triolette.requests import Request
from triolette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from triolette.routing import Mount, Route, Router, WebSocketRoute
from triolette.types import Message, Receive, Scope, Send
from triolette.websockets import WebSocket

# -- defect 1: a server that keeps answering is not buffered without bound ------------------


class RunawayServer:
    """A buggy server whose ``receive()`` never blocks: it returns ``message`` for ever."""

    def __init__(self, message: Message, first: Message | None = None) -> None:
        self.message = message
        self.first = first
        self.calls = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.calls += 1
        if self.calls > 10_000:  # the watcher spins without end: fail instead of hanging
            raise RuntimeError("receive() called 10000 times")
        if self.calls == 1 and self.first is not None:
            return dict(self.first)
        return dict(self.message)

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def _answer_after_a_few_checkpoints(request: Request) -> Response:
    for _ in range(5):
        await trio.lowlevel.checkpoint()
    return PlainTextResponse("ok")


async def test_stray_http_request_after_a_complete_body_is_dropped_not_buffered() -> None:
    server = RunawayServer({"type": "http.request", "body": b"", "more_body": False})
    app = Triolette(routes=[Route("/", _answer_after_a_few_checkpoints)])
    with trio.fail_after(5):
        await app(http_scope(), server.receive, server.send)
    assert [m.get("status") for m in server.sent if m["type"] == "http.response.start"] == [200]
    assert server.calls < 100  # the watcher yielded to the app, which answered


async def test_watcher_buffer_is_capped_by_message_count() -> None:
    seen: list[int] = []

    async def endpoint(request: Request) -> Response:
        for _ in range(400):
            await trio.lowlevel.checkpoint()
        seen.append(server.calls)
        return PlainTextResponse("ok")

    # An endless run of empty chunks: zero bytes each, so only a message count can cap them.
    server = RunawayServer({"type": "http.request", "body": b"", "more_body": True})
    app = Triolette(routes=[Route("/", endpoint, methods=["POST"])])
    with trio.fail_after(5):
        await app(http_scope("POST", headers=[(b"transfer-encoding", b"chunked")]), server.receive, server.send)
    assert len(seen) == 1
    assert seen[0] <= 128  # the watcher stopped reading, and held the client back
    assert [m.get("status") for m in server.sent if m["type"] == "http.response.start"] == [200]


# -- defect 2: an exception from receive() in the watcher reaches the app, or nobody --------


async def test_body_limit_middleware_answers_413_to_an_endpoint_that_never_reads(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def endpoint(request: Request) -> Response:
        await trio.sleep(1)  # the watcher reads the (too long) body meanwhile
        return PlainTextResponse("never read")

    app = RequestBodyLimitMiddleware(Triolette(routes=[Route("/", endpoint, methods=["POST"])]), max_body_size=5)
    server = FakeServer()
    server.request(b"x" * 6)
    await call(app, server, http_scope("POST", headers=[(b"content-length", b"6")]))
    assert server.status == 413
    assert server.body == b"Content Too Large"
    start = server.sent[0]
    assert (b"content-type", b"text/plain; charset=utf-8") in start["headers"]


async def test_receive_error_in_the_watcher_reaches_the_app_on_its_next_read(autojump_clock: trio.abc.Clock) -> None:
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"ab", "more_body": True}
        raise OSError("connection reset")

    seen: list[str] = []

    async def endpoint(request: Request) -> Response:
        await trio.sleep(1)  # the watcher reads (and fails) meanwhile
        try:
            await request.body()
        except OSError as exc:
            seen.append(str(exc))
        return PlainTextResponse("handled")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    app = Triolette(routes=[Route("/", endpoint, methods=["POST"])])
    with trio.fail_after(5):
        await app(http_scope("POST", headers=[(b"transfer-encoding", b"chunked")]), receive, send)
    assert seen == ["connection reset"]
    assert sent[0]["status"] == 200


async def test_receive_error_in_the_watcher_is_dropped_when_the_app_never_reads(autojump_clock: trio.abc.Clock) -> None:
    async def receive() -> Message:
        raise OSError("connection reset")

    async def endpoint(request: Request) -> Response:
        await trio.sleep(1)
        return PlainTextResponse("fine")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    app = Triolette(routes=[Route("/", endpoint, methods=["POST"])])
    with trio.fail_after(5):
        await app(http_scope("POST", headers=[(b"content-length", b"3")]), receive, send)
    assert (sent[0]["status"], sent[1]["body"]) == (200, b"fine")


# -- defect 3: a single failing child that is an ExceptionGroup is raised as itself ---------


async def test_single_failing_child_exception_group_is_raised_as_itself(autojump_clock: trio.abc.Clock) -> None:
    async def fails() -> None:
        await trio.sleep(1)
        raise ExceptionGroup("the child's own group", [ValueError("a"), KeyError("b")])

    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(fails)
        return PlainTextResponse("started")

    server = FakeServer()
    server.request()
    with pytest.raises(ExceptionGroup) as info:
        await call(Router(routes=[Route("/", endpoint)]), server)
    assert info.value.message == "the child's own group"
    assert [type(e) for e in info.value.exceptions] == [ValueError, KeyError]


async def test_lifespan_raising_an_exception_group_raises_the_group() -> None:
    from contextlib import asynccontextmanager

    from triolette.testclient import AsyncTestClient

    @asynccontextmanager
    async def lifespan(app: Triolette) -> Any:
        raise ExceptionGroup("startup failed", [ValueError("db"), KeyError("cache")])
        yield  # type: ignore[unreachable]  # pragma: no cover - the yield only makes this a generator

    app = Triolette(lifespan=lifespan)
    with pytest.raises(ExceptionGroup) as info:
        async with AsyncTestClient(app):
            pass  # pragma: no cover
    assert info.value.message == "startup failed"


# -- defect 5: body_timeout also holds for a body without Content-Length ----------------------


async def test_body_timeout_holds_for_a_body_without_content_length(autojump_clock: trio.abc.Clock) -> None:
    async def late_reader(request: Request) -> Response:
        await trio.sleep(1)  # the watcher starts meanwhile, and reads for the app
        return await read_body(request)

    server = FakeServer()  # HTTP/2: no Content-Length, no Transfer-Encoding, and no body yet
    scope = http_scope("POST")
    scope["http_version"] = "2"
    await call(Triolette(routes=[Route("/", late_reader, methods=["POST"])], body_timeout=5), server, scope)
    assert server.status == 408
    assert trio.current_time() == 6


# -- defect 6: the buffered byte count never goes negative ------------------------------------


async def test_buffered_byte_count_is_never_negative(autojump_clock: trio.abc.Clock) -> None:
    counts: list[int] = []

    async def endpoint(request: Request) -> Response:
        rs = get_request_scope(request.scope)
        assert rs is not None
        await trio.sleep(1)  # the watcher takes the first message
        body = await request.body()
        counts.append(rs.buffered_bytes)
        return PlainTextResponse(body)

    server = FakeServer()
    server.request(b"hello")  # no Content-Length: the watcher reads it as a body-less request
    await call(Triolette(routes=[Route("/", endpoint, methods=["POST"])]), server, http_scope("POST"))
    assert server.body == b"hello"
    assert counts == [0]


# -- defect 7: a mounted Triolette app's settings apply ---------------------------------------


async def test_mounted_app_timeout_applies(autojump_clock: trio.abc.Clock) -> None:
    async def slow(request: Request) -> Response:
        await trio.sleep(10)
        return PlainTextResponse("late")  # pragma: no cover

    inner = Triolette(routes=[Route("/", slow)], timeout=2)
    outer = Triolette(routes=[Mount("/inner", inner)])
    server = FakeServer()
    server.request()
    await call(outer, server, http_scope(path="/inner/"))
    assert server.status == 503
    assert trio.current_time() == 2


async def test_mounted_app_stricter_body_limit_applies(autojump_clock: trio.abc.Clock) -> None:
    inner = Triolette(routes=[Route("/", read_body, methods=["POST"])], max_body_size=3)
    outer = Triolette(routes=[Mount("/inner", inner)])
    server = FakeServer()
    server.request(b"x" * 10)
    await call(outer, server, http_scope("POST", "/inner/"))
    assert server.status == 413


async def test_mounted_app_cannot_loosen_the_outer_body_limit(autojump_clock: trio.abc.Clock) -> None:
    inner = Triolette(routes=[Route("/", read_body, methods=["POST"])])  # default 16 MiB
    outer = Triolette(routes=[Mount("/inner", inner)], max_body_size=3)
    server = FakeServer()
    server.request(b"x" * 10)
    await call(outer, server, http_scope("POST", "/inner/"))
    assert server.status == 413


async def test_mounted_app_cancel_on_disconnect_false_applies(autojump_clock: trio.abc.Clock) -> None:
    finished: list[float] = []

    async def endpoint(request: Request) -> Response:
        await trio.sleep(5)
        finished.append(trio.current_time())
        return PlainTextResponse("done")

    inner = Triolette(routes=[Route("/", endpoint)], cancel_on_disconnect=False)
    outer = Triolette(routes=[Mount("/inner", inner)])
    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, outer, server, http_scope(path="/inner/"))
        await trio.sleep(1)
        server.disconnect()
    assert finished == [5]


async def test_mounted_app_counts_its_requests_in_flight_and_drain_waits(autojump_clock: trio.abc.Clock) -> None:
    counts: list[int] = []

    async def endpoint(request: Request) -> Response:
        counts.append(inner.in_flight)
        await trio.sleep(3)
        return PlainTextResponse("done")

    inner = Triolette(routes=[Route("/", endpoint)])
    outer = Triolette(routes=[Mount("/inner", inner)])
    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, outer, server, http_scope(path="/inner/"))
        await trio.sleep(1)
        await inner.drain(graceful_timeout=10)
        assert trio.current_time() == 3  # drain waited for the request routed into it
    assert counts == [1]
    assert inner.in_flight == 0
    assert server.status == 200


# -- defect 8: FileResponse on its own watches for the disconnect; background runs -----------


class StallingServer(FakeServer):
    """A client that reads the response start and one body chunk, then stops reading."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = trio.Event()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.body" and self.body_messages:
            self.stalled.set()
            await trio.sleep_forever()
        self.sent.append(message)


def _big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (FileResponse.chunk_size * 4))
    return path


# FileResponse reads its file in a worker thread: these tests use events, not virtual time
# (the autojump clock would jump while the thread works).


async def test_file_response_on_its_own_stops_when_the_client_disconnects(tmp_path: Path) -> None:
    server = StallingServer()
    server.request()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, FileResponse(_big_file(tmp_path)), server)
            await server.stalled.wait()
            server.disconnect()
    assert len(server.body_messages) == 1
    assert not server.response_complete


async def test_file_response_background_runs_after_a_disconnect_midway(tmp_path: Path) -> None:
    ran: list[str] = []

    async def background() -> None:
        await trio.lowlevel.checkpoint()  # it may await: the disconnect does not cancel it
        ran.append("background")

    async def endpoint(request: Request) -> Response:
        return FileResponse(_big_file(tmp_path), background=BackgroundTask(background))

    server = StallingServer()
    server.request()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, Triolette(routes=[Route("/", endpoint)]), server)
            await server.stalled.wait()
            server.disconnect()
    assert ran == ["background"]
    assert not server.response_complete


async def test_streaming_response_background_runs_after_a_disconnect_midway(autojump_clock: trio.abc.Clock) -> None:
    ran: list[float] = []

    async def background() -> None:
        await trio.sleep(1)
        ran.append(trio.current_time())

    async def slow_chunks() -> Any:
        for _ in range(10):
            yield b"chunk"
            await trio.sleep(1)

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(slow_chunks(), background=BackgroundTask(background))

    server = FakeServer()
    server.block_sends_after = 1
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, Triolette(routes=[Route("/", endpoint)]), server)
        await trio.sleep(2)
        server.disconnect()
    assert ran == [3]


# -- defect 9: is_disconnected() after body() answers the same every time --------------------


@pytest.mark.parametrize(
    ("behind", "cancel_on_disconnect"),
    [("route", False), ("route", True), ("base-http-middleware", True)],
    ids=["route-not-cancelled", "route-cancelled-on-disconnect", "base-http-middleware-cancelled-on-disconnect"],
)
async def test_is_disconnected_after_body_answers_the_same_every_time(behind: str, cancel_on_disconnect: bool) -> None:
    """Whatever order trio runs the app and the watcher in: with ``cancel_on_disconnect``
    the watcher, started at the app's first yield, must not race the app's next step."""
    outcomes: set[str] = set()

    async def ask(request: Request) -> None:
        await request.body()
        try:
            answer = await request.is_disconnected()
        except trio.Cancelled:
            outcomes.add("cancelled before answering")
            raise
        outcomes.add(f"answered {answer}")

    async def endpoint(request: Request) -> Response:
        if behind == "route":
            await ask(request)
        return PlainTextResponse("ok")

    class Asking(BaseHTTPMiddleware):
        async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
            await ask(request)
            return await call_next(request)

    middleware = [Middleware(Asking)] if behind == "base-http-middleware" else []
    app = Triolette(
        routes=[Route("/", endpoint, methods=["POST"])],
        middleware=middleware,
        cancel_on_disconnect=cancel_on_disconnect,
    )
    for _ in range(60):  # trio shuffles the order of runnable tasks: try many orders
        server = FakeServer()
        server.request(b"body")
        server.disconnect()  # already delivered by the server when the app asks
        await call(app, server, http_scope("POST", headers=[(b"content-length", b"4")]))
    assert outcomes == {"answered False"}  # what the scope had seen when asked: the watcher had not read it yet


# -- defect 11: one meaning for max_body_size, checked everywhere -----------------------------


@pytest.mark.parametrize("value", [-5, "big", 1.5, True])
@pytest.mark.parametrize("where", ["Route", "Mount", "Router", "Triolette"])
def test_invalid_max_body_size_is_refused_everywhere(where: str, value: Any) -> None:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("")  # pragma: no cover

    builders: dict[str, Callable[[], object]] = {
        "Route": lambda: Route("/", endpoint, max_body_size=value),
        "Mount": lambda: Mount("/m", routes=[], max_body_size=value),
        "Router": lambda: Router(routes=[], max_body_size=value),
        "Triolette": lambda: Triolette(max_body_size=value),
    }
    with pytest.raises(ValueError, match=r"max_body_size must be a non-negative number of bytes or None, got "):
        builders[where]()


async def test_max_body_size_none_means_not_set_everywhere(autojump_clock: trio.abc.Clock) -> None:
    app = Triolette(routes=[Route("/", read_body, methods=["POST"])], max_body_size=None)
    assert app.max_body_size == 16 * 1024 * 1024  # not set on the app: the default limit
    server = FakeServer()
    server.request(b"x" * (16 * 1024 * 1024 + 1))
    await call(app, server, http_scope("POST"))
    assert server.status == 413

    app = Triolette(routes=[Route("/", read_body, methods=["POST"], max_body_size=None)], max_body_size=10)
    server = FakeServer()
    server.request(b"x" * 20)
    await call(app, server, http_scope("POST"))
    assert server.status == 413  # not set on the route: the app's limit applies


# -- a stricter limit entered late re-checks what was read ----------------------------------


async def test_a_stricter_limit_entered_late_rechecks_bytes_already_read(autojump_clock: trio.abc.Clock) -> None:
    ran: list[str] = []

    async def endpoint(request: Request) -> Response:
        ran.append("endpoint")  # pragma: no cover
        return PlainTextResponse("")  # pragma: no cover

    async def peek(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()  # an outer layer reads the first chunk itself
        chunks = [message]

        async def replay() -> Message:
            return chunks.pop() if chunks else await receive()

        await router(scope, replay, send)

    router = Router(routes=[Route("/", endpoint, methods=["POST"], max_body_size=4)])
    server = FakeServer()
    server.request(b"x" * 8, more_body=True)
    await call(Triolette(routes=[Mount("/", peek)]), server, http_scope("POST"))
    assert server.status == 413
    assert ran == []


# -- rs.owns(): the documented way to ask whether receive/send are the scope's own ----------


class WrapBoth:
    """A middleware that wraps receive and send (as logging or tracing middlewares do)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def wrapped_receive() -> Message:
            message: Message = await receive()
            self.seen.append(message["type"])
            return message

        async def wrapped_send(message: Message) -> None:
            self.seen.append(message["type"])
            await send(message)

        await self.app(scope, wrapped_receive, wrapped_send)


async def test_owns_tells_the_scopes_own_receive_and_send_from_wrapped_ones(autojump_clock: trio.abc.Clock) -> None:
    answers: list[tuple[bool, bool]] = []

    async def endpoint(request: Request) -> Response:
        rs = get_request_scope(request.scope)
        assert rs is not None
        answers.append((rs.owns(request.receive), rs.owns(rs.receive) and rs.owns(rs.send)))
        return PlainTextResponse("ok")

    for middleware in ([], [WrapBoth]):
        app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(m) for m in middleware])
        server = FakeServer()
        server.request()
        await call(app, server)
    assert answers == [(True, True), (False, True)]


async def test_body_and_limit_through_a_middleware_that_wraps_receive(autojump_clock: trio.abc.Clock) -> None:
    wrapper: list[WrapBoth] = []

    def wrap(app: Any) -> Any:
        wrapper.append(WrapBoth(app))
        return wrapper[0]

    inner = Router(routes=[Route("/", read_body, methods=["POST"])])
    app = Triolette(routes=[Mount("/", wrap(RequestBodyLimitMiddleware(inner, max_body_size=5)))])
    server = FakeServer()
    server.request(b"abc", more_body=True)
    server.request(b"d")
    await call(app, server, http_scope("POST"))
    assert (server.status, server.body) == (200, b"4 bytes")
    assert wrapper[0].seen[:2] == ["http.request", "http.request"]

    server = FakeServer()
    server.request(b"abc", more_body=True)
    server.request(b"def")
    await call(app, server, http_scope("POST"))
    assert (server.status, server.body) == (413, b"Content Too Large")


async def test_streaming_through_a_middleware_that_wraps_send(autojump_clock: trio.abc.Clock) -> None:
    async def chunks() -> Any:
        for part in (b"a", b"b", b"c"):
            yield part

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(chunks())

    app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(WrapBoth)])
    server = FakeServer()
    server.request()
    await call(app, server)
    assert (server.status, server.body) == (200, b"abc")
    assert server.response_complete


async def test_a_handled_exception_after_the_start_through_a_wrapped_send_is_an_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def chunks() -> Any:
        yield b"a"
        raise KeyError("midway")

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(chunks())

    async def on_key_error(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("handled", status_code=500)  # pragma: no cover

    app = Triolette(
        routes=[Route("/", endpoint)], middleware=[Middleware(WrapBoth)], exception_handlers={KeyError: on_key_error}
    )
    server = FakeServer()
    server.request()
    with pytest.raises(RuntimeError, match="Caught handled exception, but response already started"):
        await call(app, server)
    assert server.status == 200


# -- defect 13: an unread body is held back, not buffered up to max_body_size -------------------


@pytest.mark.parametrize(("cap", "most"), [(None, 128 * 1024), (16 * 1024, 16 * 1024)])
async def test_watcher_holds_a_small_capped_part_of_an_unread_body(
    autojump_clock: trio.abc.Clock, cap: Any, most: int
) -> None:
    chunk = b"x" * 8192
    held: list[tuple[int, int]] = []

    async def late_reader(request: Request) -> Response:
        rs = get_request_scope(request.scope)
        assert rs is not None
        await trio.sleep(1)  # the watcher reads what it may meanwhile
        held.append((rs.buffered_bytes, server.handed_out))
        body = await request.body()
        return PlainTextResponse(f"{len(body)} bytes")

    server = FakeServer()
    for _ in range(255):
        server.request(chunk, more_body=True)
    server.request(chunk)  # 2 MiB in all, queued at the server before the endpoint reads
    options = {} if cap is None else {"max_buffered_body": cap}
    app = Triolette(routes=[Route("/", late_reader, methods=["POST"])], **options)
    await call(app, server, http_scope("POST", headers=[(b"content-length", b"%d" % (256 * 8192))]))
    assert (server.status, server.body) == (200, b"2097152 bytes")  # a late reader still gets all of it
    assert held[0][0] == most  # the cap, not the body limit; past it the client is held back
    assert held[0][1] == most // 8192


# -- defect 14: a client that leaves behind a large unread body ----------------------------------

MiB = 1024 * 1024


class QueueServer:
    """A server like triolette's driver: hypercorn's messages go through the driver's own app
    queue (10 messages, then the reader waits), and the scope carries the connection extension."""

    def __init__(self, chunk: int = 64 * 1024) -> None:
        self.queue = _AppQueue(10)
        self.chunk = chunk
        self.put = 0  # body chunks the reader got into the queue
        self.sent: list[Message] = []

    def scope(self, headers: list[tuple[bytes, bytes]]) -> Scope:
        scope = http_scope("POST", headers=headers)
        scope["extensions"] = {CONNECTION_EXTENSION: self.queue}
        return scope

    async def read_body(self, size: int) -> None:
        """The connection's read loop: puts the body as it comes (and waits while the queue is full)."""
        for _ in range(size // self.chunk):
            await self.queue.put({"type": "http.request", "body": b"x" * self.chunk, "more_body": True})
            if self.queue.state != "open":
                return  # the socket is closed: the read loop ends (this chunk was dropped)
            self.put += 1

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def _serve_until_the_client_leaves(app: Any, server: QueueServer, headers: list[tuple[bytes, bytes]]) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.read_body, 16 * MiB)
            nursery.start_soon(app, server.scope(headers), server.queue.receive, server.send)
            await trio.testing.wait_all_tasks_blocked()
            assert server.put < 16 * MiB // server.chunk  # the client is held back, not buffered
            rs = held[-1]
            assert rs.buffered_bytes <= 128 * 1024
            await server.queue.put({"type": "http.disconnect"})  # hypercorn: the connection closed


held: list[Any] = []


def _endpoint(log: list[Any], *, reads_late: bool = False) -> Any:
    async def endpoint(request: Request) -> Response:
        rs = get_request_scope(request.scope)
        assert rs is not None
        held.append(rs)
        try:
            await trio.sleep(10 if reads_late else math.inf)
        except trio.Cancelled as exc:
            log.append(("cancelled", exc.reason))
            raise
        got = 0
        try:
            async for chunk in request.stream():
                got += len(chunk)
        except ClientDisconnect:
            log.append(("client disconnect after", got, await request.is_disconnected()))
            raise
        return PlainTextResponse("read")  # pragma: no cover - the client left first

    return endpoint


@pytest.mark.parametrize(
    "headers",
    [[(b"content-length", b"%d" % (16 * MiB))], [(b"transfer-encoding", b"chunked")]],
    ids=["length", "chunked"],
)
async def test_defect_14_disconnect_behind_unread_16_mib_body_cancels_handler(
    autojump_clock: trio.abc.Clock, headers: Any
) -> None:
    log: list[Any] = []
    server = QueueServer()
    app = Triolette(routes=[Route("/", _endpoint(log), methods=["POST"])])
    await _serve_until_the_client_leaves(app, server, headers)
    assert log == [("cancelled", "client disconnected")]
    assert trio.current_time() == 0  # at once, not at some timeout
    assert server.sent == []  # nothing sent to a client that left


async def test_defect_14_with_cancel_on_disconnect_false_the_app_reads_what_was_queued_then_the_disconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[Any] = []
    server = QueueServer()
    app = Triolette(routes=[Route("/", _endpoint(log, reads_late=True), methods=["POST"])], cancel_on_disconnect=False)
    await _serve_until_the_client_leaves(app, server, [(b"content-length", b"%d" % (16 * MiB))])
    # Every chunk the server took before the client left reaches the app, in order, then the disconnect.
    assert log == [("client disconnect after", server.put * server.chunk, True)]
    assert held[-1].disconnected


async def test_defect_14_the_watcher_reads_on_to_the_disconnect_when_the_connection_closes(
    autojump_clock: trio.abc.Clock,
) -> None:
    server = QueueServer()
    seen: list[Any] = []

    async def polls(request: Request) -> Response:
        rs = get_request_scope(request.scope)
        assert rs is not None
        held.append(rs)
        with trio.CancelScope(shield=True):
            await trio.sleep(1)  # the client leaves meanwhile
            seen.append((await request.is_disconnected(), rs.buffered_bytes, server.queue.state))
        await trio.lowlevel.checkpoint()
        return PlainTextResponse("unreachable")  # pragma: no cover - cancelled at the checkpoint above

    app = Triolette(routes=[Route("/", polls, methods=["POST"])])
    await _serve_until_the_client_leaves(app, server, [(b"content-length", b"%d" % (16 * MiB))])
    # The client's leaving is known at once; the watcher took what was queued (bounded by the
    # driver's queue), and the queue no longer holds the client back.
    assert seen[0][0] is True
    assert seen[0][1] <= 128 * 1024 + 10 * server.chunk
    assert seen[0][2] == "closed"
    assert server.sent == []


async def test_defect_14_a_connection_that_closed_before_the_watcher_filled_up_is_seen_when_it_does(
    autojump_clock: trio.abc.Clock,
) -> None:
    queue = _AppQueue(20)
    for _ in range(12):  # 768 KiB the server took, then the client left (a write to it failed)
        await queue.put({"type": "http.request", "body": b"x" * 65536, "more_body": True})
    await queue.put({"type": "http.disconnect"})
    seen: list[Any] = []

    async def sleeps(request: Request) -> Response:
        await trio.sleep(1)
        rs = get_request_scope(request.scope)
        assert rs is not None
        seen.append((await request.is_disconnected(), rs.inbox.state, rs.buffered_bytes))
        return PlainTextResponse("dropped")  # the client has gone: nothing is sent

    scope = http_scope("POST", headers=[(b"content-length", b"%d" % (16 * MiB))])
    scope["extensions"] = {CONNECTION_EXTENSION: queue}
    sent: list[Message] = []

    async def send(message: Message) -> None:  # pragma: no cover - nothing is sent to a client that left
        sent.append(message)

    app = Triolette(routes=[Route("/", sleeps, methods=["POST"])], cancel_on_disconnect=False)
    with trio.fail_after(30):
        await app(scope, queue.receive, send)
    # The watcher, full after 128 KiB, asked to be told of the close: told at once, it read on
    # to the disconnect (all 12 chunks are held for the app, which may still read them).
    assert seen == [(True, "client gone", 12 * 65536)]
    assert sent == []


async def test_defect_14_a_websocket_client_that_floods_then_leaves_ends_a_handler_blocked_elsewhere(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A handler that accepted, then waits on something else (a pub/sub feed) and never reads:
    # the client sends 200 messages of 64 KiB and leaves. The watcher holds at most 64
    # messages, then the driver's queue fills and its reader waits: the disconnect is queued
    # behind messages nobody reads. The connection's closing must still end the handler.
    queue = _AppQueue(10)
    log: list[Any] = []
    put = 0

    async def blocked_elsewhere(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await trio.sleep_forever()  # a feed that never publishes
        except trio.Cancelled as exc:
            log.append(("cancelled", exc.reason))
            raise

    async def client() -> None:
        nonlocal put
        await queue.put({"type": "websocket.connect"})
        for _ in range(200):
            await queue.put({"type": "websocket.receive", "bytes": b"x" * 65536})
            if queue.state != "open":
                return  # the socket is closed: the read loop ends
            put += 1

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = ws_scope()
    scope["extensions"] = {CONNECTION_EXTENSION: queue}
    app = Triolette(routes=[WebSocketRoute("/ws", blocked_elsewhere)])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            nursery.start_soon(app, scope, queue.receive, send)
            await trio.testing.wait_all_tasks_blocked()
            assert put < 200  # held back, not buffered
            await queue.put({"type": "websocket.disconnect", "code": 1006})  # hypercorn: the connection closed
    assert log == [("cancelled", "client disconnected")]
    assert trio.current_time() == 0  # at once
    assert [m["type"] for m in sent] == ["websocket.accept"]
