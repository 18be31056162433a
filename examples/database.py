"""Notes in SQLite under trio: the standard library's sqlite3, called through the thread pool.

asyncio-only drivers (aiosqlite, asyncpg, the databases package) fail under trio with
"RuntimeError: no running event loop". A synchronous driver works: each call runs in a
worker thread (``run_in_threadpool``), so the event loop never blocks. One connection, opened
at startup and closed at shutdown, is used by one thread at a time (a ``trio.Lock``).
See docs/database.md.

Run it from the repository's root (the database is $NOTES_DB, else notes.sqlite3 here):

    python -m triolette examples.database:app

Then open http://127.0.0.1:8000/notes (the notes, as JSON), and add one with:

    curl -d text=hello http://127.0.0.1:8000/notes
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from triolette.applications import Triolette
from triolette.concurrency import run_in_threadpool
from triolette.requests import Request
from triolette.responses import JSONResponse
from triolette.routing import Route

T = TypeVar("T")


class Notes:
    """The notes table, reached from trio through worker threads."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self.lock = trio.Lock()  # sqlite3 connections are not for two threads at once

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        async with self.lock:
            return await run_in_threadpool(work, self.connection)

    async def all(self) -> list[dict[str, Any]]:
        rows = await self.run(lambda db: db.execute("SELECT id, text FROM notes ORDER BY id").fetchall())
        return [{"id": row[0], "text": row[1]} for row in rows]

    async def add(self, text: str) -> int:
        def insert(db: sqlite3.Connection) -> int:
            with db:  # a transaction: committed, or rolled back on error
                cursor = db.execute("INSERT INTO notes (text) VALUES (?)", (text,))
            return cursor.lastrowid or 0

        return await self.run(insert)


def open_database(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, check_same_thread=False)
    connection.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    connection.commit()
    return connection


def create_app(path: str) -> Triolette:
    @asynccontextmanager
    async def lifespan(app: Triolette) -> AsyncIterator[dict[str, Notes]]:
        connection = await run_in_threadpool(open_database, path)
        try:
            yield {"notes": Notes(connection)}
        finally:
            await run_in_threadpool(connection.close)

    async def list_notes(request: Request) -> JSONResponse:
        return JSONResponse(await request.state.notes.all())

    async def add_note(request: Request) -> JSONResponse:
        form = await request.form()
        text = form.get("text")
        if not isinstance(text, str) or not text.strip():
            return JSONResponse({"error": "send a non-empty 'text' field"}, status_code=400)
        note_id = await request.state.notes.add(text.strip())
        return JSONResponse({"id": note_id, "text": text.strip()}, status_code=201)

    return Triolette(
        routes=[Route("/notes", list_notes, methods=["GET"]), Route("/notes", add_note, methods=["POST"])],
        lifespan=lifespan,
    )


app = create_app(os.environ.get("NOTES_DB", "notes.sqlite3"))
