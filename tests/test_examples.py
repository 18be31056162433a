"""The examples in examples/ run and answer as their docstrings say."""

from __future__ import annotations

import trio

from examples.hello import app
from triolette.testclient import TestClient

from .conftest import call


def test_hello_answers() -> None:
    with TestClient(app) as client:
        response = client.get("/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"


async def test_hello_deadline_route_gives_503_past_its_timeout(autojump_clock: trio.abc.Clock) -> None:
    fast = await call(app, "/deadline", query=b"seconds=0")
    assert fast.status == 200
    start = trio.current_time()
    slow = await call(app, "/deadline", query=b"seconds=5")
    assert slow.status == 503
    assert slow.text == "Request timed out after 1 s"
    assert trio.current_time() - start == 1


async def test_slow_route_sleeps_in_virtual_time(autojump_clock: trio.abc.Clock) -> None:
    answer = await call(app, "/slow", query=b"seconds=30")
    assert answer.status == 200
    assert answer.body == b'{"slept":30.0}'
    assert trio.current_time() == 30
