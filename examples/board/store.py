"""The board's embedded store: one SQLite file, every query run off the event loop.

SQLite connections belong to the thread that uses them, and SQLite wants one writer at
a time, so the store keeps one connection and runs each query on trio's worker threads
through a limiter of one token: queries never block the event loop and never overlap.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio

T = TypeVar("T")

COLUMNS = ("todo", "doing", "done")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    column_name TEXT NOT NULL DEFAULT 'todo',
    author TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attachments (
    id INTEGER PRIMARY KEY,
    card_id INTEGER NOT NULL REFERENCES cards(id) ON DELETE CASCADE,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    author TEXT NOT NULL,
    text TEXT NOT NULL,
    created REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Card:
    id: int
    title: str
    body: str
    column: str
    author: str
    attachment: tuple[int, str] | None = None  # (attachment id, file name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "column": self.column,
            "author": self.author,
            "attachment": None if self.attachment is None else {"id": self.attachment[0], "name": self.attachment[1]},
        }


class Store:
    """Cards, their attachments and the chat history, in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._one_at_a_time = trio.CapacityLimiter(1)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def job() -> T:
            if self._db is None:
                raise RuntimeError("The store is closed: the app is shutting down.")
            with self._db:  # one transaction per job
                return fn(self._db)

        return await trio.to_thread.run_sync(job, limiter=self._one_at_a_time)

    async def open(self) -> None:
        def connect() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False)
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(_SCHEMA)
            return db

        self._db = await trio.to_thread.run_sync(connect, limiter=self._one_at_a_time)

    async def close(self) -> None:
        """Close the file once the queries already queued have run (they hold the limiter)."""

        def shut() -> None:
            db, self._db = self._db, None
            if db is not None:
                db.close()

        await trio.to_thread.run_sync(shut, limiter=self._one_at_a_time)

    async def add_card(
        self, title: str, body: str, author: str, attachment: tuple[str, str, bytes] | None = None
    ) -> Card:
        def insert(db: sqlite3.Connection) -> Card:
            cursor = db.execute(
                "INSERT INTO cards (title, body, author, created) VALUES (?, ?, ?, ?)",
                (title, body, author, time.time()),
            )
            card_id = cursor.lastrowid
            assert card_id is not None
            stored = None
            if attachment is not None:
                filename, content_type, data = attachment
                row = db.execute(
                    "INSERT INTO attachments (card_id, filename, content_type, data) VALUES (?, ?, ?, ?)",
                    (card_id, filename, content_type, data),
                )
                assert row.lastrowid is not None
                stored = (row.lastrowid, filename)
            return Card(card_id, title, body, "todo", author, stored)

        return await self._run(insert)

    async def move_card(self, card_id: int, column: str) -> Card | None:
        if column not in COLUMNS:
            raise ValueError(f"column must be one of {COLUMNS}, got {column!r}")

        def update(db: sqlite3.Connection) -> Card | None:
            db.execute("UPDATE cards SET column_name = ? WHERE id = ?", (column, card_id))
            return _card(db, card_id)

        return await self._run(update)

    async def edit_card(self, card_id: int, title: str, body: str) -> Card | None:
        def update(db: sqlite3.Connection) -> Card | None:
            db.execute("UPDATE cards SET title = ?, body = ? WHERE id = ?", (title, body, card_id))
            return _card(db, card_id)

        return await self._run(update)

    async def delete_card(self, card_id: int) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM attachments WHERE card_id = ?", (card_id,))
            return db.execute("DELETE FROM cards WHERE id = ?", (card_id,)).rowcount > 0

        return await self._run(delete)

    async def cards(self) -> list[Card]:
        def select(db: sqlite3.Connection) -> list[Card]:
            rows = db.execute("SELECT id FROM cards ORDER BY id").fetchall()
            return [card for (card_id,) in rows if (card := _card(db, card_id)) is not None]

        return await self._run(select)

    async def attachment(self, attachment_id: int) -> tuple[str, str, bytes] | None:
        def select(db: sqlite3.Connection) -> tuple[str, str, bytes] | None:
            row = db.execute(
                "SELECT filename, content_type, data FROM attachments WHERE id = ?", (attachment_id,)
            ).fetchone()
            return None if row is None else (row[0], row[1], bytes(row[2]))

        return await self._run(select)

    async def add_message(self, author: str, text: str) -> None:
        await self._run(
            lambda db: db.execute(
                "INSERT INTO messages (author, text, created) VALUES (?, ?, ?)", (author, text, time.time())
            )
        )

    async def recent_messages(self, limit: int = 20) -> list[tuple[str, str]]:
        def select(db: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = db.execute("SELECT author, text FROM messages ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            return [(author, text) for author, text in reversed(rows)]

        return await self._run(select)


def _card(db: sqlite3.Connection, card_id: int) -> Card | None:
    row = db.execute("SELECT id, title, body, column_name, author FROM cards WHERE id = ?", (card_id,)).fetchone()
    if row is None:
        return None
    attachment = db.execute("SELECT id, filename FROM attachments WHERE card_id = ?", (card_id,)).fetchone()
    return Card(row[0], row[1], row[2], row[3], row[4], None if attachment is None else (attachment[0], attachment[1]))
