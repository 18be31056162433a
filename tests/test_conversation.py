"""The sans-IO conversation (``_conversation.py``): plain synchronous, parametrised tests.

No trio here: these tests alone cover every branch of the module.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from triolette import _conversation as conv
from triolette._conversation import (
    BODY_TIMEOUT,
    DELIVER,
    DROP,
    SEND_TIMEOUT,
    BodyLimit,
    BodyTooLarge,
    Inbox,
    Outbox,
    ProtocolError,
    check_size,
    check_timeout,
    content_length,
    expired,
    message_size,
    watch_deadline,
)

# -- options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, 0), (5, 5)])
def test_check_size_accepts_none_and_whole_bytes(value: Any, expected: Any) -> None:
    assert check_size("max_body_size", value) == expected


@pytest.mark.parametrize("value", [-1, 1.5, "big", True])
def test_check_size_refuses_anything_else(value: Any) -> None:
    expected = rf"max_body_size must be a non-negative number of bytes or None, got {value!r}"
    with pytest.raises(ValueError, match=expected):
        check_size("max_body_size", value)


@pytest.mark.parametrize(("value", "expected"), [(None, None), (2, 2.0), (0.5, 0.5)])
def test_check_timeout_accepts_none_and_positive_seconds(value: Any, expected: Any) -> None:
    assert check_timeout("timeout", value) == expected


@pytest.mark.parametrize("value", [0, -1, math.nan, "1", False])
def test_check_timeout_refuses_anything_else(value: Any) -> None:
    with pytest.raises(ValueError, match=r"timeout must be a positive number of seconds or None, got "):
        check_timeout("timeout", value)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], None),
        ([(b"host", b"x")], None),
        ([(b"Content-Length", b"12")], 12),
        ([(b"content-length", b"1x")], None),
        ([(b"content-length", b"-1")], None),
        ([(b"content-length", b"3"), (b"content-length", b"4")], 3),
    ],
)
def test_content_length_is_parsed_once_from_the_headers(headers: Any, expected: Any) -> None:
    assert content_length(headers) == expected


# -- the body limit ----------------------------------------------------------------------------


def test_body_limit_counts_bytes_and_refuses_past_the_limit() -> None:
    limit = BodyLimit(10, None)
    limit.count(10)
    with pytest.raises(BodyTooLarge) as info:
        limit.count(1)
    assert (info.value.status_code, info.value.detail) == (413, "Content Too Large")
    assert limit.bytes_read == 11


def test_no_body_limit_counts_without_refusing() -> None:
    limit = BodyLimit(None, None)
    limit.count(10**9)
    assert limit.bytes_read == 10**9
    assert not limit.declared_over


@pytest.mark.parametrize(("limit", "declared", "over"), [(10, None, False), (10, 10, False), (10, 11, True)])
def test_declared_length_over_the_limit(limit: int, declared: int | None, over: bool) -> None:
    assert BodyLimit(limit, declared).declared_over is over


def test_entering_a_stricter_limit_rechecks_bytes_already_read() -> None:
    limit = BodyLimit(100, None)
    limit.count(8)
    limit.enter(8)  # exactly what was read: fine
    with pytest.raises(BodyTooLarge):
        limit.enter(4)
    assert limit.limit == 4


def test_entering_a_limit_rechecks_the_declared_length() -> None:
    limit = BodyLimit(100, 50)
    declared_over = [limit.declared_over]  # not asserted one by one: mypy would narrow the attribute for good
    limit.enter(10)  # refused at the next read or the response start: a layer further in may loosen it
    declared_over.append(limit.declared_over)
    limit.enter(None)
    declared_over.append(limit.declared_over)
    assert declared_over == [False, True, False]


def test_the_innermost_limit_applies_even_when_looser() -> None:
    limit = BodyLimit(10, 50)
    limit.enter(100)  # a route that takes uploads raises the app's limit
    assert limit.limit == 100
    limit.enter(None)
    assert limit.limit is None


@pytest.mark.parametrize(
    ("current", "entered", "result"),
    [(10, 5, 5), (10, 20, 10), (10, None, 10), (None, 5, 5), (10, 10, 10)],
)
def test_stricter_only_keeps_the_stricter_limit(current: int | None, entered: int | None, result: int | None) -> None:
    limit = BodyLimit(current, None)
    limit.enter(entered, stricter_only=True)
    assert limit.limit == result


# -- the request side ----------------------------------------------------------------------------


def request(body: bytes = b"", more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def test_inbox_follows_the_body_to_its_end() -> None:
    inbox = Inbox(False)
    assert (inbox.state, inbox.complete) == (conv.BODY, False)
    assert not inbox.watch_only_for_disconnect()
    assert inbox.received(request(b"ab", more=True)) == DELIVER
    assert inbox.state == conv.BODY
    assert inbox.received(request(b"c")) == DELIVER
    assert (inbox.state, inbox.complete) == (conv.COMPLETE, True)
    assert inbox.watch_only_for_disconnect()


@pytest.mark.parametrize("message", [None, "http.request", {"body": b"x"}, 42], ids=["none", "str", "no-type", "int"])
def test_inbox_refuses_what_is_not_an_asgi_message_saying_so(message: Any) -> None:
    inbox = Inbox(False)
    with pytest.raises(TypeError, match=r"^receive\(\) returned .*, not an ASGI message: a dict with a 'type'$"):
        inbox.received(message)
    assert inbox.state is conv.BODY


@pytest.mark.parametrize("limit", [None, 3])
def test_a_body_the_app_reads_itself_is_counted_in_the_same_step(limit: int | None) -> None:
    inbox = Inbox(False, limit=limit)
    assert inbox.received(request(b"ab", more=True), count=True) == DELIVER
    assert inbox.bytes_read == 2
    assert inbox.received(request(b"c"), count=True) == DELIVER
    assert (inbox.bytes_read, inbox.state) == (3, conv.COMPLETE)
    assert inbox.received(request(b"stray"), count=True) == DROP  # a dropped message is not counted
    assert inbox.bytes_read == 3


def test_a_body_the_watcher_takes_is_counted_when_the_app_takes_it() -> None:
    inbox = Inbox(False, limit=3)
    inbox.received(request(b"abcd", more=True))  # the watcher's read: not counted yet
    assert inbox.bytes_read == 0
    with pytest.raises(BodyTooLarge):
        inbox.count(4)  # handed to the app


def test_a_body_the_app_reads_itself_past_the_limit_is_refused_at_once() -> None:
    inbox = Inbox(False, limit=3)
    inbox.received(request(b"ab", more=True), count=True)
    with pytest.raises(BodyTooLarge):
        inbox.received(request(b"cd", more=True), count=True)
    assert inbox.bytes_read == 4


@pytest.mark.parametrize(
    ("limit", "headers", "declared", "over"),
    [
        (10, [(b"content-length", b"11")], 11, True),
        (10, [(b"Content-Length", b"10")], 10, False),
        (None, [(b"content-length", b"11")], 11, False),
        (10, [], None, False),
        (10, [(b"content-length", b"ten")], None, False),
    ],
)
def test_the_inbox_parses_content_length_once_as_its_body_limit(
    limit: int | None, headers: list[tuple[bytes, bytes]], declared: int | None, over: bool
) -> None:
    inbox = Inbox(False, limit=limit, headers=headers)
    assert (inbox.declared, inbox.declared_over) == (declared, over)
    if limit is None and declared is not None:
        inbox.enter(declared - 1)  # a limit entered later re-checks the declared length
        assert inbox.declared_over


def test_a_request_message_after_the_body_is_complete_is_dropped() -> None:
    inbox = Inbox(False)
    inbox.received(request())
    assert inbox.received(request(b"stray")) == DROP
    assert inbox.state == conv.COMPLETE


@pytest.mark.parametrize(("websocket", "kind"), [(False, "http.disconnect"), (True, "websocket.disconnect")])
def test_a_disconnect_is_kept_and_ends_the_conversation(websocket: bool, kind: str) -> None:
    inbox = Inbox(websocket)
    assert inbox.disconnect == {"type": kind}
    message = {"type": kind, "code": 1001}
    assert inbox.received(message) == DELIVER
    assert inbox.gone
    assert inbox.complete
    assert inbox.disconnect is message
    assert inbox.received(request()) == DROP  # nothing after the disconnect counts


def test_websocket_messages_are_delivered() -> None:
    inbox = Inbox(True)
    assert inbox.state == conv.OPEN
    assert inbox.received({"type": "websocket.connect"}) == DELIVER
    assert inbox.received({"type": "websocket.receive", "text": "hi"}) == DELIVER
    assert inbox.state == conv.OPEN


def test_a_lost_connection_is_gone_without_a_message() -> None:
    inbox = Inbox(False)
    inbox.lost()
    assert inbox.gone
    assert inbox.disconnect == {"type": "http.disconnect"}


def test_the_buffer_counts_bytes_in_and_out_and_never_goes_negative() -> None:
    inbox = Inbox(False)
    inbox.push(request(b"abc", more=True))
    inbox.push({"type": "websocket.receive", "text": "hé"})
    inbox.push({"type": "websocket.receive", "bytes": b"xy"})
    inbox.push({"type": "websocket.receive"})
    assert inbox.buffered == 7
    sizes = []
    while inbox.buffer:
        inbox.pop()
        sizes.append(inbox.buffered)
    assert sizes == [4, 2, 0, 0]


@pytest.mark.parametrize(
    ("pushed", "full"),
    [
        ([], False),
        ([b""] * 3, True),  # three empty chunks: the count cap
        ([b"x" * 9], True),  # the byte cap
        ([b"x" * 8], False),
        ([b"", b""], False),
    ],
)
def test_the_buffer_is_capped_by_bytes_and_by_message_count(pushed: list[bytes], full: bool) -> None:
    inbox = Inbox(False, max_bytes=9, max_messages=3)
    for body in pushed:
        inbox.push(request(body, more=True))
    assert inbox.full() is full


def test_an_empty_buffer_is_never_full_even_with_a_zero_cap() -> None:
    inbox = Inbox(False, max_bytes=0)
    assert not inbox.full()
    inbox.push(request(b"x", more=True))
    assert inbox.full()


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([], conv.CLOSING),
        ([request(b"a", more=True)], conv.CLOSING),
        ([request(b"a")], conv.GONE),  # only the disconnect can follow: this is as good
        ([{"type": "http.disconnect"}], conv.GONE),
    ],
)
def test_a_closed_connection_means_the_client_has_gone(before: list[dict[str, Any]], after: str) -> None:
    inbox = Inbox(False)
    for message in before:
        inbox.received(message)
    inbox.closed()
    assert inbox.state == after
    assert inbox.gone
    assert inbox.complete
    inbox.closed()  # said twice: nothing changes
    assert inbox.state == after


def test_a_websocket_told_its_connection_closed_delivers_what_was_queued_then_is_gone() -> None:
    inbox = Inbox(True)
    inbox.closed()
    assert inbox.state == conv.CLOSING
    assert inbox.gone
    assert not inbox.full()  # nothing more arrives than the server queued: read on
    assert inbox.received({"type": "websocket.receive", "bytes": b"x"}) == DELIVER
    assert inbox.state == conv.CLOSING
    assert inbox.received({"type": "websocket.disconnect", "code": 1006}) == DELIVER
    assert inbox.state == conv.GONE


def test_closing_delivers_the_queued_body_in_order_and_never_comes_back() -> None:
    inbox = Inbox(False)
    inbox.closed()
    assert inbox.received(request(b"a", more=True)) == DELIVER
    assert inbox.state == conv.CLOSING
    assert inbox.gone
    assert inbox.received(request(b"b")) == DELIVER  # the last chunk: only the disconnect can follow
    assert inbox.state == conv.GONE
    assert inbox.received(request(b"stray")) == DROP
    assert inbox.received({"type": "http.disconnect"}) == DELIVER
    assert inbox.gone


def test_closing_goes_to_gone_on_the_disconnect() -> None:
    inbox = Inbox(False)
    inbox.closed()
    disconnect = {"type": "http.disconnect"}
    assert inbox.received(disconnect) == DELIVER
    assert inbox.state == conv.GONE
    assert inbox.disconnect is disconnect


@pytest.mark.parametrize(
    ("state", "full"),
    [(conv.BODY, True), (conv.OPEN, True), (conv.CLOSING, False), (conv.COMPLETE, False), (conv.GONE, False)],
)
def test_a_full_buffer_holds_the_client_back_only_while_more_may_come(state: str, full: bool) -> None:
    inbox = Inbox(False, max_bytes=1)
    inbox.push(request(b"xx", more=True))
    inbox.state = state
    assert inbox.full() is full


def test_a_receive_error_is_kept_and_raised_once() -> None:
    inbox = Inbox(False)
    inbox.raise_error()  # nothing kept: nothing raised
    error = OSError("reset")
    inbox.fail(error)
    kept = inbox.error
    assert kept is error
    with pytest.raises(OSError, match="reset"):
        inbox.raise_error()
    assert inbox.error is None
    inbox.raise_error()


@pytest.mark.parametrize(
    ("message", "size"),
    [({"type": "http.request", "body": b"abc"}, 3), ({"type": "websocket.receive", "text": "ab"}, 2), ({}, 0)],
)
def test_message_size(message: dict[str, Any], size: int) -> None:
    assert message_size(message) == size


# -- the response side: HTTP ---------------------------------------------------------------------


def start(**extra: Any) -> dict[str, Any]:
    return {"type": "http.response.start", "status": 200, "headers": [], **extra}


def body(more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": b"x", "more_body": more}


@pytest.mark.parametrize(
    ("messages", "state"),
    [
        ([], conv.START),
        ([{"type": "http.response.early_hint", "links": []}], conv.START),
        ([{"type": "http.response.debug", "info": {}}, start()], conv.SENDING),
        ([start(), {"type": "http.response.debug", "info": {}}], conv.SENDING),
        ([start(), body(more=True), {"type": "http.response.early_hint", "links": []}], conv.SENDING),
        ([{"type": "http.response.push", "path": "/a.css", "headers": []}, start()], conv.SENDING),
        ([start(), body(more=True), body(more=True)], conv.SENDING),
        ([start(), body()], conv.DONE),
        ([start(), {"type": "http.response.pathsend", "path": "/f"}], conv.DONE),
        ([start(trailers=True), body()], conv.TRAILERS),
        ([start(trailers=True), {"type": "http.response.pathsend", "path": "/f"}], conv.TRAILERS),
        ([start(trailers=True), body(), {"type": "http.response.trailers", "more_trailers": True}], conv.TRAILERS),
        ([start(trailers=True), body(), {"type": "http.response.trailers", "headers": []}], conv.DONE),
        ([start(trailers=True), body(more=True), {"type": "http.response.pathsend", "path": "/f"}], conv.TRAILERS),
    ],
)
def test_http_response_transitions(messages: list[dict[str, Any]], state: str) -> None:
    outbox = Outbox(False)
    for message in messages:
        outbox.send(message)
    assert outbox.state == state
    assert outbox.started is (state != conv.START)
    assert outbox.complete is (state == conv.DONE)


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([body()], r"""Expected ASGI message "http.response.start", "http.response.early_hint", """),
        ([start(), start()], r"""Expected ASGI message .* while the body is sent, but got 'http.response.start'"""),
        ([start(), body(), body()], r"Unexpected ASGI message 'http.response.body' after the response is complete"),
        ([start(), body(), {"type": "http.response.trailers"}], r"nothing more may be sent"),
        ([start(trailers=True), body(), body()], r"""Expected ASGI message "http.response.trailers" while"""),
        ([{"type": "websocket.accept"}], r"before the response start, but got 'websocket.accept'"),
    ],
)
def test_http_messages_out_of_order_name_the_message_and_the_state(messages: list[dict[str, Any]], error: str) -> None:
    outbox = Outbox(False)
    for message in messages[:-1]:
        outbox.send(message)
    with pytest.raises(ProtocolError, match=error):
        outbox.send(messages[-1])


# -- the response side: WebSocket ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kinds", "state"),
    [
        ([], conv.CONNECTING),
        (["websocket.accept"], conv.CONNECTED),
        (["websocket.accept", "websocket.send", "websocket.send"], conv.CONNECTED),
        (["websocket.accept", "websocket.close"], conv.CLOSED),
        (["websocket.close"], conv.CLOSED),
        (["websocket.http.response.start"], conv.DENIAL),
        (["websocket.http.response.start", "more"], conv.DENIAL),
        (["websocket.http.response.start", "websocket.http.response.body"], conv.CLOSED),
    ],
)
def test_websocket_transitions(kinds: list[str], state: str) -> None:
    outbox = Outbox(True)
    for kind in kinds:
        if kind == "more":
            outbox.send({"type": "websocket.http.response.body", "body": b"x", "more_body": True})
        else:
            outbox.send({"type": kind})
    assert outbox.state == state
    assert outbox.started is (state != conv.CONNECTING)
    assert outbox.complete is (state == conv.CLOSED)


@pytest.mark.parametrize(
    ("kinds", "error"),
    [
        (
            ["websocket.send"],
            r"""Expected ASGI message "websocket.accept", "websocket.close" or "websocket.http.response.start" """
            r"""before accept, but got 'websocket.send'""",
        ),
        (["websocket.accept", "websocket.accept"], r"""Expected ASGI message "websocket.send" or "websocket.close" """),
        (["websocket.close", "websocket.send"], r"after the connection is closed: nothing more may be sent"),
        (
            ["websocket.http.response.start", "websocket.send"],
            r"""Expected ASGI message "websocket.http.response.body" while a denial""",
        ),
    ],
)
def test_websocket_messages_out_of_order_name_the_message_and_the_state(kinds: list[str], error: str) -> None:
    outbox = Outbox(True)
    for kind in kinds[:-1]:
        outbox.send({"type": kind})
    with pytest.raises(ProtocolError, match=error):
        outbox.send({"type": kinds[-1]})


def test_protocol_error_is_a_runtime_error() -> None:
    assert issubclass(ProtocolError, RuntimeError)


# -- the client's side of a WebSocket (what WebSocket.receive checks) -------------------------------


@pytest.mark.parametrize(
    ("kinds", "state"),
    [
        ([], conv.HANDSHAKE),
        (["websocket.connect"], conv.LISTENING),
        (["websocket.connect", "websocket.receive", "websocket.receive"], conv.LISTENING),
        (["websocket.connect", "websocket.disconnect"], conv.LEFT),
    ],
)
def test_websocket_client_transitions(kinds: list[str], state: str) -> None:
    client = Outbox(True, client=True)
    for kind in kinds:
        client.send({"type": kind})
    assert client.state == state
    assert client.started is (state != conv.HANDSHAKE)
    assert client.complete is (state == conv.LEFT)


@pytest.mark.parametrize(
    ("kinds", "error"),
    [
        (["websocket.receive"], r"""^Expected ASGI message "websocket.connect" before the connect message, but got"""),
        (["websocket.disconnect"], r"""^Expected ASGI message "websocket.connect" before the connect message"""),
        (
            ["websocket.connect", "websocket.connect"],
            r"""^Expected ASGI message "websocket.receive" or "websocket.disconnect" while the client is connected, """
            r"""but got 'websocket.connect'$""",
        ),
        (
            ["websocket.connect", "websocket.disconnect", "websocket.receive"],
            r"^Unexpected ASGI message 'websocket.receive' after the client disconnected: nothing more may be sent.$",
        ),
    ],
)
def test_websocket_client_messages_out_of_order_name_the_message_and_the_state(kinds: list[str], error: str) -> None:
    client = Outbox(True, client=True)
    for kind in kinds[:-1]:
        client.send({"type": kind})
    with pytest.raises(ProtocolError, match=error):
        client.send({"type": kinds[-1]})


# -- who words the refusal --------------------------------------------------------------------------


class Refused(Exception):
    pass


def refuse_with_state(outbox: Outbox, kind: str) -> Refused:
    return Refused(outbox.state, kind)


@pytest.mark.parametrize(
    ("websocket", "client", "before", "message"),
    [
        (False, False, [], body()),
        (False, False, [start(), body()], start()),
        (True, False, [{"type": "websocket.close"}], {"type": "websocket.send"}),
        (True, True, [], {"type": "websocket.receive"}),
    ],
)
def test_a_refusal_of_its_own_is_raised_with_the_state_the_message_found(
    websocket: bool, client: bool, before: list[dict[str, Any]], message: dict[str, Any]
) -> None:
    outbox = Outbox(websocket, client=client, refuse=refuse_with_state)
    for earlier in before:
        outbox.send(earlier)
    state = outbox.state
    with pytest.raises(Refused) as info:
        outbox.send(message)
    assert info.value.args == (state, message["type"])
    assert outbox.state == state  # a refused message changes nothing


def test_the_start_and_body_shortcuts_raise_the_refusal_of_their_outbox() -> None:
    outbox = Outbox(False, refuse=refuse_with_state)
    with pytest.raises(Refused):
        outbox.body(body())
    outbox.start(start())
    with pytest.raises(Refused):
        outbox.start(start())


@pytest.mark.parametrize(
    ("state", "kind", "sentence"),
    [
        (
            conv.CONNECTING,
            "websocket.send",
            """Expected ASGI message "websocket.accept", "websocket.close" or "websocket.http.response.start", """
            """but got 'websocket.send'""",
        ),
        (
            conv.CONNECTED,
            "websocket.accept",
            """Expected ASGI message "websocket.send" or "websocket.close", but got 'websocket.accept'""",
        ),
        (
            conv.DENIAL,
            "websocket.send",
            """Expected ASGI message "websocket.http.response.body", but got 'websocket.send'""",
        ),
        (
            conv.HANDSHAKE,
            "websocket.receive",
            """Expected ASGI message "websocket.connect", but got 'websocket.receive'""",
        ),
        (conv.CLOSED, "websocket.send", "Unexpected ASGI message 'websocket.send': nothing more may be sent."),
    ],
)
def test_expected_without_the_state_is_starlettes_sentence(state: str, kind: str, sentence: str) -> None:
    assert conv.expected(state, kind, name_state=False) == sentence
    named = conv.expected(state, kind)
    assert f" {state}" in named
    assert named.replace(f" {state}", "", 1) == sentence  # the same sentence, with the state named


@pytest.mark.parametrize(
    ("websocket", "client", "before", "allowed", "refused"),
    [
        (False, False, [], "http.response.start", "http.response.body"),
        (False, False, [start(trailers=True), body()], "http.response.trailers", "http.response.body"),
        (True, False, [], "websocket.accept", "websocket.send"),
        (True, False, [{"type": "websocket.accept"}], "websocket.send", "websocket.accept"),
        (True, True, [], "websocket.connect", "websocket.receive"),
    ],
)
def test_allows_answers_from_the_table_without_moving(
    websocket: bool, client: bool, before: list[dict[str, Any]], allowed: str, refused: str
) -> None:
    outbox = Outbox(websocket, client=client)
    for earlier in before:
        outbox.send(earlier)
    state = outbox.state
    assert outbox.allows(allowed)
    assert not outbox.allows(refused)
    assert outbox.state == state


@pytest.mark.parametrize(
    ("websocket", "client", "end"),
    [(False, False, conv.DONE), (True, False, conv.CLOSED), (True, True, conv.LEFT)],
)
def test_lost_ends_the_conversation_without_a_message(websocket: bool, client: bool, end: str) -> None:
    outbox = Outbox(websocket, client=client)
    outbox.lost()
    assert outbox.state == end
    assert outbox.complete
    with pytest.raises(ProtocolError, match="nothing more may be sent"):
        outbox.send({"type": "websocket.close" if websocket else "http.response.start"})


# -- deadlines --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since", "timeout", "body", "deadline"),
    [
        (None, 30.0, math.inf, math.inf),  # nothing to time
        (5.0, None, math.inf, math.inf),  # no send timeout
        (5.0, 30.0, math.inf, 35.0),
        (5.0, 30.0, 20.0, 20.0),
        (5.0, 30.0, 40.0, 35.0),
        (None, None, 12.0, 12.0),
    ],
)
def test_watch_deadline_is_the_earliest_timeout(
    since: float | None, timeout: float | None, body: float, deadline: float
) -> None:
    assert watch_deadline(since, timeout, body) == deadline


@pytest.mark.parametrize(
    ("now", "since", "timeout", "body", "which"),
    [
        (10.0, None, 30.0, math.inf, None),
        (34.9, 5.0, 30.0, math.inf, None),
        (35.0, 5.0, 30.0, math.inf, SEND_TIMEOUT),
        (35.0, 5.0, 30.0, 20.0, SEND_TIMEOUT),  # both ran out: the client stopped reading
        (20.0, 5.0, 30.0, 20.0, BODY_TIMEOUT),
        (20.0, None, None, 20.0, BODY_TIMEOUT),
        (19.0, 5.0, None, 20.0, None),
    ],
)
def test_expired_names_the_timeout_that_ran_out(
    now: float, since: float | None, timeout: float | None, body: float, which: str | None
) -> None:
    assert expired(now, since, timeout, body) == which


@pytest.mark.parametrize(
    "before",
    [
        [],
        [start()],
        [start(trailers=True)],
        [start(), body(more=True)],
        [start(), body()],
        [start(trailers=True), body()],
    ],
)
@pytest.mark.parametrize("message", [start(), start(trailers=True), body(), body(more=True)])
def test_the_start_and_body_shortcuts_follow_the_table(before: list[dict[str, Any]], message: dict[str, Any]) -> None:
    by_table, by_shortcut = Outbox(False), Outbox(False)
    for earlier in before:
        by_table.send(earlier)
        by_shortcut.send(earlier)
    shortcut = by_shortcut.start if message["type"] == "http.response.start" else by_shortcut.body
    try:
        by_table.send(message)
    except ProtocolError as error:
        with pytest.raises(ProtocolError, match=re.escape(str(error))):
            shortcut(message)
    else:
        result = shortcut(message)
        if message["type"] == "http.response.body":
            assert result is message["more_body"]
    assert (by_shortcut.state, by_shortcut.trailers) == (by_table.state, by_table.trailers)
