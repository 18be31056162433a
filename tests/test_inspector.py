"""triolette.inspector: the live task tree, each end reason, the page, the stream, the guard.

Every request is driven by a hand-written server (``FakeServer``) in virtual time, so each
end reason and each snapshot is deterministic.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from tests.test_scope import FakeServer, call, http_scope
from triolette._testing import LifespanRunner
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.inspector import END_REASONS, Inspector
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Mount, Route, WebSocketRoute
from triolette.sse import EventSourceResponse
from triolette.websockets import WebSocket


def watched(*routes: Any, **options: Any) -> tuple[Triolette, Inspector]:
    app = Triolette(debug=True, routes=list(routes), **options)
    return app, Inspector(app)


def last(inspector: Inspector) -> dict[str, Any]:
    ended: list[dict[str, Any]] = inspector.snapshot()["ended"]
    return ended[0]


async def sleep_forever(request: Request) -> Response:
    await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def read_body(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"{len(body)} bytes")


# -- each end reason --------------------------------------------------------------------------


async def test_end_reason_completed(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", hello))
    server = FakeServer()
    server.request()
    await call(app, server)
    assert server.status == 200
    ended = last(inspector)
    assert (ended["method"], ended["path"], ended["status"], ended["reason"]) == ("GET", "/", 200, "completed")
    assert inspector.counts["completed"] == 1


async def test_end_reason_client_disconnected(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", sleep_forever))
    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, server)
        await trio.sleep(3)
        server.disconnect()
    ended = last(inspector)
    assert ended["reason"] == "client disconnected"
    assert ended["status"] is None
    assert ended["duration"] == 3
    assert inspector.counts["client disconnected"] == 1


async def test_end_reason_deadline_503(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", sleep_forever), timeout=2)
    server = FakeServer()
    server.request()
    await call(app, server)
    assert server.status == 503
    ended = last(inspector)
    assert (ended["status"], ended["reason"], ended["duration"]) == (503, "deadline", 2)


async def test_end_reason_body_timeout_408(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", read_body, methods=["POST"]), body_timeout=5)
    server = FakeServer()
    server.request(b"abc", more_body=True)  # the rest never comes
    await call(app, server, http_scope("POST", headers=[(b"content-length", b"10")]))
    assert server.status == 408
    assert (last(inspector)["status"], last(inspector)["reason"]) == (408, "body timeout")


async def test_end_reason_limit_413(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", read_body, methods=["POST"]), max_body_size=5)
    server = FakeServer()
    server.request(b"123456")
    await call(app, server, http_scope("POST", headers=[(b"transfer-encoding", b"chunked")]))
    assert server.status == 413
    assert (last(inspector)["status"], last(inspector)["reason"]) == (413, "limit")


async def test_end_reason_limit_413_on_declared_length(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", hello, methods=["POST"]), max_body_size=5)
    server = FakeServer()
    await call(app, server, http_scope("POST", headers=[(b"content-length", b"6")]))
    assert server.status == 413
    assert last(inspector)["reason"] == "limit"


async def test_end_reason_drained(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", sleep_forever))
    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, server)
        await trio.testing.wait_all_tasks_blocked()
        await app.drain(graceful_timeout=4)
    assert trio.current_time() == 4
    assert last(inspector)["reason"] == "drained"
    assert inspector.counts["drained"] == 1


async def test_end_reason_error(autojump_clock: trio.abc.Clock) -> None:
    async def broken(request: Request) -> Response:
        raise ValueError("broken endpoint")

    app, inspector = watched(Route("/", broken))
    server = FakeServer()
    server.request()
    with pytest.raises(ValueError, match="broken endpoint"):
        await call(app, server)
    assert server.status == 500
    assert (last(inspector)["status"], last(inspector)["reason"]) == (500, "error")


async def test_end_reason_error_for_a_handled_500(autojump_clock: trio.abc.Clock) -> None:
    async def answer_500(request: Request) -> Response:
        return PlainTextResponse("no", status_code=500)

    app, inspector = watched(Route("/", answer_500))
    server = FakeServer()
    server.request()
    await call(app, server)
    assert last(inspector)["reason"] == "error"


async def test_end_reason_cancelled_from_outside(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", sleep_forever))
    server = FakeServer()
    server.request()
    with trio.move_on_after(7):
        await call(app, server)
    assert last(inspector)["reason"] == "cancelled"


async def test_counts_by_reason_since_start_and_history_ring_buffer(autojump_clock: trio.abc.Clock) -> None:
    app = Triolette(debug=True, routes=[Route("/", hello)], timeout=1)
    inspector = Inspector(app, history=3)
    for _ in range(5):
        server = FakeServer()
        server.request()
        await call(app, server)
    snapshot = inspector.snapshot()
    assert [item["id"] for item in snapshot["ended"]] == [5, 4, 3]  # newest first, three kept
    assert snapshot["counts"] == {reason: (5 if reason == "completed" else 0) for reason in END_REASONS}


# -- the tree of a request in flight ---------------------------------------------------------------


async def test_in_flight_request_shows_method_path_age_deadline_phase_and_tasks(autojump_clock: trio.abc.Clock) -> None:
    async def helper() -> None:
        await trio.sleep_forever()

    async def fan_out(request: Request) -> Response:
        request.nursery.start_soon(helper, name="search service A")
        request.nursery.start_soon(helper, name="search service B")
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    app, inspector = watched(Route("/search", fan_out), timeout=10)
    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, server, http_scope("GET", "/search"))
        await trio.sleep(4)
        await trio.testing.wait_all_tasks_blocked()
        snapshot = inspector.snapshot()
        [request] = snapshot["in_flight"]
        assert (request["method"], request["path"], request["kind"]) == ("GET", "/search", "http")
        assert request["age"] == 4
        assert request["deadline_in"] == 6
        assert request["phase"] == "in handler"
        names = [task["name"] for task in request["tasks"]]
        assert "search service A" in names
        assert "search service B" in names
        assert any(name.endswith("_watch") for name in names)  # the disconnect watcher
        server.disconnect()
    assert inspector.snapshot()["in_flight"] == []
    assert last(inspector)["reason"] == "client disconnected"


async def test_nested_nursery_tasks_appear_under_their_parent(autojump_clock: trio.abc.Clock) -> None:
    async def parent() -> None:
        async with trio.open_nursery() as inner:
            inner.start_soon(trio.sleep_forever, name="grandchild")

    async def endpoint(request: Request) -> Response:
        request.nursery.start_soon(parent, name="parent")
        await trio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    app, inspector = watched(Route("/", endpoint))
    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, server)
        await trio.testing.wait_all_tasks_blocked()
        [request] = inspector.snapshot()["in_flight"]
        [parent_task] = [task for task in request["tasks"] if task["name"] == "parent"]
        assert parent_task["children"] == [{"name": "grandchild", "children": []}]
        assert request["deadline_in"] is None
        nursery.cancel_scope.cancel()


async def test_phase_reading_body(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", read_body, methods=["POST"]))
    server = FakeServer()
    server.request(b"abc", more_body=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, server, http_scope("POST", headers=[(b"content-length", b"10")]))
        await trio.testing.wait_all_tasks_blocked()
        assert inspector.snapshot()["in_flight"][0]["phase"] == "reading body"
        server.request(b"defghij")
    assert server.body == b"10 bytes"


async def test_phase_streaming(autojump_clock: trio.abc.Clock) -> None:
    release = trio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        await release.wait()
        yield b"second"

    async def stream(request: Request) -> Response:
        return StreamingResponse(chunks())

    app, inspector = watched(Route("/", stream))
    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, server)
        await trio.testing.wait_all_tasks_blocked()
        assert inspector.snapshot()["in_flight"][0]["phase"] == "streaming"
        release.set()
    assert server.body == b"firstsecond"


async def test_phase_background(autojump_clock: trio.abc.Clock) -> None:
    release = trio.Event()

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok", background=BackgroundTask(release.wait))

    app, inspector = watched(Route("/", endpoint))
    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, server)
        await trio.testing.wait_all_tasks_blocked()
        assert inspector.snapshot()["in_flight"][0]["phase"] == "background"
        release.set()
    assert last(inspector)["reason"] == "completed"


async def test_open_websockets_and_sse_streams_are_listed(autojump_clock: trio.abc.Clock) -> None:
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.receive_text()

    async def events(request: Request) -> Response:
        async def source() -> AsyncIterator[dict[str, str]]:
            yield {"data": "one"}
            await trio.sleep_forever()

        return EventSourceResponse(source())

    app, inspector = watched(WebSocketRoute("/ws", socket), Route("/events", events))
    ws_messages: trio.MemorySendChannel[Any]
    ws_messages, ws_inbox = trio.open_memory_channel[Any](10)
    ws_sent: list[Any] = []

    async def ws_send(message: Any) -> None:
        ws_sent.append(message)

    ws_scope = {**http_scope("GET", "/ws"), "type": "websocket", "subprotocols": []}
    ws_messages.send_nowait({"type": "websocket.connect"})
    sse_server = FakeServer()
    sse_server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, ws_scope, ws_inbox.receive, ws_send)
        nursery.start_soon(call, app, sse_server, http_scope("GET", "/events"))
        await trio.testing.wait_all_tasks_blocked()
        snapshot = inspector.snapshot()
        kinds = sorted((item["kind"], item["method"], item["path"]) for item in snapshot["in_flight"])
        assert kinds == [("sse", "GET", "/events"), ("websocket", "WS", "/ws")]
        assert (snapshot["websockets"], snapshot["sse"]) == (1, 1)
        assert {item["phase"] for item in snapshot["in_flight"]} == {"streaming"}
        ws_messages.send_nowait({"type": "websocket.disconnect", "code": 1000})
        sse_server.disconnect()
    assert sorted(item["reason"] for item in inspector.snapshot()["ended"]) == ["client disconnected"] * 2


async def test_services_in_app_nursery_and_draining_are_shown(autojump_clock: trio.abc.Clock) -> None:
    app, inspector = watched(Route("/", hello))
    runner = LifespanRunner(app)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await runner.startup()
        app.nursery.start_soon(trio.sleep_forever, name="store service")
        await trio.testing.wait_all_tasks_blocked()
        snapshot = inspector.snapshot()
        assert snapshot["services"] == [{"name": "store service", "children": []}]
        assert snapshot["draining"] is False
        await runner.shutdown()
    assert inspector.snapshot()["draining"] is True
    assert inspector.snapshot()["services"] == []


# -- the guard ------------------------------------------------------------------------------------


def test_inspector_is_refused_in_a_non_debug_app() -> None:
    with pytest.raises(RuntimeError, match="refused in a non-debug app: create the app with debug=True"):
        Inspector(Triolette())


def test_triolette_inspector_true_needs_debug() -> None:
    with pytest.raises(ValueError, match=r"inspector=True\) .* is refused in a non-debug app: pass debug=True"):
        Triolette(inspector=True)


def test_a_second_inspector_on_one_app_is_refused() -> None:
    app = Triolette(debug=True, inspector=True)
    with pytest.raises(RuntimeError, match="already has an inspector"):
        Inspector(app)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"allow": "yes"}, "allow= must be a callable taking the request, got 'yes'"),
        ({"history": 0}, "history must be a positive number of requests, got 0"),
        ({"history": True}, "history must be a positive number of requests, got True"),
        ({"interval": 0}, "interval must be a positive number of seconds, got 0"),
        ({"interval": "1"}, "interval must be a positive number of seconds, got '1'"),
    ],
)
def test_inspector_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        Inspector(Triolette(debug=True), **options)


async def test_allow_callable_opens_it_in_a_non_debug_app_and_answers_403_otherwise(
    autojump_clock: trio.abc.Clock,
) -> None:
    app = Triolette(routes=[Route("/", hello)])
    Inspector(app, allow=lambda request: request.headers.get("x-admin") == "yes")
    app.mount("/_triolette", app.inspector)  # type: ignore[arg-type]  # just set: not None
    refused = FakeServer()
    refused.request()
    await call(app, refused, http_scope("GET", "/_triolette/state.json"))
    assert refused.status == 403
    assert b"allow callable said no" in refused.body
    allowed = FakeServer()
    allowed.request()
    await call(app, allowed, http_scope("GET", "/_triolette/state.json", headers=[(b"x-admin", b"yes")]))
    assert allowed.status == 200
    assert json.loads(allowed.body)["draining"] is False


# -- the page, the JSON, the stream -----------------------------------------------------------------


async def test_triolette_inspector_true_mounts_the_page_and_json(autojump_clock: trio.abc.Clock) -> None:
    app = Triolette(debug=True, inspector=True, routes=[Route("/", hello)])
    page = FakeServer()
    page.request()
    await call(app, page, {**http_scope("GET", "/_triolette/")})
    assert page.status == 200
    assert b"<title>triolette inspector</title>" in page.body
    assert b'const BASE = "/_triolette";' in page.body
    first = FakeServer()
    first.request()
    await call(app, first)
    state = FakeServer()
    state.request()
    await call(app, state, http_scope("GET", "/_triolette/state.json"))
    snapshot = json.loads(state.body)
    # The inspector's own requests are kept out of the history: only the GET / is there.
    assert [(item["path"], item["reason"]) for item in snapshot["ended"]] == [("/", "completed")]
    [own] = snapshot["in_flight"]
    assert own["path"] == "/_triolette/state.json"
    assert own["inspector"] is True


async def test_event_stream_sends_a_snapshot_each_interval(autojump_clock: trio.abc.Clock) -> None:
    app = Triolette(debug=True, routes=[Mount("/_triolette", app=Triolette(debug=True))])
    inspector = Inspector(app, interval=2)
    app.mount("/inspect", inspector)
    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, server, http_scope("GET", "/inspect/events"))
        await trio.sleep(5)
        server.disconnect()
    events = [chunk for chunk in server.body.split(b"\r\n\r\n") if chunk.startswith(b"event: snapshot")]
    assert len(events) == 3  # at 0, 2 and 4 s
    data = json.loads(events[0].split(b"data: ", 1)[1])
    assert data["in_flight"][0]["kind"] == "sse"


async def test_event_stream_stays_through_the_drain_and_ends_when_only_itself_is_left(
    autojump_clock: trio.abc.Clock,
) -> None:
    release = trio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return PlainTextResponse("done")

    app = Triolette(debug=True, inspector=True, routes=[Route("/slow", slow)])
    stream, request = FakeServer(), FakeServer()
    stream.request()
    request.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, app, request, http_scope("GET", "/slow"))
        nursery.start_soon(call, app, stream, http_scope("GET", "/_triolette/events"))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(app.drain)
        await trio.sleep(3)
        release.set()
    assert trio.current_time() == 3.5  # the stream's next snapshot after the slow request ended
    snapshots = [
        json.loads(chunk.split(b"data: ", 1)[1])
        for chunk in stream.body.split(b"\r\n\r\n")
        if chunk.startswith(b"event: snapshot")
    ]
    assert snapshots[0]["draining"] is False
    assert snapshots[-2]["draining"] is True
    assert len(snapshots[-2]["in_flight"]) == 2
    assert [item["path"] for item in snapshots[-1]["in_flight"]] == ["/_triolette/events"]
    assert snapshots[-1]["ended"][0]["reason"] == "completed"  # answered during the drain
    assert request.body == b"done"


async def test_no_inspector_means_no_observer() -> None:
    app = Triolette(routes=[Route("/", hello)])
    assert app.inspector is None
    server = FakeServer()
    server.request()
    await call(app, server)
    assert server.status == 200


async def test_a_disconnect_after_the_whole_response_is_completed_not_client_disconnected(
    autojump_clock: trio.abc.Clock,
) -> None:
    app, inspector = watched(Route("/", hello))
    server = FakeServer()
    server.request()
    server.disconnect()  # already queued when the response ends: the watcher may read it
    await call(app, server)
    assert server.status == 200
    assert last(inspector)["reason"] == "completed"


async def test_websocket_closed_by_the_server_is_completed(autojump_clock: trio.abc.Clock) -> None:
    async def socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    app, inspector = watched(WebSocketRoute("/ws", socket))
    sent: list[Any] = []
    messages = [{"type": "websocket.connect"}]

    async def receive() -> Any:
        if messages:
            return messages.pop()
        await trio.sleep_forever()

    async def send(message: Any) -> None:
        sent.append(message)

    with trio.fail_after(5):
        await app({**http_scope("GET", "/ws"), "type": "websocket", "subprotocols": []}, receive, send)
    assert [message["type"] for message in sent] == ["websocket.accept", "websocket.close"]
    assert (last(inspector)["kind"], last(inspector)["reason"]) == ("websocket", "completed")


async def test_a_413_the_app_answers_itself_is_limit(autojump_clock: trio.abc.Clock) -> None:
    async def too_large(request: Request) -> Response:
        return PlainTextResponse("upload too large for this account", status_code=413)

    app, inspector = watched(Route("/", too_large))
    server = FakeServer()
    server.request()
    await call(app, server)
    assert last(inspector)["reason"] == "limit"


async def test_inspector_called_on_its_own_answers_and_passes_the_lifespan(autojump_clock: trio.abc.Clock) -> None:
    _app, inspector = watched(Route("/", hello))
    server = FakeServer()
    server.request()
    await call(inspector, server, http_scope("GET", "/state.json"))  # no RequestScope of the app around it
    assert server.status == 200
    assert json.loads(server.body)["in_flight"] == []
    runner = LifespanRunner(inspector)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await runner.startup()
        await runner.shutdown()
