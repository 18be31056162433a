"""triolette's connection driver: hypercorn's protocol classes over trio's socket I/O.

hypercorn parses and writes HTTP/1.1, HTTP/2 and WebSockets (``ProtocolWrapper`` and the
stream classes behind it) and runs the lifespan; this module only moves bytes between the
sockets and those protocol objects, in place of hypercorn's trio ``TCPServer``. It does
the same job with fewer task switches:

- the keep-alive timer is the deadline of the read loop's own wait, moved when the
  connection becomes idle or busy (no timer task to cancel and restart per request);
- a socket call that succeeds returns at once: the driver waits only when the kernel says
  EAGAIN (a read streak yields now and then so that one client cannot hog the loop);
- the empty write hypercorn emits at the end of a content-length body is skipped;
- a write the kernel takes whole needs no lock and no shield; only the rest of a partial
  write is written under the writers' lock, shielded (half an HTTP message must not be cut);
- the app's receive queue takes a message without a task switch while it has room;
- a peer that closes is noticed by the read loop at once, and the socket is closed then,
  not when the keep-alive timer would have fired.

Each ASGI call gets the scope extension ``scope["extensions"]["triolette.connection"]``:
an object whose ``on_close(callback)`` registers one synchronous callback (it must not
raise), called once when the connection closes, that is when hypercorn puts the call's disconnect message
(at once if that has happened). The disconnect may wait behind body chunks the app has not
read (the queue holds the client back meanwhile), so this is how the RequestScope learns
that a client left however much of its body is unread. hypercorn's own workers do not set
it. The queue stops holding the client back then, so the read loop goes on to the closed
socket and the connection ends even if the app never reads again.

Closing is safe by construction: the socket is closed with ``notify_closing`` (which wakes
a waiting reader or writer with ``ClosedResourceError``), and the end-of-file is sent only
when no write is in progress. TLS connections go through hypercorn's own ``TCPServer``.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import logging
import math
import re
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

import trio
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h2 import H2Protocol, StreamBuffer
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr, repr_socket_addr

if TYPE_CHECKING:
    from hypercorn.config import Config, Sockets
    from hypercorn.events import Event
    from hypercorn.typing import AppWrapper, TaskGroup

__all__ = ["CONNECTION_EXTENSION", "check_hypercorn", "serve_sockets"]

logger = logging.getLogger("triolette")

# The ASGI scope extension through which an app learns that its connection closed.
CONNECTION_EXTENSION: Final = "triolette.connection"
MAX_RECV = 2**16
# While the read loop waits for the app to take its body, how often it asks the kernel
# whether the peer has closed or reset the connection (their FIN or RST waits unread).
PROBE_INTERVAL = 1.0
# Linux's TCP states (TCP_INFO's first byte) that mean the peer has gone: CLOSE_WAIT, CLOSE.
TCP_PEER_GONE = {8, 7}
TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)  # Linux only
# Reads (or accepts) in a row that found data waiting before the task yields to the others.
STREAK = 16
# accept() errors that mean "out of something for now": wait a moment and try again.
CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# The close frame hypercorn sends when a WebSocket message is over its limit (1009, no reason).
MESSAGE_TOO_BIG = b"\x88\x02\x03\xf1"
SHUTTING_DOWN = b"Server shutting down\n"
SHUTTING_DOWN_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(SHUTTING_DOWN)).encode()),
    (b"connection", b"close"),
]


# -- what the driver relies on in hypercorn ---------------------------------------------------


def check_hypercorn() -> list[str]:
    """The hypercorn names this driver uses and cannot find, each as a one-line problem.

    Empty when the installed hypercorn is one the driver works with; ``serve()`` falls back
    to hypercorn's own trio worker (and logs these lines) otherwise.
    """
    from hypercorn.config import Config

    problems: list[str] = []
    wrapper = inspect.signature(ProtocolWrapper.__init__).parameters
    expected = ["app", "config", "context", "task_group", "state", "ssl", "client", "server", "send", "alpn_protocol"]
    if list(wrapper)[1:] != expected:
        problems.append(
            f"hypercorn.protocol.ProtocolWrapper.__init__ takes {list(wrapper)[1:]!r}, the driver passes {expected!r}"
        )
    for cls, names in (
        (ProtocolWrapper, ("initiate", "handle", "protocol")),
        (H2Protocol, ("idle", "stream_buffers")),
        (StreamBuffer, ("close",)),
        (HTTPStream, ("app_send", "state", "closed")),
        (WorkerContext, ("terminated", "event_class")),
        (Lifespan, ("handle_lifespan", "wait_for_startup", "wait_for_shutdown")),
        (Config, ("keep_alive_timeout", "read_timeout", "max_app_queue_size", "websocket_max_message_size")),
    ):
        source = inspect.getsource(cls)  # attributes set in __init__ are not on the class
        for name in names:
            if not hasattr(cls, name) and not re.search(rf"self\.{name}\s*[:=]", source):
                problems.append(f"hypercorn's {cls.__module__}.{cls.__qualname__} has no attribute {name!r}")
    if not hasattr(ASGIHTTPState, "REQUEST"):
        problems.append("hypercorn.protocol.http_stream.ASGIHTTPState has no member 'REQUEST'")
    for event, field in ((RawData, "data"), (Updated, "idle")):
        if field not in getattr(event, "__dataclass_fields__", {}):
            problems.append(f"hypercorn.events.{event.__name__} has no field {field!r}")
    return problems


# -- the app's side of one stream -------------------------------------------------------------


# _AppQueue states
OPEN: Final = "open"
CLOSED: Final = "closed"  # the disconnect is in: no more backpressure, nothing more taken


class _Probed(Protocol):
    async def probe(self) -> None: ...


class _AppQueue:
    """What hypercorn puts for the app (``put``) and the app's ASGI ``receive``.

    ``put`` does not switch tasks while there are fewer than ``capacity`` messages waiting
    (past that it waits: a request body is read only as fast as the app takes it); the
    disconnect message never waits. An empty final body chunk is merged into the chunk
    before it when the app has not taken that one yet.

    Once the disconnect is put the queue is CLOSED: a ``put`` that waited for room goes on
    at once, and what is put after it is dropped (the connection is gone), so that the
    connection's read loop reaches the closed socket and ends even if the app never reads
    again. ``on_close`` is the app's way to learn of it before it reads its way to the
    disconnect (the ``triolette.connection`` scope extension). hypercorn puts the disconnect
    also when the app's response ends before the body it did not read (it closes the
    connection then), so a read loop that waited for room is never left behind.

    ``connection.probe()`` is awaited every ``PROBE_INTERVAL`` seconds while a ``put`` waits
    for room: a peer that left may be seen by the kernel though its end of the stream
    waits behind the unread body.
    """

    __slots__ = ("_capacity", "_closed_callback", "_connection", "_items", "_receivers", "_senders", "state")

    def __init__(self, capacity: int, connection: _Probed | None = None) -> None:
        self._capacity = capacity
        self._connection = connection
        self._items: deque[dict[str, Any]] = deque()
        self._receivers = trio.lowlevel.ParkingLot()
        self._senders = trio.lowlevel.ParkingLot()
        self._closed_callback: Callable[[], None] | None = None
        self.state: str = OPEN

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (once, synchronously, and it must not raise) when the
        connection closes; at once if it has. Registering again replaces the callback."""
        if self.state is CLOSED:
            callback()
        else:
            self._closed_callback = callback

    def forget(self) -> None:
        """The ASGI call is over: drop the callback (it refers to the call's objects)."""
        self._closed_callback = None

    async def put(self, message: dict[str, Any]) -> None:
        if self.state is CLOSED:
            return  # the connection is gone: nobody will read it
        items = self._items
        kind = message["type"]
        if kind == "http.request":
            if items and not message.get("more_body") and not message["body"]:
                last = items[-1]
                if last["type"] == "http.request" and last.get("more_body"):
                    last["more_body"] = False
                    return
        elif kind.endswith("disconnect"):
            self._close(message)
            return
        while len(items) >= self._capacity:
            connection = self._connection
            if connection is None:
                await self._senders.park()
            else:
                with trio.move_on_after(PROBE_INTERVAL) as waited:
                    await self._senders.park()
                if waited.cancelled_caught:
                    await connection.probe()  # may close the connection: then the disconnect is in
            if self.state is CLOSED:
                return  # closed while it waited: dropped, as if put after the disconnect
        items.append(message)
        if self._receivers:
            self._receivers.unpark()

    def _close(self, disconnect: dict[str, Any]) -> None:
        self.state = CLOSED
        self._items.append(disconnect)
        if self._senders:  # (unparking costs even when nobody waits)
            self._senders.unpark_all()
        if self._receivers:
            self._receivers.unpark()
        callback = self._closed_callback
        if callback is not None:
            self._closed_callback = None
            callback()

    async def receive(self) -> dict[str, Any]:
        await trio.lowlevel.checkpoint_if_cancelled()
        items = self._items
        while not items:
            await self._receivers.park()
        message = items.popleft()
        if self._senders:
            self._senders.unpark()
        return message


class _TaskGroup:
    """hypercorn's TaskGroup interface, on the connection's nursery."""

    __slots__ = ("_connection", "_nursery", "_server")

    def __init__(self, nursery: trio.Nursery, connection: _Connection) -> None:
        self._nursery = nursery
        self._connection = connection
        self._server = connection.server

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: dict[str, Any],
        send: Callable[[Any], Awaitable[None]],
    ) -> Callable[[Any], Awaitable[None]]:
        queue = _AppQueue(config.max_app_queue_size, self._connection)
        scope["extensions"][CONNECTION_EXTENSION] = queue  # hypercorn's streams always set "extensions"
        self._nursery.start_soon(_run_app, app, config, scope, queue, send, self._server)
        return queue.put

    def spawn(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._nursery.start_soon(func, *args)


async def _run_app(
    app: AppWrapper,
    config: Config,
    scope: dict[str, Any],
    queue: _AppQueue,
    send: Callable[[Any], Awaitable[None]],
    server: _Server,
) -> None:
    """One ASGI call, as hypercorn's trio worker runs it, except at a forced stop: a request
    that has not started its response then gets a 503 (connection: close), not a 500."""
    try:
        await app(scope, queue.receive, send, trio.to_thread.run_sync, trio.from_thread.run)  # type: ignore[arg-type]
    except trio.Cancelled:
        raise
    except BaseExceptionGroup as error:
        _, others = error.split(trio.Cancelled)
        if others is None:
            raise
        await config.log.exception("Error in ASGI Framework")
    except Exception:
        await config.log.exception("Error in ASGI Framework")
    finally:
        queue.forget()
        if server.terminated:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await _answer_unanswered(send)
        await send(None)


async def _answer_unanswered(send: Callable[[Any], Awaitable[None]]) -> None:
    """The server is stopping: a request whose response has not started gets a 503."""
    stream = getattr(send, "__self__", None)
    if isinstance(stream, HTTPStream) and stream.state is ASGIHTTPState.REQUEST and not stream.closed:
        await send({"type": "http.response.start", "status": 503, "headers": SHUTTING_DOWN_HEADERS})
        await send({"type": "http.response.body", "body": SHUTTING_DOWN})


# -- one connection --------------------------------------------------------------------------


class _Connection:
    """One plain-TCP connection: a read loop, and ``send`` for the protocol to write with."""

    __slots__ = (
        "_inner", "_lock", "closed", "idle_deadline", "protocol", "read_deadline", "read_timeout", "server", "sock",
        "wait_scope",
    )  # fmt: skip

    def __init__(self, server: _Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.closed = False
        self._lock = trio.Lock()
        self.read_timeout: float | None = server.config.read_timeout
        # A new connection is idle: it gets keep_alive_timeout to send its first request.
        self.idle_deadline = trio.current_time() + server.config.keep_alive_timeout
        self.read_deadline = math.inf
        self.wait_scope: trio.CancelScope | None = None
        self.protocol: ProtocolWrapper
        self._inner: object = None

    async def run(self, client: tuple[str, int] | None) -> None:
        server = self.server
        try:
            where = parse_socket_addr(self.sock.family, self.sock.getsockname())
        except OSError:  # pragma: no cover - the client reset the connection right after connect
            self.close()
            return
        try:
            async with trio.open_nursery() as nursery:
                try:
                    task_group = cast("TaskGroup", _TaskGroup(nursery, self))
                    self.protocol = ProtocolWrapper(
                        server.app, server.config, server.context, task_group, server.state,
                        False, client, where, self.send, "http/1.1",
                    )  # fmt: skip
                    self._inner = self.protocol.protocol
                    await self.protocol.initiate()
                    await self._read()
                except trio.Cancelled:
                    # The server's stop cut the connection off. A write waiting for this client
                    # ends now; otherwise the app's cancelled tasks may still answer (a 503).
                    if self._lock.locked():
                        self.close()
                    raise
                except BaseException:
                    self.close()
                    raise
                # The client closed, or the connection is over: close before the nursery waits
                # for the app's tasks, so that a peer that left is not kept in CLOSE_WAIT.
                self.close()
        finally:
            self.close()

    async def _read(self) -> None:
        sock = self.sock
        handle = self.protocol.handle
        streak = 0
        while True:
            try:
                data = sock.recv(MAX_RECV)
            except BlockingIOError:
                data = None  # wait outside the handler: an idle connection keeps no exception alive
            except OSError:  # reset by the peer, or closed here
                break
            if data is None:
                streak = 0
                if await self._wait_readable():
                    continue
                break
            if not data:
                break
            await handle(RawData(data))
            if self.protocol.protocol is not self._inner:
                self._switched()
            streak += 1
            if streak == STREAK:
                streak = 0
                await trio.lowlevel.checkpoint()
        await self._protocol_closed()

    async def _protocol_closed(self) -> None:
        """Tell the protocol the connection is gone. HTTP/2: hypercorn's sending task stops
        then, so the app's writes still buffered (or yet to come) would wait for it for ever;
        close the stream buffers, as hypercorn does when a stream ends while it sends."""
        await self.protocol.handle(Closed())
        inner = self.protocol.protocol
        if isinstance(inner, H2Protocol):
            for buffer in list(inner.stream_buffers.values()):
                await buffer.close()

    async def _wait_readable(self) -> bool:
        """Wait for data; False when the connection is to end (closed, idle too long, read timeout)."""
        if self.closed:
            return False
        if self.read_timeout is not None:
            self.read_deadline = trio.current_time() + self.read_timeout
        with trio.CancelScope(deadline=min(self.idle_deadline, self.read_deadline)) as scope:
            self.wait_scope = scope
            try:
                await trio.lowlevel.wait_readable(self.sock)
            except trio.ClosedResourceError:
                return False
            finally:
                self.wait_scope = None
        return not scope.cancelled_caught

    def _switched(self) -> None:
        """hypercorn replaced HTTP/1.1 by HTTP/2 (prior knowledge or h2c upgrade)."""
        self._inner = inner = self.protocol.protocol
        if isinstance(inner, H2Protocol) and inner.idle:  # only the preface so far: the keep-alive timer runs
            self._set_idle(True)

    def _set_idle(self, idle: bool) -> None:
        if not idle:
            deadline = math.inf
        elif self.server.terminated:
            deadline = -math.inf
        else:
            deadline = trio.current_time() + self.server.config.keep_alive_timeout
        self.idle_deadline = deadline
        if self.wait_scope is not None:
            self.wait_scope.deadline = min(deadline, self.read_deadline)

    def terminate(self) -> None:
        """The server stops: an idle connection closes now, a busy one after its response."""
        if self.idle_deadline != math.inf:
            self._set_idle(True)

    async def send(self, event: Event) -> None:
        """hypercorn's ``send``: bytes to write, the connection's end, or a change of idleness."""
        kind = type(event)
        if kind is RawData:
            data: bytes = cast("RawData", event).data
            if self.closed:
                # Dropped, but a checkpoint still: an app streaming to a client that has gone
                # must yield, so that its disconnect is read and the stream cancelled.
                await trio.lowlevel.checkpoint()
                return
            if not data:
                return
            if data == MESSAGE_TOO_BIG:  # hypercorn refused a WebSocket message over the limit
                await self._send_rest(data)
                self.close()  # it would go on buffering the rest of the message: read no more of it
                return
            if not self._lock.locked():
                try:
                    sent = self.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    await self._peer_gone()
                    return
                if sent == len(data):
                    return
                data = data[sent:]
            await self._send_rest(data)
        elif kind is Updated:
            self._set_idle(cast("Updated", event).idle)
        elif kind is Closed:
            self.close()
            await self._protocol_closed()

    async def _send_rest(self, data: bytes) -> None:
        """Write what the kernel did not take at once: one writer at a time, in order, shielded."""
        lock = self._lock
        if lock.locked():
            await lock.acquire()
        else:
            lock.acquire_nowait()
        gone = False
        try:
            with trio.CancelScope(shield=True):
                view = memoryview(data)
                while view and not self.closed:
                    try:
                        sent = self.sock.send(view)
                    except BlockingIOError:
                        try:
                            await trio.lowlevel.wait_writable(self.sock)
                        except trio.ClosedResourceError:
                            return
                        continue
                    except OSError:
                        gone = True
                        break
                    view = view[sent:]
        finally:
            lock.release()
        if gone:
            await self._peer_gone()

    async def probe(self) -> None:
        """While the app does not take its body (the read loop waits): has the peer closed
        or reset the connection? Then it is gone, as if the read loop had met its end."""
        if not self.closed and _peer_left(self.sock):
            await self._peer_gone()

    async def _peer_gone(self) -> None:
        self.close()
        await self._protocol_closed()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        sock = self.sock
        if not self._lock.locked():  # the end-of-file goes out only between writes
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        trio.lowlevel.notify_closing(sock)
        sock.close()


def _peer_left(sock: socket.socket) -> bool:
    """Whether the kernel knows the peer closed (FIN) or reset (RST) the connection, however
    much unread data is ahead of that. Linux: the TCP state; elsewhere: a pending error
    (a reset) only."""
    try:
        if TCP_INFO is not None:
            return sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, 1)[0] in TCP_PEER_GONE
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0
    except OSError:  # closed meanwhile
        return True


# -- the server --------------------------------------------------------------------------------


class _Server:
    """What every connection of one worker shares."""

    def __init__(self, app: AppWrapper, config: Config, context: WorkerContext, state: ConnectionState) -> None:
        self.app = app
        self.config = config
        self.context = context
        self.state = state
        self.terminated = False
        self.connections: set[_Connection] = set()

    async def accept(self, listener: socket.socket, handlers: trio.Nursery) -> None:
        listener.setblocking(False)
        streak = 0
        while True:
            try:
                sock, address = listener.accept()
            except BlockingIOError:
                sock = None  # wait outside the handler, which would keep the exception alive
            except OSError as exc:
                if exc.errno not in CAPACITY_ERRNOS:
                    continue  # ECONNABORTED and the like: that client is gone already
                logger.error("accept() failed: %s; retrying in 0.1 s", exc)  # pragma: no cover - needs fd exhaustion
                await trio.sleep(0.1)  # pragma: no cover
                continue  # pragma: no cover
            if sock is None:
                streak = 0
                await trio.lowlevel.wait_readable(listener)
                continue
            handlers.start_soon(self.serve_connection, sock, address)
            streak += 1
            if streak == STREAK:
                streak = 0
                await trio.lowlevel.checkpoint()

    async def serve_connection(self, sock: socket.socket, address: Any) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # as trio's SocketStream does
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(self, sock)
        self.connections.add(connection)
        try:
            await connection.run(parse_socket_addr(sock.family, address))
        except Exception:  # one connection's failure is logged; the server goes on
            logger.exception("Error while serving a connection")
        finally:
            self.connections.discard(connection)

    def terminate(self) -> None:
        self.terminated = True
        for connection in list(self.connections):
            connection.terminate()


class _Lifespan(Lifespan):
    """hypercorn's ``Lifespan``, serving on when the app returns from the lifespan scope.

    ASGI lets an app without lifespan support raise or return there. hypercorn handles a
    raise, but after a return it sends its next message into the channel it closed
    (``ClosedResourceError`` at startup or at shutdown). Here that app is served without
    lifespan events, as one that raised is.
    """

    async def wait_for_startup(self) -> None:
        try:
            await super().wait_for_startup()
        except trio.ClosedResourceError:
            await self._app_returned("startup")

    async def wait_for_shutdown(self) -> None:
        try:
            await super().wait_for_shutdown()
        except trio.ClosedResourceError:
            await self._app_returned("shutdown")

    async def _app_returned(self, phase: str) -> None:
        self.supported = False
        await self.config.log.info(f"The app returned from the lifespan scope before its {phase}: no lifespan events")


async def serve_sockets(
    app: AppWrapper,
    config: Config,
    *,
    sockets: Sockets,
    shutdown_trigger: Callable[[], Awaitable[None]],
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """hypercorn's ``worker_serve`` for listening TCP sockets, with this module's driver.

    Runs the lifespan startup, accepts connections until ``shutdown_trigger`` returns, closes
    the idle connections, gives the others ``config.graceful_timeout`` seconds, then runs the
    lifespan shutdown.
    """
    lifespan_state: dict[str, Any] = {}
    lifespan = _Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        state = ConnectionState(lifespan_state.copy())
        server = _Server(app, config, context, state)
        binds = [f"https://{_where(sock)}" for sock in sockets.secure_sockets]
        binds += [f"http://{_where(sock)}" for sock in sockets.insecure_sockets]
        async with trio.open_nursery() as handlers:
            task_status.started(binds)
            try:
                async with trio.open_nursery() as listeners:
                    for sock in sockets.insecure_sockets:
                        listeners.start_soon(server.accept, sock, handlers)
                    if sockets.secure_sockets:
                        listeners.start_soon(_serve_tls, app, config, context, state, sockets.secure_sockets, handlers)
                    await shutdown_trigger()
                    listeners.cancel_scope.cancel(reason="server stopping")
            finally:
                for sock in [*sockets.insecure_sockets, *sockets.secure_sockets]:
                    sock.close()  # new connections are refused from now on
                await context.terminated.set()
                server.terminate()
                handlers.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel(reason="server stopped")


def _where(sock: socket.socket) -> str:
    return repr_socket_addr(sock.family, sock.getsockname())


async def _serve_tls(
    app: AppWrapper,
    config: Config,
    context: WorkerContext,
    state: ConnectionState,
    sockets: list[socket.socket],
    handlers: trio.Nursery,
) -> None:
    """TLS goes through hypercorn's own trio driver (``TCPServer``) on trio's ``SSLStream``."""
    ssl_context = config.create_ssl_context()
    if ssl_context is None:  # pragma: no cover - secure sockets exist only when certfile and keyfile are set
        return
    listeners = [
        trio.SSLListener(trio.SocketListener(trio.socket.from_stdlib_socket(sock)), ssl_context, https_compatible=True)
        for sock in sockets
    ]
    await trio.serve_listeners(partial(TCPServer, app, config, context, state), listeners, handler_nursery=handlers)
