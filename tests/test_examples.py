"""The examples in examples/ run and answer as their docstrings say (virtual time)."""

from __future__ import annotations

import ast
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from examples import database, fanout, sse, streaming, websocket_echo
from examples.hello import app
from tests.conftest import call
from triolette.testclient import AsyncTestClient, TestClient

ROOT = Path(__file__).resolve().parent.parent


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


async def test_streaming_countdown_and_leaving_early(autojump_clock: trio.abc.Clock) -> None:
    async with AsyncTestClient(streaming.app) as client:
        whole = await client.get("/countdown", params={"start": "3"})
        assert whole.text == "3\n2\n1\n0\n"
        assert trio.current_time() == 4
        async with client.stream("GET", "/countdown", params={"start": "100"}) as response:
            seen = [chunk async for chunk in _first(response.aiter_text(), 2)]
    assert seen == ["100\n", "99\n"]
    assert streaming.stopped_early[-1] in (98, 99)


async def _first(chunks: AsyncIterator[str], n: int) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk
        n -= 1
        if n == 0:
            return


async def test_sse_clock_resumes_after_the_last_event_id(autojump_clock: trio.abc.Clock) -> None:
    data = []
    async with (
        AsyncTestClient(sse.app) as client,
        client.stream("GET", "/clock", headers={"last-event-id": "41"}) as response,
    ):
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data.append(json.loads(line.removeprefix("data: ")))
                if len(data) == 2:
                    break
    assert [event["tick"] for event in data] == [42, 43]


async def test_websocket_echo_and_heartbeat(autojump_clock: trio.abc.Clock) -> None:
    async with AsyncTestClient(websocket_echo.app) as client, client.websocket_connect("/echo") as ws:
        await ws.send_text("hi")
        assert await ws.receive_json() == {"type": "echo", "text": "hi"}
        assert await ws.receive_json() == {"type": "heartbeat"}
        assert trio.current_time() == 10


async def test_fanout_answers_with_the_fastest_and_cancels_the_rest(autojump_clock: trio.abc.Clock) -> None:
    async with AsyncTestClient(fanout.app) as client:
        fastest = (await client.get("/fastest")).json()
        assert fastest == {"fastest": "near", "elapsed": 0.05}
        assert trio.current_time() == 0.05
        assert (await client.get("/everything")).json() == ["far", "near", "very-far"]
        assert trio.current_time() == 5.05


def test_database_example_keeps_notes_in_sqlite_through_the_thread_pool(tmp_path: Path) -> None:
    app = database.create_app(str(tmp_path / "notes.sqlite3"))
    with TestClient(app) as client:
        assert client.get("/notes").json() == []
        added = client.post("/notes", data={"text": " buy tea "})
        assert added.status_code == 201
        assert added.json() == {"id": 1, "text": "buy tea"}
        assert client.post("/notes", data={"text": "  "}).status_code == 400
    with TestClient(database.create_app(str(tmp_path / "notes.sqlite3"))) as client:  # it was written to disk
        assert client.get("/notes").json() == [{"id": 1, "text": "buy tea"}]


EXAMPLES = sorted(
    path.relative_to(ROOT).as_posix()
    for path in (ROOT / "examples").rglob("*.py")
    if (path.name != "__init__.py" and path.parent.name == "examples") or path.name == "app.py"
)


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_example_says_how_to_run_it_and_is_linked_from_the_docs(example: str) -> None:
    docstring = ast.get_docstring(ast.parse((ROOT / example).read_text()))
    assert docstring is not None, f"{example} has no docstring"
    module = example.removesuffix(".py").replace("/", ".")
    assert f"python -m triolette {module}:app" in docstring, f"{example} does not say how to run it"
    assert "http://127.0.0.1:8000/" in docstring or "ws://127.0.0.1:8000/" in docstring, f"{example}: which URL?"
    assert f"(../{example})" in (ROOT / "docs" / "index.md").read_text(), f"docs/index.md does not link {example}"
