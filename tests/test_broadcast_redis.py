"""triolette.broadcast on redis://, against a real redis-server (see tests/redis_server.py).

These talk to a real server, so they use real time, each bounded by ``trio.fail_after``.
The policy, scoping and drain logic shared with memory:// is tested deterministically in
test_broadcast.py; the link's state table is tested here as plain data.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import coredis
import pytest
import trio

from tests.redis_server import RedisServer, free_port, running_redis_server
from triolette.broadcast import Broadcast, BroadcastUnavailable
from triolette.broadcast._redis import TRANSITIONS, Link, LinkEvent, RedisBackend, link_error, redacted

# coredis leaves the anyio memory streams of a connection attempt that failed unclosed; their
# ResourceWarning comes at garbage collection, so it is silenced for these tests and the
# fixture collects the garbage before the filter goes.
UNCLOSED_STREAMS = "ignore:Unclosed <MemoryObject:ResourceWarning"
pytestmark = pytest.mark.filterwarnings(UNCLOSED_STREAMS)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis_server() as server:
        yield server
    collect_garbage_quietly()


def collect_garbage_quietly() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Unclosed <MemoryObject", ResourceWarning)
        gc.collect()


async def inspect(server: RedisServer) -> coredis.Redis[str]:
    return coredis.Redis.from_url(server.url, decode_responses=True)


async def wait_until(predicate: Any, what: str, limit: float = 10) -> None:
    """Poll ``predicate`` (async) until true; a bounded loop for a real server's state."""
    with trio.move_on_after(limit):
        while not await predicate():  # noqa: ASYNC110 - the state is in another process
            await trio.sleep(0.02)
        return
    raise AssertionError(f"gave up waiting for {what}")


def backend(broadcast: Broadcast) -> RedisBackend:
    found = broadcast._backend
    assert isinstance(found, RedisBackend)
    return found


async def listen(
    broadcast: Broadcast,
    channel: str,
    into: list[Any],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        async with broadcast.subscribe(channel) as subscriber:
            task_status.started()
            async for message in subscriber:
                into.append(message)
    except BroadcastUnavailable as exc:
        into.append(exc)


async def test_redis_message_published_by_one_process_reaches_subscribers_in_both(redis_server: RedisServer) -> None:
    here: list[Any] = []
    there: list[Any] = []
    with trio.fail_after(20):
        async with (
            Broadcast(redis_server.url) as one,
            Broadcast(redis_server.url) as two,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(listen, one, "feed", here)
            await nursery.start(listen, two, "feed", there)
            for text in ("a", "b"):
                await one.publish("feed", text)
            await two.publish("feed", "c")

            async def both_have_three() -> bool:
                return len(here) == len(there) == 3

            await wait_until(both_have_three, "the three messages on both sides")
            nursery.cancel_scope.cancel()
    assert here == there == ["a", "b", "c"]


async def test_redis_one_publishing_and_one_pubsub_connection_per_process(redis_server: RedisServer) -> None:
    received: list[Any] = []
    with trio.fail_after(20):
        async with (
            await inspect(redis_server) as redis,
            Broadcast(redis_server.url) as broadcast,
            trio.open_nursery() as nursery,
        ):
            for n in range(60):
                await nursery.start(listen, broadcast, f"room-{n % 3}", received)
            assert broadcast.subscribers() == 60
            await broadcast.publish("room-0", "hello")

            async def twenty() -> bool:
                return len(received) == 20

            await wait_until(twenty, "20 deliveries")
            clients = await redis.client_list()
            assert len(clients) == 3  # the publisher, the pub/sub connection, and this inspector
            assert sorted(int(client["sub"]) for client in clients) == [0, 0, 3]
            assert await redis.pubsub_numsub("room-0", "room-1", "room-2") == {
                "room-0": 1,
                "room-1": 1,
                "room-2": 1,
            }
            nursery.cancel_scope.cancel()
    assert received == ["hello"] * 20


async def test_redis_last_local_subscriber_leaving_unsubscribes_from_redis(redis_server: RedisServer) -> None:
    with trio.fail_after(20):
        async with await inspect(redis_server) as redis, Broadcast(redis_server.url) as broadcast:
            async with broadcast.subscribe("feed"), broadcast.subscribe("feed"):
                assert await redis.pubsub_channels() == {"feed"}
            assert broadcast.subscribers() == 0

            async def unsubscribed() -> bool:
                return await redis.pubsub_channels() == set()

            await wait_until(unsubscribed, "the channel to be unsubscribed")
            with trio.move_on_after(0.5):  # cancelled while subscribed: unsubscribed too
                async with broadcast.subscribe("other") as subscriber:
                    async for _ in subscriber:
                        pass  # pragma: no cover - nothing is published
            await wait_until(unsubscribed, "the cancelled subscriber's channel to be unsubscribed")


async def test_redis_blip_shorter_than_grace_is_invisible_to_subscribers(redis_server: RedisServer) -> None:
    received: list[Any] = []
    with trio.fail_after(30):
        async with Broadcast(redis_server.url, grace=20) as broadcast, trio.open_nursery() as nursery:
            await nursery.start(listen, broadcast, "feed", received)
            await broadcast.publish("feed", "before")
            redis_server.kill()  # kill -9, mid-stream
            with pytest.raises(BroadcastUnavailable, match=r"Could not publish to 'feed': Redis at .* is unreachable"):
                await broadcast.publish("feed", "during")  # at most once: lost, and the caller is told
            await trio.to_thread.run_sync(redis_server.start)  # same port

            async def resubscribed() -> bool:
                async with await inspect(redis_server) as redis:
                    return await redis.pubsub_numsub("feed") == {"feed": 1}

            await wait_until(resubscribed, "the backend to reconnect and subscribe again")
            assert backend(broadcast).reconnects == 1
            assert backend(broadcast).state is Link.UP
            await broadcast.publish("feed", "after")

            async def two() -> bool:
                return len(received) == 2

            await wait_until(two, "the message published after the restart")
            nursery.cancel_scope.cancel()
    assert received == ["before", "after"]  # no exception reached the subscriber


async def test_redis_closing_during_an_outage_does_not_wait_for_the_grace_period(redis_server: RedisServer) -> None:
    with trio.fail_after(20):
        async with Broadcast(redis_server.url, grace=60) as broadcast:
            redis_server.kill()

            async def down() -> bool:
                return backend(broadcast).state is Link.DOWN

            await wait_until(down, "the backend to see the outage")
            closing = trio.current_time()
        assert trio.current_time() - closing < 1.5  # not the 60 s grace, nor the 2 s fallback


async def test_redis_outage_longer_than_grace_ends_subscribers_with_broadcast_unavailable(
    redis_server: RedisServer,
) -> None:
    received: list[Any] = []
    with trio.fail_after(30):
        async with Broadcast(redis_server.url, grace=0.2) as broadcast, trio.open_nursery() as nursery:
            await nursery.start(listen, broadcast, "feed", received)
            redis_server.kill()

            async def ended() -> bool:
                return bool(received)

            await wait_until(ended, "the subscriber to be ended")
            [error] = received
            assert isinstance(error, BroadcastUnavailable)
            assert "has been unreachable for more than 0.2 seconds" in str(error)
            assert "the subscription was ended. Subscribe again later." in str(error)
            assert backend(broadcast).state is Link.UNAVAILABLE
            with pytest.raises(BroadcastUnavailable, match="has been unreachable"):
                async with broadcast.subscribe("feed"):
                    pass  # pragma: no cover - refused
            await trio.to_thread.run_sync(redis_server.start)

            async def up() -> bool:
                return backend(broadcast).state is Link.UP

            await wait_until(up, "the backend to reconnect")
            again: list[Any] = []
            await nursery.start(listen, broadcast, "feed", again)
            await broadcast.publish("feed", "back")

            async def delivered() -> bool:
                return again == ["back"]

            await wait_until(delivered, "a message after the outage")
            nursery.cancel_scope.cancel()


async def test_redis_unreachable_at_startup_fails_startup_with_a_clear_error() -> None:
    url = f"redis://user:secret@127.0.0.1:{free_port()}/0"
    with trio.fail_after(20), pytest.raises(BroadcastUnavailable) as info:
        async with Broadcast(url):
            pass  # pragma: no cover - never opened
    assert str(info.value).startswith("Could not reach Redis at 'redis://user:***@127.0.0.1:")
    assert str(info.value).endswith("start Redis or fix the broadcast URL.")
    assert "secret" not in str(info.value)
    collect_garbage_quietly()


async def test_redis_backend_runs_on_app_nursery_and_drains(redis_server: RedisServer) -> None:
    import contextlib

    from triolette.applications import Triolette
    from triolette.testclient import AsyncTestClient

    ended: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[None]:
        async with Broadcast(redis_server.url, app=app) as broadcast:
            app.state.broadcast = broadcast
            yield

    app = Triolette(lifespan=lifespan)
    with trio.fail_after(20):
        async with AsyncTestClient(app), trio.open_nursery() as nursery:
            broadcast: Broadcast = app.state.broadcast

            async def subscriber(*, task_status: trio.TaskStatus[None]) -> None:
                async with broadcast.subscribe("feed") as subscription:
                    task_status.started()
                    async for _ in subscription:
                        pass  # pragma: no cover - nothing is published
                ended.append("cleanly")

            await nursery.start(subscriber)
            await app.drain(5)
    assert ended == ["cleanly"]


def test_rediss_url_makes_a_tls_client() -> None:
    broadcast = Broadcast("rediss://cache.example:6380/2")
    client = backend(broadcast)._client()
    assert client.connection_pool.connection_kwargs.get("ssl_context") is not None
    assert repr(broadcast) == (
        "<Broadcast RedisBackend('rediss://cache.example:6380/2', state='connecting') new subscribers=0>"
    )


@pytest.mark.parametrize(
    ("state", "event", "after"),
    [
        (Link.CONNECTING, LinkEvent.CONNECTED, Link.UP),
        (Link.UP, LinkEvent.LOST, Link.DOWN),
        (Link.DOWN, LinkEvent.LOST, Link.DOWN),
        (Link.DOWN, LinkEvent.CONNECTED, Link.UP),
        (Link.DOWN, LinkEvent.GRACE_EXPIRED, Link.UNAVAILABLE),
        (Link.UNAVAILABLE, LinkEvent.LOST, Link.UNAVAILABLE),
        (Link.UNAVAILABLE, LinkEvent.CONNECTED, Link.UP),
    ],
)
def test_link_state_table(state: Link, event: LinkEvent, after: Link) -> None:
    assert TRANSITIONS[state, event] is after


def test_link_state_table_has_no_way_out_of_connecting_but_up() -> None:
    assert {event for (state, event) in TRANSITIONS if state is Link.CONNECTING} == {LinkEvent.CONNECTED}
    assert (Link.UP, LinkEvent.GRACE_EXPIRED) not in TRANSITIONS


def test_link_error_finds_connection_errors_alone() -> None:
    lost = coredis.exceptions.ConnectionError("Connection lost")
    assert link_error(lost) is lost
    assert link_error(ExceptionGroup("x", [ExceptionGroup("y", [lost])])) is lost
    assert link_error(ExceptionGroup("x", [lost, ValueError("bug")])) is None
    assert link_error(ValueError("bug")) is None
    assert link_error(ExceptionGroup("x", [ValueError("bug")])) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("rediss://me:pw@host/1", "rediss://me:***@host/1"),
    ],
)
def test_redacted_hides_the_password(url: str, shown: str) -> None:
    assert redacted(url) == shown
