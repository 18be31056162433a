"""A small live task board: every feature leans on structured concurrency.

- the store is a service on ``app.nursery``, opened at startup and closed at shutdown;
- ``triolette.broadcast`` (opened on ``app.nursery``) carries the live card feed (server-sent
  events) and the chat (WebSockets); ``BOARD_BROADCAST_URL=redis://...`` shares them between
  workers and machines; the chat connection's forwarding task lives in ``websocket.nursery``;
- the export is a detached job on ``app.nursery``, cancelled cleanly on shutdown;
- ``/stats`` has a deadline (``timeout=``).

Serve it with ``./scripts/serve`` from the repository's root (or
``python -m triolette examples.board.app:app``), then open http://127.0.0.1:8000/: sign in
with any name, add a card, and open the board in a second private window to see it arrive.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from examples.board.broadcast import CHAT, FEED, announce, broadcast_url
from examples.board.jobs import ExportJob
from examples.board.store import COLUMNS, Store
from triolette.applications import Triolette
from triolette.broadcast import Broadcast, BroadcastUnavailable, SubscriberTooSlow
from triolette.datastructures import UploadFile
from triolette.exceptions import HTTPException
from triolette.middleware import Middleware
from triolette.middleware.sessions import SessionMiddleware
from triolette.requests import Request
from triolette.responses import JSONResponse, RedirectResponse, Response
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
    if user_of(request) is None:
        raise HTTPException(401, "Sign in first.")
    form = await request.form()
    column = str(form.get("column", ""))
    if column not in COLUMNS:
        raise HTTPException(400, f"column must be one of {', '.join(COLUMNS)}")
    card = await request.state.store.move_card(request.path_params["card_id"], column)
    if card is None:
        raise HTTPException(404, "No such card.")
    await announce(request.state.broadcast, FEED, {"type": "card", "card": card.as_dict()})
    return JSONResponse(card.as_dict())


async def attachment(request: Request) -> Response:
    found = await request.state.store.attachment(request.path_params["attachment_id"])
    if found is None:
        raise HTTPException(404, "No such attachment.")
    filename, content_type, data = found
    disposition = f'attachment; filename="{filename.replace(chr(34), "")}"'
    return Response(data, media_type=content_type, headers={"content-disposition": disposition})


async def events(request: Request) -> Response:
    """The live feed: every card change, as server-sent events, until the client leaves."""
    broadcast: Broadcast = request.state.broadcast

    async def feed() -> AsyncIterator[ServerSentEvent]:
        try:
            async with broadcast.subscribe(FEED) as subscription:
                yield ServerSentEvent(comment="subscribed")
                async for message in subscription:
                    event = json.loads(message)
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

    async def forward(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with broadcast.subscribe(CHAT) as subscription:
            task_status.started()
            async for message in subscription:
                await websocket.send_text(message)

    async def goodbye_on_drain() -> None:
        await websocket.app.draining.wait()
        await websocket.send_json({"type": "chat", "author": "board", "text": "The server is restarting."})
        await websocket.close(code=1001)

    await websocket.nursery.start(forward)
    websocket.nursery.start_soon(goodbye_on_drain)
    try:
        async for text in websocket.iter_text():
            text = text.strip()[:500]
            if text:
                await store.add_message(user, text)
                await announce(broadcast, CHAT, {"type": "chat", "author": user, "text": text})
    except WebSocketDisconnect:
        pass
    websocket.nursery.cancel_scope.cancel(reason="chat connection closed")


async def start_export(request: Request) -> Response:
    job = ExportJob(step_seconds=request.app.state.export_step_seconds)
    request.state.jobs[job.id] = job
    request.app.nursery.start_soon(job.run, request.state.store)  # outlives this request, not the app
    return JSONResponse({"id": job.id, "progress": request.url_for("export_progress", job_id=job.id).path})


def _job(request: Request) -> ExportJob:
    job = request.state.jobs.get(request.path_params["job_id"])
    if job is None:
        raise HTTPException(404, "No such export.")
    return job  # type: ignore[no-any-return]


async def export_progress(request: Request) -> Response:
    job = _job(request)

    async def progress() -> AsyncIterator[ServerSentEvent]:
        while True:
            yield ServerSentEvent(data=json.dumps({"progress": job.progress, "state": job.state}), event="progress")
            if job.state != "running":
                return
            await job.wait_changed()

    return EventSourceResponse(progress())


async def export_download(request: Request) -> Response:
    job = _job(request)
    if job.result is None:
        raise HTTPException(409, f"The export is {job.state}, not done.")
    return Response(
        job.result, media_type="text/csv", headers={"content-disposition": 'attachment; filename="board.csv"'}
    )


async def stats(request: Request) -> Response:
    """Card counts per column, under a 1 second deadline (``?delay=`` makes it slow)."""
    await trio.sleep(float(request.query_params.get("delay", "0")))
    cards = await request.state.store.cards()
    return JSONResponse({column: sum(card.column == column for card in cards) for column in COLUMNS})


def create_app(
    data_dir: Path | None = None,
    *,
    secret_key: str | None = None,
    export_step_seconds: float = 0.2,
    broadcast: str | None = None,
) -> Triolette:
    """Build the board app; its SQLite file lives in ``data_dir`` (created on first run).

    ``broadcast`` is the broadcast URL (default ``$BOARD_BROADCAST_URL``, else ``memory://``).
    """
    database = (data_dir or default_data_dir()) / "board.sqlite3"

    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[dict[str, Any]]:
        store = await app.nursery.start(store_service, database)
        async with Broadcast(broadcast or broadcast_url(), app=app) as channels:
            app.state.jobs = jobs = {}  # kept on the app too, so a test can look after shutdown
            yield {"store": store, "broadcast": channels, "jobs": jobs}

    app = Triolette(
        routes=[
            Route("/", board, name="board"),
            Route("/signin", signin_page, name="signin_page"),
            Route("/signin", signin, methods=["POST"], name="signin"),
            Route("/signout", signout, methods=["POST"], name="signout"),
            Route("/cards", add_card, methods=["POST"], name="add_card"),
            Route("/cards/{card_id:int}/move", move_card, methods=["POST"], name="move_card"),
            Route("/attachments/{attachment_id:int}", attachment, name="attachment"),
            Route("/events", events, name="events"),
            WebSocketRoute("/chat", chat, name="chat"),
            Route("/export", start_export, methods=["POST"], name="start_export"),
            Route("/export/{job_id:int}/progress", export_progress, name="export_progress"),
            Route("/export/{job_id:int}/board.csv", export_download, name="export_download"),
            Route("/stats", stats, name="stats", timeout=1),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(SessionMiddleware, secret_key=secret_key or secrets.token_urlsafe(32))],
        lifespan=lifespan,
    )
    app.state.export_step_seconds = export_step_seconds
    return app


app = create_app(secret_key=os.environ.get("BOARD_SECRET_KEY"))
