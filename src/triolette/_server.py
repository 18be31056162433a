"""Serving an app with graceful drain: ``triolette.serve()`` and the engine of ``python -m triolette``.

One worker is one trio run of hypercorn's protocol classes under triolette's connection
driver (``_driver.serve_sockets``; hypercorn's own ``worker_serve`` if this hypercorn lacks
something the driver relies on). The worker handles SIGINT and SIGTERM itself: on the
first one, the server stops accepting connections and every Triolette app whose lifespan
runs here drains (``app.drain()``: ``app.draining`` set, in-flight requests finish within
the graceful timeout, the rest are cancelled); then the idle connections are closed and the
lifespan shutdown runs. A second SIGINT cancels what is still in flight at once.

Several workers (or ``reload=True``) are processes started from the import string; the
parent binds the socket, hands it to each worker, and on a signal tells the workers to
drain (SIGTERM), or to stop now on a second signal (SIGINT).

A client that stops reading is disconnected after the app's ``send_timeout``: hypercorn
shields its socket writes from cancellation, so the RequestScope's watchdog alone cannot
end a write that the client never takes; the kernel does, through ``TCP_USER_TIMEOUT``
set on the listening sockets (Linux) to the longest ``send_timeout`` of the apps served.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import trio

from triolette._lifespan import running_apps
from triolette._utils import exception_leaves, raise_single
from triolette.types import ASGIApp

if TYPE_CHECKING:
    from hypercorn.config import Config, Sockets
    from hypercorn.logging import Logger
    from hypercorn.typing import Framework

    from triolette.applications import Triolette

__all__ = ["AppImportError", "ServerOptions", "StartupFailed", "load_app", "serve", "serve_in_trio"]

logger = logging.getLogger("triolette")

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# How long hypercorn waits past the app's drain before it cancels connections itself: a
# backstop for apps that are not Triolette apps, or that ignore cancellation in a shielded section.
HYPERCORN_BACKSTOP = 5.0
STARTUP_FAILED_EXIT = 3  # a worker's exit code when the app's startup failed
BAD_APP_EXIT = 2  # a worker's exit code when the import string names nothing usable
BROKEN_APP_EXIT = 4  # a worker's exit code when importing the app's module raised


class AppImportError(Exception):
    """The import string ``module:attribute`` does not name an ASGI app. The message is one line."""


class StartupFailed(Exception):
    """The application's lifespan startup failed; the message is the error's own (one line)."""


@dataclass(frozen=True)
class ServerOptions:
    """What a worker needs to know besides the app (it is sent to worker processes as is)."""

    host: str = "127.0.0.1"
    port: int = 8000
    graceful_timeout: float | None = None
    log_level: str = "info"
    access_log: bool = False
    keep_alive_timeout: float = 5.0
    root_path: str = ""
    read_timeout: float | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a host name or address, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be a whole number from 0 to 65535, got {self.port!r}")
        if self.graceful_timeout is not None and not _is_seconds(self.graceful_timeout):
            raise ValueError(f"graceful_timeout must be a number of seconds >= 0, got {self.graceful_timeout!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}; got {self.log_level!r}")
        if not _is_seconds(self.keep_alive_timeout) or self.keep_alive_timeout == 0:
            raise ValueError(
                f"keep_alive_timeout must be a positive number of seconds, got {self.keep_alive_timeout!r}"
            )
        if self.read_timeout is not None and (not _is_seconds(self.read_timeout) or self.read_timeout == 0):
            raise ValueError(f"read_timeout must be a positive number of seconds (or None), got {self.read_timeout!r}")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError(
                f"TLS needs both certfile and keyfile, got certfile={self.certfile!r}, keyfile={self.keyfile!r}"
            )

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def hypercorn_config(self) -> Config:
        Config = _hypercorn_config_class()
        config = Config()
        config.bind = [self.bind]
        config.loglevel = self.log_level.upper()
        config.errorlog = "-"
        config.accesslog = "-" if self.access_log else None
        config.logger_class = _access_logger_class()
        config.keep_alive_timeout = self.keep_alive_timeout
        config.root_path = self.root_path
        config.read_timeout = self.read_timeout  # type: ignore[assignment] # hypercorn reads any number of seconds
        config.certfile = self.certfile
        config.keyfile = self.keyfile
        config.graceful_timeout = _drain_bound(self.graceful_timeout) + HYPERCORN_BACKSTOP
        return config


def _is_seconds(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value >= 0 and not math.isnan(value)


def _drain_bound(graceful_timeout: float | None) -> float:
    """The longest a drain can take: the graceful timeout, then the wait for cancelled requests."""
    from triolette.applications import CANCELLED_GRACE, DEFAULT_GRACEFUL_TIMEOUT

    apps = running_apps()
    if graceful_timeout is None:
        graceful_timeout = max((app.graceful_timeout for app in apps), default=DEFAULT_GRACEFUL_TIMEOUT)
    return graceful_timeout + CANCELLED_GRACE


def _access_logger_class() -> type[Logger]:
    from triolette._access_log import AccessLogger

    return AccessLogger


def _hypercorn_config_class() -> type[Config]:
    try:
        from hypercorn.config import Config
    except ImportError:  # pragma: no cover - hypercorn is installed wherever the tests run
        raise ImportError("serving needs hypercorn: pip install 'triolette[server]'") from None
    return Config


# -- loading the app -----------------------------------------------------------------------


def load_app(path: str) -> ASGIApp:
    """Import ``"module:attribute"`` (the attribute may be dotted) and return the app it names.

    Raises :class:`AppImportError` with a one-line message when the module or the attribute
    is not there, when ``path`` names a file (``main.py:app``), or when what it names cannot be
    called as ``app(scope, receive, send)``; an error raised while the module itself runs
    propagates unchanged.
    """
    module_name, sep, attribute = path.partition(":")
    names_a_file = module_name.endswith(".py") or "/" in module_name
    if not sep or not module_name or not attribute:
        example = f"{_module_of(module_name)}:app" if names_a_file else "main:app"
        raise AppImportError(f"the app must be given as 'module:attribute' (e.g. {example!r}), got {path!r}")
    if names_a_file:
        raise AppImportError(
            f"{path!r} names a file, but the app is given as module:attribute: "
            f"try '{_module_of(module_name)}:{attribute}', from the directory that holds it"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise  # the module exists, but something it imports does not
        raise AppImportError(
            f"could not import module {module_name!r} (no module named {exc.name!r}); "
            f"run from the directory that contains it, or put it on PYTHONPATH"
        ) from None
    app: Any = module
    for name in attribute.split("."):
        try:
            app = getattr(app, name)
        except AttributeError:
            raise AppImportError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(app):
        raise AppImportError(f"{path!r} is {app!r}, not an ASGI app")
    if not _takes_scope_receive_send(app):
        raise AppImportError(
            f"{path!r} is {app!r}, which cannot be called as app(scope, receive, send): not an ASGI app; "
            f"serve the application instead (e.g. app = Triolette(routes=[Route('/', endpoint)]))"
        )
    return app  # type: ignore[no-any-return]


def _module_of(file_name: str) -> str:
    """The module a file name stands for: 'pkg/web.py' -> 'pkg.web'."""
    return file_name.removesuffix(".py").strip("/").replace("/", ".")


def _takes_scope_receive_send(app: Any) -> bool:
    """Whether ``app`` accepts the three positional arguments of an ASGI call (True when unknown)."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):  # a builtin or extension callable: let the first call tell
        return True
    try:
        signature.bind(None, None, None)
    except TypeError:
        return False
    return True


# -- one worker: a trio run of hypercorn -----------------------------------------------------


class _Shutdown:
    """What a worker does on SIGINT/SIGTERM (or when ``stop`` is set, for tests)."""

    def __init__(self, options: ServerOptions, nursery: trio.Nursery) -> None:
        self.options = options
        self.nursery = nursery
        self.requested = trio.Event()

    def begin(self, why: str) -> None:
        if self.requested.is_set():
            return
        timeout = self.options.graceful_timeout
        logger.info(
            "%s: shutting down; requests in flight get %s to finish",
            why,
            "the app's graceful_timeout" if timeout is None else f"{timeout:g} s",
        )
        self.requested.set()

    def force(self, why: str) -> None:
        logger.warning("%s: cancelling the requests still in flight", why)
        for app in running_apps():
            self.nursery.start_soon(app.drain, 0)

    async def trigger(self, config: Config) -> None:
        """hypercorn's shutdown_trigger: returns (so that hypercorn stops accepting) and starts the drain."""
        await self.requested.wait()
        # hypercorn cancels the connections this long after the trigger returns: after our drain.
        config.graceful_timeout = _drain_bound(self.options.graceful_timeout) + HYPERCORN_BACKSTOP
        for app in running_apps():
            self.nursery.start_soon(app.drain, self.options.graceful_timeout)

    async def watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.requested.is_set():
                    self.begin(name)
                elif signum == signal.SIGINT:
                    self.force(f"{name} again")
                else:
                    logger.info("%s again: already shutting down", name)


async def serve_in_trio(
    app: ASGIApp,
    options: ServerOptions,
    *,
    sockets: Sockets | None = None,
    stop: trio.Event | None = None,
    handle_signals: bool = True,
    parent_pid: int | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` in this trio run until SIGINT/SIGTERM (or ``stop``), then drain and return.

    ``task_status.started()`` gets the bound addresses (``["http://127.0.0.1:8000"]``).
    Raises :class:`StartupFailed` when the app's lifespan startup fails.
    """
    from hypercorn.utils import wrap_app

    serve_sockets = _pick_driver()
    config = options.hypercorn_config()
    own_sockets = sockets is None
    if sockets is None:  # bound here rather than by hypercorn, so that their options can be set
        sockets = config.create_sockets()
        for sock in _stream_sockets(sockets):
            sock.listen(config.backlog)
    announce = _Announce(app, sockets, config, task_status)
    try:
        async with trio.open_nursery() as nursery:
            shutdown = _Shutdown(options, nursery)
            if handle_signals:
                nursery.start_soon(shutdown.watch_signals)
            if stop is not None:
                nursery.start_soon(_when_set, stop, partial(shutdown.begin, "stop requested"))
            if parent_pid is not None:
                nursery.start_soon(_watch_parent, parent_pid, partial(shutdown.begin, "the parent process exited"))
            trigger = partial(shutdown.trigger, config)
            status = cast("trio.TaskStatus[list[str]]", announce)
            wrapped = wrap_app(cast("Framework", app), config.wsgi_max_body_size, "asgi")
            await serve_sockets(wrapped, config, sockets=sockets, shutdown_trigger=trigger, task_status=status)
            nursery.cancel_scope.cancel(reason="server stopped")
    except BaseException as exc:
        message = _startup_failure(exc)
        if message is None:
            if isinstance(exc, BaseExceptionGroup):
                raise_single(exc)  # e.g. the OSError of a port in use, as itself
            raise
        raise StartupFailed(message) from _original_error(exc)
    finally:
        if own_sockets:
            for sock in _stream_sockets(sockets):
                sock.close()
    logger.info("Stopped")


def _pick_driver() -> Callable[..., Awaitable[None]]:
    """triolette's connection driver, or hypercorn's trio worker when this hypercorn lacks
    something the driver relies on (each missing name is logged)."""
    from triolette._driver import check_hypercorn, serve_sockets

    problems = check_hypercorn()
    if not problems:
        return serve_sockets
    from hypercorn.trio.run import worker_serve

    for problem in problems:
        logger.warning("Serving with hypercorn's own trio worker: %s", problem)
    return worker_serve


class _Announce:
    """Passes hypercorn's bound addresses on to our caller, and says where we serve."""

    def __init__(self, app: ASGIApp, sockets: Sockets, config: Config, task_status: trio.TaskStatus[list[str]]) -> None:
        self.app = app
        self.sockets = sockets
        self.config = config
        self.task_status = task_status

    def started(self, binds: list[str]) -> None:
        from triolette.applications import Triolette

        # Called once the lifespan startup is done, before the first connection is accepted.
        apps = running_apps()
        bound_unread_sends(_stream_sockets(self.sockets), apps)
        limit = largest_message_limit(apps)
        if limit is not None:
            self.config.websocket_max_message_size = limit
        # hypercorn starts listening even when the lifespan startup has just failed (its
        # lifespan task has not ended yet): say "serving" only when that is true.
        if not (isinstance(self.app, Triolette) and self.app not in running_apps()):
            logger.info("Serving on %s", ", ".join(binds))
        self.task_status.started(binds)


def _stream_sockets(sockets: Sockets) -> list[socket.socket]:
    """The TCP listening sockets among hypercorn's (its QUIC ones are UDP)."""
    return [*sockets.secure_sockets, *sockets.insecure_sockets]


def bound_unread_sends(sockets: list[socket.socket], apps: list[Triolette]) -> float | None:
    """Have the kernel drop a connection whose client leaves what was sent unread for longer
    than the apps' ``send_timeout`` (``TCP_USER_TIMEOUT``, which accepted connections inherit
    from their listening socket). Returns the seconds set, or None when there is no limit to
    set: no Triolette app, one without a ``send_timeout``, or a system without the option."""
    option: int | None = getattr(socket, "TCP_USER_TIMEOUT", None)
    timeouts = [app.send_timeout for app in apps]
    if option is None or not timeouts:
        return None
    longest = 0.0
    for timeout in timeouts:
        if timeout is None:
            return None
        longest = max(longest, timeout)
    for sock in sockets:
        if sock.type == socket.SOCK_STREAM and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, option, math.ceil(longest * 1000))
    return longest


def largest_message_limit(apps: list[Triolette]) -> int | None:
    """The WebSocket message size for hypercorn: the largest limit among the apps served (and
    the Triolette apps mounted in them), so that a message past every app's limit is refused
    while it arrives rather than after the server has buffered it whole. None (hypercorn's
    default stays) when no Triolette app is served; ``sys.maxsize`` when one has no limit."""
    from triolette.applications import Triolette
    from triolette.routing import walk_apps

    limits: list[int | None] = []
    for app in apps:
        limits.append(app._settings.ws_max_message_size)
        inner = [each for each in walk_apps(app.router) if isinstance(each, Triolette)]
        limits += [each._settings.ws_max_message_size for each in inner]
    if not limits:
        return None
    if None in limits:
        return sys.maxsize
    return max(cast("list[int]", limits))


async def _when_set(event: trio.Event, then: Callable[[], None]) -> None:
    await event.wait()
    then()


async def _watch_parent(parent_pid: int, then: Callable[[], None]) -> None:
    """A worker process does not outlive its parent: it drains when the parent is gone."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - nothing to wait on but polling
        await trio.sleep(1)
    then()


def _startup_failure(exc: BaseException) -> str | None:
    """The one-line message of a lifespan startup failure inside ``exc``, if there is one."""
    from hypercorn.utils import LifespanFailureError, LifespanTimeoutError

    for error in exception_leaves(exc):
        if isinstance(error, LifespanTimeoutError):
            return f"the application's startup took longer than its startup timeout ({error})"
        if isinstance(error, LifespanFailureError) and "in startup" in str(error):
            original = error.__context__
            if original is None:
                return str(error)
            return "".join(traceback.format_exception_only(original)).strip()
    return None


def _original_error(exc: BaseException) -> BaseException | None:
    from hypercorn.utils import LifespanFailureError

    for error in exception_leaves(exc):
        if isinstance(error, LifespanFailureError):
            return error.__context__
    return None


# -- serve(): one worker here, or worker processes --------------------------------------------


def serve(
    app: ASGIApp | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    graceful_timeout: float | None = 30.0,
    reload: bool = False,
    log_level: str = "info",
    access_log: bool = False,
    keep_alive_timeout: float = 5.0,
    root_path: str = "",
    read_timeout: float | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> None:
    """Serve an ASGI app (hypercorn's protocols, triolette's connection driver) until SIGINT or SIGTERM, then drain.

    On the first signal the server stops accepting connections, sets ``app.draining``,
    gives the requests in flight ``graceful_timeout`` seconds to finish (``None``: the
    app's own ``graceful_timeout``), cancels the rest with reason ``"server shutting
    down"``, and runs the lifespan shutdown. A second SIGINT cancels at once.

    - ``app``: the app, or its import string ``"module:attribute"``; ``workers > 1`` and
      ``reload=True`` need the string, since each worker process imports it.
    - ``workers``: worker processes sharing one listening socket.
    - ``reload``: restart the worker when a source file under the current directory changes
      (for development).
    - ``log_level``: ``"critical"``, ``"error"``, ``"warning"``, ``"info"`` or ``"debug"``.
    - ``access_log``: one line per request on stdout (off by default).
    - ``keep_alive_timeout``: seconds an idle keep-alive connection stays open.
    - ``root_path``: the path prefix a proxy mounts the app under (ASGI ``root_path``).
    - ``read_timeout``: seconds a connection may send nothing while the server waits to
      read (``None``: no limit besides the keep-alive timeout and the app's ``body_timeout``).
    - ``certfile`` and ``keyfile``: serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this
      certificate chain and private key (PEM files).

    Raises :class:`StartupFailed` when the app's lifespan startup fails, and
    :class:`AppImportError` when the import string names nothing usable (here or in a worker).
    """
    options = ServerOptions(
        host=host,
        port=port,
        graceful_timeout=graceful_timeout,
        log_level=log_level,
        access_log=access_log,
        keep_alive_timeout=keep_alive_timeout,
        root_path=root_path,
        read_timeout=read_timeout,
        certfile=certfile,
        keyfile=keyfile,
    )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    configure_logging(log_level)
    if workers == 1 and not reload:
        target = load_app(app) if isinstance(app, str) else app
        trio.run(serve_in_trio, target, options)
        return
    if not isinstance(app, str):
        raise ValueError(
            f"workers={workers}{' and reload=True' if reload else ''} need the app as an import string, "
            "e.g. serve('main:app', workers=4): each worker process imports it"
        )
    try:
        load_app(app)  # a bad import string fails here, once, with its one-line message
    except AppImportError:
        raise
    except Exception as exc:  # the module itself raised (a syntax error, say)
        if not reload:
            raise
        # --reload: the supervisor answers 503 with the reason and restarts on the fix.
        logger.error("Could not import %s: %s: %s", app, type(exc).__name__, exc)
    code = trio.run(_supervise, app, options, workers, reload)
    if code == STARTUP_FAILED_EXIT:
        raise StartupFailed("a worker's startup failed (its error is logged above)")
    if code in (BAD_APP_EXIT, BROKEN_APP_EXIT):  # it imported here, then not in the worker
        raise AppImportError(f"a worker could not import {app} (its error is logged above)")
    if code:
        raise RuntimeError(f"a worker exited with code {code} (its error is logged above)")


def configure_logging(log_level: str) -> None:
    """Log triolette's own lines to stderr like hypercorn does, unless logging is set up already."""
    logger.setLevel(log_level.upper())
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s", "%Y-%m-%d %H:%M:%S %z")
        )
        logger.addHandler(handler)
        logger.propagate = False


def _worker_process(
    app_path: str, options: ServerOptions, sockets: Sockets, parent_pid: int, report: Connection | None = None
) -> None:
    """A worker process (spawned): import the app, serve on the parent's sockets, drain on SIGTERM.

    When the app cannot be imported or started, the one-line reason goes to ``report`` (the
    supervisor answers requests with it while ``--reload`` waits for a fix), then the worker exits.
    """
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # a terminal's Ctrl+C goes to the parent, which tells each worker once
    configure_logging(options.log_level)
    for sock in _stream_sockets(sockets):
        sock.listen(_hypercorn_config_class().backlog)
    try:
        app = load_app(app_path)
    except AppImportError as exc:
        logger.error("%s", exc)
        _report(report, str(exc))
        sys.exit(BAD_APP_EXIT)
    except Exception as exc:  # the app's module raised as it was imported: a syntax error while reloading, say
        line = f"{type(exc).__name__}: {exc}"
        logger.error("Could not import %s: %s", app_path, line, exc_info=exc)
        _report(report, line)
        sys.exit(BROKEN_APP_EXIT)
    try:
        trio.run(partial(serve_in_trio, app, options, sockets=sockets, parent_pid=parent_pid))
    except StartupFailed as exc:
        logger.error("Application startup failed: %s", exc, exc_info=exc.__cause__)
        _report(report, f"the application's startup failed: {exc}")
        sys.exit(STARTUP_FAILED_EXIT)


def _report(report: Connection | None, line: str) -> None:
    """Tell the supervisor, in one line, why this worker cannot run the app."""
    if report is not None:
        with contextlib.suppress(OSError):  # the supervisor is gone: nobody to tell
            report.send(" ".join(line.split()))
            report.close()


class _Backoff:
    """How long to wait before restarting a worker that died (sans-IO; one per worker slot).

    A death after a stable run (``stable_after`` seconds or more) waits ``first`` seconds;
    each death sooner than that doubles the wait, up to ``cap``.
    """

    def __init__(self, first: float = 0.5, cap: float = 30.0, stable_after: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self.stable_after = stable_after
        self.quick_deaths = 0

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.stable_after:
            self.quick_deaths = 0
        delay = min(self.cap, self.first * 2.0**self.quick_deaths)
        self.quick_deaths += 1
        return delay


def _read_reason(reader: Connection) -> str:
    """What an exited worker reported on its pipe ("" if nothing), then close the pipe."""
    with reader:
        try:
            return str(reader.recv()) if reader.poll() else ""
        except (EOFError, OSError):  # it died without a word
            return ""


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with code {exitcode}"


# A worker's exit codes that restarting it cannot mend: they stop the server (or, with reload,
# wait for the next change).
_FATAL_EXITS = (BAD_APP_EXIT, STARTUP_FAILED_EXIT, BROKEN_APP_EXIT)


class _Supervisor:
    """The parent of the worker processes: starts them, passes signals on, restarts them when
    they die (with backoff) or when the source changes (``reload``)."""

    def __init__(self, app_path: str, options: ServerOptions, workers: int, reload: bool) -> None:
        self.app_path = app_path
        self.options = options
        self.workers = workers
        self.reload = reload
        self.config = options.hypercorn_config()
        self.sockets = self.config.create_sockets()
        self.context = multiprocessing.get_context("spawn")
        self.processes: dict[int, BaseProcess] = {}  # by worker slot
        self.stopping = False
        self.restart = trio.Event()
        self.failure = ""  # the one-line reason the last generation could not run

    def announce(self) -> None:
        from hypercorn.utils import repr_socket_addr

        for sock in self.sockets.insecure_sockets:
            where = repr_socket_addr(sock.family, sock.getsockname())
            logger.info("Serving on http://%s with %d worker process(es)", where, self.workers)

    def start_worker(self, slot: int) -> tuple[BaseProcess, Connection]:
        reader, writer = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_worker_process,
            args=(self.app_path, self.options, self.sockets, os.getpid(), writer),
            name="triolette-worker",
        )
        process.start()
        writer.close()  # the worker holds its own copy
        self.processes[slot] = process
        return process, reader

    def signal_workers(self, signum: int) -> None:
        for process in self.processes.values():
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):  # it exited between the check and the kill
                    os.kill(process.pid, signum)

    def close_sockets(self) -> None:
        for sock in _stream_sockets(self.sockets):
            sock.close()

    def is_stopping(self) -> bool:
        return self.stopping

    async def watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.stopping:
                    logger.info("%s: shutting down the workers (they drain first)", name)
                    self.stopping = True
                    self.close_sockets()  # with the workers' copies closed too, new connections are refused
                    self.signal_workers(signal.SIGTERM)
                    self.restart.set()
                else:
                    logger.warning("%s again: the workers cancel what is still in flight", name)
                    self.signal_workers(signal.SIGINT)

    async def watch_files(self) -> None:
        app_file = _module_file(self.app_path)
        before = await trio.to_thread.run_sync(_source_mtimes, app_file)
        while True:
            await trio.sleep(1)
            now = await trio.to_thread.run_sync(_source_mtimes, app_file)
            changed = sorted(str(path) for path in now if before.get(path) != now[path])
            before = now
            if changed and not self.stopping:
                logger.info("Changes in %s: restarting", ", ".join(changed[:3]) + (" ..." if len(changed) > 3 else ""))
                self.signal_workers(signal.SIGTERM)
                self.restart.set()

    async def wait_exit(self, process: BaseProcess) -> None:
        await trio.to_thread.run_sync(process.join, abandon_on_cancel=True)

    async def run_generation(self) -> int:
        """Run the workers until a stop or a restart; returns the exit code of a worker that
        could not run the app (which stops the others), or 0."""
        self.processes = {}
        self.failure = ""
        code = 0

        async def keep(slot: int) -> None:
            nonlocal code
            backoff = _Backoff()
            while True:
                process, reader = self.start_worker(slot)
                started = trio.current_time()
                await self.wait_exit(process)
                reason = _read_reason(reader)
                if self.restart.is_set():  # stopping, reloading, or another worker failed
                    return
                if process.exitcode in _FATAL_EXITS:
                    logger.error("Worker %s exited with code %s: stopping the others", process.pid, process.exitcode)
                    code, self.failure = process.exitcode or 1, reason
                    self.restart.set()
                    self.signal_workers(signal.SIGTERM)
                    return
                delay = backoff.next_delay(trio.current_time() - started)
                logger.warning(
                    "Worker %s %s: starting a new one in %g s", process.pid, _how_it_ended(process.exitcode), delay
                )
                with trio.move_on_after(delay):
                    await self.restart.wait()
                if self.restart.is_set():
                    return

        async with trio.open_nursery() as nursery:
            for slot in range(self.workers):
                nursery.start_soon(keep, slot)
        return code

    async def answer_unavailable(self) -> None:
        """While the app cannot run (``reload``), answer every connection at once with a 503
        that gives the reason in one line, then close it."""
        reason = self.failure or "a worker could not start the app (see the log)"
        body = f"The app cannot start: {reason}\nFix it and save: the server restarts on the change.\n".encode()
        response = (
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\nretry-after: 1\r\n\r\n%s" % (len(body), body)
        )
        async with trio.open_nursery() as nursery:
            for sock in self.sockets.insecure_sockets:
                sock.listen(self.config.backlog)  # listening already, unless no worker ever started
                nursery.start_soon(_answer_every_connection, sock, response)


async def _answer_every_connection(sock: socket.socket, response: bytes) -> None:
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock.dup()))  # closing it keeps ``sock``
    async with listener, trio.open_nursery() as nursery:
        while True:
            stream = await listener.accept()
            nursery.start_soon(_answer_once, stream, response)


async def _answer_once(stream: trio.SocketStream, response: bytes) -> None:
    async with stream:
        # A client that resets the connection or sends nothing for 5 s gets nothing more.
        with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError):
            head = b""  # read the request head first, so that closing does not reset the connection
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                head += chunk
            await stream.send_all(response)


def _module_file(app_path: str) -> Path | None:
    """The file of the app's module, found without running it (so also when it cannot import)."""
    try:
        spec = importlib.util.find_spec(app_path.partition(":")[0])
    except (ImportError, ValueError):  # a parent package that cannot be imported
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _source_mtimes(app_file: Path | None = None) -> dict[Path, float]:
    """Modification times of the imported modules' files under the current directory, and of
    the app's own module file (which is not imported while it is broken)."""
    here = Path.cwd()
    found: dict[Path, float] = {}
    filenames = [getattr(module, "__file__", None) for module in list(sys.modules.values())]
    for filename in [*filenames, app_file]:
        if not filename:
            continue
        path = Path(filename)
        if here not in path.parents:
            continue
        try:
            found[path] = path.stat().st_mtime
        except OSError:
            found[path] = -1.0
    return found


async def _supervise(app_path: str, options: ServerOptions, workers: int, reload: bool) -> int:
    supervisor = _Supervisor(app_path, options, workers, reload)
    supervisor.announce()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervisor.watch_signals)
            if reload:
                nursery.start_soon(supervisor.watch_files)
            while True:
                supervisor.restart = trio.Event()
                code = await supervisor.run_generation()
                if supervisor.stopping or not reload:
                    break
                if code:  # the app cannot run (a syntax error?): answer 503 until the next change
                    supervisor.restart = trio.Event()
                    logger.info("Waiting for a change to restart; until then every request gets 503")
                    async with trio.open_nursery() as unavailable:
                        unavailable.start_soon(supervisor.answer_unavailable)
                        await supervisor.restart.wait()
                        unavailable.cancel_scope.cancel(reason="restarting")
                    if supervisor.is_stopping():
                        break
            nursery.cancel_scope.cancel(reason="workers stopped")
    finally:
        supervisor.close_sockets()
        if any(process.exitcode is None for process in supervisor.processes.values()):  # the supervisor failed
            supervisor.signal_workers(signal.SIGTERM)
            with trio.CancelScope(shield=True), trio.move_on_after(_drain_bound(options.graceful_timeout) + 5):
                for process in supervisor.processes.values():
                    await trio.to_thread.run_sync(process.join)
    return 0 if reload else code
