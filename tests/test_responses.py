"""Responses: headers and bodies, cookies, redirects, streaming, files with Range requests."""

from __future__ import annotations

import datetime as dt
import email.utils
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import minimal_http_scope as http_scope
from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.datastructures import URL
from triolette.requests import Request
from triolette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    MalformedRangeHeader,
    PlainTextResponse,
    RangeNotSatisfiable,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from triolette.routing import Mount, Route
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send


async def never_receive() -> Message:
    await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def types(self) -> list[str]:
        return [m["type"] for m in self.messages]

    @property
    def body(self) -> bytes:
        return b"".join(bytes(m.get("body", b"")) for m in self.messages if m["type"].endswith("response.body"))


def client_for(response: Response | Any) -> TestClient:
    """A client for an app that answers every request with ``response``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await response(scope, receive, send)

    return TestClient(app)


# --------------------------------------------------------------------------- Response


@pytest.mark.parametrize(
    ("content", "body"),
    [(None, b""), (b"bytes", b"bytes"), ("text é", "text é".encode()), (memoryview(b"view"), b"view")],
)
def test_response_body_and_length(content: Any, body: bytes) -> None:
    response = Response(content)
    assert bytes(response.body) == body
    assert response.headers["content-length"] == str(len(body))
    assert "content-type" not in response.headers
    assert client_for(response).get("/").content == body


def test_response_media_type_gets_a_charset_for_text() -> None:
    assert Response("x", media_type="text/csv").headers["content-type"] == "text/csv; charset=utf-8"
    assert Response("x", media_type="text/csv; charset=latin-1").headers["content-type"] == "text/csv; charset=latin-1"
    assert Response("x", media_type="application/xml").headers["content-type"] == "application/xml"
    assert HTMLResponse("<b>").headers["content-type"] == "text/html; charset=utf-8"
    assert PlainTextResponse("x").headers["content-type"] == "text/plain; charset=utf-8"


def test_explicit_headers_win_and_names_are_lowercased() -> None:
    headers = {"Content-Length": "99", "Content-Type": "x/y", "X-Thing": "1"}
    response = Response(b"abc", headers=headers, media_type="a/b")
    assert response.raw_headers == [(b"content-length", b"99"), (b"content-type", b"x/y"), (b"x-thing", b"1")]
    assert response.headers is response.headers
    response.headers["x-added"] = "2"
    assert (b"x-added", b"2") in response.raw_headers


@pytest.mark.parametrize("status", [100, 204, 304])
def test_no_content_length_where_no_body_is_allowed(status: int) -> None:
    assert "content-length" not in Response(status_code=status).headers
    assert Response(status_code=205).headers["content-length"] == "0"


def test_status_code_and_headers_reach_the_client() -> None:
    response = client_for(PlainTextResponse("gone", status_code=410, headers={"x-why": "because"})).get("/")
    assert response.status_code == 410
    assert response.headers["x-why"] == "because"
    assert response.text == "gone"


def test_json_response_is_compact_utf8_and_refuses_nan() -> None:
    response = JSONResponse({"name": "Zoë", "n": [1, 2.5, None, True]})
    assert response.body == '{"name":"Zoë","n":[1,2.5,null,true]}'.encode()
    assert response.headers["content-type"] == "application/json"
    assert JSONResponse(None).body == b"null"
    assert client_for(JSONResponse({"a": 1}, status_code=201)).get("/").json() == {"a": 1}
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        JSONResponse(float("nan"))


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("/elsewhere", "/elsewhere"),
        ("https://example.org/a b?q=1&r=ü#frag", "https://example.org/a%20b?q=1&r=%C3%BC#frag"),
        (URL("http://example.org/x?y=1"), "http://example.org/x?y=1"),
        ("/keep%20encoded/[v6]/!$&'()*+,;=@", "/keep%20encoded/[v6]/!$&'()*+,;=@"),
    ],
)
def test_redirect_location_is_quoted(url: str | URL, location: str) -> None:
    response = RedirectResponse(url)
    assert response.status_code == 307
    assert response.headers["location"] == location
    assert response.body == b""


def test_redirect_status_and_client_follows() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/":
            await RedirectResponse("/target", status_code=301, headers={"x-from": "root"})(scope, receive, send)
        else:
            await PlainTextResponse("arrived")(scope, receive, send)

    client = TestClient(app)
    assert client.get("/").text == "arrived"
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["x-from"] == "root"
    assert response.headers["location"] == "/target"


def test_set_cookie_with_every_option() -> None:
    response = Response("x")
    expires = dt.datetime(2037, 1, 22, 12, 0, 10, tzinfo=dt.UTC)
    response.set_cookie(
        "mycookie",
        "myvalue",
        max_age=10,
        expires=expires,
        path="/",
        domain="localhost",
        secure=True,
        httponly=True,
        samesite="none",
    )
    response.set_cookie("plain", "1", expires="Fri, 01 Jan 2100 00:00:00 GMT", path=None, samesite=None)
    cookies = response.headers.getlist("set-cookie")
    assert cookies == [
        "mycookie=myvalue; Domain=localhost; expires=Thu, 22 Jan 2037 12:00:10 GMT; HttpOnly; Max-Age=10; "
        "Path=/; SameSite=none; Secure",
        "plain=1; expires=Fri, 01 Jan 2100 00:00:00 GMT",
    ]


def test_set_cookie_expires_in_seconds_is_a_date_from_now() -> None:
    response = Response()
    before = int(time.time())
    response.set_cookie("soon", "1", expires=3600)
    after = int(time.time())
    match = re.search(r"expires=([^;]+);", response.headers["set-cookie"])
    assert match is not None
    expires = email.utils.parsedate_to_datetime(match.group(1)).timestamp()
    assert before + 3600 <= expires <= after + 3600


def test_set_cookie_checks_samesite_and_partitioned() -> None:
    with pytest.raises(AssertionError, match="samesite must be either 'strict', 'lax' or 'none', got 'sometimes'"):
        Response().set_cookie("a", samesite="sometimes")  # type: ignore[arg-type]  # the wrong value is the point
    if sys.version_info < (3, 14):
        with pytest.raises(ValueError, match=r"Partitioned cookies are only supported in Python 3\.14 and above"):
            Response().set_cookie("a", partitioned=True)


def test_delete_cookie_expires_it() -> None:
    def handler(request: Request) -> Response:
        response = Response("x")
        if request.cookies.get("session"):
            response.delete_cookie("session", httponly=True, samesite="strict")
        else:
            response.set_cookie("session", "abc")
        return response

    client = TestClient(Triolette(routes=[Route("/", handler)]))
    client.get("/")
    assert client.cookies["session"] == "abc"
    response = client.get("/")
    assert re.fullmatch(
        r'session=""; expires=\w{3}, \d\d \w{3} \d{4} [\d:]{8} GMT; HttpOnly; Max-Age=0; Path=/; SameSite=strict',
        response.headers["set-cookie"],
    )
    assert "session" not in client.cookies
    elsewhere = Response()
    elsewhere.delete_cookie("k", path="/app", domain="example.org", secure=True, samesite=None, partitioned=False)
    expected = r'k=""; Domain=example\.org; expires=[^;]+; Max-Age=0; Path=/app; Secure'
    assert re.fullmatch(expected, elsewhere.headers["set-cookie"])


async def test_response_as_a_websocket_denial() -> None:
    send = Recorder()
    await PlainTextResponse("no", status_code=403)({"type": "websocket"}, never_receive, send)
    assert send.types == ["websocket.http.response.start", "websocket.http.response.body"]
    assert send.messages[0]["status"] == 403
    assert send.body == b"no"


async def test_background_task_runs_after_the_body() -> None:
    events: list[str] = []

    async def task(label: str) -> None:
        events.append(label)

    send = Recorder()

    async def recording_send(message: Message) -> None:
        events.append(message["type"])
        await send(message)

    await Response("x", background=BackgroundTask(task, "background"))(http_scope(), never_receive, recording_send)
    assert events == ["http.response.start", "http.response.body", "background"]


def test_background_task_has_finished_when_the_client_returns() -> None:
    done: list[int] = []
    client = client_for(Response("x", background=BackgroundTask(done.append, 1)))
    assert client.get("/").text == "x"
    assert done == [1]


# --------------------------------------------------------------------------- StreamingResponse


def test_streaming_async_and_sync_iterators() -> None:
    async def numbers() -> AsyncIterator[str | bytes | memoryview]:
        for n in range(3):
            yield str(n)
        yield b"|"
        yield memoryview(b"end")

    response = StreamingResponse(numbers(), media_type="text/plain", headers={"x-s": "1"})
    assert "content-length" not in response.headers
    result = client_for(response).get("/")
    assert result.text == "012|end"
    assert result.headers["content-type"] == "text/plain; charset=utf-8"
    assert result.headers["x-s"] == "1"

    thread_names: list[str] = []

    def blocking() -> Iterator[str]:
        import threading

        for word in ("a", "b"):
            thread_names.append(threading.current_thread().name)
            yield word

    assert client_for(StreamingResponse(blocking())).get("/").text == "ab"
    assert thread_names
    assert all(name != "triolette-testclient" for name in thread_names)


def test_streaming_chunks_arrive_as_sent() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"one", b"two", b"three"):
            yield chunk

    with client_for(StreamingResponse(chunks())).stream("GET", "/") as response:
        assert list(response.iter_raw()) == [b"one", b"two", b"three"]


async def test_streaming_stops_when_client_disconnects(autojump_clock: trio.abc.Clock) -> None:
    sent: list[bytes] = []
    closed = False
    gone = trio.Event()

    async def numbers() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            for n in range(100):
                yield b"%d" % n
                await trio.sleep(1)
        finally:
            closed = True

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            sent.append(message["body"])
            if len(sent) == 3:
                gone.set()

    with trio.fail_after(60):
        await StreamingResponse(numbers())(http_scope(), receive, send)
    assert sent == [b"0", b"1", b"2"]
    assert closed
    assert trio.current_time() == 2


async def test_streaming_skips_chunks_once_the_watcher_saw_the_disconnect() -> None:
    """With cancel_on_disconnect off, the stream goes on but nothing more is sent."""
    produced: list[int] = []
    gone = trio.Event()
    send = Recorder()

    async def numbers() -> AsyncIterator[bytes]:
        for n in range(5):
            produced.append(n)
            if n == 1:
                gone.set()
                await trio.testing.wait_all_tasks_blocked()
            yield b"%d" % n

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await StreamingResponse(numbers())(scope, receive, send)

    app_ = Triolette(routes=[Mount("/", app=app)], cancel_on_disconnect=False)
    with trio.fail_after(5):
        await app_(http_scope(), receive, send)
    assert produced == [0, 1]  # the iterator is closed at the first chunk after the disconnect
    assert send.body == b"0"


async def test_streaming_background_runs_once_without_an_app() -> None:
    runs: list[str] = []

    async def body() -> AsyncIterator[bytes]:
        yield b"x"

    async def task() -> None:
        runs.append("bg")

    send = Recorder()
    response = StreamingResponse(body(), background=BackgroundTask(task))
    with trio.fail_after(5):
        await response(http_scope(), never_receive, send)
    assert runs == ["bg"]
    assert response.background is not None
    assert send.body == b"x"


async def test_streaming_as_a_websocket_denial_and_stream_response() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"denied"

    send = Recorder()
    await StreamingResponse(body(), status_code=401)({"type": "websocket"}, never_receive, send)
    assert send.types == ["websocket.http.response.start"] + ["websocket.http.response.body"] * 2
    assert send.body == b"denied"

    plain = Recorder()
    chunks: list[str | bytes] = [b"a", "b"]
    await StreamingResponse(iter(chunks)).stream_response(plain)
    assert plain.types == ["http.response.start", "http.response.body", "http.response.body", "http.response.body"]
    assert plain.body == b"ab"


async def test_listen_for_disconnect_returns_on_disconnect() -> None:
    messages: list[Message] = [{"type": "http.request", "body": b""}, {"type": "http.disconnect"}]

    async def receive() -> Message:
        await trio.lowlevel.checkpoint()
        return messages.pop(0)

    with trio.fail_after(1):
        await StreamingResponse(iter([])).listen_for_disconnect(receive)
    assert messages == []


# --------------------------------------------------------------------------- FileResponse


CONTENT = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(CONTENT)
    return path


def test_file_response_sends_the_file_with_stat_headers(file: Path) -> None:
    response = FileResponse(file, filename="data.bin")
    response.chunk_size = 1000  # several chunks
    result = client_for(response).get("/")
    assert result.status_code == 200
    assert result.content == CONTENT
    assert result.headers["content-length"] == str(len(CONTENT))
    assert result.headers["content-type"] == "application/octet-stream"
    assert result.headers["accept-ranges"] == "bytes"
    assert result.headers["content-disposition"] == 'attachment; filename="data.bin"'
    stat = os.stat(file)
    assert result.headers["last-modified"] == time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(stat.st_mtime))
    assert re.fullmatch(r'"[0-9a-f]{32}"', result.headers["etag"])


def test_file_response_head_sends_headers_only(file: Path) -> None:
    result = client_for(FileResponse(file)).head("/")
    assert result.status_code == 200
    assert result.content == b""
    assert result.headers["content-length"] == str(len(CONTENT))


def test_file_response_media_type_and_disposition(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<p>hi</p>")
    assert FileResponse(page).media_type == "text/html"
    assert FileResponse(page, filename="x.json").media_type == "application/json"
    assert FileResponse(page, media_type="image/png").media_type == "image/png"
    inline = FileResponse(page, filename="naïve résumé.txt", content_disposition_type="inline")
    assert inline.headers["content-disposition"] == "inline; filename*=utf-8''na%C3%AFve%20r%C3%A9sum%C3%A9.txt"
    custom = FileResponse(page, filename="a.txt", headers={"content-disposition": "custom"})
    assert custom.headers["content-disposition"] == "custom"


def test_file_response_with_a_given_stat_result(file: Path) -> None:
    stat = os.stat(file)
    response = FileResponse(file, stat_result=stat)
    assert response.headers["content-length"] == str(stat.st_size)
    assert client_for(response).get("/").content == CONTENT


def test_file_response_missing_file_or_directory(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"File at path .*missing\.txt does not exist\."):
        client_for(FileResponse(tmp_path / "missing.txt")).get("/")
    with pytest.raises(RuntimeError, match=r"File at path .* is not a file\."):
        client_for(FileResponse(tmp_path)).get("/")


async def test_file_response_uses_pathsend_where_offered(file: Path) -> None:
    send = Recorder()
    scope = http_scope(extensions={"http.response.pathsend": {}})
    await FileResponse(file)(scope, never_receive, send)
    assert send.types == ["http.response.start", "http.response.pathsend"]
    assert send.messages[1]["path"] == str(file)


async def test_file_response_as_a_websocket_denial(file: Path) -> None:
    send = Recorder()
    await FileResponse(file, status_code=403)({"type": "websocket", "headers": []}, never_receive, send)
    assert send.types[0] == "websocket.http.response.start"
    assert send.messages[0]["status"] == 403
    assert send.body == CONTENT


async def test_file_response_runs_its_background_task(file: Path) -> None:
    runs: list[int] = []
    await FileResponse(file, background=BackgroundTask(runs.append, 1))(http_scope(), never_receive, Recorder())
    assert runs == [1]


def test_single_range(file: Path) -> None:
    result = client_for(FileResponse(file)).get("/", headers={"Range": "bytes=100-199"})
    assert result.status_code == 206
    assert result.content == CONTENT[100:200]
    assert result.headers["content-range"] == f"bytes 100-199/{len(CONTENT)}"
    assert result.headers["content-length"] == "100"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=-10", CONTENT[-10:]),
        ("bytes=10200-", CONTENT[10200:]),
        ("bytes=10000-99999", CONTENT[10000:]),
        (" BYTES = 0-0", CONTENT[:1]),
    ],
)
def test_suffix_open_and_clamped_ranges(file: Path, header: str, expected: bytes) -> None:
    result = client_for(FileResponse(file)).get("/", headers={"Range": header})
    assert result.status_code == 206
    assert result.content == expected


def test_single_range_across_chunks_and_head(file: Path) -> None:
    response = FileResponse(file)
    response.chunk_size = 7
    result = client_for(response).get("/", headers={"Range": "bytes=5-104"})
    assert result.content == CONTENT[5:105]
    head = client_for(FileResponse(file)).head("/", headers={"Range": "bytes=5-104"})
    assert head.status_code == 206
    assert head.content == b""
    assert head.headers["content-length"] == "100"


def parse_byteranges(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    boundary = content_type.split("boundary=")[1].encode()
    assert body.endswith(b"\r\n--" + boundary + b"--")
    parts = body[: -len(b"\r\n--" + boundary + b"--")].split(b"\r\n--" + boundary + b"\r\n")
    assert parts[0] == b"--" + boundary + b"\r\n" or parts[0].startswith(b"--" + boundary)
    out = []
    for part in [parts[0].removeprefix(b"--" + boundary + b"\r\n"), *parts[1:]]:
        head, _, data = part.partition(b"\r\n\r\n")
        content_range = next(line for line in head.split(b"\r\n") if line.startswith(b"Content-Range:"))
        out.append((content_range.decode().removeprefix("Content-Range: "), data))
    return out


def test_several_ranges_are_multipart_byteranges(file: Path) -> None:
    response = FileResponse(file, media_type="text/plain")
    response.chunk_size = 3
    result = client_for(response).get("/", headers={"Range": "bytes=0-9, 50-59, 20-29"})
    assert result.status_code == 206
    content_type = result.headers["content-type"]
    assert re.fullmatch(r"multipart/byteranges; boundary=[0-9a-f]{26}", content_type)
    assert result.headers["content-length"] == str(len(result.content))
    assert parse_byteranges(result.content, content_type) == [
        (f"bytes 0-9/{len(CONTENT)}", CONTENT[0:10]),
        (f"bytes 20-29/{len(CONTENT)}", CONTENT[20:30]),
        (f"bytes 50-59/{len(CONTENT)}", CONTENT[50:60]),
    ]
    assert b"Content-Type: text/plain; charset=utf-8" in result.content


def test_generate_multipart_matches_the_body_sent(file: Path) -> None:
    ranges = [(0, 10), (20, 30)]
    length, part_header = FileResponse(file).generate_multipart(ranges, "b0undary", len(CONTENT), "text/plain")
    assert part_header(20, 30) == (
        f"--b0undary\r\nContent-Type: text/plain\r\nContent-Range: bytes 20-29/{len(CONTENT)}\r\n\r\n".encode()
    )
    body = b"".join(part_header(start, end) + CONTENT[start:end] + b"\r\n" for start, end in ranges) + b"--b0undary--"
    assert length == len(body)


def test_overlapping_ranges_are_merged(file: Path) -> None:
    result = client_for(FileResponse(file)).get("/", headers={"Range": "bytes=0-49, 40-99"})
    assert result.status_code == 206
    assert result.headers["content-range"] == f"bytes 0-99/{len(CONTENT)}"
    assert result.content == CONTENT[:100]


def test_several_ranges_head(file: Path) -> None:
    result = client_for(FileResponse(file)).head("/", headers={"Range": "bytes=0-9, 50-59"})
    assert result.status_code == 206
    assert result.content == b""
    assert result.headers["content-type"].startswith("multipart/byteranges; boundary=")


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("bytes", "Malformed range header."),
        ("items=0-1", "Only support bytes range"),
        ("bytes=abc", "Range header: range must be requested"),
        ("bytes=50-10", "Range header: start must be less than end"),
    ],
)
def test_malformed_range_is_400(file: Path, header: str, message: str) -> None:
    result = client_for(FileResponse(file)).get("/", headers={"Range": header})
    assert result.status_code == 400
    assert result.text == message


@pytest.mark.parametrize("digits", [5000, 100_000])
@pytest.mark.parametrize("template", ["bytes={n}-", "bytes=0-{n}", "bytes=-{n}"], ids=["start", "end", "suffix"])
def test_range_with_5000_digit_number_is_400(file: Path, template: str, digits: int) -> None:
    """Issue 13, item 1: over Python's 4300-digit conversion limit, a 400 rather than a 500."""
    result = client_for(FileResponse(file)).get("/", headers={"Range": template.format(n="7" * digits)})
    assert result.status_code == 400
    assert result.text == f"Range header: a byte position has at most 19 digits, got one of {digits}."


@pytest.mark.parametrize("header", ["bytes=20000-", "bytes=-0", "bytes=99999-99999, 20000-"])
def test_unsatisfiable_range_is_416(file: Path, header: str) -> None:
    result = client_for(FileResponse(file)).get("/", headers={"Range": header})
    assert result.status_code == 416
    assert result.headers["content-range"] == f"bytes */{len(CONTENT)}"


def test_range_ignored_for_other_statuses_and_methods(file: Path) -> None:
    assert client_for(FileResponse(file, status_code=404)).get("/", headers={"Range": "bytes=0-1"}).status_code == 404
    result = client_for(FileResponse(file)).post("/", headers={"Range": "bytes=0-1"})
    assert result.status_code == 200
    assert result.content == CONTENT


def test_if_range(file: Path) -> None:
    client = client_for(FileResponse(file))
    full = client.get("/")
    etag, last_modified = full.headers["etag"], full.headers["last-modified"]
    for validator in (etag, last_modified):
        assert client.get("/", headers={"Range": "bytes=0-1", "If-Range": validator}).status_code == 206
    for stale in ('"other"', "W/" + etag, "Thu, 01 Jan 1970 00:00:00 GMT"):
        result = client.get("/", headers={"Range": "bytes=0-1", "If-Range": stale})
        assert result.status_code == 200
        assert result.content == CONTENT


def test_cve_2025_62727_many_ranges_are_answered_fast(file: Path) -> None:
    """Thousands of ranges must not cost quadratic time: over the limit the whole file is sent,
    under it the ranges are merged."""
    many = "bytes=" + ", ".join(f"{i}-{i}" for i in range(5000))
    client = client_for(FileResponse(file))
    started = time.perf_counter()
    result = client.get("/", headers={"Range": many})
    assert result.status_code == 200
    assert result.content == CONTENT

    overlapping = "bytes=" + ", ".join(["0-5000"] * 99)
    result = client.get("/", headers={"Range": overlapping})
    assert result.status_code == 206
    assert result.headers["content-range"] == f"bytes 0-5000/{len(CONTENT)}"
    assert time.perf_counter() - started < 2


def test_range_errors_exist_for_compatibility() -> None:
    assert MalformedRangeHeader().content == "Malformed range header."
    assert MalformedRangeHeader("bad").content == "bad"
    assert RangeNotSatisfiable(10).max_size == 10


def test_typed_memoryview_content_length_is_the_byte_length() -> None:
    view = memoryview(b"01234567").cast("I")  # two 4-byte items
    response = Response(view)
    assert response.headers["content-length"] == "8"
    assert bytes(response.body) == b"01234567"
    strided = Response(memoryview(b"0123456789")[::2])  # not contiguous: copied
    assert strided.body == b"02468"
    assert strided.headers["content-length"] == "5"
    assert client_for(Response(view)).get("/").content == b"01234567"


@pytest.mark.parametrize(("spec_version", "error"), [("2.4", "ClientDisconnect"), ("2.3", "OSError")])
async def test_streaming_send_oserror_is_client_disconnect_from_asgi_2_4(spec_version: str, error: str) -> None:
    from triolette.requests import ClientDisconnect

    async def numbers() -> AsyncIterator[bytes]:
        for n in range(3):
            yield b"%d" % n

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            raise OSError("connection reset")

    scope = http_scope(asgi={"version": "3.0", "spec_version": spec_version})
    with pytest.raises((ClientDisconnect, OSError)) as info:
        await StreamingResponse(numbers())(scope, never_receive, send)
    assert type(info.value).__name__ == error
    app = Triolette(routes=[Route("/", lambda request: StreamingResponse(numbers()))])
    with pytest.raises((ClientDisconnect, OSError)) as info:
        await app(scope, never_receive, send)
    assert type(info.value).__name__ == error


@pytest.mark.parametrize("ranges", [b"bytes=0-4,10-19", b"bytes=10-19"])
async def test_range_on_a_file_that_shrank_after_stat_raises(file: Path, ranges: bytes) -> None:
    stat_result = os.stat(file)
    os.truncate(file, 15)
    response = FileResponse(file, stat_result=stat_result)
    sent = Recorder()
    scope = http_scope(headers=[(b"range", ranges)])
    with pytest.raises(RuntimeError, match=rf"^File at path {re.escape(str(file))} is shorter than expected\.$"):
        await response(scope, never_receive, sent)
    assert sent.messages[0]["status"] == 206
    assert not any(m["type"] == "http.response.body" and not m.get("more_body") for m in sent.messages)


@pytest.mark.parametrize(
    ("asgi", "version"), [({}, (2, 0)), ({"spec_version": "2.4"}, (2, 4)), ({"spec_version": "2.x"}, (2, 0))]
)
def test_spec_version_is_read_from_the_scope_default_2_0(asgi: dict[str, str], version: tuple[int, int]) -> None:
    from triolette.responses import _spec_version

    assert _spec_version({"type": "http", "asgi": asgi}) == version


async def test_file_response_on_its_own_runs_its_background_task_after_a_disconnect(tmp_path: Path) -> None:
    # Called on its own it watches for the disconnect itself; the background work still runs,
    # as it does for a FileResponse returned by an endpoint (and in Starlette).
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * (FileResponse.chunk_size * 4))
    ran: list[str] = []
    gone = trio.Event()
    bodies: list[Message] = []
    requested = False

    async def background() -> None:
        await trio.lowlevel.checkpoint()  # it may await: the disconnect does not cancel it
        ran.append("background")

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message)
            gone.set()
            await trio.sleep_forever()  # the client stopped reading, then left

    with trio.fail_after(10):
        await FileResponse(path, background=BackgroundTask(background))(http_scope(), receive, send)
    assert ran == ["background"]
    assert len(bodies) == 1
