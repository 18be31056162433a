"""Deterministic tests for the RequestScope: invariants 1-6 of DESIGN.md section 3 and the
limits of section 5.

The app is driven by a fake server (``FakeServer``): ``receive`` hands out the messages a
test pushes into a trio memory channel, ``send`` records what the app sends (and can be
made to block, like a client that does not read). Time is virtual (``autojump_clock``),
so every time-dependent assertion is an exact virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio
import trio.testing

from tests import conftest
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.concurrency import thread_limiter
from triolette.exceptions import HTTPException
from triolette.requests import ClientDisconnect, Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Mount, Route, Router
from triolette.types import Message, Scope

# -- the fake server ----------------------------------------------------------------------


def http_scope(method: str = "GET", path: str = "/", headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return conftest.http_scope(path, method, headers=headers or [])


class FakeServer:
    """The server side of one ASGI call: messages in through a channel, messages out to a list."""

    def __init__(self) -> None:
        self._to_app, self._inbox = trio.open_memory_channel[Message](math.inf)
        self.sent: list[Message] = []
        self.handed_out = 0  # messages receive() returned
        self.readers = 0  # tasks inside receive() right now
        self.max_readers = 0
        self.block_sends_after: int | None = None  # block forever on the n-th body chunk
        self.disconnect_handed_out = False
        self.reads_after_disconnect = 0  # receive() calls after it returned http.disconnect

    # what the test does
    def request(self, body: bytes = b"", more_body: bool = False) -> None:
        self._to_app.send_nowait({"type": "http.request", "body": body, "more_body": more_body})

    def disconnect(self) -> None:
        self._to_app.send_nowait({"type": "http.disconnect"})

    # what the app calls
    async def receive(self) -> Message:
        if self.disconnect_handed_out:
            self.reads_after_disconnect += 1
        self.readers += 1
        self.max_readers = max(self.max_readers, self.readers)
        try:
            message = await self._inbox.receive()
        finally:
            self.readers -= 1
        self.handed_out += 1
        if message["type"] == "http.disconnect":
            self.disconnect_handed_out = True
        return message

    async def send(self, message: Message) -> None:
        if (
            self.block_sends_after is not None
            and message["type"] == "http.response.body"
            and len(self.body_messages) >= self.block_sends_after
        ):
            await trio.sleep_forever()
        self.sent.append(message)

    # what the test checks
    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) <= 1, starts
        return int(starts[0]["status"]) if starts else None

    @property
    def body_messages(self) -> list[Message]:
        return [m for m in self.sent if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.body_messages)

    @property
    def response_complete(self) -> bool:
        bodies = self.body_messages
        return bool(bodies) and not bodies[-1].get("more_body", False)


async def call(app: Any, server: FakeServer, scope: Scope | None = None, *, limit: float = 100) -> None:
    """One ASGI call, bounded so that a deadlock fails the test instead of hanging it."""
    with trio.fail_after(limit):
        await app(scope or http_scope(), server.receive, server.send)


def app_with(endpoint: Any, *, methods: list[str] | None = None, **options: Any) -> Triolette:
    return Triolette(routes=[Route("/", endpoint, methods=methods or ["GET", "POST"])], **options)


# -- invariant 1: no task outlives its owner -----------------------------------------------


async def test_tasks_on_request_nursery_finish_before_the_call_returns(autojump_clock: trio.abc.Clock) -> None:
    finished: list[str] = []

    async def job(name: str, seconds: float) -> None:
        await trio.sleep(seconds)
        finished.append(name)

    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(job, "slow", 5)
        request.nursery.start_soon(job, "quick", 1)
        return PlainTextResponse("started")

    server = FakeServer()
    server.request()
    await call(app_with(endpoint), server)
    assert finished == ["quick", "slow"]
    assert trio.current_time() == 5
    assert server.status == 200
    assert server.body == b"started"
    assert server.readers == 0  # the disconnect watcher is gone too


async def test_request_tasks_are_cancelled_with_the_request(autojump_clock: trio.abc.Clock) -> None:
    cancelled = trio.Event()

    async def job() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(job)
        await trio.sleep(10)
        return PlainTextResponse("never")

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server)
        await trio.testing.wait_all_tasks_blocked()
        server.disconnect()
    assert cancelled.is_set()
    assert trio.current_time() == 0
    assert server.sent == []


async def test_app_nursery_tasks_finish_when_lifespan_shutdown_completes(autojump_clock: trio.abc.Clock) -> None:
    events: list[str] = []

    async def service(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        events.append("service started")
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            events.append("service finally")

    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        await app.nursery.start(service)
        yield
        events.append("lifespan exit")

    app = Triolette(lifespan=lifespan)
    to_app, inbox = trio.open_memory_channel[Message](math.inf)
    from_app, outbox = trio.open_memory_channel[Message](math.inf)
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}

    async def record_send(message: Message) -> None:
        events.append(message["type"])
        await from_app.send(message)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, scope, inbox.receive, record_send)
            await to_app.send({"type": "lifespan.startup"})
            assert (await outbox.receive())["type"] == "lifespan.startup.complete"
            await to_app.send({"type": "lifespan.shutdown"})
            assert (await outbox.receive())["type"] == "lifespan.shutdown.complete"
    assert events == [
        "service started",
        "lifespan.startup.complete",
        "lifespan exit",
        "service finally",
        "lifespan.shutdown.complete",
    ]
    with pytest.raises(RuntimeError, match=r"app\.nursery is open only while the lifespan runs"):
        _ = app.nursery


# -- invariant 2: one reader at a time, nothing lost ---------------------------------------


async def test_chunks_the_watcher_took_while_the_endpoint_was_busy_are_not_lost(autojump_clock: trio.abc.Clock) -> None:
    seen: dict[str, Any] = {}

    async def endpoint(request: Request) -> Response:
        await trio.sleep(1)  # busy: meanwhile the watcher is the only reader
        seen["watcher_buffered"] = server.handed_out
        body = await request.body()
        return PlainTextResponse(body)

    server = FakeServer()
    server.request(b"one ", more_body=True)
    server.request(b"two ", more_body=True)
    server.request(b"three", more_body=False)
    await call(app_with(endpoint), server, http_scope("POST"))
    assert seen["watcher_buffered"] == 3
    assert server.status == 200
    assert server.body == b"one two three"
    assert server.max_readers == 1
    assert server.handed_out == 3
    assert trio.current_time() == 1


async def test_chunks_arriving_while_the_endpoint_reads_reach_it_in_order(autojump_clock: trio.abc.Clock) -> None:
    received: list[bytes] = []
    reading = trio.Event()

    async def endpoint(request: Request) -> Response:
        reading.set()
        async for chunk in request.stream():
            received.append(chunk)
        return PlainTextResponse(str(len(received)))

    server = FakeServer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server, http_scope("POST"))
        await reading.wait()
        for n in range(5):
            await trio.testing.wait_all_tasks_blocked()
            server.request(b"%d" % n, more_body=n < 4)
    assert received == [b"0", b"1", b"2", b"3", b"4", b""]
    assert server.max_readers == 1
    assert server.handed_out == 5


async def test_two_requests_over_one_scope_read_the_body_once(autojump_clock: trio.abc.Clock) -> None:
    results: dict[str, Any] = {}

    async def endpoint(request: Request) -> Response:
        other = Request(request.scope, request.receive)
        results["json"] = await request.json()
        results["body"] = await other.body()
        results["stream"] = [chunk async for chunk in Request(request.scope, request.receive).stream()]
        return PlainTextResponse("ok")

    server = FakeServer()
    server.request(b'{"a": ', more_body=True)
    server.request(b"1}")
    await call(app_with(endpoint), server, http_scope("POST"))
    assert results == {"json": {"a": 1}, "body": b'{"a": 1}', "stream": [b'{"a": 1}', b""]}
    assert server.handed_out == 2
    assert server.status == 200


async def test_is_disconnected_answers_without_consuming_a_message(autojump_clock: trio.abc.Clock) -> None:
    seen: list[Any] = []

    async def endpoint(request: Request) -> Response:
        seen.append(await request.is_disconnected())
        seen.append(await request.is_disconnected())
        seen.append(await request.body())
        return PlainTextResponse("ok")

    server = FakeServer()
    server.request(b"abc")
    await call(app_with(endpoint), server, http_scope("POST"))
    assert seen == [False, False, b"abc"]
    assert server.handed_out == 1


async def test_is_disconnected_sees_what_the_watcher_saw(autojump_clock: trio.abc.Clock) -> None:
    seen: list[bool] = []

    async def endpoint(request: Request) -> Response:
        seen.append(await request.is_disconnected())
        await trio.sleep(1)
        seen.append(await request.is_disconnected())
        return PlainTextResponse("ok")

    server = FakeServer()
    server.request()
    server.disconnect()
    await call(app_with(endpoint, cancel_on_disconnect=False), server)
    assert seen == [False, True]
    assert server.sent == []  # the client is gone: nothing is sent
    assert trio.current_time() == 1


# -- invariant 3: disconnect cancels ---------------------------------------------------------


async def test_disconnect_cancels_the_handler_with_a_reason(autojump_clock: trio.abc.Clock) -> None:
    seen: dict[str, Any] = {}
    started = trio.Event()

    async def endpoint(request: Request) -> Response:
        started.set()
        try:
            await trio.sleep(10)
        except trio.Cancelled as exc:
            seen["reason"] = exc.reason
            raise
        finally:
            seen["finally"] = trio.current_time()
        return PlainTextResponse("never")

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server)
        await started.wait()
        await trio.sleep(2)
        server.disconnect()
    assert seen == {"reason": "client disconnected", "finally": 2}
    assert server.sent == []
    assert server.reads_after_disconnect == 0
    assert trio.current_time() == 2


async def test_nothing_is_sent_after_the_client_disconnects(autojump_clock: trio.abc.Clock) -> None:
    async def numbers() -> AsyncIterator[bytes]:
        for n in range(10):
            yield b"%d" % n
            await trio.sleep(1)

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(numbers())

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server)
        await trio.sleep(1.5)
        server.disconnect()
    assert server.status == 200
    assert [m["body"] for m in server.body_messages] == [b"0", b"1"]
    assert not server.response_complete
    assert trio.current_time() == 1.5


async def test_a_disconnect_the_endpoint_reads_itself_also_cancels(autojump_clock: trio.abc.Clock) -> None:
    seen: dict[str, Any] = {}

    async def endpoint(request: Request) -> Response:
        try:
            await request.body()
        except ClientDisconnect:
            seen["client disconnect"] = trio.current_time()
        try:
            await trio.sleep(10)
        except trio.Cancelled as exc:
            seen["reason"] = exc.reason
            raise
        return PlainTextResponse("never")

    server = FakeServer()
    server.request(b"part", more_body=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server, http_scope("POST"))
        await trio.sleep(1)  # the endpoint is the reader now, waiting for the rest of the body
        server.disconnect()
    assert seen == {"client disconnect": 1, "reason": "client disconnected"}
    assert trio.current_time() == 1
    assert server.sent == []


async def test_receive_is_not_called_again_after_the_disconnect(autojump_clock: trio.abc.Clock) -> None:
    async def endpoint(request: Request) -> Response:
        with contextlib.suppress(ClientDisconnect):
            await request.body()
        await trio.sleep(1)
        return PlainTextResponse("after the client left")

    server = FakeServer()
    server.request(b"part", more_body=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint, cancel_on_disconnect=False), server, http_scope("POST"))
        await trio.testing.wait_all_tasks_blocked()
        server.disconnect()
    assert server.handed_out == 2
    assert server.reads_after_disconnect == 0
    assert server.sent == []


async def test_cancel_on_disconnect_false_on_the_app_lets_the_handler_finish(autojump_clock: trio.abc.Clock) -> None:
    finished: list[float] = []

    async def endpoint(request: Request) -> Response:
        await trio.sleep(10)
        finished.append(trio.current_time())
        return PlainTextResponse("done")

    server = FakeServer()
    server.request()
    server.disconnect()
    await call(app_with(endpoint, cancel_on_disconnect=False), server)
    assert finished == [10]
    assert server.sent == []  # nobody to send it to


async def test_cancel_on_disconnect_false_on_the_route_lets_the_handler_finish(autojump_clock: trio.abc.Clock) -> None:
    finished: list[str] = []
    started = trio.Event()

    async def endpoint(request: Request) -> Response:
        started.set()
        await trio.sleep(10)
        finished.append(request.url.path)
        return PlainTextResponse("done")

    app = Triolette(
        routes=[Route("/patient", endpoint, cancel_on_disconnect=False), Route("/eager", endpoint)],
    )
    for path in ("/patient", "/eager"):
        server = FakeServer()
        server.request()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, app, server, http_scope(path=path))
            await started.wait()
            started = trio.Event()
            server.disconnect()
    assert finished == ["/patient"]
    assert trio.current_time() == 10


async def test_a_shielded_section_completes_after_a_disconnect(autojump_clock: trio.abc.Clock) -> None:
    events: list[tuple[str, float]] = []
    started = trio.Event()

    async def endpoint(request: Request) -> Response:
        with trio.CancelScope(shield=True):
            started.set()
            await trio.sleep(3)
            events.append(("critical section done", trio.current_time()))
        try:
            await trio.sleep(10)
        except trio.Cancelled:
            events.append(("cancelled", trio.current_time()))
            raise
        return PlainTextResponse("never")

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server)
        await started.wait()
        server.disconnect()
    assert events == [("critical section done", 3), ("cancelled", 3)]
    assert server.sent == []


# -- invariant 4: deadlines are cancel scopes ---------------------------------------------


async def test_app_timeout_is_the_effective_deadline_and_answers_503(autojump_clock: trio.abc.Clock) -> None:
    seen: list[float] = []

    async def endpoint(request: Request) -> Response:
        seen.append(trio.current_effective_deadline())
        await trio.sleep(10)
        return PlainTextResponse("too late")

    await trio.sleep(1)  # the deadline counts from the start of the request, not of the run
    server = FakeServer()
    server.request()
    await call(app_with(endpoint, timeout=2), server)
    assert seen == [3]
    assert trio.current_time() == 3
    assert server.status == 503
    assert server.body == b"Request timed out after 2 s"
    assert server.response_complete


async def test_route_timeout_replaces_the_apps(autojump_clock: trio.abc.Clock) -> None:
    seen: list[float] = []

    async def endpoint(request: Request) -> Response:
        seen.append(trio.current_effective_deadline())
        await trio.sleep(10)
        return PlainTextResponse("too late")

    app = Triolette(routes=[Route("/", endpoint, timeout=0.5)], timeout=5)
    server = FakeServer()
    server.request()
    await call(app, server)
    assert seen == [0.5]
    assert trio.current_time() == 0.5
    assert server.status == 503
    assert server.body == b"Request timed out after 0.5 s"


async def test_a_request_within_its_deadline_is_answered(autojump_clock: trio.abc.Clock) -> None:
    async def endpoint(request: Request) -> Response:
        await trio.sleep(1.5)
        return PlainTextResponse("in time")

    server = FakeServer()
    server.request()
    await call(app_with(endpoint, timeout=2), server)
    assert server.status == 200
    assert server.body == b"in time"
    assert trio.current_time() == 1.5


async def test_deadline_after_the_response_started_abandons_it(autojump_clock: trio.abc.Clock) -> None:
    closed: list[float] = []

    async def numbers() -> AsyncIterator[bytes]:
        try:
            for n in range(10):
                yield b"%d" % n
                await trio.sleep(1)
        finally:
            closed.append(trio.current_time())

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(numbers())

    server = FakeServer()
    server.request()
    await call(app_with(endpoint, timeout=2.5), server)
    assert server.status == 200  # no 503 once the response has started
    assert server.body == b"012"
    assert not server.response_complete
    assert closed == [2.5]
    assert trio.current_time() == 2.5


@pytest.mark.parametrize("value", [0, -1, math.nan, "5", True])
def test_timeouts_must_be_positive_numbers(value: Any) -> None:
    message = re.escape(f"timeout must be a positive number of seconds or None, got {value!r}")
    with pytest.raises(ValueError, match=message):
        Route("/", PlainTextResponse("x"), timeout=value)
    with pytest.raises(ValueError, match=message):
        Triolette(timeout=value)


# -- invariant 5: exceptions keep their class ---------------------------------------------


class Boom(Exception):
    pass


async def failing_child(message: str) -> None:
    await trio.lowlevel.checkpoint()
    raise Boom(message)


async def test_a_failing_request_task_reaches_the_caller_as_itself_and_answers_500(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(failing_child, "child failed")
        await trio.sleep(10)
        return PlainTextResponse("never")

    server = FakeServer()
    server.request()
    with pytest.raises(Boom, match="child failed"):
        await call(app_with(endpoint), server)
    assert server.status == 500
    assert server.body == b"Internal Server Error"
    assert trio.current_time() == 0


async def test_an_exception_handler_keyed_by_class_answers_a_failing_task(autojump_clock: trio.abc.Clock) -> None:
    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(failing_child, "handled")
        await trio.sleep(10)
        return PlainTextResponse("never")

    async def on_boom(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"{type(exc).__name__}: {exc}", status_code=418)

    server = FakeServer()
    server.request()
    await call(app_with(endpoint, exception_handlers={Boom: on_boom}), server)
    assert server.status == 418
    assert server.body == b"Boom: handled"


async def test_an_endpoint_exception_reaches_its_handler_as_itself(autojump_clock: trio.abc.Clock) -> None:
    async def endpoint(request: Request) -> Response:
        raise Boom("direct")

    async def on_boom(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"{type(exc).__name__}: {exc}", status_code=418)

    server = FakeServer()
    server.request()
    await call(app_with(endpoint, exception_handlers={Boom: on_boom}), server)
    assert server.status == 418
    assert server.body == b"Boom: direct"


async def test_several_failures_are_an_exception_group_answered_500(autojump_clock: trio.abc.Clock) -> None:
    go = trio.Event()

    async def fail(message: str) -> None:
        await go.wait()
        raise Boom(message)

    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(fail, "first")
        request.nursery.start_soon(fail, "second")
        await trio.testing.wait_all_tasks_blocked()
        go.set()
        await trio.sleep(10)
        return PlainTextResponse("never")

    server = FakeServer()
    server.request()
    with pytest.RaisesGroup(pytest.RaisesExc(Boom, match="first"), pytest.RaisesExc(Boom, match="second")):
        await call(app_with(endpoint), server)
    assert server.status == 500
    assert server.body == b"Internal Server Error"


async def test_outside_cancellation_is_never_a_500(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    finally_ran: list[float] = []

    async def endpoint(request: Request) -> Response:
        try:
            await trio.sleep(10)
        finally:
            finally_ran.append(trio.current_time())
        return PlainTextResponse("never")

    server = FakeServer()
    server.request()
    with trio.move_on_after(1) as cs:
        await call(app_with(endpoint), server)
    assert cs.cancelled_caught  # the Cancelled travelled out of the app untouched
    assert finally_ran == [1]
    assert server.sent == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_disconnect_is_never_a_500_nor_an_error_log(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(trio.sleep_forever)
        await trio.sleep_forever()

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server)
        await trio.testing.wait_all_tasks_blocked()
        server.disconnect()
    assert server.sent == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.parametrize("where", ["endpoint", "request task"])
async def test_a_body_cut_short_by_a_disconnect_is_no_error(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    async def read(request: Request) -> None:
        await request.body()  # ClientDisconnect: the client leaves halfway through

    async def endpoint(request: Request) -> Response:
        if where == "endpoint":
            await read(request)
        else:
            request.nursery.start_soon(read, request)
            await trio.sleep_forever()
        return PlainTextResponse("never")  # pragma: no cover

    server = FakeServer()
    server.request(b"part", more_body=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server, http_scope("POST"))
        await trio.testing.wait_all_tasks_blocked()
        server.disconnect()
    assert server.sent == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# -- invariant 6: generators closed where they ran; sync code in worker threads ----------


async def test_streaming_generator_is_closed_in_the_task_that_iterated_it(autojump_clock: trio.abc.Clock) -> None:
    tasks: dict[str, Any] = {}

    async def numbers() -> AsyncIterator[bytes]:
        tasks["iterated"] = trio.lowlevel.current_task()
        try:
            yield b"a"
            yield b"b"
        finally:
            tasks["closed"] = trio.lowlevel.current_task()
            tasks["closed_at"] = trio.current_time()

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(numbers())

    server = FakeServer()
    server.request()
    await call(app_with(endpoint), server)
    assert tasks["closed"] is tasks["iterated"]
    assert server.body == b"ab"
    assert server.response_complete


async def test_streaming_generator_finally_runs_before_the_call_returns_on_disconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    events: list[str] = []
    tasks: dict[str, Any] = {}

    async def numbers() -> AsyncIterator[bytes]:
        tasks["iterated"] = trio.lowlevel.current_task()
        try:
            for n in range(100):
                yield b"%d" % n
                await trio.sleep(1)
        finally:
            tasks["closed"] = trio.lowlevel.current_task()
            with trio.CancelScope(shield=True):
                await trio.sleep(0.5)  # asynchronous cleanup still completes
            events.append("generator closed")

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(numbers())

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await call(app_with(endpoint), server)
            events.append("call returned")

        nursery.start_soon(run)
        await trio.sleep(2.5)
        server.disconnect()
    assert events == ["generator closed", "call returned"]
    assert tasks["closed"] is tasks["iterated"]
    assert server.body == b"012"
    assert trio.current_time() == 3


async def test_sync_endpoint_runs_in_a_worker_thread_on_the_shared_limiter() -> None:
    main_thread = threading.current_thread()
    seen: dict[str, Any] = {}

    def endpoint(request: Request) -> Response:
        seen["thread"] = threading.current_thread()
        seen["borrowed"] = trio.from_thread.run_sync(lambda: thread_limiter().borrowed_tokens)
        return PlainTextResponse("from a thread")

    server = FakeServer()
    server.request()
    await call(app_with(endpoint), server)
    assert seen["thread"] is not main_thread
    assert seen["borrowed"] == 1
    assert thread_limiter().total_tokens == 40
    assert server.body == b"from a thread"


async def test_sync_iterator_runs_in_worker_threads() -> None:
    main_thread = threading.current_thread()
    threads: list[threading.Thread] = []

    def chunks() -> Iterator[bytes]:
        for chunk in (b"x", b"y"):
            threads.append(threading.current_thread())
            yield chunk

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(chunks())

    server = FakeServer()
    server.request()
    await call(app_with(endpoint), server)
    assert server.body == b"xy"
    assert len(threads) == 2
    assert main_thread not in threads


# -- limits: request body size ---------------------------------------------------------------


async def read_body(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"{len(body)} bytes")


async def test_declared_content_length_over_the_limit_is_413_without_reading(autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()  # the body never arrives: only Content-Length can answer
    scope = http_scope("POST", headers=[(b"content-length", b"11")])
    await call(app_with(read_body, max_body_size=10), server, scope, limit=5)
    assert server.status == 413
    assert server.body == b"Content Too Large"
    assert server.handed_out == 0
    assert trio.current_time() == 0


async def test_declared_content_length_over_the_limit_is_413_even_unread(autojump_clock: trio.abc.Clock) -> None:
    async def ignore_body(request: Request) -> Response:
        return PlainTextResponse("did not look")

    server = FakeServer()
    scope = http_scope("POST", headers=[(b"content-length", b"11")])
    await call(app_with(ignore_body, max_body_size=10), server, scope, limit=5)
    assert server.status == 413
    assert server.body == b"Content Too Large"


async def test_streamed_body_over_the_limit_is_413_before_reading_further(autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    for _ in range(4):
        server.request(b"x" * 6, more_body=True)
    server.request(b"")
    await call(app_with(read_body, max_body_size=10), server, http_scope("POST"))
    assert server.status == 413
    assert server.body == b"Content Too Large"
    assert server.handed_out == 2


async def test_body_within_the_limit_is_read(autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    server.request(b"x" * 6, more_body=True)
    server.request(b"x" * 4)
    await call(app_with(read_body, max_body_size=10), server, http_scope("POST"))
    assert server.status == 200
    assert server.body == b"10 bytes"


def limited_app(where: str, limit: int) -> Triolette:
    route = Route("/", read_body, methods=["POST"], max_body_size=limit if where == "route" else None)
    if where == "route":
        inner: Any = Router(routes=[route])
        return Triolette(routes=[Mount("/m", app=inner)], max_body_size=100)
    if where == "mount":
        return Triolette(routes=[Mount("/m", routes=[route], max_body_size=limit)], max_body_size=100)
    return Triolette(routes=[Mount("/m", app=Router(routes=[route], max_body_size=limit))], max_body_size=100)


@pytest.mark.parametrize("where", ["route", "mount", "router"])
async def test_body_limit_is_overridden_per_route_mount_and_router(autojump_clock: trio.abc.Clock, where: str) -> None:
    app = limited_app(where, 5)
    server = FakeServer()
    server.request(b"x" * 6)
    await call(app, server, http_scope("POST", "/m/"))
    assert (server.status, server.body) == (413, b"Content Too Large")

    server = FakeServer()
    server.request(b"x" * 5)
    await call(app, server, http_scope("POST", "/m/"))
    assert (server.status, server.body) == (200, b"5 bytes")


async def test_a_route_can_raise_the_apps_body_limit(autojump_clock: trio.abc.Clock) -> None:
    app = Triolette(routes=[Route("/", read_body, methods=["POST"], max_body_size=100)], max_body_size=10)
    server = FakeServer()
    server.request(b"x" * 50)
    await call(app, server, http_scope("POST"))
    assert (server.status, server.body) == (200, b"50 bytes")


# -- limits: body_timeout and send_timeout ---------------------------------------------------


async def test_body_timeout_answers_408(autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    server.request(b"part", more_body=True)  # ...and the rest never comes
    await call(app_with(read_body, body_timeout=5), server, http_scope("POST"))
    assert server.status == 408
    assert server.body == b"Request body not received within body_timeout (5 s)"
    assert trio.current_time() == 5


async def test_body_timeout_counts_from_when_the_endpoint_starts_reading(autojump_clock: trio.abc.Clock) -> None:
    async def slow_reader(request: Request) -> Response:
        await trio.sleep(7)  # longer than body_timeout, but nobody is reading yet
        return await read_body(request)

    server = FakeServer()
    server.request(b"part", more_body=True)
    await call(app_with(slow_reader, body_timeout=5), server, http_scope("POST"))
    assert server.status == 408
    assert trio.current_time() == 12


async def test_a_slow_but_timely_body_is_read(autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(read_body, body_timeout=5), server, http_scope("POST"))
        await trio.sleep(4)
        server.request(b"ab", more_body=True)
        await trio.sleep(0.5)
        server.request(b"c")
    assert (server.status, server.body) == (200, b"3 bytes")
    assert trio.current_time() == 4.5


async def test_send_timeout_closes_the_request(autojump_clock: trio.abc.Clock) -> None:
    closed: list[float] = []

    async def numbers() -> AsyncIterator[bytes]:
        try:
            for n in range(10):
                yield b"%d" % n
        finally:
            closed.append(trio.current_time())

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(numbers())

    server = FakeServer()
    server.block_sends_after = 2  # the client stops reading after two chunks
    server.request()
    await call(app_with(endpoint, send_timeout=3), server)
    assert server.body == b"01"
    assert not server.response_complete
    assert closed == [3]
    assert trio.current_time() == 3


# -- outside trio -------------------------------------------------------------------------------


def test_calling_the_app_from_asyncio_names_the_fix() -> None:
    app = app_with(read_body)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}  # pragma: no cover

    async def send(message: Message) -> None:
        pass  # pragma: no cover

    with pytest.raises(RuntimeError, match=r"called from asyncio") as excinfo:
        asyncio.run(app(http_scope(), receive, send))
    assert "python -m triolette" in str(excinfo.value)
    assert "hypercorn --worker-class trio" in str(excinfo.value)

    lifespan_scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    with pytest.raises(RuntimeError, match=r"triolette runs under trio only.*hypercorn --worker-class trio"):
        asyncio.run(Triolette()(lifespan_scope, receive, send))


# -- background tasks: after the response, shielded from disconnect and deadline -----------


async def test_background_task_survives_a_disconnect(autojump_clock: trio.abc.Clock) -> None:
    done: list[float] = []

    async def background() -> None:
        await trio.sleep(5)
        done.append(trio.current_time())

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("sent", background=BackgroundTask(background))

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server)
        await trio.sleep(1)
        server.disconnect()
    assert done == [5]
    assert (server.status, server.body) == (200, b"sent")


async def test_background_task_outlives_the_request_deadline(autojump_clock: trio.abc.Clock) -> None:
    done: list[float] = []

    async def background() -> None:
        await trio.sleep(5)
        done.append(trio.current_time())

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("sent", background=BackgroundTask(background))

    server = FakeServer()
    server.request()
    await call(app_with(endpoint, timeout=2), server)
    assert done == [5]
    assert (server.status, server.body) == (200, b"sent")


async def test_an_http_exception_in_a_request_task_is_answered_by_its_handler(autojump_clock: trio.abc.Clock) -> None:
    async def child() -> None:
        await trio.lowlevel.checkpoint()
        raise HTTPException(409, "conflict")

    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(child)
        await trio.sleep(10)
        return PlainTextResponse("never")

    server = FakeServer()
    server.request()
    await call(app_with(endpoint), server)
    assert (server.status, server.body) == (409, b"conflict")
    assert trio.current_time() == 0


async def test_the_watcher_stops_with_the_response_while_request_tasks_go_on(autojump_clock: trio.abc.Clock) -> None:
    """After the response is complete there is nothing to watch: receive() is not called
    again, and the request's own tasks still run to their end before the call returns."""
    reads: list[float] = []
    finished: list[float] = []

    async def after_response() -> None:
        await trio.sleep(5)
        finished.append(trio.current_time())

    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(after_response)
        return PlainTextResponse("done")

    body_sent = False

    async def receive() -> dict[str, Any]:
        reads.append(trio.current_time())
        if len(reads) == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()  # a server that never says http.disconnect
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        nonlocal body_sent
        await trio.lowlevel.checkpoint()  # a socket write yields, so the watcher gets to run
        body_sent = body_sent or message["type"] == "http.response.body"

    with trio.fail_after(60):
        await app_with(endpoint)(http_scope(), receive, send)
    assert body_sent
    assert finished == [5.0]
    assert len(reads) <= 2  # the body, and at most one read that was pending when the response ended
    assert trio.current_time() == 5


# -- the watcher starts lazily ------------------------------------------------------------------


class TaskCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.spawned = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1


async def test_a_request_answered_without_waiting_spawns_no_task() -> None:
    """The disconnect watcher costs a task only when the app waits for something: a reply
    whose only waits are the sends of its start and its last small chunk needs none."""
    sent: list[Message] = []
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        await trio.lowlevel.checkpoint()  # a socket write yields
        sent.append(message)

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("hi")

    app = app_with(endpoint)
    counter = TaskCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        await app(http_scope(), receive, send)
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert (counter.spawned, reads) == (0, 0)


async def test_a_handler_that_waits_after_the_start_is_still_cancelled_by_a_disconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    cancelled: list[float] = []

    async def slow() -> AsyncIterator[bytes]:
        try:
            await trio.sleep(10)
            yield b"late"
        finally:
            cancelled.append(trio.current_time())

    async def endpoint(request: Request) -> Response:
        return StreamingResponse(slow())

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server)
        await trio.sleep(1)
        server.disconnect()
    assert cancelled == [1]
    assert server.body == b""


async def test_a_large_last_chunk_is_bounded_by_send_timeout(autojump_clock: trio.abc.Clock) -> None:
    async def endpoint(request: Request) -> Response:
        return Response(b"x" * 100_000)

    server = FakeServer()
    server.block_sends_after = 0  # the client reads the headers, then nothing more
    server.request()
    await call(app_with(endpoint, send_timeout=3), server)
    assert server.status == 200
    assert not server.response_complete
    assert trio.current_time() == 3


async def test_the_watcher_times_sends_after_the_body_was_read_without_waiting(autojump_clock: trio.abc.Clock) -> None:
    """The body was taken without a single wait, so the watcher starts only once the
    response blocks; it must not then wait for a request message that was already read."""
    messages = [{"type": "http.request", "body": b"abc", "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await trio.sleep_forever()  # a server that never says http.disconnect
        raise AssertionError("unreachable")

    async def numbers() -> AsyncIterator[bytes]:
        for n in range(10):
            yield b"%d" % n

    async def endpoint(request: Request) -> Response:
        assert await request.body() == b"abc"
        return StreamingResponse(numbers())

    server = FakeServer()
    server.block_sends_after = 1  # the client stops reading after one chunk
    with trio.fail_after(100):
        await app_with(endpoint, send_timeout=3)(http_scope("POST"), receive, server.send)
    assert server.body == b"0"
    assert trio.current_time() == 3


class SlowHeadersServer:
    """A server whose send of the response start waits for the socket (a client that does
    not read). When the client leaves, the server queues http.disconnect for receive() at
    once, and the blocked send returns a moment later (when the write fails)."""

    def __init__(self) -> None:
        self._to_app, self._inbox = trio.open_memory_channel[Message](math.inf)
        self._to_app.send_nowait({"type": "http.request", "body": b"", "more_body": False})
        self.gone = trio.Event()
        self.sent_after_disconnect: list[Message] = []
        self.sent: list[Message] = []

    def disconnect(self) -> None:
        self._to_app.send_nowait({"type": "http.disconnect"})
        self.gone.set()

    async def receive(self) -> Message:
        return await self._inbox.receive()

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            await self.gone.wait()  # the headers leave only when the client reads, or it leaves
            await trio.sleep(1)  # the failed write is noticed a moment after the disconnect
        elif self.gone.is_set():
            self.sent_after_disconnect.append(message)
        self.sent.append(message)


async def test_a_disconnect_while_the_start_is_being_sent_cancels_the_request(autojump_clock: trio.abc.Clock) -> None:
    """The client leaves while the start's send is blocked, before the response is complete:
    the request is cancelled, and nothing more is sent. (The app waits nowhere else: its
    last small chunk completes the response, so that blocked send must start the watcher.)"""
    finished: list[tuple[str, float]] = []

    async def job() -> None:
        try:
            await trio.sleep(10)
            finished.append(("done", trio.current_time()))
        except trio.Cancelled:
            finished.append(("cancelled", trio.current_time()))
            raise

    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(job)
        return PlainTextResponse("hi")

    app = app_with(endpoint)
    server = SlowHeadersServer()
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, http_scope(), server.receive, server.send)
            await trio.sleep(1)
            server.disconnect()
    assert finished == [("cancelled", 1.0)]
    assert server.sent_after_disconnect == []


async def test_a_handler_that_only_passes_checkpoints_is_cancelled_by_a_disconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A busy loop that only yields schedule points is still watched: a disconnect cancels it."""
    rounds = 0

    async def endpoint(request: Request) -> Response:
        nonlocal rounds
        while rounds < 10_000:  # bounded, so that a failure ends (a busy loop stops the clock)
            rounds += 1
            await trio.lowlevel.checkpoint()
        return PlainTextResponse("finished")

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app_with(endpoint), server)
        for _ in range(10):
            await trio.lowlevel.checkpoint()
        server.disconnect()
    assert 0 < rounds < 10_000
    assert server.status is None
