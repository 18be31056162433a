"""The demo board: pages, sign-in, cards, attachments, live feed, chat, export, deadline."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from examples.board.app import create_app
from triolette.applications import Triolette
from triolette.testclient import AsyncTestClient, TestClient


@pytest.fixture
def board(tmp_path: Path) -> Triolette:
    return create_app(tmp_path, secret_key="test-secret", export_step_seconds=1)


@pytest.fixture
async def client(board: Triolette) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(board) as client:
        await client.post("/signin", data={"name": "ada"})
        yield client


def test_first_run_creates_the_database_and_asks_to_sign_in(tmp_path: Path) -> None:
    app = create_app(tmp_path / "fresh", secret_key="s")
    with TestClient(app) as client:
        response = client.get("/")
        assert response.url.path == "/signin"
        assert "Your name" in response.text
        assert client.get("/static/board.css").status_code == 200
    assert (tmp_path / "fresh" / "board.sqlite3").is_file()


def test_sign_in_rejects_an_empty_name(board: Triolette) -> None:
    with TestClient(board) as client:
        response = client.post("/signin", data={"name": "  "})
    assert response.status_code == 400
    assert "1 to 40 characters" in response.text


def test_cards_with_attachments_survive_a_restart(board: Triolette, tmp_path: Path) -> None:
    with TestClient(board) as client:
        client.post("/signin", data={"name": "ada"})
        page = client.post(
            "/cards",
            data={"title": "Write <docs>", "body": "all of them"},
            files={"attachment": ("notes.txt", b"remember the milk", "text/plain")},
        )
        assert page.status_code == 200
        assert "Write &lt;docs&gt;" in page.text  # autoescaped
    again = create_app(tmp_path, secret_key="test-secret")
    with TestClient(again) as client:
        client.post("/signin", data={"name": "bob"})
        assert "Write &lt;docs&gt;" in client.get("/").text
        download = client.get("/attachments/1")
    assert download.content == b"remember the milk"
    assert download.headers["content-disposition"] == 'attachment; filename="notes.txt"'


def test_adding_a_card_needs_a_user_and_a_title(board: Triolette) -> None:
    with TestClient(board) as client:
        assert client.post("/cards", data={"title": "x"}).status_code == 401
        client.post("/signin", data={"name": "ada"})
        assert client.post("/cards", data={"title": ""}).status_code == 400
        assert client.post("/cards/99/move", data={"column": "done"}).status_code == 404
        assert client.post("/cards/1/move", data={"column": "nowhere"}).status_code == 400
        assert client.get("/attachments/5").status_code == 404


async def test_a_card_created_in_one_tab_shows_up_live_in_another(client: AsyncTestClient) -> None:
    with trio.fail_after(5):
        async with client.stream("GET", "/events") as feed:
            lines = feed.aiter_lines()
            assert await anext(lines) == ": subscribed"
            created = await client.post("/cards", data={"title": "Ship it"}, headers={"accept": "application/json"})
            assert created.status_code == 201
            moved = await client.post(f"/cards/{created.json()['id']}/move", data={"column": "done"})
            events = []
            async for line in lines:
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
                    if len(events) == 2:
                        break
    assert [(event["title"], event["column"]) for event in events] == [("Ship it", "todo"), ("Ship it", "done")]
    assert moved.json()["column"] == "done"


async def next_chat(socket: Any) -> Any:
    """The next chat line on ``socket``, past any presence update."""
    while True:
        message = await socket.receive_json()
        if message["type"] != "presence":
            return message


async def test_chat_between_two_people(board: Triolette) -> None:
    async with AsyncTestClient(board) as browser:  # one server, two people signed in in turn
        await browser.post("/signin", data={"name": "ada"})
        with trio.fail_after(5):
            async with browser.websocket_connect("/chat") as ada:
                await browser.post("/signin", data={"name": "bob"})
                async with browser.websocket_connect("/chat") as bob:
                    await ada.send_text("hello bob")
                    assert await next_chat(bob) == {"type": "chat", "author": "ada", "text": "hello bob"}
                    assert await next_chat(ada) == {"type": "chat", "author": "ada", "text": "hello bob"}
                    await bob.send_text("hi ada")
                    assert await next_chat(ada) == {"type": "chat", "author": "bob", "text": "hi ada"}
        page = await browser.get("/")
    assert "hello bob" in page.text  # the history is stored


async def test_chat_refuses_strangers(board: Triolette) -> None:
    from triolette.websockets import WebSocketDisconnect

    async with AsyncTestClient(board) as client:
        with pytest.raises(WebSocketDisconnect) as refused:
            async with client.websocket_connect("/chat"):
                pass  # pragma: no cover
    assert refused.value.code == 1008


async def test_export_reports_progress_then_offers_the_file(
    client: AsyncTestClient, autojump_clock: trio.abc.Clock
) -> None:
    for title in ("a", "b"):
        await client.post("/cards", data={"title": title})
    start = trio.current_time()
    job = (await client.post("/export")).json()
    seen = []
    async with client.stream("GET", job["progress"]) as progress:
        async for line in progress.aiter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[len("data: ") :]))
    assert seen[0] == {"progress": 0, "state": "running"}
    assert seen[-1] == {"progress": 100, "state": "done"}
    assert trio.current_time() - start == 2  # one virtual second per card
    csv = await client.get(f"/export/{job['id']}/board.csv")
    assert csv.text.splitlines() == ["id,title,column,author", "1,a,todo,ada", "2,b,todo,ada"]


async def test_an_export_in_progress_is_cancelled_at_shutdown(board: Triolette, autojump_clock: trio.abc.Clock) -> None:
    async with AsyncTestClient(board) as client:
        await client.post("/signin", data={"name": "ada"})
        await client.post("/cards", data={"title": "a"})
        job_id = (await client.post("/export")).json()["id"]
        assert (await client.get(f"/export/{job_id}/board.csv")).status_code == 409
        assert board.state.jobs[job_id].state == "running"
    assert board.state.jobs[job_id].state == "cancelled"


async def test_stats_has_a_deadline(client: AsyncTestClient, autojump_clock: trio.abc.Clock) -> None:
    assert (await client.get("/stats")).json() == {"todo": 0, "doing": 0, "done": 0}
    start = trio.current_time()
    late = await client.get("/stats", params={"delay": "5"})
    assert late.status_code == 503
    assert trio.current_time() - start == 1
