"""The test clients as Starlette 1.10's: ASGI 2 apps, trailers, debug info, lifespan re-entry, closing (issue 12)."""

from __future__ import annotations

from contextlib import aclosing, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from triolette import testclient
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.exceptions import TrioletteDeprecationWarning
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Route
from triolette.testclient import ASGI2App, ASGIInstance, AsyncTestClient, TestClient
from triolette.types import Message, Receive, Scope, Send


def test_testclient_exports_asgi_instance_and_asgi2_app() -> None:
    assert {"ASGI2App", "ASGIInstance"} <= set(testclient.__all__)
    assert testclient.ASGIInstance is ASGIInstance
    assert testclient.ASGI2App is ASGI2App


# -- ASGI 2 apps --------------------------------------------------------------------------------


class ASGI2Echo:
    """An ASGI 2 app: constructed with the scope, then called with receive and send."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, receive: Receive, send: Send) -> None:
        if self.scope["type"] == "lifespan":
            for step in ("startup", "shutdown"):
                await receive()
                await send({"type": f"lifespan.{step}.complete"})
            return
        if self.scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": "asgi2: " + message["text"]})
            await send({"type": "websocket.close", "code": 1000})
            return
        body = b"asgi2 " + self.scope["path"].encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


def asgi2_function(scope: Scope) -> ASGIInstance:
    async def instance(receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"function"})

    return instance


def test_asgi2_apps_work_in_the_test_client_http_and_websocket() -> None:
    client = TestClient(ASGI2Echo)  # type: ignore[arg-type]  # ASGI 2: run as ASGI 3; typed ASGIApp, as Starlette's
    response = client.get("/path")
    assert (response.status_code, response.text) == (200, "asgi2 /path")
    with client.websocket_connect("/ws") as websocket:
        websocket.send_text("hi")
        assert websocket.receive_text() == "asgi2: hi"
    response = TestClient(asgi2_function).get("/")  # type: ignore[arg-type]  # ASGI 2, as above
    assert (response.status_code, response.text) == (201, "function")


async def test_asgi2_apps_work_in_the_async_test_client_http_and_websocket() -> None:
    async with AsyncTestClient(ASGI2Echo) as client:  # type: ignore[arg-type]  # ASGI 2, as above
        response = await client.get("/async")
        assert (response.status_code, response.text) == (200, "asgi2 /async")
        async with client.websocket_connect("/ws") as websocket:
            await websocket.send_text("hey")
            assert await websocket.receive_text() == "asgi2: hey"
    response = await AsyncTestClient(asgi2_function).get("/")  # type: ignore[arg-type]  # ASGI 2, as above
    assert (response.status_code, response.text) == (201, "function")


# -- trailers ------------------------------------------------------------------------------------


def app_sending(*messages: Message) -> Any:
    """A raw ASGI app that records its scope's extensions and sends ``messages`` in order."""
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.update(scope.get("extensions", {}))
        for message in messages:
            await send(message)

    app.seen = seen  # type: ignore[attr-defined]  # read back by the test
    return app


START_WITH_TRAILERS: Message = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}


def test_trailers_are_collected_in_order_and_never_in_the_headers() -> None:
    app = app_sending(
        START_WITH_TRAILERS,
        {"type": "http.response.body", "body": b"data", "more_body": True},
        {"type": "http.response.body", "body": b"!"},
        {"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")], "more_trailers": True},
        {"type": "http.response.trailers", "headers": [(b"x-count", b"5"), (b"x-checksum", b"def")]},
    )
    response = TestClient(app).get("/")
    assert "http.response.trailers" in app.seen
    assert response.content == b"data!"
    assert response.extensions["http.response.trailers"] == [
        (b"x-checksum", b"abc"),
        (b"x-count", b"5"),
        (b"x-checksum", b"def"),
    ]
    assert "x-checksum" not in response.headers
    plain = TestClient(app_sending({"type": "http.response.start", "status": 200}, {"type": "http.response.body"}))
    assert "http.response.trailers" not in plain.get("/").extensions


async def test_the_response_completes_only_after_the_last_trailers() -> None:
    ended = trio.Event()
    seen_before_trailers: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START_WITH_TRAILERS)
        await send({"type": "http.response.body", "body": b"data"})
        await trio.testing.wait_all_tasks_blocked()  # the client has had every chance to finish
        seen_before_trailers.append(ended.is_set())
        await send({"type": "http.response.trailers", "headers": [(b"x-done", b"yes")]})

    with trio.fail_after(5):
        async with AsyncTestClient(app).stream("GET", "/") as response:
            trailers = response.extensions["http.response.trailers"]
            assert trailers == []
            assert await response.aread() == b"data"
            ended.set()
            assert trailers == [(b"x-done", b"yes")]
    assert seen_before_trailers == [False]  # the body was complete, the response was not


def test_partial_trailers_are_kept_when_the_app_fails() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(START_WITH_TRAILERS)
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-first", b"1")], "more_trailers": True})
        raise ValueError("failed between trailers")

    response = TestClient(app, raise_server_exceptions=False).get("/")
    assert response.content == b"data"
    assert response.extensions["http.response.trailers"] == [(b"x-first", b"1")]
    with pytest.raises(ValueError, match=r"^failed between trailers$"):
        TestClient(app).get("/")


BODY_DONE: Message = {"type": "http.response.body", "body": b"", "more_body": False}
TRAILERS_DONE: Message = {"type": "http.response.trailers", "headers": []}


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        (
            [{"type": "http.response.start", "status": 200}, TRAILERS_DONE],
            'Received "http.response.trailers" without declaring trailers.',
        ),
        (
            [START_WITH_TRAILERS, {"type": "http.response.body", "body": b"x", "more_body": True}, TRAILERS_DONE],
            'Received "http.response.trailers" before body completed.',
        ),
        (
            [START_WITH_TRAILERS, BODY_DONE, TRAILERS_DONE, TRAILERS_DONE],
            'Received "http.response.trailers" after response completed.',
        ),
        ([START_WITH_TRAILERS, BODY_DONE, BODY_DONE], 'Received "http.response.body" after body completed.'),
    ],
)
def test_trailers_out_of_order_raise_an_error_naming_the_rule(messages: list[Message], error: str) -> None:
    with pytest.raises(AssertionError) as info:
        TestClient(app_sending(*messages)).get("/")
    assert str(info.value) == error
    assert isinstance(info.value, RuntimeError)


# -- debug info ---------------------------------------------------------------------------------


def test_debug_info_is_in_response_extensions_template_and_context_only_when_present() -> None:
    info = {"template": "page.html"}
    app = app_sending(
        {"type": "http.response.debug", "info": info},
        {"type": "http.response.start", "status": 200},
        {"type": "http.response.body", "body": b"ok"},
    )
    response = TestClient(app).get("/")
    assert response.extensions["http.response.debug"] == {"template": "page.html"}
    assert response.template == "page.html"  # type: ignore[attr-defined]  # the test client adds .template/.context, as Starlette's
    assert not hasattr(response, "context")
    plain = TestClient(app_sending({"type": "http.response.start", "status": 200}, BODY_DONE)).get("/")
    assert "http.response.debug" not in plain.extensions
    assert not hasattr(plain, "template")
    assert not hasattr(plain, "context")


# -- the lifespan and closing ---------------------------------------------------------------------


def lifespan_app(events: list[str]) -> Triolette:
    @asynccontextmanager
    async def lifespan(app: Triolette) -> Any:
        events.append("startup")
        yield
        events.append("shutdown")

    async def home(request: Request) -> Response:
        return PlainTextResponse("home")

    return Triolette(routes=[Route("/", home)], lifespan=lifespan)


def test_leaving_with_ends_the_lifespan_and_the_client_stays_usable() -> None:
    events: list[str] = []
    client = TestClient(lifespan_app(events))
    with client:
        assert client.get("/").text == "home"
    assert events == ["startup", "shutdown"]
    assert client.get("/").text == "home"  # usable, without the lifespan
    with client as again:
        assert again is client
        assert client.get("/").text == "home"
    assert events == ["startup", "shutdown", "startup", "shutdown"]


def endless_app(log: list[str]) -> Any:
    """A raw app that streams until it is stopped; it logs what it hears and how it ends."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            for step in ("startup", "shutdown"):
                await receive()
                await send({"type": f"lifespan.{step}.complete"})
            return

        async def listen() -> None:
            await receive()  # the request
            log.append((await receive())["type"])

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen)
                await send({"type": "http.response.start", "status": 200, "headers": []})
                while True:
                    await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        except* trio.Cancelled:  # the loop has no other way out
            log.append("cancelled")
            raise

    return app


@pytest.mark.parametrize("how", ["close", "with"])
def test_closing_the_client_aborts_every_streamed_response_still_open(how: str) -> None:
    log: list[str] = []
    client = TestClient(endless_app(log))
    if how == "with":
        with client:
            responses = [client.send(client.build_request("GET", "/"), stream=True) for _ in range(2)]
            assert next(responses[0].iter_raw()) == b"tick"
    else:
        responses = [client.send(client.build_request("GET", "/"), stream=True) for _ in range(2)]
        assert next(responses[0].iter_raw()) == b"tick"
        client.close()
    assert log == ["http.disconnect", "cancelled"] * 2


async def test_closing_the_async_client_aborts_every_streamed_response_still_open() -> None:
    log: list[str] = []
    with trio.fail_after(5):
        async with AsyncTestClient(endless_app(log)) as client:
            response = await client.send(client.build_request("GET", "/"), stream=True)
            async with aclosing(response.aiter_raw()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
                assert await anext(chunks) == b"tick"
    assert log == ["http.disconnect", "cancelled"]


def complete_then_background(log: list[str], seconds: float) -> Any:
    """A raw app that completes its response, then works on for ``seconds`` (a bound, so that a
    test of its cancellation fails rather than hangs)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        try:
            await trio.sleep(seconds)  # background work
        except trio.Cancelled:
            log.append("cancelled")
            raise
        log.append("finished")

    return app


# Starlette 1.10's client cancels every request still open when it closes, a complete response's
# background work included (its own suite: test_closing_client_cancels_unclosed_response).
def test_closing_the_client_cancels_the_background_work_of_a_complete_response() -> None:
    log: list[str] = []
    client = TestClient(complete_then_background(log, 30))
    response = client.send(client.build_request("GET", "/"), stream=True)
    assert next(response.iter_raw()) == b"done"
    client.close()
    assert log == ["cancelled"]


async def test_closing_the_async_client_cancels_the_background_work_of_a_complete_response(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []
    client = AsyncTestClient(complete_then_background(log, 3600))
    with trio.fail_after(7200):
        response = await client.send(client.build_request("GET", "/"), stream=True)
        async with aclosing(response.aiter_raw()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            assert await anext(chunks) == b"done"
        await client.aclose()
    assert log == ["cancelled"]


# -- no response, timeouts, port 0, backpressure, disconnect after the response ----------------------


async def says_nothing(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()


def test_an_app_that_sends_no_response_is_an_error_or_an_empty_500() -> None:
    with pytest.raises(AssertionError, match=r"^TestClient did not receive any response\.$"):
        TestClient(says_nothing).get("/")
    response = TestClient(says_nothing, raise_server_exceptions=False).get("/")
    assert (response.status_code, response.content) == (500, b"")


async def test_async_client_an_app_that_sends_no_response_is_an_error_or_an_empty_500() -> None:
    with pytest.raises(AssertionError, match=r"^TestClient did not receive any response\.$"):
        await AsyncTestClient(says_nothing).get("/")
    response = await AsyncTestClient(says_nothing, raise_server_exceptions=False).get("/")
    assert (response.status_code, response.content) == (500, b"")


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse(repr(scope["server"]))(scope, receive, send)


def test_a_timeout_warns_that_the_test_client_ignores_it() -> None:
    client = TestClient(hello)
    with pytest.warns(TrioletteDeprecationWarning, match=r"^You should not use the 'timeout' argument with the Test"):
        assert client.get("/", timeout=5).status_code == 200
    with pytest.warns(TrioletteDeprecationWarning, match="it ignores timeouts"):
        client.request("GET", "/", timeout=None)


async def test_async_client_a_timeout_warns_that_the_test_client_ignores_it() -> None:
    client = AsyncTestClient(hello)
    with pytest.warns(TrioletteDeprecationWarning, match=r"^You should not use the 'timeout' argument with the Test"):
        assert (await client.get("/", timeout=5)).status_code == 200


def test_a_base_url_with_port_0_keeps_port_0_in_the_server() -> None:
    assert TestClient(hello, base_url="http://testserver:0").get("/").text == "['testserver', 0]"
    assert TestClient(hello, base_url="https://example.org").get("/").text == "['example.org', 443]"


async def test_every_body_message_waits_for_the_client_empty_ones_too() -> None:
    sent = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal sent
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(1000):
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            sent += 1
        await send({"type": "http.response.body", "body": b"end"})

    with trio.fail_after(5):
        async with AsyncTestClient(app).stream("GET", "/") as response:
            await trio.testing.wait_all_tasks_blocked()
            assert sent == 0  # the first empty body waits for the client to read
            assert await response.aread() == b"end"
    assert sent == 1000


async def test_receive_answers_disconnect_at_once_after_the_response_is_complete() -> None:
    log: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # the request
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        log.append((await receive())["type"])

    with trio.fail_after(5):
        async with AsyncTestClient(app).stream("GET", "/") as response:
            async with aclosing(response.aiter_raw()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
                assert await anext(chunks) == b"done"
            await trio.testing.wait_all_tasks_blocked()
            assert log == ["http.disconnect"]  # while the response is still open on the client's side


async def accepts_then_never_receives(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "hello"})
    await trio.sleep_forever()


async def test_leaving_a_websocket_session_whose_app_never_receives_does_not_hang(
    autojump_clock: trio.abc.Clock,
) -> None:
    from triolette._testclient_ws import DISCONNECT_GRACE

    with trio.fail_after(60):
        async with AsyncTestClient(accepts_then_never_receives).websocket_connect("/ws") as session:
            assert await session.receive_text() == "hello"
    assert trio.current_time() == DISCONNECT_GRACE  # the app had its chance to take the disconnect


def test_sync_client_leaving_a_websocket_session_whose_app_never_receives_does_not_hang() -> None:
    with TestClient(accepts_then_never_receives).websocket_connect("/ws") as session:
        assert session.receive_text() == "hello"


async def test_leaving_a_websocket_session_waits_for_an_app_that_takes_the_disconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        log.append((await receive())["type"])
        await trio.sleep(5)  # cleanup after the disconnect: not cut short
        log.append("cleaned up")

    async with AsyncTestClient(app).websocket_connect("/ws"):
        pass
    assert log == ["websocket.disconnect", "cleaned up"]
    assert trio.current_time() == 5


def test_closing_the_client_raises_what_an_aborted_stream_raised() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await receive()  # the request
        message = await receive()  # the client closing hands it the disconnect
        raise KeyError(f"broke on {message['type']}")

    client = TestClient(app)
    client.send(client.build_request("GET", "/"), stream=True)
    with pytest.raises(KeyError, match=r"broke on http\.disconnect"):
        client.close()
    assert client.is_closed


# -- found by running Starlette 1.10's own suite against triolette -----------------------------------


def streams_then_never_receives(log: list[str], seconds: float) -> Any:
    """A raw app that sends part of a body, then waits ``seconds`` without ever calling
    ``receive()`` (a bound, so that a test of its cancellation fails rather than hangs)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            log.append("cancelled")
            raise
        log.append("finished")

    return app


async def test_leaving_a_streamed_response_whose_app_never_receives_does_not_hang(
    autojump_clock: trio.abc.Clock,
) -> None:
    from triolette._testing import DISCONNECT_GRACE

    log: list[str] = []
    client = AsyncTestClient(streams_then_never_receives(log, 3600))
    with trio.fail_after(7200):
        async with client.stream("GET", "/") as response, aclosing(response.aiter_raw()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            assert await anext(chunks) == b"hello"
    assert log == ["cancelled"]
    assert trio.current_time() == DISCONNECT_GRACE  # the app had its chance to take the disconnect


def test_sync_client_leaving_a_streamed_response_whose_app_never_receives_does_not_hang() -> None:
    log: list[str] = []
    with TestClient(streams_then_never_receives(log, 30)).stream("GET", "/") as response:
        assert next(response.iter_raw()) == b"hello"
    assert log == ["cancelled"]


async def test_leaving_a_streamed_response_waits_for_an_app_that_takes_the_disconnect(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        await receive()  # the request
        log.append((await receive())["type"])
        await trio.sleep(5)  # cleanup after the disconnect: not cut short
        log.append("cleaned up")

    async with AsyncTestClient(app).stream("GET", "/") as response, aclosing(response.aiter_raw()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
        assert await anext(chunks) == b"hello"
    assert log == ["http.disconnect", "cleaned up"]
    assert trio.current_time() == 5


def background_forever_app(log: list[str], seconds: float) -> Triolette:
    """An app whose one route answers at once, then works in the background for ``seconds``
    (a bound, so that a test of its cancellation fails rather than hangs)."""

    async def forever() -> None:
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            log.append("cancelled")
            raise
        log.append("finished")

    async def homepage(request: Request) -> Response:
        return PlainTextResponse("hello", background=BackgroundTask(forever))

    return Triolette(routes=[Route("/", homepage)])


@pytest.mark.parametrize("how", ["close", "with"])
def test_closing_the_client_cancels_a_routes_background_task(how: str) -> None:
    log: list[str] = []
    client = TestClient(background_forever_app(log, 30))
    if how == "with":
        with client:
            response = client.send(client.build_request("GET", "/"), stream=True)
            assert next(response.iter_raw()) == b"hello"
    else:
        response = client.send(client.build_request("GET", "/"), stream=True)
        assert next(response.iter_raw()) == b"hello"
        client.close()
    assert log == ["cancelled"]


async def test_closing_the_async_client_cancels_a_routes_background_task(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    client = AsyncTestClient(background_forever_app(log, 3600))
    with trio.fail_after(7200):
        response = await client.send(client.build_request("GET", "/"), stream=True)
        async with aclosing(response.aiter_raw()) as chunks:  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            assert await anext(chunks) == b"hello"
        await client.aclose()
    assert log == ["cancelled"]


def test_request_is_disconnected_after_the_response_in_a_plain_asgi_app() -> None:
    seen: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        await request.body()
        seen.append(await request.is_disconnected())
        await PlainTextResponse("ok")(scope, receive, send)
        seen.append(await Request(scope, receive).is_disconnected())

    assert TestClient(app).post("/", content=b"body").text == "ok"
    assert seen == [False, True]
