"""triolette.broadcast on memory://: fan-out, the slow-subscriber policy, scoping, drain.

Deterministic: virtual time (autojump_clock) and wait_all_tasks_blocked, no real sleeps.
The Redis backend's own tests are in test_broadcast_redis.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from triolette.applications import Triolette
from triolette.broadcast import Broadcast, BroadcastUnavailable, SlowPolicy, Subscriber, SubscriberTooSlow
from triolette.broadcast._hub import Hub
from triolette.requests import Request
from triolette.responses import Response
from triolette.routing import Route, WebSocketRoute
from triolette.sse import EventSourceResponse, ServerSentEvent
from triolette.testclient import AsyncTestClient
from triolette.websockets import WebSocket


async def collect(
    broadcast: Broadcast,
    channel: str,
    into: list[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with broadcast.subscribe(channel) as subscriber:
        task_status.started()
        async for message in subscriber:
            into.append(message)


async def test_publish_reaches_every_subscriber_of_the_channel_and_no_other(autojump_clock: trio.abc.Clock) -> None:
    first: list[str] = []
    second: list[str] = []
    other: list[str] = []
    with trio.fail_after(10):
        async with Broadcast() as broadcast, trio.open_nursery() as nursery:
            await nursery.start(collect, broadcast, "news", first)
            await nursery.start(collect, broadcast, "news", second)
            await nursery.start(collect, broadcast, "sport", other)
            assert broadcast.subscribers() == 3
            assert broadcast.subscribers("news") == 2
            for text in ("a", "b", "c"):
                await broadcast.publish("news", text)
            await broadcast.publish("nobody-listens", "lost")
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert first == second == ["a", "b", "c"]
    assert other == []
    assert trio.current_time() == 0


async def test_slow_subscriber_is_ended_with_subscriber_too_slow(autojump_clock: trio.abc.Clock) -> None:
    fast: list[str] = []
    seen: list[str] = []
    errors: list[str] = []

    async def slow(broadcast: Broadcast, *, task_status: trio.TaskStatus[None]) -> None:
        async with broadcast.subscribe("feed") as subscriber:
            task_status.started()
            try:
                async for message in subscriber:
                    seen.append(message)
                    await trio.sleep(10)  # far slower than the publisher
            except SubscriberTooSlow as exc:
                errors.append(str(exc))
        assert broadcast.subscribers("feed") == 1  # the fast one is still there

    with trio.fail_after(100):
        async with Broadcast(queue_size=2) as broadcast, trio.open_nursery() as nursery:
            await nursery.start(slow, broadcast)
            await nursery.start(collect, broadcast, "feed", fast)
            for n in range(6):
                await broadcast.publish("feed", str(n))  # never waits for the slow one
            assert trio.current_time() == 0
            await trio.testing.wait_all_tasks_blocked()
            assert broadcast.subscribers("feed") == 1
            await trio.sleep(50)
            nursery.cancel_scope.cancel()
    # it took "0" at once, then "1" and "2" filled its queue of 2; "3" ended it
    assert seen == ["0", "1", "2"]
    assert errors == [
        "A subscriber to 'feed' still had 2 messages queued when another arrived, so it was ended; "
        "read faster, raise queue_size, or pass on_slow='drop_oldest'."
    ]
    assert fast == ["0", "1", "2", "3", "4", "5"]


async def test_drop_oldest_policy_keeps_the_newest_messages(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(10):
        async with Broadcast(queue_size=3, on_slow="drop_oldest") as broadcast:
            assert broadcast.on_slow is SlowPolicy.DROP_OLDEST
            async with broadcast.subscribe("feed") as subscriber:
                for n in range(10):
                    await broadcast.publish("feed", str(n))
                assert subscriber.queued == 3
                assert subscriber.dropped == 7
                assert repr(subscriber) == "<Subscriber channel='feed' queued=3 dropped=7>"
                assert [await subscriber.__anext__() for _ in range(3)] == ["7", "8", "9"]
                assert broadcast.subscribers("feed") == 1


async def test_cancelled_subscriber_unsubscribes(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(10):
        async with Broadcast() as broadcast:
            with trio.move_on_after(5):
                async with broadcast.subscribe("feed") as subscriber:
                    assert broadcast.subscribers("feed") == 1
                    async for _ in subscriber:
                        pytest.fail("nothing was published")  # pragma: no cover
            assert trio.current_time() == 5
            assert broadcast.subscribers() == 0
            await broadcast.publish("feed", "into the void")  # nobody is left to take it


def test_last_local_subscriber_leaving_unlistens_the_channel() -> None:
    log: list[str] = []
    hub = Hub(lambda channel: log.append(f"listen {channel}"), lambda channel: log.append(f"unlisten {channel}"))
    one, two = (Subscriber("feed", 4, SlowPolicy.END) for _ in range(2))
    hub.add(one)
    hub.add(two)
    hub.remove(one)
    hub.remove(one)  # twice is harmless
    assert log == ["listen feed"]
    hub.remove(two)
    assert log == ["listen feed", "unlisten feed"]
    assert list(hub.channels()) == []
    assert hub.deliver("feed", "nobody") == 0


def test_a_slow_subscriber_ended_by_delivery_unlistens_when_it_was_the_last() -> None:
    log: list[str] = []
    hub = Hub(lambda channel: log.append(f"listen {channel}"), lambda channel: log.append(f"unlisten {channel}"))
    subscriber = Subscriber("feed", 1, SlowPolicy.END)
    hub.add(subscriber)
    assert hub.deliver("feed", "one") == 1
    assert hub.deliver("feed", "two") == 0
    assert log == ["listen feed", "unlisten feed"]
    assert subscriber.offer("three")  # an ended subscriber takes nothing, and is not ended twice
    subscriber.end(ValueError("not this one"))
    assert subscriber.queued == 1  # "one" is still there to be read before the SubscriberTooSlow


async def anext_filled(lines: AsyncIterator[str]) -> str:
    """The next line of the stream that is not blank."""
    while not (line := await lines.__anext__()):
        pass
    return line


def sse_feed_app(log: list[str]) -> Triolette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[dict[str, Any]]:
        async with Broadcast(app=app) as broadcast:
            app.state.broadcast = broadcast
            yield {"broadcast": broadcast}

    async def feed(request: Request) -> Response:
        broadcast: Broadcast = request.state.broadcast

        async def events() -> AsyncIterator[ServerSentEvent]:
            try:
                async with broadcast.subscribe("feed") as subscriber:
                    yield ServerSentEvent(comment="subscribed")
                    async for message in subscriber:
                        yield ServerSentEvent(message)
                log.append("feed ended")
            finally:
                log.append(f"unsubscribed, {broadcast.subscribers()} left")

        return EventSourceResponse(events(), ping=None)

    async def chat(websocket: WebSocket) -> None:
        broadcast: Broadcast = websocket.state.broadcast
        await websocket.accept()
        async with broadcast.subscribe("chat") as subscriber:
            await websocket.send_text("subscribed")
            async for message in subscriber:
                await websocket.send_text(message)
        await websocket.send_text("goodbye")
        await websocket.close(code=1001)

    return Triolette(routes=[Route("/feed", feed), WebSocketRoute("/chat", chat)], lifespan=lifespan)


async def test_a_request_cancelled_by_disconnect_unsubscribes(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    app = sse_feed_app(log)
    with trio.fail_after(10):
        async with AsyncTestClient(app) as client:
            broadcast: Broadcast = app.state.broadcast
            async with client.stream("GET", "/feed") as response:
                lines = response.aiter_lines()
                assert await lines.__anext__() == ": subscribed"
                assert broadcast.subscribers("feed") == 1
                await broadcast.publish("feed", "hello")
                assert await anext_filled(lines) == "data: hello"
            # leaving the stream disconnected the client: the request was cancelled
            assert log == ["unsubscribed, 0 left"]
            assert broadcast.subscribers() == 0


async def test_draining_ends_subscribers_cleanly(autojump_clock: trio.abc.Clock) -> None:
    log: list[str] = []
    app = sse_feed_app(log)
    with trio.fail_after(100):
        async with AsyncTestClient(app) as client:
            broadcast: Broadcast = app.state.broadcast
            async with client.websocket_connect("/chat") as ws:
                assert await ws.receive_text() == "subscribed"
                await broadcast.publish("chat", "hi")
                assert await ws.receive_text() == "hi"
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(app.drain, 60)
                    # the handler's loop ended without an error and said goodbye
                    assert await ws.receive_text() == "goodbye"
                    message = await ws.receive()
                    assert message == {"type": "websocket.close", "code": 1001, "reason": ""}
            assert broadcast.subscribers() == 0
            # a subscription made while draining ends at once, and publishing still works
            async with broadcast.subscribe("chat") as late:
                await broadcast.publish("chat", "too late")
                assert [message async for message in late] == []
    assert trio.current_time() == 0


async def test_broadcast_without_an_app_runs_its_own_service_and_ends_subscribers_on_close(
    autojump_clock: trio.abc.Clock,
) -> None:
    ended: list[str] = []

    async def listener(broadcast: Broadcast, *, task_status: trio.TaskStatus[None]) -> None:
        async with broadcast.subscribe("feed") as subscriber:
            task_status.started()
            async for _ in subscriber:
                pass  # pragma: no cover - nothing is published
            ended.append("cleanly")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            async with Broadcast("memory://") as broadcast:
                await nursery.start(listener, broadcast)
                assert "open subscribers=1" in repr(broadcast)
            assert ended == ["cleanly"]
            assert repr(broadcast) == "<Broadcast MemoryBackend() closed subscribers=0>"
            with pytest.raises(RuntimeError, match=r"Broadcast.publish\(\) after the broadcast was closed"):
                await broadcast.publish("feed", "x")
            with pytest.raises(RuntimeError, match="make a new one for each 'async with'"):
                await broadcast.__aenter__()


async def test_subscribe_before_open_says_how_to_open_it() -> None:
    broadcast = Broadcast()
    with pytest.raises(RuntimeError, match=r"open it in the lifespan: 'async with Broadcast\(url, app=app\)"):
        broadcast.subscribe("feed")


async def test_publish_refuses_what_is_not_a_str(autojump_clock: trio.abc.Clock) -> None:
    async with Broadcast() as broadcast:
        with pytest.raises(TypeError, match=r"Broadcast messages are str, got dict \{'a': 1\}; encode it first"):
            await broadcast.publish("feed", {"a": 1})  # type: ignore[arg-type]  # the error under test
        with pytest.raises(TypeError, match="A broadcast channel is a non-empty str, got ''"):
            await broadcast.publish("", "x")
        with pytest.raises(TypeError, match="A broadcast channel is a non-empty str, got 3"):
            broadcast.subscribe(3)  # type: ignore[arg-type]  # the error under test


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "kafka://x"}, "Broadcast URL must start with memory://, redis:// or rediss://, got 'kafka://x'"),
        ({"queue_size": 0}, "queue_size must be a positive int, got 0"),
        ({"queue_size": True}, "queue_size must be a positive int, got True"),
        ({"on_slow": "block"}, "on_slow must be 'end' or 'drop_oldest', got 'block'"),
        ({"grace": -1}, "grace must be a number of seconds >= 0, got -1"),
        ({"grace": float("nan")}, "grace must be a number of seconds >= 0, got nan"),
    ],
)
def test_bad_options_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Broadcast(**kwargs)


def test_the_exceptions_say_what_they_are() -> None:
    assert issubclass(SubscriberTooSlow, Exception)
    assert issubclass(BroadcastUnavailable, Exception)
    assert SlowPolicy("drop_oldest") is SlowPolicy.DROP_OLDEST
