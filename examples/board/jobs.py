"""The slow export: a detached job on app.nursery whose progress pages can watch."""

from __future__ import annotations

import csv
import io
import itertools

import trio

from examples.board.store import Store

_ids = itertools.count(1)


class ExportJob:
    """Writes every card to CSV, slowly (a stand-in for real work), reporting progress."""

    def __init__(self, step_seconds: float = 0.2) -> None:
        self.id = next(_ids)
        self.step_seconds = step_seconds
        self.progress = 0  # percent
        self.state = "running"  # running, done, failed or cancelled
        self.result: bytes | None = None
        self.scope = trio.CancelScope()  # Cancel on the page cancels this, and so the job
        self.finally_ran = False  # the job's cleanup ran (tests look)
        self._changed = trio.Event()

    def cancel(self) -> None:
        """Cancel the job's scope: it stops at its next checkpoint, its finally blocks run."""
        self.scope.cancel(reason="export cancelled")

    async def wait_changed(self) -> None:
        """Return at the next progress or state change."""
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, store: Store) -> None:
        with self.scope:
            await self._run(store)
        if self.scope.cancelled_caught:
            self.state = "cancelled"
            self._notify()

    async def _run(self, store: Store) -> None:
        try:
            cards = await store.cards()
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow(["id", "title", "column", "author"])
            steps = max(len(cards), 1)
            for done, card in enumerate(cards, start=1):
                await trio.sleep(self.step_seconds)
                writer.writerow([card.id, card.title, card.column, card.author])
                self.progress = done * 100 // steps
                self._notify()
            self.result = out.getvalue().encode()
            self.progress, self.state = 100, "done"
        except trio.Cancelled:
            self.state = "cancelled"
            raise
        except Exception:
            self.state = "failed"
            raise
        finally:
            self.finally_ran = True
            self._notify()
