"""The board on Redis: two instances (as two workers would be) share one live feed and one chat.

``BOARD_BROADCAST_URL`` (or ``create_app(broadcast=...)``) selects the engine; with
``memory://`` a card added through one instance would never reach the other's feed.
"""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from examples.board.app import create_app
from examples.board.broadcast import broadcast_url
from tests.board.test_board import next_chat
from tests.redis_server import RedisServer, running_redis_server
from triolette.testclient import AsyncTestClient

pytestmark = pytest.mark.filterwarnings("ignore:Unclosed <MemoryObject:ResourceWarning")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis_server() as server:
        yield server
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unclosed <MemoryObject", ResourceWarning)
        gc.collect()


def test_board_broadcast_url_defaults_to_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOARD_BROADCAST_URL", raising=False)
    assert broadcast_url() == "memory://"
    monkeypatch.setenv("BOARD_BROADCAST_URL", "redis://cache:6379/1")
    assert broadcast_url() == "redis://cache:6379/1"


async def test_board_on_redis_shares_the_feed_and_the_chat_between_two_instances(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    one = create_app(tmp_path, secret_key="s", broadcast=redis_server.url)
    two = create_app(tmp_path, secret_key="s", broadcast=redis_server.url)
    with trio.fail_after(20):
        async with AsyncTestClient(one) as first, AsyncTestClient(two) as second:
            await first.post("/signin", data={"name": "ada"})
            await second.post("/signin", data={"name": "bob"})
            async with first.stream("GET", "/events") as feed:
                lines = feed.aiter_lines()
                assert await anext(lines) == ": subscribed"
                created = await second.post("/cards", data={"title": "Across"}, headers={"accept": "application/json"})
                assert created.status_code == 201
                async for line in lines:
                    if line.startswith("data: "):
                        assert json.loads(line[len("data: ") :])["title"] == "Across"
                        break
            async with first.websocket_connect("/chat") as ada, second.websocket_connect("/chat") as bob:
                await bob.send_text("hello from the other worker")
                expected = {"type": "chat", "author": "bob", "text": "hello from the other worker"}
                assert await next_chat(ada) == expected
                assert await next_chat(bob) == expected


async def test_board_with_redis_down_at_startup_fails_to_start(tmp_path: Path) -> None:
    from tests.redis_server import free_port
    from triolette.broadcast import BroadcastUnavailable

    board = create_app(tmp_path, secret_key="s", broadcast=f"redis://127.0.0.1:{free_port()}/0")
    with trio.fail_after(20), pytest.raises(BroadcastUnavailable, match="Could not reach Redis"):
        async with AsyncTestClient(board):
            pass  # pragma: no cover - never started
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unclosed <MemoryObject", ResourceWarning)
        gc.collect()


async def test_board_saves_a_card_when_redis_is_down_and_says_it_was_not_announced(
    tmp_path: Path, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    board = create_app(tmp_path, secret_key="s", broadcast=redis_server.url)
    with trio.fail_after(20):
        async with AsyncTestClient(board) as client:
            await client.post("/signin", data={"name": "ada"})
            redis_server.kill()
            created = await client.post("/cards", data={"title": "Offline"}, headers={"accept": "application/json"})
            assert created.status_code == 201  # stored; only the live announcement was lost
            assert "Offline" in (await client.get("/")).text
    assert any("not announced: Could not publish to 'board:cards'" in record.message for record in caplog.records)
