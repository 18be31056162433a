"""The access log of ``python -m triolette``: one line per request, also when the client closes at once."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing
from hypercorn.config import Config
from hypercorn.typing import ConnectionState, HTTPScope, ResponseSummary

from triolette._access_log import AccessLogger
from triolette._server import ServerOptions


def scope() -> HTTPScope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"user-agent", b"curl")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": ConnectionState({}),
        "extensions": {},
    }


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> tuple[AccessLogger, list[str]]:
    config = Config()
    config.accesslog = logging.getLogger("tests.access")
    caplog.set_level(logging.INFO, logger="tests.access")
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    config.accesslog.addHandler(Collect())
    return AccessLogger(config), lines


def statuses(lines: list[str]) -> list[str]:
    return [line.split('"GET / 1.1" ', 1)[1].split(" ", 1)[0] for line in lines]


async def test_the_access_log_has_one_line_when_the_client_closes_as_the_response_ends(
    access_log: tuple[AccessLogger, list[str]],
) -> None:
    logger, lines = access_log
    request = scope()
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            # hypercorn's reader sees the close first ("-"), its writer logs the response just after.
            nursery.start_soon(logger.access, request, None, 0.001)
            await trio.lowlevel.checkpoint()
            response: ResponseSummary = {"status": 200, "headers": []}
            nursery.start_soon(logger.access, request, response, 0.001)
    assert statuses(lines) == ["200"]


async def test_a_client_that_leaves_before_the_response_is_logged_once_with_a_dash(
    access_log: tuple[AccessLogger, list[str]],
) -> None:
    logger, lines = access_log
    with trio.fail_after(1):
        await logger.access(scope(), None, 0.001)
    assert statuses(lines) == ["-"]
    assert logger._closing == {}


async def test_a_response_without_a_close_is_logged_once(access_log: tuple[AccessLogger, list[str]]) -> None:
    logger, lines = access_log
    await logger.access(scope(), {"status": 404, "headers": []}, 0.001)
    assert statuses(lines) == ["404"]


def test_the_server_uses_the_one_line_access_logger() -> None:
    assert isinstance(ServerOptions(access_log=True).hypercorn_config().log, AccessLogger)


async def test_without_an_access_log_a_closing_client_is_not_held_up() -> None:
    logger = AccessLogger(Config())  # accesslog None: hypercorn's default
    with trio.testing.assert_no_checkpoints():
        await logger.access(scope(), None, 0.001)
    assert logger._closing == {}
