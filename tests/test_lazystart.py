"""The lazy start of the disconnect watcher (``_lazystart.py``): the probe, its fallback,
and stack dumps that still reach the endpoint."""

from __future__ import annotations

import subprocess
import sys
import types
from typing import Any

import pytest
import trio
import trio.testing

from tests.test_scope import FakeServer, call, http_scope
from triolette import _lazystart
from triolette._scope import get_request_scope
from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Route


def test_the_probe_reads_trios_schedule_point() -> None:
    assert _lazystart.SCHEDULE_POINT is not None
    assert _lazystart.probe() is _lazystart.SCHEDULE_POINT
    assert _lazystart.is_schedule_point(_lazystart.SCHEDULE_POINT)
    assert not _lazystart.is_schedule_point(object())


def test_the_probe_answers_none_when_trio_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    def changed() -> Any:
        raise TypeError("trio moved things around")

    monkeypatch.setattr(trio.lowlevel, "cancel_shielded_checkpoint", changed)
    assert _lazystart.probe() is None


def test_import_triolette_survives_a_probe_that_cannot_read_trio() -> None:
    script = "\n".join(
        [
            "import trio.lowlevel",
            "def changed():",
            "    raise TypeError('trio moved things around')",
            "trio.lowlevel.cancel_shielded_checkpoint = changed",
            "import triolette",
            "from triolette import _lazystart",
            "from triolette.applications import Triolette",
            "assert _lazystart.SCHEDULE_POINT is None",
            "print('imported', triolette.__name__)",
        ]
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported triolette"


WATCHER_STATES: list[str] = []


async def _hello(request: Request) -> Response:
    rs = get_request_scope(request.scope)
    assert rs is not None
    WATCHER_STATES.append(rs.watcher)
    return PlainTextResponse("hello")


async def test_a_request_answered_at_once_starts_no_watcher() -> None:
    WATCHER_STATES.clear()
    server = FakeServer()
    server.request()
    await call(Triolette(routes=[Route("/", _hello)]), server)
    assert (server.status, server.handed_out) == (200, 0)  # nobody read: no watcher ran
    assert WATCHER_STATES == ["idle"]


async def test_without_the_probe_the_watcher_starts_eagerly_and_still_works(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    monkeypatch.setattr(_lazystart, "SCHEDULE_POINT", None)
    WATCHER_STATES.clear()
    server = FakeServer()
    server.request()
    await call(Triolette(routes=[Route("/", _hello)]), server)
    assert server.status == 200
    assert WATCHER_STATES == ["running"]  # started before the app ran

    cancelled: list[str] = []

    async def slow(request: Request) -> Response:
        try:
            await trio.sleep(10)
        except trio.Cancelled as exc:
            cancelled.append(str(exc.reason))
            raise
        return PlainTextResponse("late")  # pragma: no cover

    server = FakeServer()
    server.request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, Triolette(routes=[Route("/", slow)]), server)
        await trio.sleep(1)
        server.disconnect()
    assert cancelled == ["client disconnected"]


async def test_a_stack_dump_of_the_request_task_shows_the_endpoint_frame() -> None:
    tasks: list[trio.lowlevel.Task] = []
    go_on = trio.Event()

    async def endpoint_that_waits(request: Request) -> Response:
        tasks.append(trio.lowlevel.current_task())
        await go_on.wait()
        return PlainTextResponse("done")

    server = FakeServer()
    server.request()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, Triolette(routes=[Route("/", endpoint_that_waits)]), server, http_scope())
            await trio.testing.wait_all_tasks_blocked()
            names = [frame.f_code.co_name for frame, _ in tasks[0].iter_await_frames()]
            go_on.set()
    # The request's own frame, then (through the relay) the app down to the endpoint, which
    # is waiting: the dump does not stop at the relay.
    assert "run" in names
    assert names.index("endpoint_that_waits") > names.index("run")
    assert names.index("wait") > names.index("endpoint_that_waits")  # and on, into trio.Event.wait
    assert server.status == 200


class Owner:
    """A ``_lazystart.Watched`` that writes down what it is asked."""

    def __init__(self, needed: bool) -> None:
        self.needed = needed
        self.log: list[object] = []

    def watcher_needed(self, trap: object) -> bool:
        self.log.append(trap)
        return self.needed

    def start_watcher(self) -> None:
        self.log.append("start")


async def test_a_generator_based_awaitable_is_driven_too() -> None:
    @types.coroutine
    def generator_app() -> Any:
        yield from trio.lowlevel.checkpoint().__await__()  # noqa: ASYNC105 - a generator-based coroutine

    owner = Owner(needed=True)
    await _lazystart.drive(generator_app(), owner)
    assert owner.log[-1] == "start"


async def test_another_kind_of_awaitable_starts_the_watcher_at_once() -> None:
    class Awaitable:
        def __await__(self) -> Any:
            return trio.lowlevel.checkpoint().__await__()  # noqa: ASYNC105 - awaited by whoever awaits this

    owner = Owner(needed=False)
    await _lazystart.drive(Awaitable(), owner)
    assert owner.log == ["start"]  # never asked: started before the first step


def test_the_relay_passes_send_throw_and_close_on_and_looks_once() -> None:
    closed: list[str] = []

    @types.coroutine
    def app() -> Any:
        try:
            while True:
                try:
                    yield "trap"
                except KeyError:
                    yield "after the throw"
        finally:
            closed.append("closed")

    owner = Owner(needed=True)
    relay = _lazystart._Relay(app(), owner)
    assert iter(relay) is relay
    awaited: object = relay.__await__()
    assert awaited is relay  # awaited directly: no generator between the caller and the relay
    assert next(relay) == "trap"
    assert relay.throw(KeyError("k")) == "after the throw"
    assert relay.send(None) == "trap"
    assert owner.log == ["trap", "start"]  # watcher_needed() asked once; start_watcher() called once
    assert relay.cr_frame is not None  # a generator-based coroutine shows its frame too
    assert relay.cr_await is None
    relay.close()
    assert closed == ["closed"]


def test_a_relay_started_without_a_watcher_job_never_starts_it() -> None:
    @types.coroutine
    def app() -> Any:
        yield "one"
        yield "two"

    owner = Owner(needed=False)
    relay = _lazystart._Relay(app(), owner)
    assert [next(relay), relay.send(None)] == ["one", "two"]
    with pytest.raises(StopIteration):
        relay.send(None)
    assert "start" not in owner.log
