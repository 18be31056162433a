"""ServerErrorMiddleware: an unhandled exception becomes a 500 (a traceback page in debug), then is re-raised."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import trio

from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.middleware.errors import ServerErrorMiddleware
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse, Response
from triolette.routing import Route
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send


async def failing_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("Something went <wrong>")


def client_for(app: Any, **options: Any) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, **options)


def test_plain_500() -> None:
    response = client_for(ServerErrorMiddleware(failing_app)).get("/")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_the_error_is_reraised_for_the_server() -> None:
    with pytest.raises(RuntimeError, match="Something went <wrong>"):
        TestClient(ServerErrorMiddleware(failing_app)).get("/")


def test_debug_plain_text_traceback() -> None:
    response = client_for(ServerErrorMiddleware(failing_app, debug=True)).get("/")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/plain")
    assert "Traceback (most recent call last)" in response.text
    assert "RuntimeError: Something went <wrong>" in response.text


def test_debug_html_page_for_browsers() -> None:
    response = client_for(ServerErrorMiddleware(failing_app, debug=True)).get("/", headers={"accept": "text/html"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    assert "<title>RuntimeError: Something went &lt;wrong&gt;</title>" in page
    assert "in <b>failing_app</b>" in page
    assert 'class="line current"' in page
    assert "Something&nbsp;went&nbsp;&lt;wrong&gt;" in page  # the source line, escaped
    assert "<wrong>" not in page


def test_debug_from_the_application() -> None:
    def boom(request: Request) -> Response:
        raise ValueError("debug me")

    client = client_for(Triolette(debug=True, routes=[Route("/", boom)]))
    assert "ValueError: debug me" in client.get("/").text


def test_custom_500_handler_sync_and_async() -> None:
    async def async_handler(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc), "path": request.url.path}, status_code=500)

    def sync_handler(request: Request, exc: Exception) -> Response:
        return PlainTextResponse("sync handled", status_code=503)

    assert client_for(ServerErrorMiddleware(failing_app, handler=async_handler)).get("/x").json() == {
        "detail": "Something went <wrong>",
        "path": "/x",
    }
    response = client_for(ServerErrorMiddleware(failing_app, handler=sync_handler)).get("/")
    assert (response.status_code, response.text) == (503, "sync handled")


def test_handler_returning_none_sends_nothing() -> None:
    async def quiet(request: Request, exc: Exception) -> None:
        return None

    sent: list[Message] = []

    async def main() -> None:
        async def send(message: Message) -> None:
            sent.append(message)

        async def receive() -> Message:  # pragma: no cover - never read
            return {"type": "http.disconnect"}

        middleware = ServerErrorMiddleware(failing_app, handler=quiet)  # type: ignore[arg-type]  # returns no response
        with pytest.raises(RuntimeError, match="Something went"):
            await middleware({"type": "http", "headers": []}, receive, send)

    trio.run(main)
    assert sent == []


def test_no_500_once_the_response_has_started() -> None:
    async def late_failure(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("after start")

    with pytest.raises(RuntimeError, match="after start"):
        TestClient(ServerErrorMiddleware(late_failure)).get("/")

    def endpoint(request: Request) -> Response:
        def fail() -> None:
            raise RuntimeError("in background")

        return PlainTextResponse("sent", background=BackgroundTask(fail))

    response = client_for(Triolette(routes=[Route("/", endpoint)])).get("/")
    assert (response.status_code, response.text) == (200, "sent")


def test_other_scope_types_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    trio.run(ServerErrorMiddleware(app), {"type": "lifespan"}, None, None)  # type: ignore[arg-type]  # never called
    assert seen == ["lifespan"]


def test_base_exception_gets_the_plain_500_even_with_a_handler() -> None:
    middleware = ServerErrorMiddleware(failing_app, handler=lambda request, exc: None)  # type: ignore[arg-type]  # no response

    async def main() -> Response | None:
        return await middleware.build_response(Request({"type": "http", "headers": []}), KeyboardInterrupt())

    response = trio.run(main)
    assert response is not None
    assert (response.status_code, response.body) == (500, b"Internal Server Error")


def test_frame_html_and_format_line() -> None:
    middleware = ServerErrorMiddleware(failing_app)
    line = middleware.format_line(2, "    x = a < b\n", frame_lineno=10, frame_index=2)
    assert line == (
        '<div class="line current"><span class="lineno">10</span>'
        "&nbsp;&nbsp;&nbsp;&nbsp;x&nbsp;=&nbsp;a&nbsp;&lt;&nbsp;b</div>"
    )
    other = middleware.format_line(0, "y\n", frame_lineno=10, frame_index=2)
    assert other == '<div class="line"><span class="lineno">8</span>y</div>'

    frame = inspect.FrameInfo(None, "/src/<app>.py", 3, "handler", None, None)  # type: ignore[arg-type]  # no frame needed
    html = middleware.generate_frame_html(frame, is_collapsed=True)
    assert "File /src/&lt;app&gt;.py, line 3, in <b>handler</b>" in html
    assert 'style="display:none"' in html
    assert "display:none" not in middleware.generate_frame_html(frame, is_collapsed=False)


def test_html_for_an_exception_without_traceback() -> None:
    page = ServerErrorMiddleware(failing_app).generate_html(ValueError("never raised"))
    assert "<h1>500 Server Error</h1>" in page  # Starlette's headings
    assert "<h2>ValueError: never raised</h2>" in page
    assert 'class="frame"' not in page
    text = ServerErrorMiddleware(failing_app).generate_plain_text(ValueError("never raised"))
    assert text == "ValueError: never raised\n"


def asyncio_only_app() -> Triolette:
    import asyncio

    async def sleeps(request: Request) -> Response:
        await asyncio.sleep(1)
        raise AssertionError("unreachable under trio")  # pragma: no cover

    async def current_task(request: Request) -> Response:
        asyncio.current_task()
        raise AssertionError("unreachable under trio")  # pragma: no cover

    return Triolette(debug=True, routes=[Route("/sleep", sleeps), Route("/task", current_task)])


@pytest.mark.parametrize("path", ["/sleep", "/task"])
def test_no_running_event_loop_escaping_an_endpoint_says_triolette_runs_on_trio(path: str) -> None:
    import traceback

    from triolette.middleware.errors import _ASYNCIO_ONLY_NOTE

    with TestClient(asyncio_only_app()) as client, pytest.raises(RuntimeError, match="no running event loop") as info:
        client.get(path)
    assert info.value.__notes__ == [_ASYNCIO_ONLY_NOTE]
    logged = "".join(traceback.format_exception(info.value))  # what the server's error log prints
    assert logged.endswith(f"RuntimeError: no running event loop\n{_ASYNCIO_ONLY_NOTE}\n")
    assert "triolette runs on trio, not asyncio" in _ASYNCIO_ONLY_NOTE
    assert "Use trio or anyio, or a trio-compatible client; see docs/database.md" in _ASYNCIO_ONLY_NOTE


def test_no_running_event_loop_on_the_debug_page_says_triolette_runs_on_trio() -> None:
    from triolette.middleware.errors import _ASYNCIO_ONLY_NOTE

    client = client_for(asyncio_only_app())
    text = client.get("/sleep")
    assert text.status_code == 500
    assert f"RuntimeError: no running event loop\n{_ASYNCIO_ONLY_NOTE}\n" in text.text
    page = client.get("/sleep", headers={"accept": "text/html"})
    assert page.status_code == 500
    assert '<p class="note">triolette runs on trio, not asyncio: ' in page.text


def test_the_asyncio_note_is_added_once_and_only_to_event_loop_errors() -> None:
    from triolette.middleware.errors import _explain_asyncio_only_code

    error = RuntimeError("There is no current event loop in thread 'MainThread'.")
    _explain_asyncio_only_code(error)
    _explain_asyncio_only_code(error)  # a mounted app's middleware sees it again
    assert len(error.__notes__) == 1
    other = RuntimeError("something else")
    _explain_asyncio_only_code(other)
    assert not hasattr(other, "__notes__")


def test_500_handler_is_called_even_when_the_response_had_started() -> None:
    seen: list[str] = []

    async def fails() -> None:
        raise ValueError("background failed")

    async def endpoint(request: Request) -> Response:
        return Response(status_code=204, background=BackgroundTask(fails))

    async def report(request: Request, exc: Exception) -> Response:
        seen.append(f"{type(exc).__name__}: {exc}")
        return PlainTextResponse("handled", status_code=500)

    app = Triolette(routes=[Route("/", endpoint)], exception_handlers={Exception: report})
    response = client_for(app).get("/")
    assert response.status_code == 204  # the handler's 500 is not sent over the started response
    assert response.content == b""
    assert seen == ["ValueError: background failed"]
    with pytest.raises(ValueError, match=r"^background failed$"):
        TestClient(app).get("/")
    assert len(seen) == 2
