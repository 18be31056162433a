"""End to end: triolette's connection driver (``_driver.py``) under ``serve_in_trio``.

Each test serves on 127.0.0.1 (a port the OS picks) in the test's own trio run and talks
to it over real sockets: raw ones where the bytes matter, httpx (HTTP/1.1, HTTP/2),
the h2 library for h2c by upgrade, wsproto for WebSockets. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection
from wsproto.events import Request as WSRequest

from triolette._server import ServerOptions, serve_in_trio
from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Route, WebSocketRoute
from triolette.websockets import WebSocket, WebSocketDisconnect

pytestmark = pytest.mark.e2e

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def make_app(**options: Any) -> Triolette:
    async def hello(request: Request) -> Response:
        return PlainTextResponse("hello")

    async def echo(request: Request) -> Response:
        return PlainTextResponse(await request.body())

    async def slow(request: Request) -> Response:
        request.app.state.started.set()
        await trio.sleep(float(request.query_params.get("s", "30")))
        return PlainTextResponse("slow done")

    async def big(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(int(request.query_params.get("n", "64"))):
                yield b"x" * 16384

        return StreamingResponse(chunks())

    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive_bytes()
                websocket.app.state.received.append(len(message))
                await websocket.send_bytes(message)
        except WebSocketDisconnect:
            pass

    routes = [
        Route("/", hello),
        Route("/echo", echo, methods=["POST"]),
        Route("/slow", slow),
        Route("/big", big),
        WebSocketRoute("/ws", ws_echo),
    ]
    app = Triolette(routes=routes, **options)
    app.state.started = trio.Event()
    app.state.received = []
    return app


@contextlib.asynccontextmanager
async def serving(
    app: Any, stop: trio.Event | None = None, **options: Any
) -> AsyncIterator[tuple[str, int, Callable[[], Awaitable[trio.SocketStream]]]]:
    """Serve ``app``; yield its URL, its port and ``connect()``, whose streams are closed after."""
    opts = ServerOptions(port=0, log_level="warning", **options)
    stop = stop if stop is not None else trio.Event()
    streams: list[trio.SocketStream] = []

    async def connect() -> trio.SocketStream:
        streams.append(await trio.open_tcp_stream("127.0.0.1", port))
        return streams[-1]

    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            binds = await nursery.start(partial(serve_in_trio, app, opts, stop=stop))
        port = int(binds[0].rsplit(":", 1)[1])
        try:
            yield binds[0], port, connect
        finally:
            stop.set()
            for stream in streams:
                await stream.aclose()


async def websocket_handshake(stream: trio.SocketStream, client: WSConnection) -> None:
    """Open a WebSocket on ``stream`` at /ws; return once the server accepted (bounded)."""
    await stream.send_all(client.send(WSRequest(host="t", target="/ws")))
    events: list[Any] = []
    with trio.fail_after(5):
        while not any(isinstance(event, AcceptConnection) for event in events):
            client.receive_data(await stream.receive_some(65536))
            events += client.events()


async def reset(stream: trio.SocketStream) -> None:
    """Close ``stream`` with a reset (SO_LINGER 0), as a client that vanishes does."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def read_until_closed(stream: trio.SocketStream, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection; fails after ``seconds``."""
    data = b""
    with trio.fail_after(seconds):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


async def read_response(stream: trio.SocketStream, end: bytes) -> bytes:
    data = b""
    with trio.fail_after(5):
        while not data.endswith(end):
            chunk = await stream.receive_some(65536)
            assert chunk, f"the server closed the connection after {data!r}"
            data += chunk
    return data


# -- HTTP/1.1 ------------------------------------------------------------------------------------


async def test_http11_keep_alive_serves_requests_one_after_another_on_one_connection() -> None:
    async with serving(make_app()) as (url, _, _), httpx.AsyncClient() as client:
        answers = [await client.get(f"{url}/") for _ in range(5)]
        posted = await client.post(f"{url}/echo", content=b"body " * 1000)
        chunked = await client.post(f"{url}/echo", content=_chunks(b"one ", b"two"))
    assert [a.text for a in answers] == ["hello"] * 5
    assert posted.text == "body " * 1000
    assert chunked.text == "one two"
    assert {a.extensions["network_stream"] for a in answers} == {answers[0].extensions["network_stream"]}


async def _chunks(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_http11_pipelined_requests_are_answered_in_order() -> None:
    async with serving(make_app()) as (_, _, connect):
        stream = await connect()
        request = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\n"
        await stream.send_all(request + b"one" + request + b"two" + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = await read_response(stream, b"hello")
    assert data.count(b"HTTP/1.1 200") == 3
    assert data.index(b"one") < data.index(b"two") < data.index(b"hello")


async def test_a_response_larger_than_the_socket_buffer_arrives_whole() -> None:
    async with serving(make_app()) as (url, _, _), httpx.AsyncClient() as client:
        answers = [await client.get(f"{url}/big") for _ in range(3)]
    assert [len(a.content) for a in answers] == [64 * 16384] * 3


# -- HTTP/2 ----------------------------------------------------------------------------------------


async def test_h2c_with_prior_knowledge_serves_concurrent_streams() -> None:
    async with serving(make_app()) as (url, _, _), httpx.AsyncClient(http1=False, http2=True) as client:
        answers: list[httpx.Response] = []
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(lambda: _append(answers, client.get(f"{url}/")))
            posted = await client.post(f"{url}/echo", content=b"x" * 100_000)
    assert [(a.http_version, a.text) for a in answers] == [("HTTP/2", "hello")] * 10
    assert posted.content == b"x" * 100_000


async def _append(answers: list[httpx.Response], request: Any) -> None:
    answers.append(await request)


async def test_h2c_by_upgrade_answers_the_upgraded_request_over_http2() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    settings = client.initiate_upgrade_connection()
    assert settings is not None  # a client-side connection always has settings to send
    async with serving(make_app()) as (_, _, connect):
        stream = await connect()
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        data = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        body, ended = b"", False
        with trio.fail_after(5):
            while not ended:
                for event in client.receive_data(rest):
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                    ended = ended or isinstance(event, h2.events.StreamEnded)
                await stream.send_all(client.data_to_send())
                if not ended:
                    rest = await stream.receive_some(65536)
                    assert rest, "the server closed the connection"
    assert head.startswith(b"HTTP/1.1 101 ")
    assert body == b"hello"


async def test_an_h2c_client_that_disconnects_mid_stream_does_not_stop_the_server() -> None:
    """hypercorn's trio worker died here with BusyResourceError (its close raced a write);
    and no request may be left waiting for a sending task that has stopped."""
    app = make_app()
    async with serving(app) as (url, port, _):
        for _ in range(3):
            async with trio.open_nursery() as nursery:
                for _ in range(30):
                    nursery.start_soon(_h2_requests_then_vanish, port)
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            answer = await client.get(f"{url}/")
        with trio.fail_after(5):
            while app.in_flight:  # noqa: ASYNC110 - requests end on their own
                await trio.sleep(0.05)
    assert answer.text == "hello"


async def _h2_requests_then_vanish(port: int) -> None:
    """20 streams; a GOAWAY once the answers are being written; gone."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/")]
    for stream_id in range(1, 41, 2):
        client.send_headers(stream_id, headers, end_stream=True)
    sock = trio.socket.socket()
    with sock, trio.fail_after(60):
        await sock.connect(("127.0.0.1", port))
        await sock.send(client.data_to_send())
        await sock.recv(100)
        client.close_connection()
        with contextlib.suppress(OSError):
            await sock.send(client.data_to_send())
            while await sock.recv(65536):
                pass


async def test_a_protocol_failure_in_one_connection_is_logged_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(make_app()) as (url, _, connect), httpx.AsyncClient() as client:
        stream = await connect()
        await stream.send_all(  # HTTP2-Settings that are not base64: hypercorn's upgrade raises
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: a\r\n\r\n"
        )
        await read_until_closed(stream, 5)
        answer = await client.get(f"{url}/")
    assert answer.text == "hello"
    assert "Error while serving a connection" in caplog.messages


async def test_a_client_that_resets_while_a_large_answer_is_written_ends_only_its_request() -> None:
    app = make_app()
    async with serving(app) as (url, port, _):
        for _ in range(5):
            sock = trio.socket.socket()
            with sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                await sock.connect(("127.0.0.1", port))
                await sock.send(b"GET /big?n=1024 HTTP/1.1\r\nHost: t\r\n\r\n")  # 16 MiB: past the socket buffers
                assert (await sock.recv(15)).startswith(b"HTTP/1.1 200")
                await trio.sleep(0.2)  # the server's send buffer fills
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        with trio.fail_after(5):
            while app.in_flight:  # noqa: ASYNC110 - requests end on their own
                await trio.sleep(0.02)
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{url}/big")
    assert len(answer.content) == 64 * 16384


# -- the connection's end -------------------------------------------------------------------------


def close_wait_count(port: int) -> int:
    """Connections of the server's port that the peer closed and the server has not (Linux)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "08":  # 08: CLOSE_WAIT
                    count += 1
    return count


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
async def test_a_connection_the_client_closed_leaves_no_close_wait() -> None:
    async with serving(make_app(), keep_alive_timeout=30) as (_, port, connect):
        streams = [await connect() for _ in range(20)]
        for stream in streams:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await read_response(stream, b"hello")
        for stream in streams:
            await stream.aclose()
        with trio.fail_after(2):
            while close_wait_count(port):  # noqa: ASYNC110 - the kernel's table, polled
                await trio.sleep(0.02)
        assert close_wait_count(port) == 0


async def test_a_half_closed_connection_is_closed_by_the_server_at_once() -> None:
    async with serving(make_app(), keep_alive_timeout=30) as (_, _, connect):
        stream = await connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        await stream.send_eof()
        data = await read_until_closed(stream, 2)
    assert data.endswith(b"hello")


async def test_an_idle_keep_alive_connection_closes_after_keep_alive_timeout() -> None:
    async with serving(make_app(), keep_alive_timeout=0.5) as (_, _, connect):
        stream = await connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        await read_response(stream, b"hello")
        answered = trio.current_time()
        assert await read_until_closed(stream, 5) == b""
        assert 0.4 <= trio.current_time() - answered < 3


async def test_an_idle_connection_keeps_no_exception_alive_while_it_waits() -> None:
    # The read loop waits for data outside its ``except BlockingIOError`` block: waiting inside
    # it kept the exception and its traceback alive on every idle connection (idle SSE streams).
    async with serving(make_app()) as (_, _, connect):
        stream = await connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        await read_response(stream, b"hello")
        await trio.testing.wait_all_tasks_blocked()
        alive = gc.get_objects()
        assert any(type(obj).__name__ == "_Connection" for obj in alive)  # the connection is idle, not gone
        assert [obj for obj in alive if isinstance(obj, BlockingIOError)] == []


@pytest.mark.parametrize(
    "sent",
    [b"", b"GET / HTTP/1.1\r\nHost:", PREFACE, PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"],
    ids=["nothing", "half a request head", "http2 preface", "http2 preface and settings"],
)
async def test_a_connection_without_a_complete_request_is_closed_within_keep_alive_timeout(sent: bytes) -> None:
    async with serving(make_app(), keep_alive_timeout=0.5) as (_, _, connect):
        stream = await connect()
        await stream.send_all(sent)
        connected = trio.current_time()
        await read_until_closed(stream, 5)
        assert trio.current_time() - connected < 3


async def test_the_read_timeout_closes_a_connection_whose_client_stops_sending() -> None:
    async with serving(make_app(), keep_alive_timeout=30, read_timeout=0.5) as (_, _, connect):
        stream = await connect()
        await stream.send_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
        stopped = trio.current_time()
        await read_until_closed(stream, 5)
        assert 0.4 <= trio.current_time() - stopped < 3


async def test_idle_connections_close_at_once_when_the_server_stops() -> None:
    stop = trio.Event()
    async with serving(make_app(), stop, keep_alive_timeout=30) as (_, _, connect):
        stream = await connect()
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        await read_response(stream, b"hello")
        stop.set()
        assert await read_until_closed(stream, 2) == b""


# -- WebSockets -----------------------------------------------------------------------------------


async def test_a_websocket_echoes_over_the_driver() -> None:
    app = make_app()
    client = WSConnection(ConnectionType.CLIENT)
    echoed: list[bytes] = []
    async with serving(app) as (_, _, connect):
        stream = await connect()
        await websocket_handshake(stream, client)
        for size in (5, 70_000):
            await stream.send_all(client.send(BytesMessage(b"y" * size)))
            message = b""
            with trio.fail_after(5):
                while len(message) < size:
                    client.receive_data(await stream.receive_some(65536))
                    message += b"".join(bytes(e.data) for e in client.events() if isinstance(e, BytesMessage))
            echoed.append(message)
    assert echoed == [b"y" * 5, b"y" * 70_000]
    assert app.state.received == [5, 70_000]


async def test_a_websocket_message_over_every_limit_is_refused_by_the_server_while_it_arrives() -> None:
    """The frame announces 15 MiB; with the app's limit (1 MiB) handed to hypercorn, the
    server closes with 1009 once a little over 1 MiB has arrived, not after all 15 MiB,
    and the app is never given any of it."""
    app = make_app(websocket_max_message_size=1024 * 1024)
    client = WSConnection(ConnectionType.CLIENT)
    async with serving(app) as (_, _, connect):
        stream = await connect()
        await websocket_handshake(stream, client)
        # binary, final; masked with a zero key (so the payload goes as is); 64-bit length
        header = b"\x82\xff" + struct.pack("!Q", 15 * 1024 * 1024) + b"\x00\x00\x00\x00"
        await stream.send_all(header + b"\x00" * (1024 * 1024 + 65536))
        closed: list[CloseConnection] = []
        with trio.fail_after(5):
            while not closed:
                data = await stream.receive_some(65536)
                assert data, "the server closed the connection without a close frame"
                client.receive_data(data)
                closed += [event for event in client.events() if isinstance(event, CloseConnection)]
    assert closed[0].code == 1009
    assert app.state.received == []


async def test_a_websocket_client_that_floods_then_resets_ends_a_handler_blocked_elsewhere() -> None:
    """The handler accepts, then waits on something else and never reads. The client sends
    messages until the server holds it back (the watcher's 64 messages, the driver's queue,
    the kernel's buffers), then resets: the disconnect waits behind messages nobody reads,
    and the connection's closing must still end the handler (issue 11, defect 14)."""
    ended = trio.Event()
    reasons: list[str] = []

    async def blocked_elsewhere(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            await trio.sleep_forever()  # a feed that never publishes
        except trio.Cancelled as exc:
            reasons.append(str(exc.reason))
            raise
        finally:
            ended.set()

    app = Triolette(routes=[WebSocketRoute("/ws", blocked_elsewhere)])
    client = WSConnection(ConnectionType.CLIENT)
    async with serving(app) as (_, _port, connect):
        stream = await connect()
        await websocket_handshake(stream, client)
        frame = client.send(BytesMessage(b"z" * 65536))
        with trio.move_on_after(2):  # until the server stops taking them (bounded)
            for _ in range(2000):
                await stream.send_all(frame)
        await reset(stream)
        with trio.fail_after(10):
            await ended.wait()
    assert reasons == ["client disconnected"]


# -- TLS (through hypercorn's own driver) ------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


async def test_http2_over_tls_is_served(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(cafile=cert)
    context.check_hostname = False
    async with serving(make_app(), certfile=cert, keyfile=key) as (url, _, _):
        assert url.startswith("https://")
        async with httpx.AsyncClient(http2=True, verify=context) as client:
            answers = [await client.get(f"{url}/") for _ in range(3)]
    assert [(a.http_version, a.text) for a in answers] == [("HTTP/2", "hello")] * 3


# -- the forced stop -------------------------------------------------------------------------------


async def test_a_second_sigint_answers_an_unanswered_request_with_503_and_connection_close() -> None:
    app = make_app()
    with trio.fail_after(15):
        async with serving(app) as (_, _, connect):
            stream = await connect()
            await stream.send_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            await app.state.started.wait()
            os.kill(os.getpid(), signal.SIGINT)
            await app.draining.wait()
            os.kill(os.getpid(), signal.SIGINT)
            data = await read_until_closed(stream, 10)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"connection: close" in head.lower()
    assert body == b"Server shutting down\n"


async def test_a_raw_app_cut_off_at_the_end_of_the_drain_gets_503_not_500(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("triolette.applications.CANCELLED_GRACE", 0.1)
    monkeypatch.setattr("triolette._server.HYPERCORN_BACKSTOP", 0.1)
    started = trio.Event()

    async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        started.set()
        await trio.sleep_forever()

    stop = trio.Event()
    with trio.fail_after(15):
        async with serving(raw, stop, graceful_timeout=0) as (_, _, connect):
            stream = await connect()
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await started.wait()
            stop.set()
            data = await read_until_closed(stream, 10)
    assert data.startswith(b"HTTP/1.1 503 ")


@pytest.fixture(autouse=True)
def _collect() -> Any:
    yield
    import gc

    gc.collect()


async def test_a_stream_to_a_client_that_reset_stops_after_a_few_chunks() -> None:
    # Once the driver has closed a connection, hypercorn's writes to it are dropped without
    # waiting: the app's next send must still yield to trio, so that the disconnect is read
    # and the stream cancelled, not run through all its chunks into the void.
    produced: list[int] = []
    ended = trio.Event()

    async def endless(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                for n in range(100_000):  # 6.4 GB if nobody stops it
                    produced.append(n)
                    yield b"x" * 65536
            finally:
                ended.set()

        return StreamingResponse(chunks())

    app = Triolette(routes=[Route("/endless", endless)])
    async with serving(app) as (_, _port, connect):
        stream = await connect()
        await stream.send_all(b"GET /endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await stream.receive_some(65536)
        await reset(stream)
        with trio.fail_after(10):
            await ended.wait()
    assert len(produced) < 2_000  # the kernel's buffers hold a few hundred chunks at most
