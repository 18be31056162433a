"""The board made real (issue 17): sign-in everywhere, a session key that survives restarts,
stale forms, edit/delete live, presence, export cancel, the slow search, the inspector panel."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import trio

from examples.board.app import create_app
from tests.board.test_board import next_chat
from triolette.applications import Triolette
from triolette.testclient import AsyncTestClient, TestClient

JSON = {"accept": "application/json"}
HTML = {"accept": "text/html"}


@pytest.fixture
def board(tmp_path: Path) -> Triolette:
    return create_app(tmp_path, secret_key="test-secret", export_step_seconds=1)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/attachments/1"),
        ("GET", "/events"),
        ("GET", "/stats"),
        ("GET", "/search?q=x"),
        ("POST", "/export"),
        ("GET", "/export/1/progress"),
        ("POST", "/export/1/cancel"),
        ("GET", "/export/1/board.csv"),
        ("POST", "/cards/1/move"),
        ("POST", "/cards/1/edit"),
        ("POST", "/cards/1/delete"),
        ("GET", "/_triolette/state.json"),
    ],
)
def test_sign_in_required_on_every_endpoint(board: Triolette, method: str, path: str) -> None:
    with TestClient(board) as client:
        response = client.request(method, path, headers=JSON)
        assert response.status_code in (401, 403)
        page = client.request(method, path, headers=HTML, follow_redirects=False)
        assert page.status_code in (303, 403)


def test_a_signed_out_browser_is_sent_to_sign_in(board: Triolette) -> None:
    with TestClient(board) as client:
        response = client.get("/stats", headers=HTML)
        assert response.url.path == "/signin"


def test_session_key_is_generated_once_and_kept_in_the_data_dir(tmp_path: Path) -> None:
    first = create_app(tmp_path)
    key = (tmp_path / "session.key").read_text()
    assert len(key) >= 32
    assert (tmp_path / "session.key").stat().st_mode & 0o777 == 0o600
    with TestClient(first) as client:
        client.post("/signin", data={"name": "ada"})
        cookie = client.cookies["session"]
    restarted = create_app(tmp_path)  # a restart: the same key, read back
    assert (tmp_path / "session.key").read_text() == key
    with TestClient(restarted, cookies={"session": cookie}) as client:
        page = client.get("/")
        assert page.url.path == "/"
        assert "ada" in page.text


def test_a_stale_card_form_after_a_restart_is_kept_after_sign_in(tmp_path: Path) -> None:
    app = create_app(tmp_path, secret_key="after-restart")
    with TestClient(app) as client:  # a page left open, its session gone: the form is sent signed out
        response = client.post("/cards", data={"title": "Kept", "body": "typed before"}, headers=HTML)
        assert response.url.path == "/signin"
        board = client.post("/signin", data={"name": "ada"})
        assert board.url.path == "/"
        assert "Kept" in board.text
        assert "typed before" in board.text


async def test_edit_and_delete_appear_live_in_another_session(board: Triolette) -> None:
    async with AsyncTestClient(board) as watcher:  # one server; the feed opened as ada, the edits as bob
        editor = watcher
        await watcher.post("/signin", data={"name": "ada"})
        with trio.fail_after(5):
            async with watcher.stream("GET", "/events") as feed:
                lines = feed.aiter_lines()
                assert await anext(lines) == ": subscribed"
                await editor.post("/signin", data={"name": "bob"})
                card = (await editor.post("/cards", data={"title": "Draft"}, headers=JSON)).json()
                edited = await editor.post(f"/cards/{card['id']}/edit", data={"title": "Final", "body": "v2"})
                assert edited.json()["title"] == "Final"
                deleted = await editor.post(f"/cards/{card['id']}/delete")
                assert deleted.json() == {"deleted": card["id"]}
                seen: list[tuple[str, Any]] = []
                event = ""
                async for line in lines:
                    if line.startswith("event: "):
                        event = line[len("event: ") :]
                    elif line.startswith("data: "):
                        seen.append((event, json.loads(line[len("data: ") :])))
                        if len(seen) == 3:
                            break
    kinds = [(kind, data.get("title")) for kind, data in seen]
    assert kinds == [("card", "Draft"), ("card", "Final"), ("deleted", None)]
    assert seen[2][1] == {"id": card["id"]}
    async with AsyncTestClient(board) as client:
        await client.post("/signin", data={"name": "ada"})
        assert (await client.post(f"/cards/{card['id']}/delete", headers=JSON)).status_code == 404
        assert (await client.post("/cards/1/edit", data={"title": ""}, headers=JSON)).json() == {
            "error": "A card needs a title of 1 to 200 characters."
        }


async def test_presence_lists_who_is_online(board: Triolette) -> None:
    async with AsyncTestClient(board) as browser:
        await browser.post("/signin", data={"name": "ada"})
        with trio.fail_after(5):
            async with browser.websocket_connect("/chat") as ada:
                assert await ada.receive_json() == {"type": "presence", "users": ["ada"]}
                await browser.post("/signin", data={"name": "bob"})
                async with browser.websocket_connect("/chat"):
                    assert await ada.receive_json() == {"type": "presence", "users": ["ada", "bob"]}
                assert await ada.receive_json() == {"type": "presence", "users": ["ada"]}
                await ada.send_text("still here")
                assert await next_chat(ada) == {"type": "chat", "author": "ada", "text": "still here"}


async def test_export_cancelled_midway_runs_the_jobs_finally(board: Triolette, autojump_clock: trio.abc.Clock) -> None:
    async with AsyncTestClient(board) as client:
        await client.post("/signin", data={"name": "ada"})
        for title in "abcd":
            await client.post("/cards", data={"title": title})
        job = (await client.post("/export")).json()
        seen = []
        async with client.stream("GET", job["progress"]) as progress:
            async for line in progress.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[len("data: ") :]))
                    if seen[-1]["progress"] == 50:
                        cancelled = await client.post(f"/export/{job['id']}/cancel")
                        assert cancelled.status_code == 200
        assert seen[-1] == {"progress": 50, "state": "cancelled"}
        running = board.state.jobs[job["id"]]
        assert running.finally_ran
        assert (await client.get(f"/export/{job['id']}/board.csv", headers=JSON)).status_code == 409


@pytest.mark.parametrize("delay", ["abc", "-1", "nan", "inf", "6", ""])
async def test_search_delay_is_validated(board: Triolette, delay: str) -> None:
    async with AsyncTestClient(board) as client:
        await client.post("/signin", data={"name": "ada"})
        response = await client.get("/search", params={"delay": delay}, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"] == f"delay must be a number of seconds from 0 to 5, got {delay!r}"


def test_stats_delay_abc_is_400_not_500(board: Triolette) -> None:
    with TestClient(board) as client:
        client.post("/signin", data={"name": "ada"})
        response = client.get("/stats", params={"delay": "abc"})
    assert response.status_code == 400
    assert "delay must be a number of seconds" in response.text


@pytest.mark.parametrize(
    ("delay", "status", "late", "seconds"),
    [
        ("0.2", 200, [], 0.6),  # all three answer (0.2, 0.4, 0.6 s)
        ("0.6", 200, ["authors"], 1.5),  # 0.6 and 1.2 s in time; 1.8 s is late: partial at the budget
        ("3", 503, None, 2.5),  # none by 1.5 s, still none at the 2.5 s deadline
    ],
)
async def test_slow_search_all_partial_or_503(
    board: Triolette, autojump_clock: trio.abc.Clock, delay: str, status: int, late: list[str] | None, seconds: float
) -> None:
    async with AsyncTestClient(board) as client:
        await client.post("/signin", data={"name": "ada"})
        await client.post("/cards", data={"title": "Find me", "body": "somewhere"})
        start = trio.current_time()
        response = await client.get("/search", params={"q": "find", "delay": delay}, headers=JSON)
        took = trio.current_time() - start
    assert response.status_code == status
    assert math.isclose(took, seconds, abs_tol=0.1)
    if late is not None:
        assert response.json()["late"] == late
        assert response.json()["matches"] == [1]


async def test_search_tasks_are_listed_while_in_flight(board: Triolette, autojump_clock: trio.abc.Clock) -> None:
    async with AsyncTestClient(board) as client:
        await client.post("/signin", data={"name": "ada"})
        inspector = board.inspector
        assert inspector is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: client.get("/search", params={"delay": "1"}, headers=JSON))
            await trio.sleep(0.5)
            [search] = [item for item in inspector.snapshot()["in_flight"] if item["path"] == "/search"]
            names = sorted(task["name"] for task in search["tasks"] if task["name"].startswith("search service"))
            assert names == ["search service: authors", "search service: details", "search service: titles"]


def test_errors_are_shown_in_a_page_and_the_page_has_a_favicon(board: Triolette) -> None:
    with TestClient(board) as client:
        client.post("/signin", data={"name": "ada"})
        page = client.get("/attachments/99", headers=HTML)
        assert page.status_code == 404
        assert "Something went wrong (404)" in page.text
        assert "No such attachment." in page.text
        board_page = client.get("/")
        assert 'rel="icon"' in board_page.text
        assert "Under the hood" in board_page.text
        assert client.get("/static/favicon.svg").headers["content-type"].startswith("image/svg")
        assert client.get("/_triolette/state.json").status_code == 200
