"""Lifespan, app.nursery, mounted apps' lifespans and graceful drain (DESIGN.md invariant 7).

Everything runs in the test's own trio run, on virtual time: the lifespan is driven by
LifespanRunner, requests by HTTPExchange, exactly as a server would drive them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import Answer, http_scope
from triolette._lifespan import running_apps
from triolette._testing import HTTPExchange, LifespanRunner
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Host, Mount, Route, Router
from triolette.types import ASGIApp, Message, Receive, Scope, Send


async def request(app: ASGIApp, path: str = "/", state: dict[str, Any] | None = None) -> Answer:
    """One GET through ``app``, with the lifespan state copied in as a server does."""
    scope = http_scope(path)
    if state is not None:
        scope["state"] = dict(state)
    exchange = HTTPExchange(app, scope, _no_body(), raise_server_exceptions=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(exchange.run)
        await exchange.start()
        chunks = []
        while (chunk := await exchange.next_chunk()) is not None:
            chunks.append(chunk)
        await exchange.aclose()
    return Answer(exchange.status, {k.decode(): v.decode() for k, v in exchange.headers}, b"".join(chunks))


async def _no_body() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator


@contextlib.asynccontextmanager
async def lifespan_running(app: ASGIApp) -> AsyncIterator[LifespanRunner]:
    """Start the app's lifespan; shut it down on the way out."""
    runner = LifespanRunner(app)
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        await runner.startup()
        yield runner
        await runner.shutdown()


def recording_lifespan(events: list[str], name: str, state: dict[str, Any] | None = None) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any] | None]:
        events.append(f"{name} startup")
        try:
            yield state
        finally:
            events.append(f"{name} shutdown")

    return lifespan


# -- lifespan and app.nursery -----------------------------------------------------------------


async def test_yielded_state_reaches_request_state() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello"}

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(request.state.greeting)

    app = Triolette(routes=[Route("/", endpoint)], lifespan=lifespan)
    with trio.fail_after(5):
        async with lifespan_running(app) as runner:
            answer = await request(app, state=runner.state)
    assert answer.text == "hello"


async def test_a_service_started_at_startup_is_ready_and_cancelled_at_shutdown(autojump_clock: trio.abc.Clock) -> None:
    events: list[str] = []

    async def ticker(*, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.sleep(1)  # readiness takes a second
        task_status.started("ready")
        try:
            await trio.sleep_forever()
        except trio.Cancelled as exc:
            events.append(f"cancelled: {exc.reason}")
            raise
        finally:
            events.append("service finally")

    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        events.append(await app.nursery.start(ticker))
        yield
        events.append("lifespan exit")

    app = Triolette(lifespan=lifespan)
    with trio.fail_after(10):
        async with lifespan_running(app):
            assert trio.current_time() == 1
            assert events == ["ready"]
            await trio.sleep(5)
    assert events == ["ready", "lifespan exit", "cancelled: server shutting down", "service finally"]
    with pytest.raises(RuntimeError, match=r"app\.nursery is open only while the lifespan runs"):
        _ = app.nursery


async def test_a_startup_failure_is_reported_with_its_message() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        raise RuntimeError("database unreachable")
        yield  # type: ignore[unreachable]  # pragma: no cover - the yield only makes this a generator

    sent: list[Message] = []
    asked = False

    async def receive() -> Message:
        nonlocal asked
        assert not asked, "nothing is received after the startup failed"
        asked = True
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    with trio.fail_after(5), pytest.raises(RuntimeError, match="database unreachable"):
        await Triolette(lifespan=lifespan)(scope, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert sent[0]["message"].rstrip().endswith("RuntimeError: database unreachable")


async def test_a_shutdown_failure_is_reported() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        yield
        raise ValueError("could not flush")

    runner = LifespanRunner(Triolette(lifespan=lifespan))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            await runner.startup()
            with pytest.raises(ValueError, match="could not flush"):
                await runner.shutdown()


async def test_the_app_is_among_the_running_apps_while_its_lifespan_runs() -> None:
    app = Triolette()
    assert app not in running_apps()
    with trio.fail_after(5):
        async with lifespan_running(app):
            assert running_apps() == [app]
    assert running_apps() == []


# -- lifespans of mounted apps ------------------------------------------------------------------


async def test_mounted_lifespans_start_outer_to_inner_and_stop_inner_to_outer() -> None:
    events: list[str] = []
    inner = Triolette(lifespan=recording_lifespan(events, "inner"), routes=[])
    deep = Router(lifespan=recording_lifespan(events, "deep"))
    by_host = Triolette(lifespan=recording_lifespan(events, "host"))
    outer = Triolette(
        routes=[
            Mount("/inner", app=inner),
            Mount("/group", routes=[Mount("/deep", app=deep)]),
            Mount("/static", app=PlainTextResponse("not an app with a lifespan")),
            Host("api.example.org", app=by_host),
        ],
        lifespan=recording_lifespan(events, "outer"),
    )
    inner.mount("/again", outer)  # a cycle does not loop
    with trio.fail_after(5):
        async with lifespan_running(outer):
            assert events == ["outer startup", "inner startup", "deep startup", "host startup"]
            assert inner.nursery is not None
            assert running_apps() == [outer, inner, by_host]
    assert events[4:] == ["host shutdown", "deep shutdown", "inner shutdown", "outer shutdown"]


async def test_an_app_mounted_twice_runs_its_lifespan_once() -> None:
    events: list[str] = []
    shared = Triolette(lifespan=recording_lifespan(events, "shared"))
    outer = Triolette(routes=[Mount("/a", app=shared), Mount("/b", app=shared)])
    with trio.fail_after(5):
        async with lifespan_running(outer):
            pass
    assert events == ["shared startup", "shared shutdown"]


async def test_a_mounted_lifespan_state_reaches_requests_to_the_mounted_app() -> None:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(f"{request.state.outer} {request.state.inner}")

    events: list[str] = []
    inner = Triolette(routes=[Route("/", endpoint)], lifespan=recording_lifespan(events, "inner", {"inner": "in"}))
    outer = Triolette(routes=[Mount("/sub", app=inner)], lifespan=recording_lifespan(events, "o", {"outer": "out"}))
    with trio.fail_after(5):
        async with lifespan_running(outer) as runner:
            answer = await request(outer, "/sub/", state=runner.state)
    assert answer.text == "out in"


async def test_a_router_served_on_its_own_runs_the_lifespans_mounted_in_it() -> None:
    events: list[str] = []
    router = Router(routes=[Mount("/app", app=Triolette(lifespan=recording_lifespan(events, "mounted")))])
    with trio.fail_after(5):
        async with lifespan_running(router):
            assert events == ["mounted startup"]
    assert events == ["mounted startup", "mounted shutdown"]


async def test_a_failing_mounted_startup_fails_the_whole_startup_and_undoes_the_rest() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def broken(app: Any) -> AsyncIterator[None]:
        events.append("broken startup")
        raise OSError("port in use")
        yield  # type: ignore[unreachable]  # pragma: no cover - the yield only makes this a generator

    outer = Triolette(
        routes=[
            Mount("/ok", app=Triolette(lifespan=recording_lifespan(events, "ok"))),
            Mount("/broken", app=Triolette(lifespan=broken)),
        ],
        lifespan=recording_lifespan(events, "outer"),
    )
    runner = LifespanRunner(outer)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            with pytest.raises(OSError, match="port in use"):
                await runner.startup()
    assert events == ["outer startup", "ok startup", "broken startup", "ok shutdown", "outer shutdown"]


async def test_a_mounted_app_that_ends_its_lifespan_early_is_an_error() -> None:
    class Mounted(Router):
        async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
            await receive()  # and return without answering

    outer = Triolette(routes=[Mount("/m", app=Mounted(lifespan=recording_lifespan([], "m")))])
    runner = LifespanRunner(outer)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            with pytest.raises(RuntimeError, match=r"ended before its startup completed"):
                await runner.startup()


async def test_a_mounted_app_that_reports_a_failure_without_raising_fails_the_startup() -> None:
    class Mounted(Router):
        async def lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no config"})

    outer = Triolette(routes=[Mount("/m", app=Mounted(lifespan=recording_lifespan([], "m")))])
    runner = LifespanRunner(outer)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(runner.run)
            with pytest.raises(RuntimeError, match=r"failed at startup: no config"):
                await runner.startup()


# -- graceful drain (invariant 7) -----------------------------------------------------------------


def sleepy_app(log: list[str], seconds: float, **options: Any) -> Triolette:
    async def slow(request: Request) -> Response:
        try:
            await trio.sleep(seconds)
        except trio.Cancelled as exc:
            log.append(f"cancelled at {trio.current_time():g}: {exc.reason}")
            raise
        log.append(f"answered at {trio.current_time():g}")
        return PlainTextResponse("done")

    return Triolette(routes=[Route("/slow", slow)], **options)


async def test_drain_lets_a_request_in_flight_finish(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    app = sleepy_app(log, 2)
    answers: list[Answer] = []

    async def client() -> None:
        answers.append(await request(app, "/slow"))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await trio.testing.wait_all_tasks_blocked()
            assert app.in_flight == 1
            await trio.sleep(0.5)
            await app.drain()
            assert app.draining.is_set()
            assert trio.current_time() == 2
    assert log == ["answered at 2"]
    assert answers[0].status == 200


async def test_drain_cancels_what_outlives_the_graceful_timeout(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    app = sleepy_app(log, 100, graceful_timeout=5)

    async def client() -> None:
        with contextlib.suppress(Exception):
            await request(app, "/slow")

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await trio.testing.wait_all_tasks_blocked()
            await app.drain()
    assert log == ["cancelled at 5: server shutting down"]
    assert app.in_flight == 0


async def test_background_tasks_count_as_in_flight(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []

    async def cleanup() -> None:
        await trio.sleep(3)
        log.append(f"background done at {trio.current_time():g}")

    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("sent", background=BackgroundTask(cleanup))

    app = Triolette(routes=[Route("/", endpoint)])
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(request, app, "/")
            await trio.testing.wait_all_tasks_blocked()
            assert app.in_flight == 1
            await app.drain()
            log.append(f"drained at {trio.current_time():g}")
    assert log == ["background done at 3", "drained at 3"]


async def test_lifespan_shutdown_drains_before_leaving_the_lifespan_context(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        yield
        log.append(f"lifespan exit at {trio.current_time():g}")

    app = sleepy_app(log, 2, lifespan=lifespan)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, lifespan_running(app):
            nursery.start_soon(request, app, "/slow")
            await trio.testing.wait_all_tasks_blocked()
    assert log == ["answered at 2", "lifespan exit at 2"]


async def test_draining_is_set_in_mounted_apps_too(autojump_clock: trio.abc.Clock) -> None:
    seen: list[str] = []

    async def stream(request: Request) -> Response:
        await request.app.draining.wait()  # the mounted app's own event: say goodbye when it is set
        seen.append(f"goodbye at {trio.current_time():g}")
        return PlainTextResponse("bye")

    inner = Triolette(routes=[Route("/", stream)])
    outer = Triolette(routes=[Mount("/events", app=inner)])
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(request, outer, "/events/")
            await trio.sleep(7)
            await outer.drain()
    assert seen == ["goodbye at 7"]
    assert inner.draining.is_set()


async def test_several_drains_at_once_all_return_when_idle(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    app = sleepy_app(log, 4)
    finished: list[float] = []

    async def drain(grace: float | None) -> None:
        await app.drain(grace)
        finished.append(trio.current_time())

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(request, app, "/slow")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(drain, None)
            nursery.start_soon(drain, 10)
    assert finished == [4, 4]
    assert log == ["answered at 4"]


async def test_drain_with_zero_timeout_cancels_at_once(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    app = sleepy_app(log, 4)

    errors: list[BaseException] = []

    async def unanswered() -> None:  # cancelled before it started a response
        try:
            await request(app, "/slow")
        except* AssertionError as group:
            errors.extend(group.exceptions)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(unanswered)
            await trio.testing.wait_all_tasks_blocked()
            await app.drain(0)
    assert log == ["cancelled at 0: server shutting down"]
    assert [str(error) for error in errors] == ["TestClient did not receive any response."]


@pytest.mark.parametrize("bad", [-1, "5", True, float("nan")])
async def test_drain_rejects_a_bad_timeout(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"graceful_timeout must be a number of seconds >= 0, got"):
        await Triolette().drain(bad)


async def test_a_new_lifespan_after_a_drain_starts_undrained() -> None:
    app = Triolette()
    await app.drain()
    assert app.draining.is_set()
    with trio.fail_after(5):
        async with lifespan_running(app):
            assert not app.draining.is_set()


# -- outside trio ------------------------------------------------------------------------------


RUN_UNDER_TRIO = r"triolette runs under trio only, but was called from asyncio\. Serve it with 'python -m triolette"


def test_a_lifespan_outside_trio_fails_startup_with_the_fix() -> None:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    with pytest.raises(RuntimeError, match=RUN_UNDER_TRIO):
        asyncio.run(Triolette()(scope, receive, send))
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "hypercorn --worker-class trio" in sent[0]["message"]


def test_a_request_outside_trio_fails_with_the_fix() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent")

    with pytest.raises(RuntimeError, match=RUN_UNDER_TRIO):
        asyncio.run(Triolette()(http_scope(), receive, send))


def test_outside_any_event_loop_says_so() -> None:
    coroutine = Triolette()(http_scope(), None, None)  # type: ignore[arg-type]  # never called
    with pytest.raises(RuntimeError, match=r"called from outside any event loop"):
        coroutine.send(None)


def test_hypercorns_asyncio_worker_stops_with_the_message() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from hypercorn.utils import LifespanFailureError

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    with pytest.raises(LifespanFailureError, match=r"triolette runs under trio only.*--worker-class trio"):
        asyncio.run(serve(Triolette(), config, mode="asgi"))  # type: ignore[arg-type]  # hypercorn types an app with its own scope TypedDicts
