"""BaseHTTPMiddleware on the request nursery: streaming, body replay, cancellation both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import call, http_scope
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.middleware import Middleware
from triolette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Route, Router
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send


class AddHeader(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["x-middleware"] = "yes"
        return response


async def echo(request: Request) -> Response:
    return PlainTextResponse(await request.body())


def test_dispatch_sees_the_response_and_may_change_headers() -> None:
    app = Triolette(routes=[Route("/", echo, methods=["POST"])], middleware=[Middleware(AddHeader)])
    with TestClient(app) as client:
        response = client.post("/", content=b"hello")
    assert response.status_code == 200
    assert response.text == "hello"
    assert response.headers["x-middleware"] == "yes"


def test_downstream_sees_the_body_that_dispatch_read() -> None:
    seen = []

    async def reader(request: Request, call_next: RequestResponseEndpoint) -> Response:
        seen.append(await request.body())
        return await call_next(request)

    app = Triolette(
        routes=[Route("/", echo, methods=["POST"])], middleware=[Middleware(BaseHTTPMiddleware, dispatch=reader)]
    )
    with TestClient(app) as client:
        response = client.post("/", content=b"the body")
    assert seen == [b"the body"]
    assert response.text == "the body"


def test_an_exception_before_the_response_is_raised_from_call_next() -> None:
    caught = []

    async def boom(request: Request) -> Response:
        raise KeyError("downstream")

    async def catcher(request: Request, call_next: RequestResponseEndpoint) -> Response:
        try:
            return await call_next(request)
        except KeyError as exc:
            caught.append(exc)
            return PlainTextResponse("recovered", status_code=502)

    app = Triolette(routes=[Route("/", boom)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=catcher)])
    with TestClient(app) as client:
        response = client.get("/")
    assert response.status_code == 502
    assert response.text == "recovered"
    assert [type(exc) for exc in caught] == [KeyError]


async def test_an_app_that_answers_nothing_is_an_error() -> None:
    async def silent(scope: Scope, receive: Receive, send: Send) -> None:
        return

    async def passthrough(request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)

    app = BaseHTTPMiddleware(silent, dispatch=passthrough)
    with pytest.raises(RuntimeError, match=r"^No response returned\.$"):
        await call(app, "/")


async def test_body_streams_through_chunk_by_chunk(autojump_clock: trio.abc.Clock) -> None:
    async def ticks(request: Request) -> Response:
        async def numbers() -> AsyncIterator[bytes]:
            for n in range(3):
                yield b"%d" % n
                await trio.sleep(1)

        return StreamingResponse(numbers())

    app = Triolette(routes=[Route("/", ticks)], middleware=[Middleware(AddHeader)])
    answer = await call(app, "/")
    assert answer.chunks == [b"0", b"1", b"2"]
    assert answer.headers["x-middleware"] == "yes"
    assert trio.current_time() == 3


async def test_disconnect_mid_stream_cancels_middleware_and_endpoint(autojump_clock: trio.abc.Clock) -> None:
    cancelled: list[str] = []
    gone = trio.Event()
    sent: list[bytes] = []

    async def forever(request: Request) -> Response:
        async def numbers() -> AsyncIterator[bytes]:
            try:
                n = 0
                while True:
                    yield b"%d" % n
                    n += 1
                    await trio.sleep(1)
            except trio.Cancelled:
                cancelled.append("endpoint")
                raise

        return StreamingResponse(numbers())

    async def watching(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.body_iterator:  # type: ignore[attr-defined]  # a streaming Response, typed as Starlette's
                    yield chunk
            except trio.Cancelled:
                cancelled.append("middleware")
                raise

        return StreamingResponse(relay())

    app = Triolette(routes=[Route("/", forever)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=watching)])
    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append(message["body"])
            if len(sent) == 3:
                gone.set()

    with trio.fail_after(60):
        await app(http_scope("/"), receive, send)
    assert sent == [b"0", b"1", b"2"]
    assert sorted(cancelled) == ["endpoint", "middleware"]
    assert trio.current_time() == 2


async def test_background_task_of_the_downstream_response_runs_to_the_end(autojump_clock: trio.abc.Clock) -> None:
    done: list[float] = []

    async def later() -> None:
        await trio.sleep(5)
        done.append(trio.current_time())

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(later))

    app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(AddHeader)])
    answer = await call(app, "/")
    assert answer.text == "ok"
    assert done == [5.0]


async def test_a_discarded_downstream_response_stops_its_app(autojump_clock: trio.abc.Clock) -> None:
    stopped: list[str] = []

    async def endless(request: Request) -> Response:
        async def numbers() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"x"
                    await trio.sleep(1)
            finally:
                stopped.append("closed")

        return StreamingResponse(numbers())

    async def replace(request: Request, call_next: RequestResponseEndpoint) -> Response:
        await call_next(request)
        return PlainTextResponse("replaced")

    app = Triolette(routes=[Route("/", endless)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=replace)])
    with trio.fail_after(10):
        answer = await call(app, "/")
    assert answer.text == "replaced"
    assert stopped == ["closed"]


async def test_websocket_and_lifespan_pass_straight_through() -> None:
    seen = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    middleware = AddHeader(inner)
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]  # never called
    assert seen == ["lifespan"]


async def test_used_without_an_app_it_opens_its_own_request_scope() -> None:
    middleware = AddHeader(PlainTextResponse("bare"))
    answer = await call(middleware, "/")
    assert answer.text == "bare"
    assert answer.headers["x-middleware"] == "yes"


async def test_downstream_error_after_the_response_started_reaches_the_server() -> None:
    async def breaks(request: Request) -> Response:
        async def numbers() -> AsyncIterator[bytes]:
            yield b"first"
            await trio.testing.wait_all_tasks_blocked()
            raise ValueError("midway")

        return StreamingResponse(numbers())

    app = Triolette(routes=[Route("/", breaks)], middleware=[Middleware(AddHeader)])
    with pytest.raises(ValueError, match="midway"):
        await call(app, "/")


# -- messages passed on, and the order of the downstream's background work (issue 12) ------------


async def run_raw(app: Any, extensions: dict[str, Any], sent: list[Any] | None = None) -> list[Any]:
    """One request through ``app`` with a server that offers ``extensions``; the messages it got."""
    scope = http_scope("/")
    scope["extensions"] = extensions
    sent = [] if sent is None else sent
    request_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message)

    with trio.fail_after(10):
        await app(scope, receive, send)
    return sent


async def passthrough(request: Request, call_next: RequestResponseEndpoint) -> Response:
    return await call_next(request)


async def test_base_middleware_forwards_early_hints_at_once_dispatch_hint_first() -> None:
    async def endpoint(request: Request) -> Response:
        await request.send_early_hints("</app.css>; rel=preload")
        return PlainTextResponse("ok")

    async def hinting(request: Request, call_next: RequestResponseEndpoint) -> Response:
        await request.send_early_hints("</mw.css>; rel=preload")
        return await call_next(request)

    app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=hinting)])
    sent = await run_raw(app, {"http.response.early_hint": {}})
    assert [m["type"] for m in sent] == [
        "http.response.early_hint",
        "http.response.early_hint",
        "http.response.start",
        "http.response.body",
        "http.response.body",
    ]
    assert [m["links"] for m in sent[:2]] == [[b"</mw.css>; rel=preload"], [b"</app.css>; rel=preload"]]
    assert b"".join(m.get("body", b"") for m in sent[3:]) == b"ok"


async def test_base_middleware_passes_debug_info_on_before_the_start() -> None:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.debug", "info": {"template": "t.html", "context": {"a": 1}}})
        await PlainTextResponse("ok")(scope, receive, send)

    app = BaseHTTPMiddleware(endpoint, dispatch=passthrough)
    sent = await run_raw(app, {"http.response.debug": {}})
    assert [m["type"] for m in sent[:2]] == ["http.response.debug", "http.response.start"]
    assert sent[0]["info"] == {"template": "t.html", "context": {"a": 1}}


def test_base_middleware_keeps_template_and_context_for_the_test_client(tmp_path: Path) -> None:
    from triolette.templating import Jinja2Templates

    (tmp_path / "page.html").write_text("Hello {{ name }}")
    templates = Jinja2Templates(directory=str(tmp_path))

    async def page(request: Request) -> Response:
        return templates.TemplateResponse(request, "page.html", {"name": "you"})

    app = Triolette(routes=[Route("/", page)], middleware=[Middleware(AddHeader)])
    response = TestClient(app).get("/")
    assert response.text == "Hello you"
    assert response.headers["x-middleware"] == "yes"
    assert response.template.name == "page.html"  # type: ignore[attr-defined]  # the test client adds .template/.context, as Starlette's
    assert response.context["name"] == "you"  # type: ignore[attr-defined]  # the test client adds .template/.context, as Starlette's


async def test_base_middleware_forwards_pathsend_as_the_last_message(tmp_path: Path) -> None:
    from triolette.responses import FileResponse

    path = tmp_path / "file.txt"
    path.write_bytes(b"file content")

    async def endpoint(request: Request) -> Response:
        return FileResponse(path)

    app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(AddHeader)])
    sent = await run_raw(app, {"http.response.pathsend": {}})
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.pathsend"]
    assert sent[1]["path"] == str(path)
    assert (b"x-middleware", b"yes") in sent[0]["headers"]


async def test_base_middleware_reraises_what_the_downstream_raises_after_its_final_body() -> None:
    async def fails() -> None:
        raise ValueError("in the background")

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(fails))

    middleware = BaseHTTPMiddleware(Router([Route("/", endpoint)]), dispatch=passthrough)
    sent: list[Any] = []
    with pytest.raises(ValueError, match=r"^in the background$"):
        await run_raw(middleware, {}, sent)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body"]


def test_base_middleware_background_error_reaches_the_test_client_after_a_200() -> None:
    async def fails() -> None:
        raise ValueError("in the background")

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(fails))

    app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(AddHeader)])
    with pytest.raises(ValueError, match=r"^in the background$"):
        TestClient(app).get("/")
    response = TestClient(app, raise_server_exceptions=False).get("/")
    assert response.status_code == 200
    assert response.text == "ok"


async def test_base_middleware_downstream_background_starts_after_the_whole_response() -> None:
    events: list[Any] = []

    async def work() -> None:
        events.append("background")

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(work))

    async def slow_tail(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        inner = response.body_iterator  # type: ignore[attr-defined]  # a streaming Response, typed as Starlette's

        async def body() -> AsyncIterator[bytes]:
            async for chunk in inner:
                yield chunk
            await trio.testing.wait_all_tasks_blocked()  # the downstream had every chance to go on
            events.append("middleware body done")

        response.body_iterator = body()  # type: ignore[attr-defined]  # a streaming Response, typed as Starlette's
        return response

    app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=slow_tail)])
    sent = await run_raw(app, {}, events)
    assert [m if isinstance(m, str) else m["type"] for m in sent] == [
        "http.response.start",
        "http.response.body",
        "middleware body done",
        "http.response.body",
        "background",
    ]
    assert sent[3] == {"type": "http.response.body", "body": b"", "more_body": False}


def test_base_middleware_runs_a_background_task_set_on_the_call_next_response() -> None:
    events: list[str] = []

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(events.append, "endpoint"))

    async def with_background(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.background = BackgroundTask(events.append, "middleware")
        return response

    app = Triolette(
        routes=[Route("/", endpoint)], middleware=[Middleware(BaseHTTPMiddleware, dispatch=with_background)]
    )
    response = TestClient(app).get("/")
    assert response.text == "ok"
    assert events == ["middleware", "endpoint"]


async def test_base_middleware_passes_trailers_on_in_order_after_the_body() -> None:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data", "more_body": True})
        await send({"type": "http.response.early_hint", "links": [b"</late.css>; rel=preload"]})
        await send({"type": "http.response.body", "body": b"!"})
        await send({"type": "http.response.trailers", "headers": [(b"x-a", b"1")], "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-b", b"2")]})

    sent = await run_raw(BaseHTTPMiddleware(endpoint, dispatch=passthrough), {"http.response.trailers": {}})
    assert [m["type"] for m in sent] == [
        "http.response.start",
        "http.response.body",
        "http.response.early_hint",
        "http.response.body",
        "http.response.trailers",
        "http.response.trailers",
    ]
    assert sent[0]["trailers"] is True
    assert sent[3] == {"type": "http.response.body", "body": b"!"}
    assert [m["headers"] for m in sent[4:]] == [[(b"x-a", b"1")], [(b"x-b", b"2")]]


def test_base_middleware_trailers_reach_the_test_client() -> None:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})

    response = TestClient(BaseHTTPMiddleware(endpoint, dispatch=passthrough)).get("/")
    assert response.content == b"data"
    assert response.extensions["http.response.trailers"] == [(b"x-checksum", b"abc")]


async def test_base_middleware_downstream_receive_after_the_response_is_a_disconnect() -> None:
    heard: list[str] = []

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await PlainTextResponse("ok")(scope, receive, send)
        heard.append((await receive())["type"])  # after the middleware sent the whole response

    sent = await run_raw(BaseHTTPMiddleware(endpoint, dispatch=passthrough), {})
    assert b"".join(m.get("body", b"") for m in sent) == b"ok"
    assert heard == ["http.disconnect"]
