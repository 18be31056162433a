from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from triolette.applications import Triolette
from triolette.middleware import Middleware
from triolette.middleware.gzip import GZipMiddleware, GZipResponder, IdentityResponder, unattached_send
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Route
from triolette.testclient import TestClient
from triolette.types import Message, Receive, Scope, Send

BIG = "x" * 4000


def make_client(endpoint: Any, **options: Any) -> TestClient:
    app = Triolette(routes=[Route("/", endpoint)], middleware=[Middleware(GZipMiddleware, **options)])
    return TestClient(app)


def big_text(request: Request) -> Response:
    return PlainTextResponse(BIG, headers={"Vary": "Cookie"})


def small_text(request: Request) -> Response:
    return PlainTextResponse("x" * 10)


def test_compresses_a_large_body() -> None:
    response = make_client(big_text).get("/", headers={"accept-encoding": "gzip"})
    assert response.status_code == 200
    assert response.text == BIG  # httpx decodes it
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(BIG)
    assert response.headers["vary"] == "Cookie, Accept-Encoding"


def test_small_bodies_are_left_alone() -> None:
    response = make_client(small_text).get("/", headers={"accept-encoding": "gzip"})
    assert response.text == "x" * 10
    assert "content-encoding" not in response.headers
    assert "vary" not in response.headers
    assert response.headers["content-length"] == "10"


@pytest.mark.parametrize("accept", ["", "br", "identity", "gzip;q=0", "gzip; q=0.0", "gzip;q=oops", "x-gzip2"])
def test_clients_that_do_not_accept_gzip_get_identity_with_vary(accept: str) -> None:
    response = make_client(big_text).get("/", headers={"accept-encoding": accept})
    assert response.text == BIG
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(len(BIG))
    assert response.headers["vary"] == "Cookie, Accept-Encoding"


@pytest.mark.parametrize("accept", ["gzip", "GZIP", "br, gzip;q=0.5", "deflate, gzip ;level=1"])
def test_accept_encoding_variants(accept: str) -> None:
    response = make_client(big_text).get("/", headers={"accept-encoding": accept})
    assert response.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/event-stream",
        "image/png",
        "audio/ogg",
        "video/mp4; codecs=avc1",
        "application/grpc+proto",
        "Application/ZIP",
    ],
)
def test_excluded_content_types_are_left_alone(content_type: str) -> None:
    def endpoint(request: Request) -> Response:
        return Response(BIG, media_type=content_type)

    response = make_client(endpoint).get("/", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert "vary" not in response.headers
    assert response.text == BIG


def test_custom_excluded_content_types() -> None:
    def endpoint(request: Request) -> Response:
        return Response(BIG, media_type="application/json")

    client = make_client(endpoint, exclude_content_types=("application/json; charset=utf-8",))
    assert "content-encoding" not in client.get("/", headers={"accept-encoding": "gzip"}).headers
    assert make_client(endpoint).get("/", headers={"accept-encoding": "gzip"}).headers["content-encoding"] == "gzip"


def test_an_existing_content_encoding_is_left_alone() -> None:
    payload = gzip.compress(BIG.encode())

    def endpoint(request: Request) -> Response:
        return Response(payload, headers={"Content-Encoding": "gzip"}, media_type="text/plain")

    response = make_client(endpoint).get("/", headers={"accept-encoding": "gzip"})
    assert response.text == BIG
    assert response.headers["content-length"] == str(len(payload))


def test_streaming_response_is_compressed_without_content_length() -> None:
    async def chunks() -> AsyncIterator[str]:
        for _ in range(10):
            yield "y" * 1000

    def endpoint(request: Request) -> Response:
        return StreamingResponse(chunks(), status_code=201, media_type="text/plain")

    response = make_client(endpoint).get("/", headers={"accept-encoding": "gzip"})
    assert response.status_code == 201
    assert response.text == "y" * 10000
    assert response.headers["content-encoding"] == "gzip"
    assert "content-length" not in response.headers


def http_scope(accept_encoding: bytes | None = b"gzip") -> Scope:
    headers = [(b"accept-encoding", accept_encoding)] if accept_encoding is not None else []
    return {"type": "http", "method": "GET", "path": "/", "headers": headers}


async def receive_nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Recorder:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)


def start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers or [], **extra}


async def test_streams_chunk_by_chunk_each_chunk_decodable_at_once() -> None:
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    decoded: list[bytes] = []
    proceed = trio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(headers=[(b"content-type", b"text/plain"), (b"content-length", b"99")]))
        await send({"type": "http.response.body", "body": b"first " * 10, "more_body": True})
        # The client has the first chunk before the app produces the second.
        await proceed.wait()
        await send({"type": "http.response.body", "body": b"second", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            decoded.append(decoder.decompress(message["body"]))
            proceed.set()

    await GZipMiddleware(app, minimum_size=10)(http_scope(), receive_nothing, send)
    assert decoded == [b"first " * 10, b"second", b""]
    assert decoder.eof
    headers = dict(sent[0]["headers"])
    assert headers[b"content-encoding"] == b"gzip"
    assert b"content-length" not in headers
    assert headers[b"vary"] == b"Accept-Encoding"


async def test_large_chunks_are_compressed_in_a_worker_thread() -> None:
    where: list[bool] = []

    class RecordingResponder(GZipResponder):
        def _compress(self, body: bytes, more_body: bool) -> bytes:
            where.append(trio.lowlevel.in_trio_run())
            return super()._compress(body, more_body)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(headers=[(b"content-type", b"text/plain")]))
        await send({"type": "http.response.body", "body": b"a" * 2048, "more_body": True})
        await send({"type": "http.response.body", "body": b"b" * 10, "more_body": True})
        await send({"type": "http.response.body", "body": b"c" * 1024, "more_body": False})

    recorder = Recorder()
    await RecordingResponder(app, minimum_size=1, thread_minimum_size=1024)(http_scope(), receive_nothing, recorder)
    # 2048 and 1024 bytes: worker thread (not in the trio run); 10 bytes: inline.
    assert where == [False, True, False]
    body = b"".join(message["body"] for message in recorder.messages[1:])
    assert gzip.decompress(body) == b"a" * 2048 + b"b" * 10 + b"c" * 1024


async def test_small_body_with_more_body_is_still_compressed_as_a_stream() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start())
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.body", "body": b"b"})

    recorder = Recorder()
    await GZipMiddleware(app)(http_scope(), receive_nothing, recorder)
    assert dict(recorder.messages[0]["headers"])[b"content-encoding"] == b"gzip"
    assert gzip.decompress(b"".join(m["body"] for m in recorder.messages[1:])) == b"ab"


async def test_trailers_drop_the_content_length() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(headers=[(b"content-length", b"1000")], trailers=True))
        await send({"type": "http.response.body", "body": b"z" * 1000})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"1")], "more_trailers": False})

    recorder = Recorder()
    await GZipMiddleware(app)(http_scope(), receive_nothing, recorder)
    headers = dict(recorder.messages[0]["headers"])
    assert b"content-length" not in headers
    assert headers[b"content-encoding"] == b"gzip"
    assert recorder.messages[2]["type"] == "http.response.trailers"


async def test_partial_content_is_left_alone() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(206, [(b"content-range", b"bytes 0-999/5000")]))
        await send({"type": "http.response.body", "body": b"p" * 1000})

    recorder = Recorder()
    await GZipMiddleware(app)(http_scope(), receive_nothing, recorder)
    assert recorder.messages == [
        start(206, [(b"content-range", b"bytes 0-999/5000")]),
        {"type": "http.response.body", "body": b"p" * 1000},
    ]


async def test_pathsend_and_early_hints_pass_through() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.early_hint", "links": ["</style.css>; rel=preload"]})
        await send(start(headers=[(b"content-type", b"text/plain")]))
        await send({"type": "http.response.pathsend", "path": "/srv/file.txt"})

    recorder = Recorder()
    await GZipMiddleware(app)(http_scope(), receive_nothing, recorder)
    assert [message["type"] for message in recorder.messages] == [
        "http.response.early_hint",
        "http.response.start",
        "http.response.pathsend",
    ]
    assert recorder.messages[1]["headers"] == [(b"content-type", b"text/plain")]


async def test_excluded_response_passes_every_message_through() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(headers=[(b"content-type", b"text/event-stream")]))
        await send({"type": "http.response.body", "body": b"data: 1\n\n" * 100, "more_body": True})
        await send({"type": "http.response.pathsend", "path": "/x"})

    recorder = Recorder()
    await GZipMiddleware(app)(http_scope(), receive_nothing, recorder)
    assert recorder.messages[1]["body"] == b"data: 1\n\n" * 100
    assert len(recorder.messages) == 3


async def test_identity_responder_does_not_encode() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(start(headers=[(b"Vary", b"Cookie"), (b"vary", b"Origin")]))
        await send({"type": "http.response.body", "body": b"i" * 600, "more_body": True})
        await send({"type": "http.response.body", "body": b"j", "more_body": False})

    recorder = Recorder()
    await GZipMiddleware(app)(http_scope(None), receive_nothing, recorder)
    assert recorder.messages[0]["headers"] == [(b"vary", b"Cookie, Origin, Accept-Encoding")]
    assert [m["body"] for m in recorder.messages[1:]] == [b"i" * 600, b"j"]


async def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await GZipMiddleware(app)({"type": "websocket", "headers": []}, receive_nothing, Recorder())
    assert seen == ["websocket"]


async def test_unattached_send_explains_itself() -> None:
    with pytest.raises(RuntimeError, match=r"not attached to a request yet; call it as an ASGI app"):
        await unattached_send({"type": "http.response.start"})
    responder = IdentityResponder(big_text_app, minimum_size=1)
    with pytest.raises(RuntimeError, match=r"Cannot send 'http.response.start'"):
        await responder.send({"type": "http.response.start"})


async def big_text_app(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover - never run
    await PlainTextResponse(BIG)(scope, receive, send)


def test_compressor_is_created_lazily_and_kept() -> None:
    responder = GZipResponder(big_text_app, minimum_size=1, compresslevel=1)
    assert responder._compressor is None
    assert responder.compressor is responder.compressor


@pytest.mark.parametrize("level", [-2, 10])
def test_compresslevel_is_checked(level: int) -> None:
    with pytest.raises(ValueError, match=rf"compresslevel must be -1 or between 0 and 9, got {level}"):
        GZipMiddleware(big_text_app, compresslevel=level)
