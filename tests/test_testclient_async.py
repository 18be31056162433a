"""AsyncTestClient: the app runs in the test's own trio run (its clock, nurseries, cancel scopes)."""

from __future__ import annotations

import gc
import gzip
import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from tests.conftest import http_scope
from tests.test_testclient import RESPONSE_OUT_OF_ORDER, sends
from triolette._conversation import ProtocolError
from triolette._testing import HTTPExchange, ResponseProtocolError
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from triolette.routing import Route, WebSocketRoute
from triolette.testclient import AsyncTestClient, WebSocketDenialResponse
from triolette.types import Message, Receive, Scope, Send
from triolette.websockets import WebSocket, WebSocketDisconnect

# -- helpers ----------------------------------------------------------------------------------


def all_tasks() -> set[trio.lowlevel.Task]:
    """Every task of this trio run, found from the root task down."""
    found: set[trio.lowlevel.Task] = set()
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        assert task is not None
        found.add(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return found


def events_app(log: list[str]) -> Triolette:
    """An endless text/event-stream: one event a second until the client goes away."""

    async def events(request: Request) -> StreamingResponse:
        async def ticks() -> AsyncIterator[str]:
            n = 0
            try:
                while True:
                    yield f"data: {n}\n\n"
                    n += 1
                    await trio.sleep(1)
            except trio.Cancelled as cancelled:
                log.append(f"cancelled: {cancelled.reason}")
                raise
            finally:
                log.append(f"finally at {trio.current_time():g}")

        return StreamingResponse(ticks(), media_type="text/event-stream")

    return Triolette(routes=[Route("/events", events)])


# -- plain requests ---------------------------------------------------------------------------


async def test_requests_and_responses() -> None:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": str(request.query_params),
                "body": (await request.body()).decode(),
                "client": list(request.client or ()),
                "agent": request.headers["user-agent"],
                "host": request.headers["host"],
            }
        )

    app = Triolette(routes=[Route("/echo", echo, methods=["GET", "POST"])])
    async with AsyncTestClient(app) as client:
        assert isinstance(client, httpx.AsyncClient)
        response = await client.post("/echo?x=1", content=b"hello")
        assert response.status_code == 200
        assert response.json() == {
            "method": "POST",
            "path": "/echo",
            "query": "x=1",
            "body": "hello",
            "client": ["testclient", 50000],
            "agent": "testclient",
            "host": "testserver",
        }
        assert (await client.get("/nowhere")).status_code == 404


async def test_options_reach_the_scope() -> None:
    async def where(request: Request) -> JSONResponse:
        scope = request.scope
        return JSONResponse(
            {
                "scheme": scope["scheme"],
                "root_path": scope["root_path"],
                "client": scope["client"],
                "x": request.headers["x"],
            }
        )

    client = AsyncTestClient(
        Triolette(routes=[Route("/", where)]),
        base_url="https://example.org",
        root_path="/api",
        client=("10.0.0.1", 1234),
        headers={"x": "y"},
    )
    async with client:
        assert (await client.get("/")).json() == {
            "scheme": "https",
            "root_path": "/api",
            "client": ["10.0.0.1", 1234],
            "x": "y",
        }


async def test_head_has_no_body_and_redirects_and_cookies_work() -> None:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"seen={request.cookies.get('seen')}")

    async def login(request: Request) -> RedirectResponse:
        response = RedirectResponse("/")
        response.set_cookie("seen", "yes")
        return response

    app = Triolette(routes=[Route("/", home, methods=["GET", "HEAD"]), Route("/login", login)])
    async with AsyncTestClient(app) as client:
        head = await client.head("/")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["content-length"] == "9"
        response = await client.get("/login")
        assert response.history[0].status_code == 307
        assert response.text == "seen=yes"
    async with AsyncTestClient(app, follow_redirects=False) as client:
        assert (await client.get("/login")).status_code == 307


async def test_background_tasks_are_done_when_the_response_returns(autojump_clock: trio.abc.Clock) -> None:
    done: list[float] = []

    async def later() -> None:
        await trio.sleep(5)
        done.append(trio.current_time())

    async def home(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(later))

    async with AsyncTestClient(Triolette(routes=[Route("/", home)])) as client:
        assert (await client.get("/")).text == "ok"
        assert done == [5]


async def test_requests_work_without_async_with() -> None:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    before = all_tasks()
    client = AsyncTestClient(Triolette(routes=[Route("/", home)]))
    assert (await client.get("/")).text == "ok"
    async with client.stream("GET", "/") as response:
        assert len(all_tasks()) > len(before)  # the app, in a nursery of this task
        assert await response.aread() == b"ok"
    assert all_tasks() == before
    await client.aclose()


async def test_a_request_body_streams_as_the_test_sends_it(autojump_clock: trio.abc.Clock) -> None:
    arrived: list[tuple[float, bytes]] = []

    async def upload(request: Request) -> PlainTextResponse:
        async for chunk in request.stream():
            if chunk:
                arrived.append((trio.current_time(), chunk))
        return PlainTextResponse("stored")

    async def slowly() -> AsyncIterator[bytes]:
        for part in (b"a", b"b", b"c"):
            yield part
            await trio.sleep(2)

    async with AsyncTestClient(Triolette(routes=[Route("/", upload, methods=["POST"])])) as client:
        assert (await client.post("/", content=slowly())).text == "stored"
    assert arrived == [(0, b"a"), (2, b"b"), (4, b"c")]


async def test_a_slow_upload_times_out_in_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    async def upload(request: Request) -> PlainTextResponse:
        await request.body()
        return PlainTextResponse("stored")  # pragma: no cover - the body never completes

    async def stalled() -> AsyncIterator[bytes]:
        yield b"a"
        await trio.sleep(3600)
        yield b"b"  # pragma: no cover

    app = Triolette(routes=[Route("/", upload, methods=["POST"])], body_timeout=10)
    async with AsyncTestClient(app) as client:
        response = await client.post("/", content=stalled())
    assert response.status_code == 408
    assert trio.current_time() == 10


# -- streaming and disconnects ----------------------------------------------------------------


async def test_an_endless_event_stream_read_for_three_events(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    async with AsyncTestClient(events_app(log)) as client:
        with trio.fail_after(60):
            async with client.stream("GET", "/events") as response:
                assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
                received = []
                async for chunk in response.aiter_bytes():
                    received.append((trio.current_time(), chunk))
                    if len(received) == 3:
                        break
                assert log == []  # still running: the stream is open
            # leaving the block sent http.disconnect and waited for the handler
            assert log == ["cancelled: client disconnected", "finally at 2"]
    assert received == [(0, b"data: 0\n\n"), (1, b"data: 1\n\n"), (2, b"data: 2\n\n")]
    assert trio.current_time() == 2


async def test_leaving_any_response_iterator_early_leaves_no_generator_behind(autojump_clock: trio.abc.Clock) -> None:
    # Under trio, an async generator dropped before it is exhausted is finalized with a
    # ResourceWarning: an error here (filterwarnings = error). The response's iterators are
    # plain objects, so a test can simply break out of them.
    log: list[str] = []
    async with AsyncTestClient(events_app(log)) as client:
        for read in ("aiter_raw", "aiter_bytes", "aiter_text", "aiter_lines"):
            async with client.stream("GET", "/events") as response:
                async for item in getattr(response, read)():
                    assert item in (b"data: 0\n\n", "data: 0\n\n", "data: 0")
                    break
            gc.collect()
    assert log.count("cancelled: client disconnected") == 4


async def test_streamed_bodies_decode_as_httpx_does() -> None:
    async def compressed(request: Request) -> Response:
        return Response(gzip.compress("é\nline two\n".encode() * 100), headers={"content-encoding": "gzip"})

    async with AsyncTestClient(Triolette(routes=[Route("/", compressed)])) as client:
        async with client.stream("GET", "/") as response:
            lines = [line async for line in response.aiter_lines()]
        assert lines == ["é", "line two"] * 100
        async with client.stream("GET", "/") as response:
            chunks = [chunk async for chunk in response.aiter_bytes(chunk_size=1000)]
            assert [len(chunk) for chunk in chunks] == [1000, 200]
            with pytest.raises(httpx.StreamConsumed):
                response.aiter_raw()
        async with client.stream("GET", "/") as response:
            pass
        with pytest.raises(httpx.StreamClosed):
            response.aiter_raw()
        response = await client.get("/")  # read into memory, then iterated from there
        body = "é\nline two\n".encode() * 100
        assert [chunk async for chunk in response.aiter_bytes(chunk_size=500)] == [
            body[:500],
            body[500:1000],
            body[1000:],
        ]
        assert "".join([text async for text in response.aiter_text()]) == "é\nline two\n" * 100
        assert response.num_bytes_downloaded == len(gzip.compress("é\nline two\n".encode() * 100))


async def test_closing_a_stream_waits_for_a_handler_that_is_not_cancelled(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []

    async def report(request: Request) -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            try:
                yield b"header\n"
                await trio.sleep(5)  # not cancelled: it finishes what it was doing
                yield b"never sent\n"
            finally:
                log.append(f"closed at {trio.current_time():g}")

        return StreamingResponse(lines())

    app = Triolette(routes=[Route("/report", report, cancel_on_disconnect=False)])
    async with AsyncTestClient(app) as client:
        async with client.stream("GET", "/report") as response, aclosing(response.aiter_bytes()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            assert await anext(chunks) == b"header\n"
        assert log == ["closed at 5"]
        assert trio.current_time() == 5


async def test_request_is_disconnected_after_the_client_left(autojump_clock: trio.abc.Clock) -> None:
    seen: list[bool] = []

    async def poll(request: Request) -> StreamingResponse:
        async def ticks() -> AsyncIterator[bytes]:
            yield b"tick"
            with trio.CancelScope(shield=True):  # keep running, to look
                await trio.sleep(1)
                seen.append(await request.is_disconnected())

        return StreamingResponse(ticks())

    async with AsyncTestClient(Triolette(routes=[Route("/", poll)])) as client:
        async with client.stream("GET", "/") as response, aclosing(response.aiter_bytes()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            assert await anext(chunks) == b"tick"
        assert seen == [True]


async def test_the_tests_cancel_scope_applies_to_the_app(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []

    async def forever(request: Request) -> Response:
        try:
            await trio.sleep_forever()
        finally:
            log.append(f"handler left at {trio.current_time():g}")

    async with AsyncTestClient(Triolette(routes=[Route("/", forever)])) as client:
        with trio.move_on_after(5) as scope:
            await client.get("/")
        assert scope.cancelled_caught
        assert log == ["handler left at 5"]


async def test_a_route_deadline_in_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    seen: list[float] = []

    async def slow(request: Request) -> PlainTextResponse:
        seen.append(trio.current_effective_deadline())
        await trio.sleep(3600)
        return PlainTextResponse("too late")  # pragma: no cover

    app = Triolette(routes=[Route("/slow", slow, timeout=30)])
    started = time.perf_counter()
    async with AsyncTestClient(app) as client:
        response = await client.get("/slow")
    assert response.status_code == 503
    assert seen == [30]
    assert trio.current_time() == 30
    assert time.perf_counter() - started < 1


async def test_requests_run_concurrently_in_the_tests_nursery() -> None:
    ready = trio.Event()

    async def wait(request: Request) -> PlainTextResponse:
        await ready.wait()
        return PlainTextResponse("woken")

    async def notify(request: Request) -> PlainTextResponse:
        ready.set()
        return PlainTextResponse("sent")

    answers: dict[str, str] = {}
    async with AsyncTestClient(Triolette(routes=[Route("/wait", wait), Route("/notify", notify)])) as client:

        async def get(path: str) -> None:
            answers[path] = (await client.get(path)).text

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(get, "/wait")
                await trio.testing.wait_all_tasks_blocked()
                assert answers == {}  # the long poll waits
                await get("/notify")
    assert answers == {"/notify": "sent", "/wait": "woken"}


# -- server exceptions ------------------------------------------------------------------------


async def test_server_exceptions_are_raised_in_the_test() -> None:
    async def broken(request: Request) -> Response:
        raise ValueError("the handler broke")

    async def stream(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            yield b"first"
            raise KeyError("the stream broke")

        return StreamingResponse(parts())

    app = Triolette(routes=[Route("/broken", broken), Route("/stream", stream)])
    async with AsyncTestClient(app) as client:
        with pytest.raises(ValueError, match="the handler broke"):
            await client.get("/broken")
        with pytest.raises(KeyError, match="the stream broke"):
            await client.get("/stream")
    async with AsyncTestClient(app, raise_server_exceptions=False) as client:
        response = await client.get("/broken")
        assert response.status_code == 500
        assert response.text == "Internal Server Error"


async def test_an_app_that_fails_before_answering() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raise RuntimeError("no answer from me")

    client = AsyncTestClient(app)
    with pytest.raises(RuntimeError, match="no answer from me"):
        await client.get("/")
    assert (await AsyncTestClient(app, raise_server_exceptions=False).get("/")).status_code == 500


async def test_misuse_of_streamed_responses_is_explained() -> None:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async with AsyncTestClient(Triolette(routes=[Route("/", home)])) as client:
        first = await client.send(client.build_request("GET", "/"), stream=True)
        second = await client.send(client.build_request("GET", "/"), stream=True)
        with pytest.raises(RuntimeError, match="reverse order of opening them"):
            await first.aclose()

        async def close_elsewhere() -> None:
            with pytest.raises(RuntimeError, match="closed in the task that sent its request"):
                await second.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_elsewhere)
        # Both are still open: the client closes them as it leaves.


# -- lifespan ---------------------------------------------------------------------------------


async def test_lifespan_runs_around_the_async_with(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []

    async def heartbeat(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await trio.sleep(10)
                log.append(f"beat at {trio.current_time():g}")
        finally:
            log.append("heartbeat stopped")

    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[dict[str, str]]:
        log.append("startup")
        await app.nursery.start(heartbeat)
        yield {"db": "connected"}
        log.append("shutdown")

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.state.db)

    app = Triolette(routes=[Route("/", home)], lifespan=lifespan)
    async with AsyncTestClient(app) as client:
        assert log == ["startup"]
        assert (await client.get("/")).text == "connected"
        await trio.sleep(25)
    assert log == ["startup", "beat at 10", "beat at 20", "shutdown", "heartbeat stopped"]


async def test_startup_and_shutdown_failures_are_raised() -> None:
    @asynccontextmanager
    async def bad_startup(app: Triolette) -> AsyncIterator[None]:
        raise ConnectionError("no database")
        yield  # type: ignore[unreachable]  # pragma: no cover - the yield only makes this a generator

    @asynccontextmanager
    async def bad_shutdown(app: Triolette) -> AsyncIterator[None]:
        yield
        raise ConnectionError("could not flush")

    before = all_tasks()
    with pytest.raises(ConnectionError, match="no database"):
        async with AsyncTestClient(Triolette(lifespan=bad_startup)):
            pytest.fail("the block must not run")  # pragma: no cover
    with pytest.raises(ConnectionError, match="could not flush"):
        async with AsyncTestClient(Triolette(lifespan=bad_shutdown)):
            pass
    assert all_tasks() == before


async def test_a_client_opens_once() -> None:
    client = AsyncTestClient(Triolette())
    async with client:
        with pytest.raises(RuntimeError, match="Cannot open a client instance more than once"):
            await client.__aenter__()


# -- WebSockets -------------------------------------------------------------------------------


async def test_websocket_messages_both_ways() -> None:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol="chat.v2", headers=[(b"x-room", b"1")])
        await websocket.send_text(f"hello {websocket.query_params['name']}")
        await websocket.send_bytes(await websocket.receive_bytes())
        await websocket.send_json(await websocket.receive_json())
        message = await websocket.receive_json(mode="binary")
        await websocket.send_json(message, mode="binary")
        await websocket.close(code=4000, reason="done")

    app = Triolette(routes=[WebSocketRoute("/ws", echo)])
    async with (
        AsyncTestClient(app) as client,
        client.websocket_connect("/ws?name=ann", subprotocols=["chat.v1", "chat.v2"]) as ws,
    ):
        assert ws.accepted_subprotocol == "chat.v2"
        assert ws.extra_headers == [(b"x-room", b"1")]
        assert await ws.receive_text() == "hello ann"
        await ws.send_bytes(b"\x00\x01")
        assert await ws.receive_bytes() == b"\x00\x01"
        await ws.send_json({"a": [1, 2]})
        assert await ws.receive_json() == {"a": [1, 2]}
        await ws.send_json({"b": "é"}, mode="binary")
        assert await ws.receive_json(mode="binary") == {"b": "é"}
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive_text()
        assert (info.value.code, info.value.reason) == (4000, "done")


async def test_websocket_close_from_the_client() -> None:
    seen: list[int] = []

    async def listen(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await websocket.receive_text()
        except WebSocketDisconnect as exc:
            seen.append(exc.code)

    async with (
        AsyncTestClient(Triolette(routes=[WebSocketRoute("/ws", listen)])) as client,
        client.websocket_connect("/ws") as ws,
    ):
        await ws.close(code=4001)
    assert seen == [4001]


async def test_websocket_refused_closed_or_denied() -> None:
    async def closed(websocket: WebSocket) -> None:
        await websocket.close(code=1008, reason="not allowed")

    async def denied(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("go away", status_code=403))

    async def broken(websocket: WebSocket) -> None:
        raise ValueError("the socket handler broke")

    app = Triolette(
        routes=[WebSocketRoute("/closed", closed), WebSocketRoute("/denied", denied), WebSocketRoute("/broken", broken)]
    )
    before = all_tasks()
    async with AsyncTestClient(app) as client:
        with pytest.raises(WebSocketDisconnect) as info:
            async with client.websocket_connect("/closed"):
                pytest.fail("not accepted")  # pragma: no cover
        assert (info.value.code, info.value.reason) == (1008, "not allowed")
        with pytest.raises(WebSocketDenialResponse) as denial:
            async with client.websocket_connect("/denied"):
                pytest.fail("not accepted")  # pragma: no cover
        assert denial.value.status_code == 403
        assert denial.value.text == "go away"
        with pytest.raises(ValueError, match="the socket handler broke"):
            async with client.websocket_connect("/broken"):
                pytest.fail("not accepted")  # pragma: no cover
        with pytest.raises(WebSocketDisconnect) as info:
            async with client.websocket_connect("/nowhere"):
                pytest.fail("not accepted")  # pragma: no cover
        assert info.value.code == 1000
    assert all_tasks() == before


async def test_websocket_app_errors_after_accept_are_raised() -> None:
    async def flaky(websocket: WebSocket) -> None:
        await websocket.accept()
        if await websocket.receive_text() == "boom":
            raise ValueError("boom it went")

    app = Triolette(routes=[WebSocketRoute("/ws", flaky)])
    async with AsyncTestClient(app) as client:

        async def boom_then_read() -> None:
            async with client.websocket_connect("/ws") as ws:
                await ws.send_text("boom")
                await ws.receive_text()

        with pytest.raises(ValueError, match="boom it went"):
            await boom_then_read()
        with pytest.raises(ValueError, match="boom it went"):
            async with client.websocket_connect("/ws") as ws:
                await ws.send_text("boom")  # the error surfaces when the session ends


async def test_leaving_a_websocket_session_with_an_error_cancels_the_app() -> None:
    log: list[str] = []

    async def stubborn(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await trio.sleep_forever()  # never reads, so would never hear a disconnect
        finally:
            log.append("cancelled")

    async with AsyncTestClient(Triolette(routes=[WebSocketRoute("/ws", stubborn)])) as client:
        with pytest.raises(AssertionError, match="the test failed"):
            async with client.websocket_connect("/ws"):
                raise AssertionError("the test failed")
    assert log == ["cancelled"]


def chat_app() -> Triolette:
    """A chat room: every message goes to everyone connected, via a shared set of sockets."""
    members: set[WebSocket] = set()

    async def broadcast(text: str) -> None:
        for member in list(members):
            await member.send_text(text)

    async def chat(websocket: WebSocket) -> None:
        name = websocket.query_params["name"]
        await websocket.accept()
        members.add(websocket)
        try:
            await broadcast(f"{name} joined")
            while True:
                await broadcast(f"{name}: {await websocket.receive_text()}")
        except WebSocketDisconnect:
            pass
        finally:
            members.discard(websocket)
            with trio.CancelScope(shield=True):
                await broadcast(f"{name} left")

    return Triolette(routes=[WebSocketRoute("/chat", chat)])


async def test_a_chat_between_two_sessions() -> None:
    async with AsyncTestClient(chat_app()) as client:
        with trio.fail_after(5):
            async with client.websocket_connect("/chat?name=ann") as ann:
                assert await ann.receive_text() == "ann joined"
                async with client.websocket_connect("/chat?name=bob") as bob:
                    assert await bob.receive_text() == "bob joined"
                    assert await ann.receive_text() == "bob joined"
                    await ann.send_text("hi bob")
                    assert await bob.receive_text() == "ann: hi bob"
                    assert await ann.receive_text() == "ann: hi bob"
                    await bob.send_text("hi ann")
                    assert await ann.receive_text() == "bob: hi ann"
                    assert await bob.receive_text() == "bob: hi ann"
                assert await ann.receive_text() == "bob left"


async def test_chat_sessions_in_their_own_tasks() -> None:
    heard: list[str] = []

    async with AsyncTestClient(chat_app()) as client:

        async def ann(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with client.websocket_connect("/chat?name=ann") as ws:
                heard.append(await ws.receive_text())
                task_status.started()
                heard.append(await ws.receive_text())
                heard.append(await ws.receive_text())

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                await nursery.start(ann)
                async with client.websocket_connect("/chat?name=bob") as bob:
                    await bob.send_text("hi")
                    assert await bob.receive_text() == "bob joined"
                    assert await bob.receive_text() == "bob: hi"
    assert heard == ["ann joined", "bob joined", "bob: hi"]


async def test_websocket_pings_in_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    async def pinging(websocket: WebSocket) -> None:
        await websocket.accept()

        async def pings() -> None:
            while True:
                await trio.sleep(15)
                await websocket.send_json({"ping": trio.current_time()})

        websocket.nursery.start_soon(pings)
        async for text in websocket.iter_text():
            await websocket.send_json({"echo": text})

    async with (
        AsyncTestClient(Triolette(routes=[WebSocketRoute("/ws", pinging)])) as client,
        client.websocket_connect("/ws") as ws,
    ):
        assert [await ws.receive_json() for _ in range(3)] == [{"ping": 15}, {"ping": 30}, {"ping": 45}]
        await ws.send_text("still there")
        assert await ws.receive_json() == {"echo": "still there"}
    assert trio.current_time() == 45


# -- nothing outlives the client --------------------------------------------------------------


async def test_nothing_the_client_starts_outlives_it(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []

    async def service(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            log.append("service stopped")

    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        await app.nursery.start(service)
        yield

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for text in websocket.iter_text():
            await websocket.send_text(text)

    app = events_app(log)
    app.router.lifespan_context = lifespan  # swap in a lifespan for this test
    app.add_websocket_route("/ws", echo)

    before = all_tasks()
    async with AsyncTestClient(app) as client:
        during = all_tasks()
        assert len(during) > len(before)  # the lifespan, with its service in app.nursery
        async with client.stream("GET", "/events") as response, aclosing(response.aiter_bytes()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            await anext(chunks)
        async with client.websocket_connect("/ws") as ws:
            await ws.send_text("x")
            assert await ws.receive_text() == "x"
        # a stream the test forgot to close: the client closes it on the way out
        left_open = await client.send(client.build_request("GET", "/events"), stream=True)
        async with aclosing(left_open.aiter_bytes()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            assert await anext(chunks) == b"data: 0\n\n"
        assert all_tasks() - during  # the forgotten stream's app is running
    assert all_tasks() == before
    assert log.count("cancelled: client disconnected") == 1  # the stream closed by the test
    # the stream the client closed: its response was incomplete, so its app was cancelled
    assert log.count("cancelled: the test client closed with the response incomplete") == 1
    assert log[-1] == "service stopped"


async def test_a_cancelled_test_leaves_nothing_behind(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    before = all_tasks()
    with trio.move_on_after(2.5):
        async with AsyncTestClient(events_app(log)) as client, client.stream("GET", "/events") as response:
            async for chunk in response.aiter_bytes():
                log.append(chunk.decode().strip())
    assert log == ["data: 0", "data: 1", "data: 2", "cancelled: None", "finally at 2.5"]
    assert all_tasks() == before


def test_the_module_exports() -> None:
    import triolette.testclient

    assert "AsyncTestClient" in triolette.testclient.__all__
    assert json.loads(json.dumps(sorted(triolette.testclient.__all__))) == triolette.testclient.__all__


async def test_template_responses_show_their_template_and_context() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if "http.response.debug" in scope["extensions"]:
            await send({"type": "http.response.debug", "info": {"template": "index.html", "context": {"a": 1}}})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"page"})

    response = await AsyncTestClient(app).get("/")
    assert (response.text, response.template, response.context) == ("page", "index.html", {"a": 1})  # type: ignore[attr-defined]  # the test client adds .template/.context, as Starlette's


# -- protocol edges ---------------------------------------------------------------------------


async def test_websocket_sessions_report_what_the_app_got_wrong() -> None:
    async def ends_without_closing(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "bye"})

    async def garbled_denial(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403, "headers": []})
        await send({"type": "websocket.send", "text": "?"})

    async def sends_before_accepting(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.send", "text": "?"})

    async with AsyncTestClient(ends_without_closing).websocket_connect("/") as ws:
        assert await ws.receive() == {"type": "websocket.send", "text": "bye"}
        with pytest.raises(WebSocketDisconnect) as info:
            await ws.receive_text()
        assert (info.value.code, info.value.reason) == (1006, "The app ended without closing the connection.")
        with pytest.raises(ValueError, match='"mode" argument should be "text" or "binary", got \'yaml\''):
            await ws.send_json({}, mode="yaml")
        with pytest.raises(ValueError, match='"mode" argument should be "text" or "binary", got \'yaml\''):
            await ws.receive_json(mode="yaml")
        with pytest.raises(RuntimeError, match="open already"):
            await ws.__aenter__()
    await ws.__aexit__(None, None, None)  # a second exit does nothing
    denial_body = (
        r"""^Expected ASGI message "websocket\.http\.response\.body" while a denial response is sent, """
        r"""but got 'websocket\.send'$"""
    )
    with pytest.raises(ResponseProtocolError, match=denial_body):
        async with AsyncTestClient(garbled_denial).websocket_connect("/"):
            pytest.fail("not accepted")  # pragma: no cover
    accept = (
        r"""^Expected ASGI message "websocket\.accept", "websocket\.close" or "websocket\.http\.response\.start" """
        r"""before accept, but got 'websocket\.send'$"""
    )
    with pytest.raises(ResponseProtocolError, match=accept):
        async with AsyncTestClient(sends_before_accepting).websocket_connect("/"):
            pytest.fail("not accepted")  # pragma: no cover


async def test_lifespan_protocol_errors_are_explained() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()

    async def confused(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.shutdown.complete"})

    async def refuses(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "not today"})

    async def fails_to_stop(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.failed", "message": "stuck"})

    with pytest.raises(RuntimeError, match="The app's lifespan ended without answering"):
        await AsyncTestClient(silent).__aenter__()
    with pytest.raises(RuntimeError, match=r"Unexpected lifespan message 'lifespan\.shutdown\.complete'"):
        await AsyncTestClient(confused).__aenter__()
    with pytest.raises(RuntimeError, match="not today"):
        await AsyncTestClient(refuses).__aenter__()
    with pytest.raises(RuntimeError, match="stuck"):
        async with AsyncTestClient(fails_to_stop):
            pass


async def test_an_app_that_sends_after_completing_is_an_error() -> None:
    async def twice(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one"})
        await send({"type": "http.response.body", "body": b"two"})

    with pytest.raises(RuntimeError, match=r'^Received "http\.response\.body" after response completed\.$'):
        await AsyncTestClient(twice).get("/")


async def test_response_iterators_can_be_closed_halfway() -> None:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("abcdef")

    async with AsyncTestClient(Triolette(routes=[Route("/", home)])) as client:
        response = await client.get("/")
        async with aclosing(response.aiter_bytes(chunk_size=2)) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            assert [chunk async for chunk in chunks] == [b"ab", b"cd", b"ef"]
        async with aclosing(response.aiter_bytes(chunk_size=2)) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            assert await anext(chunks) == b"ab"
        async with client.stream("GET", "/") as streamed, aclosing(streamed.aiter_lines()) as lines:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            assert [line async for line in lines] == ["abcdef"]


async def test_a_client_closing_while_another_task_holds_a_stream() -> None:
    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    client = AsyncTestClient(Triolette(routes=[Route("/", home)]))
    opened, release = trio.Event(), trio.Event()

    async def holder() -> None:
        async with client.stream("GET", "/"):
            opened.set()
            await release.wait()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder)
            await opened.wait()
            with pytest.raises(RuntimeError, match="1 streamed response\\(s\\) opened in another task are still open"):
                await client.aclose()
            release.set()


async def test_leaving_the_client_raises_what_a_forgotten_stream_raised() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            for step in ("startup", "shutdown"):
                await receive()
                await send({"type": f"lifespan.{step}.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()  # the request
        message = await receive()  # the client closing hands it the disconnect
        raise KeyError(f"the stream broke on {message['type']}")

    with pytest.raises(KeyError, match=r"the stream broke on http\.disconnect"):
        async with AsyncTestClient(broken) as client:
            await client.send(client.build_request("GET", "/"), stream=True)


async def test_a_client_that_was_never_entered_can_be_exited() -> None:
    client = AsyncTestClient(Triolette())
    await client.__aexit__()
    assert client.is_closed


async def test_task_group_keeps_several_failures_together() -> None:
    from triolette._testing import task_group

    async def fail(n: int) -> None:
        raise ValueError(n)

    with pytest.RaisesGroup(ValueError, ValueError):
        async with task_group("test") as nursery:
            nursery.start_soon(fail, 1)
            nursery.start_soon(fail, 2)


# -- the order of the app's messages: the Outbox table, in Starlette's client's words --------------


@pytest.mark.parametrize(("messages", "text"), RESPONSE_OUT_OF_ORDER)
async def test_async_testclient_refuses_each_response_message_out_of_order(messages: list[Message], text: str) -> None:
    with pytest.raises(ResponseProtocolError) as info:
        await AsyncTestClient(sends(*messages)).get("/")
    assert str(info.value) == text
    assert isinstance(info.value, ProtocolError)
    assert isinstance(info.value, AssertionError)


async def test_a_response_completed_by_pathsend_ends_without_waiting_for_the_app(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.pathsend", "path": "/etc/hostname"})
        await trio.sleep(10)  # background work after a complete response

    async def no_body() -> AsyncIterator[bytes]:
        return
        yield b""  # type: ignore[unreachable]  # pragma: no cover - makes this an async generator

    exchange = HTTPExchange(app, http_scope(), no_body(), raise_server_exceptions=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(exchange.run)
        await exchange.start()
        assert await exchange.next_chunk() is None  # this client offers no pathsend: it does not read the file
        assert trio.current_time() == 0  # the response was complete: the client did not wait for the app
        await exchange.aclose()
        assert trio.current_time() == 10


ACCEPT: Message = {"type": "websocket.accept"}
WS_CLOSE: Message = {"type": "websocket.close", "code": 1000}
WS_SEND: Message = {"type": "websocket.send", "text": "x"}
DENIAL: Message = {"type": "websocket.http.response.start", "status": 403, "headers": []}
DENIAL_BODY: Message = {"type": "websocket.http.response.body", "body": b"no"}


@pytest.mark.parametrize(
    ("messages", "text"),
    [
        (
            [WS_SEND],
            """Expected ASGI message "websocket.accept", "websocket.close" or "websocket.http.response.start" """
            """before accept, but got 'websocket.send'""",
        ),
        (
            [ACCEPT, ACCEPT],
            """Expected ASGI message "websocket.send" or "websocket.close" while the connection is open, """
            """but got 'websocket.accept'""",
        ),
        (
            [ACCEPT, WS_CLOSE, WS_SEND],
            "Unexpected ASGI message 'websocket.send' after the connection is closed: nothing more may be sent.",
        ),
        (
            [WS_CLOSE, ACCEPT],
            "Unexpected ASGI message 'websocket.accept' after the connection is closed: nothing more may be sent.",
        ),
        (
            [DENIAL, WS_SEND],
            """Expected ASGI message "websocket.http.response.body" while a denial response is sent, """
            """but got 'websocket.send'""",
        ),
        (
            [DENIAL, DENIAL_BODY, WS_CLOSE],
            "Unexpected ASGI message 'websocket.close' after the connection is closed: nothing more may be sent.",
        ),
    ],
)
async def test_websocket_session_refuses_each_app_message_out_of_order(messages: list[Message], text: str) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        for message in messages:
            await send(message)

    with pytest.raises(ResponseProtocolError) as info:  # raised in the app's send, as a server does
        async with AsyncTestClient(app).websocket_connect("/") as session:
            await session.receive()  # the app's first message after the accept, or its error
    assert str(info.value) == text
    assert isinstance(info.value, ProtocolError)
    assert isinstance(info.value, AssertionError)


async def test_a_denial_response_in_parts_reaches_the_test_whole() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send(DENIAL)
        await send({"type": "websocket.http.response.body", "body": b"go ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"away"})

    with pytest.raises(WebSocketDenialResponse) as info:
        async with AsyncTestClient(app).websocket_connect("/"):
            pytest.fail("not accepted")  # pragma: no cover
    response: Any = info.value
    assert (response.status_code, response.content) == (403, b"go away")
