"""triolette.serve and the worker behind it: options, loading the app, drain on a signal.

The worker tests serve on 127.0.0.1 (a port the OS picks) in the test's own trio run, with
real sockets and real time, every wait bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import triolette
from triolette._server import (
    HYPERCORN_BACKSTOP,
    AppImportError,
    ServerOptions,
    StartupFailed,
    _Supervisor,
    bound_unread_sends,
    load_app,
    serve,
    serve_in_trio,
)
from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Route
from triolette.types import Receive, Scope, Send

# -- options ------------------------------------------------------------------------------------


def test_defaults_fit_production() -> None:
    config = ServerOptions().hypercorn_config()
    assert config.bind == ["127.0.0.1:8000"]
    assert config.accesslog is None
    assert config.keep_alive_timeout == 5
    assert config.graceful_timeout == 30 + 5 + HYPERCORN_BACKSTOP  # the app's drain goes first


def test_options_reach_hypercorn() -> None:
    options = ServerOptions(
        host="::1", port=0, graceful_timeout=2, log_level="debug", access_log=True, keep_alive_timeout=9, root_path="/x"
    )
    config = options.hypercorn_config()
    assert config.bind == ["[::1]:0"]
    assert config.accesslog is not None
    assert config.loglevel == "DEBUG"
    assert config.keep_alive_timeout == 9
    assert config.root_path == "/x"
    assert config.graceful_timeout == 2 + 5 + HYPERCORN_BACKSTOP


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"host": ""}, r"host must be a host name or address, got ''"),
        ({"port": 70000}, r"port must be a whole number from 0 to 65535, got 70000"),
        ({"port": True}, r"port must be a whole number from 0 to 65535, got True"),
        ({"graceful_timeout": -1}, r"graceful_timeout must be a number of seconds >= 0, got -1"),
        ({"log_level": "loud"}, r"log_level must be one of critical, error, warning, info, debug; got 'loud'"),
        ({"keep_alive_timeout": 0}, r"keep_alive_timeout must be a positive number of seconds, got 0"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerOptions(**options)


@pytest.mark.parametrize("workers", [0, -2, True, 1.5])
def test_workers_must_be_a_whole_number(workers: Any) -> None:
    with pytest.raises(ValueError, match=r"workers must be a whole number >= 1, got"):
        serve(Triolette(), workers=workers)


def test_worker_processes_need_an_import_string() -> None:
    with pytest.raises(ValueError, match=r"workers=2 need the app as an import string, e\.g\. serve\('main:app'"):
        serve(Triolette(), workers=2)
    with pytest.raises(ValueError, match=r"workers=1 and reload=True need the app as an import string"):
        serve(Triolette(), reload=True)


def test_importing_triolette_does_not_import_hypercorn() -> None:
    import subprocess

    code = "import sys, triolette; assert 'hypercorn' not in sys.modules; print(triolette.serve.__module__)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert result.stdout.strip() == "triolette._server"
    assert triolette.serve is serve
    with pytest.raises(AttributeError, match=r"module 'triolette' has no attribute 'nothing'"):
        _ = triolette.nothing


# -- loading the app ----------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "shop.py").write_text(
        "from triolette.applications import Triolette\napp = Triolette()\nclass holder:\n    app = app\nnumber = 3\n"
    )
    (tmp_path / "broken.py").write_text("import not_installed_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("shop", "broken"):
        sys.modules.pop(name, None)


def test_load_app_finds_the_attribute(project: Path) -> None:
    import shop  # type: ignore[import-not-found]  # written by the project fixture

    assert load_app("shop:app") is shop.app
    assert load_app("shop:holder.app") is shop.app


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("shop", r"the app must be given as 'module:attribute' \(e\.g\. 'main:app'\), got 'shop'"),
        ("shop:", r"the app must be given as 'module:attribute'"),
        ("nowhere:app", r"could not import module 'nowhere' \(no module named 'nowhere'\); run from the directory"),
        ("shop.sub:app", r"could not import module 'shop\.sub' \(no module named 'shop\.sub'\)"),
        ("shop:application", r"module 'shop' has no attribute 'application'"),
        ("shop:number", r"'shop:number' is 3, not an ASGI app"),
    ],
)
def test_load_app_says_what_was_not_found(project: Path, path: str, message: str) -> None:
    with pytest.raises(AppImportError, match=message) as info:
        load_app(path)
    assert "\n" not in str(info.value)


def test_an_import_error_inside_the_module_is_not_hidden(project: Path) -> None:
    with pytest.raises(ModuleNotFoundError, match="not_installed_anywhere"):
        load_app("broken:app")


# -- one worker, in this trio run ----------------------------------------------------------------


def drain_app(log: list[str], **options: Any) -> Triolette:
    started = trio.Event()

    async def slow(request: Request) -> Response:
        started.set()
        try:
            await trio.sleep(float(request.query_params.get("s", "1")))
        except trio.Cancelled as exc:
            log.append(f"cancelled: {exc.reason}")
            raise
        log.append(f"slow answered, draining={request.app.draining.is_set()}")
        return PlainTextResponse("slow done")

    async def fast(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Triolette(routes=[Route("/slow", slow), Route("/", fast)], **options)
    app.state.started = started
    return app


@contextlib.asynccontextmanager
async def serving(app: Any, stop: trio.Event | None = None, **options: Any) -> AsyncIterator[tuple[str, trio.Nursery]]:
    opts = ServerOptions(port=0, log_level="warning", **options)
    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            binds = await nursery.start(partial(serve_in_trio, app, opts, stop=stop))
        yield binds[0], nursery


async def test_stop_drains_a_request_in_flight_and_refuses_new_connections() -> None:
    log: list[str] = []
    app = drain_app(log)
    stop = trio.Event()
    with trio.fail_after(10):
        async with serving(app, stop) as (url, _), httpx.AsyncClient() as client, trio.open_nursery() as nursery:
            answers: list[httpx.Response] = []

            async def slow() -> None:
                answers.append(await client.get(f"{url}/slow?s=1"))

            nursery.start_soon(slow)
            await app.state.started.wait()
            stop.set()
            await app.draining.wait()
            await trio.testing.wait_all_tasks_blocked()
            async with httpx.AsyncClient() as other:
                with pytest.raises(httpx.ConnectError):
                    await other.get(f"{url}/")
    assert answers[0].status_code == 200
    assert answers[0].text == "slow done"
    assert log == ["slow answered, draining=True"]


async def test_what_outlives_the_graceful_timeout_is_cancelled() -> None:
    log: list[str] = []
    app = drain_app(log)
    stop = trio.Event()
    with trio.fail_after(10):
        async with (
            serving(app, stop, graceful_timeout=0.2) as (url, _),
            httpx.AsyncClient() as client,
            trio.open_nursery() as nursery,
        ):

            async def slow() -> None:
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(f"{url}/slow?s=30")

            nursery.start_soon(slow)
            await app.state.started.wait()
            stop.set()
    assert log == ["cancelled: server shutting down"]


async def test_sigterm_drains() -> None:
    log: list[str] = []
    app = drain_app(log)
    with trio.fail_after(10):
        async with serving(app) as (url, _), httpx.AsyncClient() as client, trio.open_nursery() as nursery:
            answers: list[httpx.Response] = []

            async def slow() -> None:
                answers.append(await client.get(f"{url}/slow?s=0.5"))

            nursery.start_soon(slow)
            await app.state.started.wait()
            os.kill(os.getpid(), signal.SIGTERM)
    assert [a.status_code for a in answers] == [200]
    assert log == ["slow answered, draining=True"]


async def test_a_second_sigint_cancels_at_once() -> None:
    log: list[str] = []
    app = drain_app(log)
    with trio.fail_after(10):
        async with serving(app) as (url, _), httpx.AsyncClient() as client, trio.open_nursery() as nursery:

            async def slow() -> None:
                with contextlib.suppress(httpx.HTTPError):
                    await client.get(f"{url}/slow?s=30")

            nursery.start_soon(slow)
            await app.state.started.wait()
            os.kill(os.getpid(), signal.SIGINT)
            await app.draining.wait()
            os.kill(os.getpid(), signal.SIGTERM)  # a repeated SIGTERM is only noted
            await trio.sleep(0.1)
            assert log == []
            os.kill(os.getpid(), signal.SIGINT)
    assert log == ["cancelled: server shutting down"]


async def test_a_failed_startup_raises_with_the_message() -> None:
    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        raise RuntimeError("database unreachable")
        yield  # type: ignore[unreachable]  # pragma: no cover - the yield only makes this a generator

    with trio.fail_after(10), pytest.raises(StartupFailed, match=r"^RuntimeError: database unreachable$") as info:
        await serve_in_trio(Triolette(lifespan=lifespan), ServerOptions(port=0, log_level="critical"))
    assert isinstance(info.value.__cause__, RuntimeError)


def raw_app_leaving_the_lifespan(after: int) -> Any:
    """A plain ASGI app that returns from the lifespan scope after ``after`` messages, unanswered."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            for _ in range(after):
                await receive()
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"served"})

    return app


@pytest.mark.parametrize("after", [0, 1], ids=["at-once", "after-startup"])
async def test_a_raw_app_that_returns_from_the_lifespan_scope_is_served_without_lifespan(after: int) -> None:
    stop = trio.Event()
    with trio.fail_after(10):
        async with serving(raw_app_leaving_the_lifespan(after), stop) as (url, _), httpx.AsyncClient() as client:
            answer = await client.get(f"{url}/")
            stop.set()
    assert (answer.status_code, answer.text) == (200, "served")


def test_serve_runs_until_the_signal(project: Path) -> None:
    """serve() itself, from sync code: SIGTERM (sent from a trio task in the app) stops it."""
    (project / "selfstop.py").write_text(
        "import os, signal\n"
        "from contextlib import asynccontextmanager\n"
        "from triolette.applications import Triolette\n"
        "events = []\n"
        "@asynccontextmanager\n"
        "async def lifespan(app):\n"
        "    events.append('startup')\n"
        "    app.nursery.start_soon(lambda: _stop())\n"
        "    yield\n"
        "    events.append('shutdown')\n"
        "async def _stop():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "app = Triolette(lifespan=lifespan)\n"
    )
    try:
        serve("selfstop:app", port=0, log_level="warning")
        import selfstop  # type: ignore[import-not-found]  # written by this test

        assert selfstop.events == ["startup", "shutdown"]
    finally:
        sys.modules.pop("selfstop", None)


# -- a client that stops reading ----------------------------------------------------------------

needs_user_timeout = pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's")


@needs_user_timeout
def test_the_listening_sockets_get_the_longest_send_timeout_of_the_apps() -> None:
    with socket.socket() as sock:
        apps = [Triolette(send_timeout=2), Triolette(send_timeout=7.5)]
        assert bound_unread_sends([sock], apps) == 7.5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 7500


@needs_user_timeout
@pytest.mark.parametrize("apps", [[], [Triolette(send_timeout=None), Triolette()]], ids=["no app", "no limit"])
def test_without_a_send_timeout_the_sockets_are_left_alone(apps: list[Triolette]) -> None:
    with socket.socket() as sock:
        assert bound_unread_sends([sock], apps) is None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0


@needs_user_timeout
async def test_a_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    """hypercorn shields its socket writes from cancellation: without the kernel's timeout
    the endless response below would wait for this client for as long as it stays."""
    closed = trio.Event()

    async def endless(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"x" * 65536
            finally:
                closed.set()

        return StreamingResponse(chunks())

    app = Triolette(routes=[Route("/", endless)], send_timeout=1)
    stop = trio.Event()
    async with serving(app, stop) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        with trio.socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window fills at once
            await client.connect((host, int(port)))
            await client.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            assert (await client.recv(15)).startswith(b"HTTP/1.1 200")
            stopped_reading = trio.current_time()
            with trio.fail_after(15):
                await closed.wait()
            assert trio.current_time() - stopped_reading >= 1
        stop.set()


def test_a_worker_that_keeps_dying_is_restarted_with_growing_waits() -> None:
    from triolette._server import _Backoff

    backoff = _Backoff(first=0.5, cap=30.0, stable_after=10.0)
    assert [backoff.next_delay(ran_for=1.0) for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.next_delay(ran_for=600.0) == 0.5  # after a stable run, the first wait again
    assert backoff.next_delay(ran_for=2.0) == 1.0


def test_how_a_worker_ended_reads_in_the_log() -> None:
    from triolette._server import _how_it_ended

    assert _how_it_ended(-9) == "was killed by SIGKILL"
    assert _how_it_ended(1) == "exited with code 1"
    assert _how_it_ended(-999) == "exited with code -999"


# -- the supervisor of worker processes, with stand-in processes --------------------------------


class StandInProcess:
    """A worker process that 'runs' until join() and then has the exit code it was given."""

    pids = iter(range(900_001, 999_999))

    def __init__(self, exitcode: int, reason: str, args: tuple[Any, ...]) -> None:
        self.pid: int | None = next(self.pids)
        self.exitcode: int | None = None
        self._exit = exitcode
        self._reason = reason
        self._report = args[-1]

    def start(self) -> None:
        if self._reason:
            self._report.send(self._reason)

    def join(self) -> None:
        self.exitcode = self._exit


class StandInContext:
    """multiprocessing's spawn context, with processes that exit as told, in order."""

    def __init__(self, exits: list[tuple[int, str]]) -> None:
        self.exits = exits
        self.started: list[StandInProcess] = []

    def Pipe(self, duplex: bool) -> Any:
        import multiprocessing

        return multiprocessing.Pipe(duplex)

    def Process(self, target: Any, args: tuple[Any, ...], name: str) -> StandInProcess:
        exitcode, reason = self.exits.pop(0)
        process = StandInProcess(exitcode, reason, args)
        self.started.append(process)
        return process


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Supervisor]:
    made = _Supervisor("app:app", ServerOptions(port=0), workers=1, reload=False)

    async def wait_exit(process: StandInProcess) -> None:  # in this thread: virtual time stays exact
        await trio.lowlevel.checkpoint()
        process.join()

    monkeypatch.setattr(made, "wait_exit", wait_exit)
    yield made
    made.close_sockets()


async def test_the_supervisor_restarts_a_killed_worker_with_growing_waits_then_stops_on_a_fatal_exit(
    supervisor: Any, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    from triolette._server import STARTUP_FAILED_EXIT

    context = StandInContext([(-9, ""), (-9, ""), (STARTUP_FAILED_EXIT, "the application's startup failed: boom")])
    supervisor.context = context
    with trio.fail_after(10):
        code = await supervisor.run_generation()
    assert code == STARTUP_FAILED_EXIT
    assert supervisor.failure == "the application's startup failed: boom"
    first, second, third = context.started
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warnings == [
        f"Worker {first.pid} was killed by SIGKILL: starting a new one in 0.5 s",
        f"Worker {second.pid} was killed by SIGKILL: starting a new one in 1 s",
    ]
    assert trio.current_time() == 1.5
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert errors == [f"Worker {third.pid} exited with code {STARTUP_FAILED_EXIT}: stopping the others"]


async def test_the_supervisor_does_not_restart_a_worker_while_stopping(
    supervisor: Any, autojump_clock: trio.abc.Clock
) -> None:
    context = StandInContext([(-9, ""), (0, "")])
    supervisor.context = context
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervisor.run_generation)
            await trio.sleep(0.25)  # the first worker died; the second waits its 0.5 s
            supervisor.stopping = True
            supervisor.restart.set()
    assert len(context.started) == 1
    assert trio.current_time() == 0.25


async def test_a_broken_app_under_reload_is_answered_503_at_once_with_the_reason(supervisor: Any) -> None:
    supervisor.failure = "SyntaxError: invalid syntax (main.py, line 3)"
    host, port = supervisor.sockets.insecure_sockets[0].getsockname()[:2]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervisor.answer_unavailable)
            await trio.testing.wait_all_tasks_blocked()
            for linger in (False, True):  # a client that leaves at once, then one that resets
                rude = trio.socket.socket()
                await rude.connect((host, port))
                if linger:
                    rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                await rude.send(b"GET / HTTP/1.1\r\n")
                rude.close()
                await trio.testing.wait_all_tasks_blocked()
            for _ in range(2):  # every request, not just the first
                stream = await trio.open_tcp_stream(host, port)
                async with stream:
                    await stream.send_all(b"GET / HTTP/1.1\r\nhost: example.org\r\n\r\n")
                    answer = b""
                    while chunk := await stream.receive_some():
                        answer += chunk
                head, _, body = answer.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
                assert b"connection: close" in head
                assert body.decode().splitlines()[0] == (
                    "The app cannot start: SyntaxError: invalid syntax (main.py, line 3)"
                )
            nursery.cancel_scope.cancel()
