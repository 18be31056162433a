"""The live task tree of a running app: what each request in flight is doing, and how each ended.

``Inspector(app)`` is an ASGI app to mount (``Mount("/_triolette", Inspector(app))``), or
``Triolette(debug=True, inspector=True)`` mounts one at ``/_triolette``. It serves:

- ``/``: an HTML page, updated over server-sent events;
- ``/events``: the same snapshots as a ``text/event-stream``;
- ``/state.json``: one snapshot as JSON.

A snapshot lists every request in flight (method, path, age, time left to its deadline, its
phase, the tasks in its nursery by name), the open WebSockets and SSE streams, the services in
``app.nursery``, ``app.draining``, the last requests that ended with how each ended, and counts
by end reason since the inspector was installed.

It shows every request's path and the names of its tasks, so it is refused in an app without
``debug=True`` unless an explicit ``allow`` callable says who may see it. With no inspector
installed, the request path does not change; with one, it costs one small record per request.
"""

from __future__ import annotations

import json
import math
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from triolette._conversation import BODY_TIMEOUT, SEND_TIMEOUT
from triolette._scope import EVENT_STREAM_KEY, RequestScope, get_request_scope
from triolette.requests import Request
from triolette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from triolette.routing import Route, Router
from triolette.sse import EventSourceResponse, ServerSentEvent
from triolette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from triolette.applications import Triolette

__all__ = ["END_REASONS", "Inspector", "end_reason"]

# How a request ended. "cancelled": cancelled from outside (not by the app's drain).
COMPLETED: Final = "completed"
CLIENT_DISCONNECTED: Final = "client disconnected"
DEADLINE: Final = "deadline"
BODY_TIMEOUT_REASON: Final = "body timeout"
LIMIT: Final = "limit"
DRAINED: Final = "drained"
CANCELLED: Final = "cancelled"
ERROR: Final = "error"
END_REASONS: Final = (COMPLETED, CLIENT_DISCONNECTED, DEADLINE, BODY_TIMEOUT_REASON, LIMIT, DRAINED, CANCELLED, ERROR)

Allow = Callable[[Request], bool]


def end_reason(rs: RequestScope, error: BaseException | None, now: float, draining: bool) -> str:
    """How the request ``rs`` ended, from its state once its ASGI call is over.

    ``error`` is what escaped the call, if anything; ``now`` the trio clock at its end;
    ``draining`` whether the app was draining then.
    """
    if error is not None:
        if isinstance(error, trio.Cancelled) or (
            isinstance(error, BaseExceptionGroup) and error.split(trio.Cancelled)[1] is None
        ):
            return DRAINED if draining else CANCELLED
        return ERROR
    if rs.cut_short is BODY_TIMEOUT:
        return BODY_TIMEOUT_REASON
    complete = rs.outbox.complete
    if (rs.disconnected and not complete) or rs.cut_short is SEND_TIMEOUT:
        return CLIENT_DISCONNECTED  # (a disconnect after the whole response was sent changes nothing)
    limit = rs.inbox  # the request side, with its body limit
    if limit.declared_over or (limit.limit is not None and limit.bytes_read > limit.limit):
        return LIMIT
    cs = rs.nursery.cancel_scope
    if cs.cancelled_caught and now >= cs.deadline:
        return DEADLINE
    if draining and (not complete or rs.is_websocket or _is_event_stream(rs)):
        return DRAINED  # cut off by the drain, or a stream that the drain ended
    status = rs.outbox.status
    if status == 413:
        return LIMIT
    if status is not None and status >= 500:
        return ERROR
    return COMPLETED


def _is_event_stream(rs: RequestScope) -> bool:
    """Whether the request is answered with server-sent events."""
    return EVENT_STREAM_KEY in rs.asgi_scope


def _tasks(nursery: trio.Nursery) -> list[dict[str, Any]]:
    """The tasks of ``nursery`` by name, each with the tasks of the nurseries it opened."""
    tree = []
    for task in sorted(nursery.child_tasks, key=lambda task: task.name):
        children = [child for inner in task.child_nurseries for child in _tasks(inner)]
        tree.append({"name": task.name, "children": children})
    return tree


def _seconds(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


class _Record:
    """One request the inspector saw: filled in at its start, completed at its end."""

    __slots__ = ("duration", "id", "kind", "method", "own", "path", "reason", "rs", "started", "status")

    def __init__(self, number: int, rs: RequestScope, started: float) -> None:
        scope = rs.asgi_scope
        self.id = number
        self.rs: RequestScope | None = rs
        self.kind = "websocket" if rs.is_websocket else "http"
        self.method: str = "WS" if rs.is_websocket else scope.get("method", "")
        self.path: str = scope.get("root_path", "") + scope.get("path", "")
        self.started = started
        self.own = False  # a request to the inspector itself: listed in flight, kept out of the history
        self.reason = ""
        self.status: int | None = None
        self.duration = 0.0

    def live(self, rs: RequestScope, now: float) -> dict[str, Any]:
        nursery = rs.nursery
        kind = "sse" if self.kind == "http" and _is_event_stream(rs) else self.kind
        return {
            "id": self.id,
            "kind": kind,
            "method": self.method,
            "path": self.path,
            "age": round(now - self.started, 3),
            "deadline_in": _seconds(nursery.cancel_scope.deadline - now),
            "phase": rs.phase,
            "task": nursery.parent_task.name,
            "tasks": _tasks(nursery),
            "inspector": self.own,
        }

    def ended(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "reason": self.reason,
            "duration": round(self.duration, 3),
            "ago": round(now - self.started - self.duration, 3),
        }


class Inspector:
    """An ASGI app showing ``app``'s live task tree; mount it (``Mount("/_triolette", Inspector(app))``).

    Args:
        app: The Triolette application to watch. It must have ``debug=True``, unless ``allow``
            is given.
        allow: Called with each request to the inspector; a false answer gets 403. Required
            in a non-debug app (for example ``lambda request: request.client.host == "127.0.0.1"``).
        history: How many ended requests to keep (default 50).
        interval: Seconds between two snapshots on the live page (default 0.5).
    """

    def __init__(
        self,
        app: Triolette,
        *,
        allow: Allow | None = None,
        history: int = 50,
        interval: float = 0.5,
    ) -> None:
        if allow is None and not app.debug:
            raise RuntimeError(
                "The inspector shows every request in flight and is refused in a non-debug app: "
                "create the app with debug=True, or pass allow=<callable taking the request> "
                "saying who may see it."
            )
        if allow is not None and not callable(allow):
            raise TypeError(f"Inspector allow= must be a callable taking the request, got {allow!r}")
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"Inspector history must be a positive number of requests, got {history!r}")
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
            raise ValueError(f"Inspector interval must be a positive number of seconds, got {interval!r}")
        if app.inspector is not None:
            raise RuntimeError("This app already has an inspector: mount that one instead of creating another.")
        self.app = app
        self.allow = allow
        self.interval = interval
        self.counts: Counter[str] = Counter()  # how many requests ended, by reason, since it was installed
        self._history: deque[_Record] = deque(maxlen=history)
        self._live: dict[RequestScope, _Record] = {}
        self._number = 0
        self._router = Router(
            [
                Route("/", self._page, name="page"),
                Route("/state.json", self._state, name="state"),
                Route("/events", self._events, name="events"),
            ]
        )
        app.inspector = self

    # -- what the application calls ------------------------------------------------------

    def request_started(self, rs: RequestScope) -> _Record:
        """Record ``rs`` as in flight (the application calls it as the request enters)."""
        self._number += 1
        record = self._live[rs] = _Record(self._number, rs, trio.current_time())
        return record

    def request_ended(self, record: _Record, error: BaseException | None) -> None:
        """File ``record`` with how its request ended (``error``: what escaped its ASGI call)."""
        rs = record.rs
        assert rs is not None
        del self._live[rs]
        now = trio.current_time()
        record.duration = now - record.started
        record.status = rs.outbox.status
        record.reason = end_reason(rs, error, now, self.app.draining.is_set())
        record.rs = None
        if not record.own:
            self._history.append(record)
            self.counts[record.reason] += 1

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as plain data (what ``/state.json`` answers)."""
        now = trio.current_time()
        in_flight = [record.live(rs, now) for rs, record in self._live.items()]
        try:
            services = _tasks(self.app.nursery)
        except RuntimeError:  # no lifespan running (an app called without one)
            services = []
        return {
            "draining": self.app.draining.is_set(),
            "in_flight": in_flight,
            "websockets": sum(1 for item in in_flight if item["kind"] == "websocket"),
            "sse": sum(1 for item in in_flight if item["kind"] == "sse"),
            "services": services,
            "ended": [record.ended(now) for record in reversed(self._history)],
            "counts": {reason: self.counts[reason] for reason in END_REASONS},
        }

    # -- the ASGI app ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._router(scope, receive, send)
            return
        rs = get_request_scope(scope)
        record = self._live.get(rs) if rs is not None else None
        if record is not None:
            record.own = True
        if self.allow is not None and not self.allow(Request(scope)):
            await PlainTextResponse("The inspector is not open to this request (its allow callable said no).", 403)(
                scope, receive, send
            )
            return
        await self._router(scope, receive, send)

    async def _page(self, request: Request) -> Response:
        base = json.dumps(request.scope.get("root_path", "")).replace("</", "<\\/")
        return HTMLResponse(_PAGE.replace("__BASE__", base), headers={"cache-control": "no-store"})

    async def _state(self, request: Request) -> Response:
        return JSONResponse(self.snapshot(), headers={"cache-control": "no-store"})

    async def _events(self, request: Request) -> Response:
        response = EventSourceResponse(self._snapshots())
        # Not cut off when the app starts draining, unlike other streams: the page shows the drain,
        # and ends once nothing but the inspector's own streams is left in flight.
        request.scope[EVENT_STREAM_KEY] = True
        scope = {**request.scope, "app": None}
        return _Detached(response, scope)

    async def _snapshots(self) -> AsyncIterator[ServerSentEvent]:
        while True:
            yield ServerSentEvent(data=json.dumps(self.snapshot()), event="snapshot")
            if self.app.draining.is_set() and all(record.own for record in self._live.values()):
                return
            await trio.sleep(self.interval)


class _Detached(Response):
    """Runs ``response`` with a scope of its own (the inspector's stream, kept out of the drain's stop)."""

    def __init__(self, response: Response, scope: Scope) -> None:
        self._response = response
        self._scope = scope

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._response(self._scope, receive, send)


# The page: plain HTML and a script that renders each snapshot; __BASE__ is the mount path, as JSON.
_PAGE: Final = Path(__file__).with_name("_inspector_page.html").read_text(encoding="utf-8")
