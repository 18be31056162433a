"""A small live task board: every feature leans on structured concurrency.

- the store is a service on ``app.nursery``, opened at startup and closed at shutdown;
- ``triolette.broadcast`` (opened on ``app.nursery``) carries the live card feed (server-sent
  events) and the chat (WebSockets); ``BOARD_BROADCAST_URL=redis://...`` shares them between
  workers and machines; the chat connection's forwarding task lives in ``websocket.nursery``;
- the export is a detached job on ``app.nursery``, cancelled cleanly on shutdown;
- ``/stats`` has a deadline (``timeout=``); ``/search`` fans out to three services in the
  request's nursery under a deadline;
- "Under the hood" embeds ``triolette.inspector`` (signed-in users only).

Serve it with ``./scripts/serve`` from the repository's root (or
``python -m triolette examples.board.app:app``), then open http://127.0.0.1:8000/: sign in
with any name, add a card, and open the board in a second private window to see it arrive.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import trio

from examples.board.broadcast import CHAT, FEED, announce, broadcast_url
from examples.board.jobs import ExportJob
from examples.board.store import COLUMNS, Card, Store
from triolette.applications import Triolette
from triolette.broadcast import Broadcast, BroadcastUnavailable, SubscriberTooSlow
from triolette.datastructures import UploadFile
from triolette.exceptions import HTTPException
from triolette.inspector import Inspector
from triolette.middleware import Middleware
from triolette.middleware.sessions import SessionMiddleware
from triolette.requests import Request
from triolette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from triolette.routing import Mount, Route, WebSocketRoute
from triolette.sse import EventSourceResponse, ServerSentEvent
from triolette.staticfiles import StaticFiles
from triolette.templating import Jinja2Templates
from triolette.websockets import WebSocket, WebSocketDisconnect

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
MAX_ATTACHMENT = 2 * 1024 * 1024


def default_data_dir() -> Path:
    """$BOARD_DATA_DIR, else the user's data directory ($XDG_DATA_HOME or ~/.local/share)."""
    if os.environ.get("BOARD_DATA_DIR"):
        return Path(os.environ["BOARD_DATA_DIR"])
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "triolette-board"


def session_key(data_dir: Path) -> str:
    """The session signing key: made on the first run and kept in ``data_dir``, so that a
    restart signs nobody out."""
    path = data_dir / "session.key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker made it first
            pass
        else:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


async def store_service(path: Path, *, task_status: trio.TaskStatus[Store] = trio.TASK_STATUS_IGNORED) -> None:
    """Open the store, hand it over, keep it open until the app shuts down."""
    store = Store(path)
    await store.open()
    try:
        task_status.started(store)
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await store.close()


def user_of(conn: Request | WebSocket) -> str | None:
    user = conn.session.get("user")
    return user if isinstance(user, str) else None


def require_user(request: Request) -> str:
    """The signed-in user; 401 otherwise (a browser is sent to the sign-in page)."""
    user = user_of(request)
    if user is None:
        raise HTTPException(401, "Sign in first.")
    return user


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def http_error(request: Request, exc: Exception) -> Response:
    """Errors as a page for a browser, JSON for the page's scripts, plain text otherwise."""
    assert isinstance(exc, HTTPException)
    if wants_html(request):
        if exc.status_code == 401:
            return RedirectResponse(request.url_for("signin_page"), status_code=303)
        context = {"user": user_of(request), "status": exc.status_code, "detail": exc.detail}
        return templates.TemplateResponse(request, "error.html", context, status_code=exc.status_code)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


async def favicon(request: Request) -> Response:
    """Browsers ask for /favicon.ico on pages without an icon link (JSON, the inspector's stream)."""
    return RedirectResponse(request.url_for("static", path="favicon.svg"), status_code=301)


async def signin_page(request: Request) -> Response:
    return templates.TemplateResponse(request, "signin.html", {"error": None})


async def signin(request: Request) -> Response:
    form = await request.form()
    name = str(form.get("name", "")).strip()
    if not 1 <= len(name) <= 40:
        return templates.TemplateResponse(
            request, "signin.html", {"error": "Pick a name of 1 to 40 characters."}, status_code=400
        )
    request.session["user"] = name
    pending = request.session.pop("pending_card", None)
    if isinstance(pending, dict) and str(pending.get("title", "")).strip():
        # A card form sent while signed out (a stale page, an expired session): kept, not lost.
        card = await request.state.store.add_card(
            str(pending["title"]).strip()[:200], str(pending.get("body", ""))[:5000], name, None
        )
        await announce(request.state.broadcast, FEED, {"type": "card", "card": card.as_dict()})
    return RedirectResponse(request.url_for("board"), status_code=303)


async def signout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse(request.url_for("signin_page"), status_code=303)


async def board(request: Request) -> Response:
    user = user_of(request)
    if user is None:
        return RedirectResponse(request.url_for("signin_page"), status_code=303)
    store: Store = request.state.store
    cards = await store.cards()
    columns = {column: [card for card in cards if card.column == column] for column in COLUMNS}
    messages = await store.recent_messages()
    return templates.TemplateResponse(request, "board.html", {"user": user, "columns": columns, "messages": messages})


async def add_card(request: Request) -> Response:
    user = user_of(request)
    if user is None:
        if wants_html(request):  # keep what was typed, ask to sign in, then add it
            async with request.form(max_files=1, max_part_size=MAX_ATTACHMENT) as form:
                request.session["pending_card"] = {
                    "title": str(form.get("title", ""))[:200],
                    "body": str(form.get("body", ""))[:2000],
                }
            return RedirectResponse(request.url_for("signin_page"), status_code=303)
        raise HTTPException(401, "Sign in first.")
    async with request.form(max_files=1, max_part_size=MAX_ATTACHMENT) as form:
        title = str(form.get("title", "")).strip()
        if not title:
            raise HTTPException(400, "A card needs a title.")
        upload = form.get("attachment")
        attachment = None
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read(MAX_ATTACHMENT + 1)
            if len(data) > MAX_ATTACHMENT:
                raise HTTPException(413, f"Attachments are limited to {MAX_ATTACHMENT} bytes.")
            attachment = (upload.filename, upload.content_type or "application/octet-stream", data)
        card = await request.state.store.add_card(title, str(form.get("body", "")), user, attachment)
    await announce(request.state.broadcast, FEED, {"type": "card", "card": card.as_dict()})
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(card.as_dict(), status_code=201)
    return RedirectResponse(request.url_for("board"), status_code=303)


async def move_card(request: Request) -> Response:
    require_user(request)
    form = await request.form()
    column = str(form.get("column", ""))
    if column not in COLUMNS:
        raise HTTPException(400, f"column must be one of {', '.join(COLUMNS)}")
    card = await request.state.store.move_card(request.path_params["card_id"], column)
    if card is None:
        raise HTTPException(404, "No such card.")
    await announce(request.state.broadcast, FEED, {"type": "card", "card": card.as_dict()})
    return JSONResponse(card.as_dict())


def _card_text(form: Any) -> tuple[str, str]:
    title = str(form.get("title", "")).strip()
    if not 1 <= len(title) <= 200:
        raise HTTPException(400, "A card needs a title of 1 to 200 characters.")
    return title, str(form.get("body", ""))[:5000]


async def edit_card(request: Request) -> Response:
    require_user(request)
    title, body = _card_text(await request.form())
    card = await request.state.store.edit_card(request.path_params["card_id"], title, body)
    if card is None:
        raise HTTPException(404, "No such card.")
    await announce(request.state.broadcast, FEED, {"type": "card", "card": card.as_dict()})
    return JSONResponse(card.as_dict())


async def delete_card(request: Request) -> Response:
    require_user(request)
    card_id = request.path_params["card_id"]
    if not await request.state.store.delete_card(card_id):
        raise HTTPException(404, "No such card.")
    await announce(request.state.broadcast, FEED, {"type": "deleted", "id": card_id})
    return JSONResponse({"deleted": card_id})


async def attachment(request: Request) -> Response:
    require_user(request)
    found = await request.state.store.attachment(request.path_params["attachment_id"])
    if found is None:
        raise HTTPException(404, "No such attachment.")
    filename, content_type, data = found
    disposition = f'attachment; filename="{filename.replace(chr(34), "")}"'
    return Response(data, media_type=content_type, headers={"content-disposition": disposition})


async def events(request: Request) -> Response:
    """The live feed: every card change, as server-sent events, until the client leaves."""
    require_user(request)
    broadcast: Broadcast = request.state.broadcast

    async def feed() -> AsyncIterator[ServerSentEvent]:
        try:
            async with broadcast.subscribe(FEED) as subscription:
                yield ServerSentEvent(comment="subscribed")
                async for message in subscription:
                    event = json.loads(message)
                    if event["type"] == "deleted":
                        yield ServerSentEvent(data=json.dumps({"id": event["id"]}), event="deleted")
                    else:
                        yield ServerSentEvent(data=json.dumps(event["card"]), event="card")
        except (SubscriberTooSlow, BroadcastUnavailable):
            return  # end the stream; the browser's EventSource reconnects and the page catches up

    return EventSourceResponse(feed())


async def chat(websocket: WebSocket) -> None:
    """The chat: messages in from this socket, out from everyone's, through the broadcast."""
    user = user_of(websocket)
    if user is None:
        await websocket.close(code=1008, reason="Sign in first.")
        return
    await websocket.accept()
    store: Store = websocket.state.store
    broadcast: Broadcast = websocket.state.broadcast
    presence: dict[str, int] = websocket.state.presence

    async def forward(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with broadcast.subscribe(CHAT) as subscription:
            task_status.started()
            with suppress(WebSocketDisconnect):  # this client left: nothing more to forward to it
                async for message in subscription:
                    await websocket.send_text(message)

    async def goodbye_on_drain() -> None:
        await websocket.app.draining.wait()
        with suppress(WebSocketDisconnect):  # the client left already
            await websocket.send_json({"type": "chat", "author": "board", "text": "The server is restarting."})
            await websocket.close(code=1001)

    await websocket.nursery.start(forward)
    websocket.nursery.start_soon(goodbye_on_drain)
    presence[user] = presence.get(user, 0) + 1
    await announce(broadcast, CHAT, {"type": "presence", "users": sorted(presence)})
    try:
        async for text in websocket.iter_text():
            text = text.strip()[:500]
            if text:
                await store.add_message(user, text)
                await announce(broadcast, CHAT, {"type": "chat", "author": user, "text": text})
    except WebSocketDisconnect:
        pass
    finally:
        presence[user] -= 1
        if not presence[user]:
            del presence[user]
        if not websocket.app.draining.is_set():  # (at shutdown the broadcast closes: nobody to tell)
            with trio.CancelScope(shield=True), trio.move_on_after(1):  # say who left, also when cancelled
                await announce(broadcast, CHAT, {"type": "presence", "users": sorted(presence)})
    websocket.nursery.cancel_scope.cancel(reason="chat connection closed")


async def start_export(request: Request) -> Response:
    require_user(request)
    job = ExportJob(step_seconds=request.app.state.export_step_seconds)
    request.state.jobs[job.id] = job
    request.app.nursery.start_soon(job.run, request.state.store)  # outlives this request, not the app
    return JSONResponse({"id": job.id, "progress": request.url_for("export_progress", job_id=job.id).path})


def _job(request: Request) -> ExportJob:
    require_user(request)
    job: ExportJob | None = request.state.jobs.get(request.path_params["job_id"])
    if job is None:
        raise HTTPException(404, "No such export.")
    return job


async def export_progress(request: Request) -> Response:
    job = _job(request)

    async def progress() -> AsyncIterator[ServerSentEvent]:
        while True:
            yield ServerSentEvent(data=json.dumps({"progress": job.progress, "state": job.state}), event="progress")
            if job.state != "running":
                return
            await job.wait_changed()

    return EventSourceResponse(progress())


async def cancel_export(request: Request) -> Response:
    job = _job(request)
    job.cancel()
    return JSONResponse({"id": job.id, "cancelled": True})


async def export_download(request: Request) -> Response:
    job = _job(request)
    if job.result is None:
        raise HTTPException(409, f"The export is {job.state}, not done.")
    return Response(
        job.result, media_type="text/csv", headers={"content-disposition": 'attachment; filename="board.csv"'}
    )


def _delay(request: Request, maximum: float) -> float:
    """The ``delay`` query parameter: seconds, 0 to ``maximum``; 400 otherwise."""
    raw = request.query_params.get("delay", "0")
    try:
        delay = float(raw)
    except ValueError:
        raise HTTPException(400, f"delay must be a number of seconds from 0 to {maximum:g}, got {raw!r}") from None
    if not 0 <= delay <= maximum:  # also refuses nan and inf
        raise HTTPException(400, f"delay must be a number of seconds from 0 to {maximum:g}, got {raw!r}")
    return delay


async def stats(request: Request) -> Response:
    """Card counts per column, under a 1 second deadline (``?delay=`` makes it slow)."""
    require_user(request)
    await trio.sleep(_delay(request, 10))
    cards = await request.state.store.cards()
    return JSONResponse({column: sum(card.column == column for card in cards) for column in COLUMNS})


SEARCH_SERVICES = (("titles", 1.0), ("details", 2.0), ("authors", 3.0))  # name, delay factor
SEARCH_BUDGET = 1.5  # seconds: after this, answer with what came back
SEARCH_DEADLINE = 2.5  # seconds: the route's deadline; nothing by then is a 503


async def search(request: Request) -> Response:
    """A slow search: three simulated services in the request's nursery, under a deadline.

    Service ``n`` takes ``delay * n`` seconds. Whatever has answered after SEARCH_BUDGET seconds
    is returned (the others are named as late, and cancelled with the request); if none has, the
    search waits on, and the route's deadline answers 503. ``delay`` must be 0 to 5 (400).
    """
    require_user(request)
    delay = _delay(request, 5)
    query = request.query_params.get("q", "").strip().lower()[:100]
    cards: list[Card] = await request.state.store.cards()
    results: dict[str, list[int]] = {}
    first = trio.Event()

    scopes: list[trio.CancelScope] = []

    async def service(name: str, field: str, seconds: float) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            await trio.sleep(seconds)  # a stand-in for a call to another service
            results[name] = [card.id for card in cards if query in getattr(card, field).lower()]
            first.set()

    fields = {"titles": "title", "details": "body", "authors": "author"}
    for name, factor in SEARCH_SERVICES:
        request.nursery.start_soon(service, name, fields[name], delay * factor, name=f"search service: {name}")
    with trio.move_on_after(SEARCH_BUDGET):
        while len(results) < len(SEARCH_SERVICES):
            await first.wait()
            first = trio.Event()
    if not results:
        await first.wait()  # until the first answer, or the route's deadline (503)
    late = [name for name, _ in SEARCH_SERVICES if name not in results]
    for scope in scopes:
        scope.cancel(reason="the search answered without it")  # the late ones end with the request
    matches = sorted({card_id for ids in results.values() for card_id in ids})
    return JSONResponse({"query": query, "results": results, "matches": matches, "late": late, "partial": bool(late)})


def create_app(
    data_dir: Path | None = None,
    *,
    secret_key: str | None = None,
    export_step_seconds: float = 0.2,
    broadcast: str | None = None,
    search_deadline: float = SEARCH_DEADLINE,
) -> Triolette:
    """Build the board app; its SQLite file lives in ``data_dir`` (created on first run).

    ``broadcast`` is the broadcast URL (default ``$BOARD_BROADCAST_URL``, else ``memory://``).
    """
    data_dir = data_dir or default_data_dir()
    database = data_dir / "board.sqlite3"

    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[dict[str, Any]]:
        store = await app.nursery.start(store_service, database)
        async with Broadcast(broadcast or broadcast_url(), app=app) as channels:
            jobs: dict[int, ExportJob] = {}
            app.state.jobs = jobs  # kept on the app too, so a test can look after shutdown
            yield {"store": store, "broadcast": channels, "jobs": jobs, "presence": {}}

    app = Triolette(
        routes=[
            Route("/", board, name="board"),
            Route("/favicon.ico", favicon, name="favicon"),
            Route("/signin", signin_page, name="signin_page"),
            Route("/signin", signin, methods=["POST"], name="signin"),
            Route("/signout", signout, methods=["POST"], name="signout"),
            Route("/cards", add_card, methods=["POST"], name="add_card"),
            Route("/cards/{card_id:int}/move", move_card, methods=["POST"], name="move_card"),
            Route("/cards/{card_id:int}/edit", edit_card, methods=["POST"], name="edit_card"),
            Route("/cards/{card_id:int}/delete", delete_card, methods=["POST"], name="delete_card"),
            Route("/attachments/{attachment_id:int}", attachment, name="attachment"),
            Route("/events", events, name="events"),
            WebSocketRoute("/chat", chat, name="chat"),
            Route("/export", start_export, methods=["POST"], name="start_export"),
            Route("/export/{job_id:int}/progress", export_progress, name="export_progress"),
            Route("/export/{job_id:int}/cancel", cancel_export, methods=["POST"], name="cancel_export"),
            Route("/export/{job_id:int}/board.csv", export_download, name="export_download"),
            Route("/stats", stats, name="stats", timeout=1),
            Route("/search", search, name="search", timeout=search_deadline),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=secret_key or session_key(data_dir))],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    # "Under the hood": the live task tree, for signed-in users only (the app is not in debug mode).
    app.mount("/_triolette", Inspector(app, allow=lambda request: user_of(request) is not None), name="inspector")
    app.state.export_step_seconds = export_step_seconds
    return app


app = create_app(secret_key=os.environ.get("BOARD_SECRET_KEY"))
