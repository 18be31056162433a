"""The connection driver's parts that need no socket: the app queue, the hypercorn check,
the fallback to hypercorn's worker, the options the driver reads."""

from __future__ import annotations

import logging
import sys
from typing import Any

import hypercorn.protocol
import hypercorn.protocol.h2
import pytest
import trio
import trio.testing

from triolette import _driver
from triolette._driver import _AppQueue, check_hypercorn
from triolette._server import ServerOptions, _pick_driver, largest_message_limit
from triolette.applications import Triolette
from triolette.routing import Mount

# -- what the driver relies on in hypercorn ------------------------------------------------------


def test_the_installed_hypercorn_has_everything_the_driver_uses() -> None:
    assert check_hypercorn() == [], "hypercorn changed under the driver: pin it, or adapt _driver.py"


def test_a_missing_hypercorn_attribute_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(hypercorn.protocol.h2.H2Protocol, "idle")
    assert check_hypercorn() == ["hypercorn's hypercorn.protocol.h2.H2Protocol has no attribute 'idle'"]


def test_a_changed_protocol_wrapper_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def changed(self: Any, app: Any, config: Any) -> None:  # pragma: no cover - never called
        pass

    monkeypatch.setattr(hypercorn.protocol.ProtocolWrapper, "__init__", changed)
    [problem] = check_hypercorn()
    assert problem.startswith("hypercorn.protocol.ProtocolWrapper.__init__ takes ['app', 'config']")


def test_without_what_it_needs_serve_falls_back_to_hypercorns_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hypercorn.trio.run import worker_serve

    assert _pick_driver() is _driver.serve_sockets
    monkeypatch.setattr(_driver, "check_hypercorn", lambda: ["hypercorn's X has no attribute 'y'"])
    with caplog.at_level(logging.WARNING, logger="triolette"):
        assert _pick_driver() is worker_serve
    assert caplog.messages == ["Serving with hypercorn's own trio worker: hypercorn's X has no attribute 'y'"]


# -- the app's receive queue ---------------------------------------------------------------------


def body(data: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


async def test_the_empty_last_body_chunk_merges_into_the_one_before_it() -> None:
    queue = _AppQueue(10)
    await queue.put(body(b"abc", True))
    await queue.put(body(b"", False))
    assert await queue.receive() == body(b"abc", False)


async def test_an_empty_last_chunk_after_the_app_took_the_one_before_is_passed_on() -> None:
    queue = _AppQueue(10)
    await queue.put(body(b"abc", True))
    assert await queue.receive() == body(b"abc", True)
    await queue.put(body(b"", False))
    assert await queue.receive() == body(b"", False)


async def test_put_waits_when_the_queue_is_full_and_disconnect_never_waits() -> None:
    queue = _AppQueue(2)
    put: list[int] = []

    async def producer() -> None:
        for n in range(3):
            await queue.put(body(b"%d" % n, True))
            put.append(n)
        await queue.put({"type": "http.disconnect"})
        put.append(-1)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            await trio.testing.wait_all_tasks_blocked()
            assert put == [0, 1]  # the third waits for room
            assert (await queue.receive())["body"] == b"0"
            await trio.testing.wait_all_tasks_blocked()
            assert put == [0, 1, 2, -1]  # the disconnect went past the limit
    assert [(await queue.receive())["type"] for _ in range(3)] == ["http.request", "http.request", "http.disconnect"]


async def test_receive_waits_for_a_message() -> None:
    queue = _AppQueue(2)
    got: list[dict[str, Any]] = []

    async def app() -> None:
        got.append(await queue.receive())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []
            await queue.put({"type": "http.disconnect"})
    assert got == [{"type": "http.disconnect"}]


async def test_a_put_parked_on_a_full_queue_is_released_by_the_disconnect() -> None:
    queue = _AppQueue(2)
    returned: list[int] = []

    async def reader() -> None:  # the connection's read loop, putting a body nobody takes
        for n in range(3):
            await queue.put(body(b"%d" % n, True))
            returned.append(n)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            assert returned == [0, 1]  # the third waits for room
            await queue.put({"type": "http.disconnect"})  # the connection closed
            await trio.testing.wait_all_tasks_blocked()
            assert returned == [0, 1, 2]  # released: the read loop goes on to the closed socket
    assert queue.state == _driver.CLOSED
    # The parked chunk was dropped (it came after the disconnect): the app gets what was queued,
    # then the disconnect.
    expected = [body(b"0", True), body(b"1", True), {"type": "http.disconnect"}]
    assert [await queue.receive() for _ in range(3)] == expected


async def test_after_the_disconnect_the_queue_applies_no_backpressure_and_drops_what_follows(
    autojump_clock: trio.abc.Clock,
) -> None:
    queue = _AppQueue(1)
    await queue.put(body(b"a", True))
    await queue.put({"type": "http.disconnect"})
    with trio.testing.assert_no_checkpoints():  # a full queue, yet nothing waits
        for _ in range(5):
            await queue.put(body(b"late", True))
        await queue.put(body(b"", False))
        await queue.put({"type": "http.disconnect"})
    assert [await queue.receive() for _ in range(2)] == [body(b"a", True), {"type": "http.disconnect"}]
    with trio.move_on_after(1) as nothing_more:
        await queue.receive()
    assert nothing_more.cancelled_caught


async def test_on_close_is_called_once_when_the_disconnect_is_put() -> None:
    queue = _AppQueue(10)
    calls: list[str] = []
    queue.on_close(lambda: calls.append("closed"))
    await queue.put(body(b"a", True))
    assert calls == []
    await queue.put({"type": "http.disconnect"})
    assert calls == ["closed"]
    await queue.put({"type": "http.disconnect"})
    assert calls == ["closed"]
    queue.on_close(lambda: calls.append("already closed"))  # registered late: called at once
    assert calls == ["closed", "already closed"]


async def test_a_forgotten_on_close_callback_is_not_called() -> None:
    queue = _AppQueue(10)
    calls: list[str] = []
    queue.on_close(lambda: calls.append("closed"))
    queue.forget()  # the ASGI call ended
    await queue.put({"type": "http.disconnect"})
    assert calls == []


async def test_a_put_waiting_for_room_probes_the_connection_every_interval(autojump_clock: trio.abc.Clock) -> None:
    probes: list[float] = []

    class Connection:
        async def probe(self) -> None:  # the third probe finds the peer gone: the connection closes
            probes.append(trio.current_time())
            if len(probes) == 3:
                await queue.put({"type": "http.disconnect"})

    queue = _AppQueue(1, Connection())
    await queue.put(body(b"a", True))
    with trio.fail_after(10):
        await queue.put(body(b"b", True))  # waits for room; nobody takes
    assert probes == [1.0, 2.0, 3.0]
    assert queue.state == _driver.CLOSED
    assert [await queue.receive() for _ in range(2)] == [body(b"a", True), {"type": "http.disconnect"}]


async def test_a_put_that_finds_room_does_not_probe(autojump_clock: trio.abc.Clock) -> None:
    probes: list[float] = []

    class Connection:
        async def probe(self) -> None:  # pragma: no cover - must not be called
            probes.append(trio.current_time())

    queue = _AppQueue(1, Connection())
    await queue.put(body(b"a", True))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(queue.put, body(b"b", True))
        await trio.sleep(0.5)
        assert await queue.receive() == body(b"a", True)
    assert probes == []
    assert await queue.receive() == body(b"b", True)


def test_the_peer_left_check_reads_the_tcp_state_or_a_pending_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:  # never connected: its TCP state is CLOSE
        assert _driver._peer_left(sock) is (_driver.TCP_INFO is not None)
        monkeypatch.setattr(_driver, "TCP_INFO", None)  # elsewhere: only a reset (a pending error) shows
        assert _driver._peer_left(sock) is False
    assert _driver._peer_left(sock) is True  # closed here: nothing more to wait for


# -- options -----------------------------------------------------------------------------------


def test_read_timeout_and_tls_reach_hypercorn() -> None:
    config = ServerOptions(read_timeout=7, certfile="c.pem", keyfile="k.pem").hypercorn_config()
    assert (config.read_timeout, config.certfile, config.keyfile) == (7, "c.pem", "k.pem")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"read_timeout": 0}, r"read_timeout must be a positive number of seconds \(or None\), got 0"),
        ({"certfile": "c.pem"}, r"TLS needs both certfile and keyfile, got certfile='c.pem', keyfile=None"),
    ],
)
def test_bad_driver_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerOptions(**options)


def test_hypercorn_gets_the_largest_websocket_message_limit_among_the_apps() -> None:
    inner = Triolette(websocket_max_message_size=8 * 2**20)
    outer = Triolette(routes=[Mount("/inner", inner)], websocket_max_message_size=2**20)
    assert largest_message_limit([outer, Triolette(websocket_max_message_size=3 * 2**20)]) == 8 * 2**20
    assert largest_message_limit([Triolette(websocket_max_message_size=2**20)]) == 2**20


def test_an_app_without_a_websocket_message_limit_lifts_hypercorns() -> None:
    assert largest_message_limit([Triolette(websocket_max_message_size=None)]) == sys.maxsize
    assert largest_message_limit([]) is None


def test_a_missing_hypercorn_enum_member_or_event_field_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    class RawData:  # an event class without the field the driver reads
        __dataclass_fields__: dict[str, Any] = {}

    monkeypatch.setattr(_driver, "ASGIHTTPState", object())
    monkeypatch.setattr(_driver, "RawData", RawData)
    assert check_hypercorn() == [
        "hypercorn.protocol.http_stream.ASGIHTTPState has no member 'REQUEST'",
        "hypercorn.events.RawData has no field 'data'",
    ]
