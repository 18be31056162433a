"""End to end (issue 11, defect 14): a client that leaves behind a large body the app never read.

The endpoint answers with server-sent events and never reads its request body. The client
sends the headers of a 16 MiB body (or a chunked one) and as much of it as the kernel takes,
reads the response head, and closes. The app's queue and the watcher's small buffer hold the
client back, so the disconnect waits behind the unread body; triolette's driver tells the
request that its connection closed, and the handler is cancelled. Each test serves on
127.0.0.1 (a port the OS picks) with ``serve_in_trio`` and bounds every wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import termios
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
import trio

from triolette._server import ServerOptions, serve_in_trio
from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response
from triolette.routing import Route
from triolette.sse import EventSourceResponse, ServerSentEvent

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def make_app() -> Triolette:
    async def ticks(request: Request) -> EventSourceResponse:
        async def events() -> AsyncIterator[ServerSentEvent]:
            request.app.state.streaming.set()
            n = 0
            try:
                while True:
                    yield ServerSentEvent(data=str(n))
                    n += 1
                    await trio.sleep(0.02)
            except trio.Cancelled as exc:
                request.app.state.cancelled.append(exc.reason)
                raise

        return EventSourceResponse(events())

    async def sleeps(request: Request) -> Response:
        request.app.state.streaming.set()
        try:
            await trio.sleep(60)  # neither reads nor writes: nothing to fail when the client leaves
        except trio.Cancelled as exc:
            request.app.state.cancelled.append(exc.reason)
            raise
        return PlainTextResponse("slept")  # pragma: no cover - the client leaves first

    async def answers(request: Request) -> Response:
        return PlainTextResponse("not reading that")

    async def reads_late(request: Request) -> Response:
        await trio.sleep(2.5)  # the driver probes the waiting connection meanwhile
        return PlainTextResponse(str(len(await request.body())))

    routes = [
        Route("/reads-late", reads_late, methods=["POST"]),
        Route("/ticks", ticks, methods=["POST"]),
        Route("/sleeps", sleeps, methods=["POST"]),
        Route("/answers", answers, methods=["POST"]),
    ]
    app = Triolette(routes=routes)
    app.state.streaming = trio.Event()
    app.state.cancelled = []
    return app


def connection_tasks() -> int:
    """The driver's connection tasks running now (one per open connection)."""

    def walk(task: trio.lowlevel.Task) -> int:
        count = int(task.name.endswith("serve_connection"))
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                count += walk(child)
        return count

    root = trio.lowlevel.current_root_task()
    assert root is not None  # called inside trio.run
    return walk(root)


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            options = ServerOptions(port=0, log_level="warning")
            binds = await nursery.start(partial(serve_in_trio, app, options, stop=stop))
        try:
            yield int(binds[0].rsplit(":", 1)[1])
        finally:
            stop.set()


def fill(sock: socket.socket, chunked: bool) -> int:
    """Send body bytes until the kernel takes no more (the server holds the client back)."""
    sent = 0
    piece = b"x" * 65536
    frame = b"10000\r\n" + piece + b"\r\n" if chunked else piece
    view = memoryview(b"")
    while True:
        if not view:
            view = memoryview(frame)
        try:
            n = sock.send(view)
        except BlockingIOError:
            return sent
        view = view[n:]
        sent += n


async def connected_socket(port: int) -> socket.socket:
    """A non-blocking stdlib socket connected to 127.0.0.1:``port`` (bounded): the tests
    below fill the kernel's buffers by hand, which a trio stream would not let them do."""
    sock = socket.socket()
    sock.setblocking(False)
    with trio.fail_after(5):
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        await trio.lowlevel.wait_writable(sock)
    return sock


async def leave_behind_an_unread_body(port: int, app: Triolette, chunked: bool, baseline: int) -> int:
    sock = await connected_socket(port)
    with sock:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % (16 * MiB)
        sock.send(b"POST /ticks HTTP/1.1\r\nHost: t\r\n" + framing + b"\r\n\r\n")
        sent = 0
        head = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in head:
                sent += fill(sock, chunked)
                await trio.sleep(0.01)  # let the server take what it will
                with contextlib.suppress(BlockingIOError):
                    head += sock.recv(65536)
            await app.state.streaming.wait()
            # Keep sending until the server has stopped taking the body: it holds the client back.
            before = -1
            while sent != before:
                before = sent
                await trio.sleep(0.05)
                sent += fill(sock, chunked)
            assert connection_tasks() == baseline + 1
    assert head.startswith(b"HTTP/1.1 200 ")
    return sent  # the client closed here, with its body far from all sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_defect_14_a_client_that_leaves_behind_an_unread_16_mib_body_cancels_its_sse_handler(
    chunked: bool,
) -> None:
    app = make_app()
    async with serving(app) as port:
        baseline = connection_tasks()
        sent = await leave_behind_an_unread_body(port, app, chunked, baseline)
        assert sent < 16 * MiB  # the server held the client back: the disconnect waited behind the body
        with trio.fail_after(5):
            while not app.state.cancelled:  # noqa: ASYNC110 - the handler ends on its own
                await trio.sleep(0.01)
            while app.in_flight or connection_tasks() > baseline:  # noqa: ASYNC110 - so does the connection
                await trio.sleep(0.01)
    assert app.state.cancelled == ["client disconnected"]


def _unsent(sock: socket.socket) -> int:
    """Bytes in the socket's send queue that the peer has not acknowledged (Linux)."""
    value: int = struct.unpack("i", fcntl.ioctl(sock, termios.TIOCOUTQ, b"\0" * 4))[0]
    return value


async def _send_then_leave(port: int, app: Triolette, size: int, *, reset: bool) -> int:
    """POST ``size`` body bytes to the endpoint that sleeps, then close (``reset``: with a RST)."""
    sock = await connected_socket(port)
    with sock:
        sock.send(b"POST /sleeps HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (16 * MiB))
        sent = 0
        with trio.fail_after(10):
            await app.state.streaming.wait()
            before = -1
            while sent < size and sent != before:  # until all is sent, or the server stops taking it
                before = sent
                with contextlib.suppress(BlockingIOError):
                    while sent < size:
                        sent += sock.send(memoryview(b"x" * min(65536, size - sent)))
                await trio.sleep(0.05)
            while not reset and _unsent(sock):  # noqa: ASYNC110 - the kernel's queue, polled: a FIN goes last
                await trio.sleep(0.01)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    return sent


@pytest.mark.parametrize(
    ("size", "reset"),
    [(None, True), (1 * MiB, False)],
    ids=["reset-behind-16-MiB", "closed-behind-1-MiB-the-server-holds"],
)
async def test_defect_14_a_client_that_leaves_is_seen_while_the_server_neither_reads_nor_writes(
    size: int | None, reset: bool
) -> None:
    app = make_app()
    async with serving(app) as port:
        baseline = connection_tasks()
        sent = await _send_then_leave(port, app, 16 * MiB if size is None else size, reset=reset)
        left = trio.current_time()
        with trio.fail_after(5):
            while not app.state.cancelled:  # noqa: ASYNC110 - the driver probes while it waits
                await trio.sleep(0.01)
            seen = trio.current_time() - left
            while app.in_flight or connection_tasks() > baseline:  # noqa: ASYNC110 - the connection ends too
                await trio.sleep(0.01)
    assert sent == size if size is not None else sent < 16 * MiB
    assert app.state.cancelled == ["client disconnected"]
    assert seen < 2.5  # within the driver's probe interval (1 s), with room for a loaded machine


async def _answered_without_reading(port: int, size: int) -> tuple[socket.socket, bytes, int]:
    """POST a body of ``size`` bytes to the endpoint that answers without reading it; send what
    the kernel takes; return the socket, the response read so far and the bytes sent."""
    sock = await connected_socket(port)
    sock.send(b"POST /answers HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
    answer = b""
    sent = 0
    with trio.fail_after(10):
        while not answer.endswith(b"not reading that"):
            with contextlib.suppress(BlockingIOError):
                while sent < size:
                    sent += sock.send(memoryview(b"x" * min(65536, size - sent)))
            await trio.sleep(0.01)
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
    return sock, answer, sent


async def test_a_connection_whose_app_answered_without_reading_its_16_mib_body_ends() -> None:
    # hypercorn closes such a connection once the response is sent, and puts the disconnect:
    # the driver's read loop, which waited for room in the queue, goes on to the closed socket.
    app = make_app()
    async with serving(app) as port:
        baseline = connection_tasks()
        sock, answer, sent = await _answered_without_reading(port, 16 * MiB)
        with trio.fail_after(5):
            while connection_tasks() > baseline:  # noqa: ASYNC110 - the connection ends on its own
                await trio.sleep(0.01)
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert sent < 16 * MiB


async def test_a_client_still_there_is_not_cut_off_while_the_server_holds_its_16_mib_body_back() -> None:
    app = make_app()
    size = 16 * MiB
    async with serving(app) as port:
        sock = socket.socket()
        sock.setblocking(False)
        with sock, trio.fail_after(20):
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", port))
            await trio.lowlevel.wait_writable(sock)
            sock.send(b"POST /reads-late HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size)
            sent = 0
            piece = memoryview(b"x" * 65536)
            while sent < size:
                try:
                    sent += sock.send(piece[: size - sent])
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sock)
            answer = b""
            while not answer.endswith(b"\r\n\r\n%d" % size):
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                assert chunk, answer  # the server must not close on a client that is still there
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert app.state.cancelled == []


async def test_defect_14_an_http2_client_that_resets_behind_an_unread_body_is_seen() -> None:
    app = make_app()
    async with serving(app) as port:
        baseline = connection_tasks()
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        client.initiate_connection()
        client.send_headers(
            1,
            [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/sleeps"),
             (b"content-length", b"%d" % (16 * MiB))],
        )  # fmt: skip
        sock = trio.socket.socket()
        with sock, trio.fail_after(10):
            await sock.connect(("127.0.0.1", port))
            sent = 0
            stalled = 0
            while stalled < 20:  # until the server stops opening the window: it holds the body back
                window = min(client.local_flow_control_window(1), client.max_outbound_frame_size)
                if window:
                    client.send_data(1, b"x" * window)
                    sent += window
                    stalled = 0
                await sock.send(client.data_to_send())
                with trio.move_on_after(0.05):
                    data = await sock.recv(65536)
                    for event in client.receive_data(data):
                        if isinstance(event, h2.events.ConnectionTerminated):  # pragma: no cover - a failure
                            raise AssertionError(event)
                    await sock.send(client.data_to_send())
                    continue
                stalled += 1
            assert app.state.streaming.is_set()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with trio.fail_after(5):
            while not app.state.cancelled or connection_tasks() > baseline:  # noqa: ASYNC110 - the probe sees the reset
                await trio.sleep(0.01)
    assert 256 * 1024 < sent < 16 * MiB  # past the watcher's cap: the rest waits in the queue and the window
    assert app.state.cancelled == ["client disconnected"]
