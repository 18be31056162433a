"""Server-sent events: the sans-IO encoder on its own, then the response in virtual time."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio
import trio.testing

from triolette import sse
from triolette._scope import get_request_scope
from triolette._testing import LifespanRunner
from triolette.applications import Triolette
from triolette.middleware import Middleware
from triolette.middleware.gzip import GZipMiddleware
from triolette.requests import Request
from triolette.responses import Response
from triolette.routing import Route
from triolette.sse import EventSourceResponse, ServerSentEvent, encode_comment, encode_event
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send

from .conftest import http_scope

# -- a client-side parser, written from the HTML standard, to check what we write -------


def parse_stream(text: str) -> list[dict[str, Any]]:
    """Dispatched events (data, event type, last event id, retry) as a browser sees them."""
    events: list[dict[str, Any]] = []
    data, event_type, last_id, retry = "", "", "", None
    for line in re.split(r"\r\n|\r|\n", text):
        if line == "":
            if data:
                events.append({"data": data.removesuffix("\n"), "event": event_type or "message", "id": last_id})
            elif retry is not None:
                events.append({"retry": retry})
            data, event_type, retry = "", "", None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data += value + "\n"
        elif field == "event":
            event_type = value
        elif field == "id" and "\0" not in value:
            last_id = value
        elif field == "retry" and value.isdigit():
            retry = int(value)
    return events


# -- the encoder ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "wire"),
    [
        ({"data": "hello"}, "data: hello\r\n\r\n"),
        ({"data": ""}, "data: \r\n\r\n"),
        ({"data": "a\nb\r\nc\rd"}, "data: a\r\ndata: b\r\ndata: c\r\ndata: d\r\n\r\n"),
        ({"data": "trailing\n"}, "data: trailing\r\ndata: \r\n\r\n"),
        ({"data": "x", "event": "tick", "id": "7"}, "id: 7\r\nevent: tick\r\ndata: x\r\n\r\n"),
        ({"id": ""}, "id\r\n\r\n"),
        ({"retry": 2500}, "retry: 2500\r\n\r\n"),
        ({"comment": "keep\nalive"}, ": keep\r\n: alive\r\n"),
        ({"comment": ""}, ":\r\n"),
        ({"comment": "c", "data": "d"}, ": c\r\ndata: d\r\n\r\n"),
        ({}, ""),
        ({"data": "Ünïcode ✓"}, "data: Ünïcode ✓\r\n\r\n"),
        ({"data": "keeps\u2028this\x0bin one line"}, "data: keeps\u2028this\x0bin one line\r\n\r\n"),
    ],
)
def test_encode_event(kwargs: dict[str, Any], wire: str) -> None:
    assert encode_event(**kwargs) == wire


@pytest.mark.parametrize("sep", ["\n", "\r", "\r\n"])
def test_every_separator_parses_back(sep: str) -> None:
    text = encode_event("one\r\ntwo\rthree\nfour", event="e", id="1", sep=sep) + encode_comment("ping", sep)
    text += encode_event("next", sep=sep)
    assert parse_stream(text) == [
        {"data": "one\ntwo\nthree\nfour", "event": "e", "id": "1"},
        {"data": "next", "event": "message", "id": "1"},
    ]


def test_server_sent_event_data_forms() -> None:
    assert ServerSentEvent({"a": [1, "é"]}).data == '{"a":[1,"é"]}'
    assert ServerSentEvent(b"caf\xc3\xa9").data == "café"
    assert ServerSentEvent(42).data == "42"
    assert ServerSentEvent(id=3).id == "3"
    event = ServerSentEvent("d", event="e", id="i", retry=1, comment="c")
    assert event.encode(sep="\n") == b": c\nid: i\nevent: e\nretry: 1\ndata: d\n\n"
    assert repr(event) == "ServerSentEvent(comment='c', data='d', event='e', id='i', retry=1)"
    assert event == ServerSentEvent("d", event="e", id="i", retry=1, comment="c")
    assert event != ServerSentEvent("d")
    assert event != "d"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"event": "a\nb"}, "The event type must be one line, got 'a\\\\nb'"),
        ({"id": "a\rb"}, "The event id must be one line without NUL characters, got 'a\\\\rb'"),
        ({"id": "a\0b"}, "The event id must be one line without NUL characters, got 'a\\\\x00b'"),
        ({"retry": -1}, "retry must be a whole number of milliseconds >= 0, got -1"),
        ({"retry": True}, "retry must be a whole number of milliseconds >= 0, got True"),
        ({"retry": 1.5}, "retry must be a whole number of milliseconds >= 0, got 1.5"),
    ],
)
def test_server_sent_event_refuses_what_would_break_the_stream(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        ServerSentEvent("x", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ping": 0}, "ping must be a positive number of seconds or None, got 0"),
        ({"send_timeout": -1}, "send_timeout must be a positive number of seconds or None, got -1"),
        ({"sep": "\n\n"}, r"sep must be one of '\\r\\n', '\\n' or '\\r', got '\\n\\n'"),
    ],
)
def test_event_source_response_options_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventSourceResponse([], **kwargs)


def test_all_is_sorted() -> None:
    assert sse.__all__ == sorted(sse.__all__)


# -- the response, in virtual time -----------------------------------------------------


class Client:
    """A fake server and client for one request: records each chunk with its virtual time."""

    def __init__(self, *, reads: bool = True) -> None:
        self.start: Message | None = None
        self.chunks: list[tuple[float, bytes]] = []
        self.ended = False
        self.gone = trio.Event()
        self.reads = reads
        self._requested = False

    async def receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if not self.reads and self.chunks:
            await trio.sleep_forever()  # the client stopped reading
        if message["body"]:
            self.chunks.append((trio.current_time(), message["body"]))
        if not message.get("more_body", False):
            self.ended = True

    @property
    def text(self) -> str:
        return b"".join(chunk for _, chunk in self.chunks).decode()

    @property
    def headers(self) -> dict[str, str]:
        assert self.start is not None
        return {key.decode(): value.decode() for key, value in self.start["headers"]}


def sse_app(source: Any, **options: Any) -> Triolette:
    async def events(request: Request) -> Response:
        return EventSourceResponse(source(request), **options)

    return Triolette(routes=[Route("/events", events)])


async def test_headers_and_events() -> None:
    async def source(request: Request) -> AsyncIterator[Any]:
        yield ServerSentEvent("first", id="1")
        yield {"data": "second", "event": "note"}
        yield "third"

    client = Client()
    with trio.fail_after(5):
        await sse_app(source)(http_scope("/events"), client.receive, client.send)
    assert client.headers == {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    assert parse_stream(client.text) == [
        {"data": "first", "event": "message", "id": "1"},
        {"data": "second", "event": "note", "id": "1"},
        {"data": "third", "event": "message", "id": "1"},
    ]
    assert client.ended


async def test_headers_can_be_overridden() -> None:
    response = EventSourceResponse([], headers={"Cache-Control": "no-store"})
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"


async def test_pings_fill_the_silences(autojump_clock: trio.abc.Clock) -> None:
    async def source(request: Request) -> AsyncIterator[str]:
        yield "a"
        await trio.sleep(40)
        yield "b"
        await trio.sleep(5)

    client = Client()
    with trio.fail_after(100):
        await sse_app(source, ping=15)(http_scope("/events"), client.receive, client.send)
    assert client.chunks == [
        (0, b"data: a\r\n\r\n"),
        (15, b": ping\r\n"),
        (30, b": ping\r\n"),
        (40, b"data: b\r\n\r\n"),
    ]
    assert trio.current_time() == 45
    assert client.ended


async def test_a_ping_waits_for_ping_seconds_after_the_last_send(autojump_clock: trio.abc.Clock) -> None:
    async def source(request: Request) -> AsyncIterator[str]:
        for text in "abc":
            yield text
            await trio.sleep(10)
        await trio.sleep(22)

    client = Client()
    with trio.fail_after(100):
        await sse_app(source, ping=15)(http_scope("/events"), client.receive, client.send)
    assert [time for time, _ in client.chunks] == [0, 10, 20, 35, 50]
    assert trio.current_time() == 52


async def test_no_pings_when_ping_is_none(autojump_clock: trio.abc.Clock) -> None:
    async def source(request: Request) -> AsyncIterator[str]:
        await trio.sleep(100)
        yield "late"

    client = Client()
    with trio.fail_after(200):
        await sse_app(source, ping=None)(http_scope("/events"), client.receive, client.send)
    assert client.chunks == [(100, b"data: late\r\n\r\n")]


async def test_a_disconnect_cancels_the_source_and_closes_it() -> None:
    closed: list[str] = []

    async def source(request: Request) -> AsyncIterator[str]:
        try:
            yield "hello"
            await trio.sleep_forever()
        finally:
            closed.append("finally ran")

    client = Client()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sse_app(source), http_scope("/events"), client.receive, client.send)
            await trio.testing.wait_all_tasks_blocked()
            client.gone.set()
    assert closed == ["finally ran"]
    assert client.text == "data: hello\r\n\r\n"
    assert not client.ended


async def test_a_client_that_does_not_read_is_dropped_after_send_timeout(autojump_clock: trio.abc.Clock) -> None:
    closed: list[float] = []

    async def source(request: Request) -> AsyncIterator[str]:
        try:
            while True:
                yield "tick"
                await trio.sleep(1)
        finally:
            closed.append(trio.current_time())

    client = Client(reads=False)
    with trio.fail_after(100):
        await sse_app(source, send_timeout=10, ping=None)(http_scope("/events"), client.receive, client.send)
    assert client.chunks == [(0, b"data: tick\r\n\r\n")]
    assert closed == [11]  # the second tick, sent at 1, waited 10 s


async def test_draining_ends_the_stream_cleanly(autojump_clock: trio.abc.Clock) -> None:
    closed: list[float] = []

    async def source(request: Request) -> AsyncIterator[str]:
        try:
            n = 0
            while True:
                yield f"tick {n}"
                n += 1
                await trio.sleep(10)
        finally:
            closed.append(trio.current_time())

    app = sse_app(source)
    client = Client()
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, http_scope("/events"), client.receive, client.send)
            await trio.sleep(25)
            await app.drain(60)
    assert [event["data"] for event in parse_stream(client.text)] == ["tick 0", "tick 1", "tick 2"]
    assert closed == [25]
    assert client.ended
    assert trio.current_time() == 25


async def test_a_sync_source_runs_in_a_thread() -> None:
    def numbers(request: Request) -> Iterator[int]:
        yield from range(3)

    client = Client()
    with trio.fail_after(5):
        await sse_app(numbers)(http_scope("/events"), client.receive, client.send)
    assert [event["data"] for event in parse_stream(client.text)] == ["0", "1", "2"]


async def test_without_cancel_on_disconnect_the_stream_stops_sending() -> None:
    produced: list[int] = []
    more = trio.Event()

    async def source(request: Request) -> AsyncIterator[int]:
        yield 0
        await more.wait()
        produced.append(1)
        yield 1

    async def events(request: Request) -> Response:
        return EventSourceResponse(source(request))

    app = Triolette(routes=[Route("/events", events)], cancel_on_disconnect=False)
    client = Client()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, http_scope("/events"), client.receive, client.send)
            await trio.testing.wait_all_tasks_blocked()
            client.gone.set()
            await trio.testing.wait_all_tasks_blocked()
            more.set()
    assert produced == [1]
    assert client.text == "data: 0\r\n\r\n"
    assert not client.ended


async def test_a_resuming_client_sends_last_event_id() -> None:
    async def source(request: Request) -> AsyncIterator[ServerSentEvent]:
        start = int(request.headers.get("last-event-id", "0")) + 1
        for n in range(start, start + 2):
            yield ServerSentEvent(f"event {n}", id=str(n))

    client = Client()
    with trio.fail_after(5):
        await sse_app(source)(http_scope("/events", headers=[(b"last-event-id", b"41")]), client.receive, client.send)
    assert [event["id"] for event in parse_stream(client.text)] == ["42", "43"]


async def test_called_on_its_own_it_still_stops_at_the_disconnect() -> None:
    closed = trio.Event()

    async def source() -> AsyncIterator[str]:
        try:
            yield "only"
            await trio.sleep_forever()
        finally:
            closed.set()

    client = Client()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(EventSourceResponse(source()), http_scope(), client.receive, client.send)
            await trio.testing.wait_all_tasks_blocked()
            client.gone.set()
    assert closed.is_set()
    assert client.text == "data: only\r\n\r\n"


async def test_background_runs_after_the_stream() -> None:
    from triolette.background import BackgroundTask

    ran: list[str] = []

    async def after() -> None:
        ran.append("background")

    response = EventSourceResponse(iter(["x"]), background=BackgroundTask(after))
    client = Client()
    with trio.fail_after(5):
        await response(http_scope(), client.receive, client.send)
    assert ran == ["background"]
    assert client.ended


async def test_only_http_scopes() -> None:
    async def receive() -> Message:
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        raise AssertionError("unreachable")  # pragma: no cover

    with pytest.raises(RuntimeError, match="EventSourceResponse answers HTTP requests, got a 'websocket' scope"):
        await EventSourceResponse([])({"type": "websocket"}, receive, send)


async def test_gzip_leaves_event_streams_alone() -> None:
    async def source(request: Request) -> AsyncIterator[str]:
        yield "x" * 2000

    async def events(request: Request) -> Response:
        return EventSourceResponse(source(request))

    app = Triolette(routes=[Route("/events", events)], middleware=[Middleware(GZipMiddleware, minimum_size=10)])
    client = Client()
    with trio.fail_after(5):
        await app(http_scope("/events", headers=[(b"accept-encoding", b"gzip")]), client.receive, client.send)
    assert "content-encoding" not in client.headers
    assert client.text == "data: " + "x" * 2000 + "\r\n\r\n"


# -- through the TestClient: read incrementally -----------------------------------------


def test_the_test_client_reads_events_as_they_come() -> None:
    closed: list[str] = []

    async def source(request: Request) -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent("one", id="1")
            yield ServerSentEvent("two", id="2")
            await trio.sleep_forever()  # the stream never ends on its own
        finally:
            closed.append("finally ran")

    with TestClient(sse_app(source)) as client, client.stream("GET", "/events") as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        lines = response.iter_lines()
        assert [next(lines) for _ in range(6)] == ["id: 1", "data: one", "", "id: 2", "data: two", ""]
    assert closed == ["finally ran"]


# -- streams of an app whose lifespan runs: one ping task for them all ----------------------------


@contextlib.asynccontextmanager
async def lifespan_running(app: Triolette) -> AsyncIterator[trio.Nursery]:
    runner = LifespanRunner(app)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await runner.startup()
        yield nursery
        await runner.shutdown()


async def test_with_a_running_lifespan_one_task_pings_every_stream(autojump_clock: trio.abc.Clock) -> None:
    async def source(request: Request) -> AsyncIterator[str]:
        n = int(request.query_params["n"])
        yield f"hello {n}"
        await trio.sleep(10 * n)
        yield f"late {n}"
        await trio.sleep(48 - 10 * n)

    app = sse_app(source, ping=15)
    clients = [Client() for _ in range(3)]
    with trio.fail_after(200):
        async with lifespan_running(app), trio.open_nursery() as nursery:
            for n, client in enumerate(clients):
                nursery.start_soon(app, http_scope("/events", query=f"n={n}".encode()), client.receive, client.send)
            await trio.sleep(1)
            assert len(app.nursery.child_tasks) == 1  # the shared ping task, whatever the number of streams
    # Each stream: a ping ping seconds after its own last send, never in between.
    assert [time for time, _ in clients[0].chunks] == [0, 0, 15, 30, 45]
    assert [time for time, _ in clients[1].chunks] == [0, 10, 25, 40]
    assert [time for time, _ in clients[2].chunks] == [0, 15, 20, 35]
    assert all(client.ended for client in clients)
    assert clients[2].chunks[-1] == (35, b": ping\r\n")


async def test_with_a_running_lifespan_a_client_that_does_not_read_holds_up_only_its_own_pings(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def source(request: Request) -> AsyncIterator[str]:
        yield "first"
        await trio.sleep(100)

    app = sse_app(source, ping=15, send_timeout=None)
    stuck, reading = Client(reads=False), Client()
    with trio.fail_after(200):
        async with lifespan_running(app), trio.open_nursery() as nursery:
            nursery.start_soon(app, http_scope("/events"), stuck.receive, stuck.send)
            nursery.start_soon(app, http_scope("/events"), reading.receive, reading.send)
            await trio.sleep(50)
            stuck.gone.set()
            reading.gone.set()
    assert [time for time, _ in stuck.chunks] == [0]
    assert [time for time, _ in reading.chunks] == [0, 15, 30, 45]


async def test_with_a_running_lifespan_draining_ends_every_stream_cleanly(autojump_clock: trio.abc.Clock) -> None:
    closed: list[float] = []

    async def source(request: Request) -> AsyncIterator[str]:
        try:
            yield "first"
            await trio.sleep_forever()
        finally:
            closed.append(trio.current_time())

    app = sse_app(source, ping=15)
    clients = [Client() for _ in range(3)]
    with trio.fail_after(200):
        async with lifespan_running(app), trio.open_nursery() as nursery:
            for client in clients[:2]:
                nursery.start_soon(app, http_scope("/events"), client.receive, client.send)
            await trio.sleep(20)
            await app.drain(60)
            # A stream that starts while the app drains stops at once, before its source yields.
            await app(http_scope("/events"), clients[2].receive, clients[2].send)
    assert closed == [20, 20, 20]
    assert all(client.ended for client in clients)
    assert [time for time, _ in clients[0].chunks] == [0, 15]
    assert clients[2].text == ""


async def test_with_a_running_lifespan_the_ping_task_ends_with_the_last_stream(autojump_clock: trio.abc.Clock) -> None:
    async def source(request: Request) -> AsyncIterator[str]:
        yield "only"
        await trio.sleep(float(request.query_params["s"]))

    app = sse_app(source, ping=15)
    first, second = Client(), Client()
    with trio.fail_after(100):
        async with lifespan_running(app):
            await app(http_scope("/events", query=b"s=1"), first.receive, first.send)
            await trio.testing.wait_all_tasks_blocked()
            pings = sse._running_pings[app.nursery]
            assert (pings._heap, pings.live, len(app.nursery.child_tasks)) == ([], 0, 0)  # no task left behind
            await app(http_scope("/events", query=b"s=20"), second.receive, second.send)  # starts it again
            assert [time for time, _ in second.chunks] == [1, 16]
            await trio.testing.wait_all_tasks_blocked()
            assert (pings._heap, pings.live, len(app.nursery.child_tasks)) == ([], 0, 0)
    assert first.ended
    assert second.ended


async def test_with_a_running_lifespan_no_pings_when_ping_is_none(autojump_clock: trio.abc.Clock) -> None:
    async def source(request: Request) -> AsyncIterator[str]:
        await trio.sleep(100)
        yield "late"

    app = sse_app(source, ping=None)
    client = Client()
    with trio.fail_after(200):
        async with lifespan_running(app):
            await app(http_scope("/events"), client.receive, client.send)
            assert sse._running_pings[app.nursery]._heap == []
    assert client.chunks == [(100, b"data: late\r\n\r\n")]


async def test_on_its_own_without_ping_it_starts_no_task(autojump_clock: trio.abc.Clock) -> None:
    async def source() -> AsyncIterator[str]:
        await trio.sleep(10)
        yield "late"

    tasks: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        async def count_tasks() -> None:
            await trio.sleep(5)
            rs = get_request_scope(scope)
            assert rs is not None
            tasks.append(len(rs.nursery.child_tasks))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(count_tasks)
            await EventSourceResponse(source(), ping=None)(scope, receive, send)

    client = Client()
    with trio.fail_after(100):
        await app(http_scope("/events"), client.receive, client.send)
    assert client.chunks == [(10, b"data: late\r\n\r\n")]
    assert tasks == [1]  # the disconnect watcher only: no ping task


async def test_with_a_running_lifespan_a_shorter_ping_started_later_comes_first(autojump_clock: trio.abc.Clock) -> None:
    async def source(request: Request) -> AsyncIterator[str]:
        yield "hello"
        await trio.sleep(float(request.query_params["s"]))

    async def events(request: Request) -> Response:
        return EventSourceResponse(source(request), ping=float(request.query_params["ping"]))

    app = Triolette(routes=[Route("/events", events)])
    slow, fast = Client(), Client()
    with trio.fail_after(100):
        async with lifespan_running(app), trio.open_nursery() as nursery:
            nursery.start_soon(app, http_scope("/events", query=b"ping=30&s=5"), slow.receive, slow.send)
            await trio.sleep(1)
            nursery.start_soon(app, http_scope("/events", query=b"ping=10&s=35"), fast.receive, fast.send)
    assert [time for time, _ in slow.chunks] == [0]  # ended at 5, before its first ping was due at 30
    assert [time for time, _ in fast.chunks] == [1, 11, 21, 31]
