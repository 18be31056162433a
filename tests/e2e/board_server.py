"""The demo board served on 127.0.0.1 by hypercorn's trio worker, in a thread of its own, for
the browser tests (the browser drives it from the test's thread)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import Framework

from examples.board.app import create_app
from triolette.applications import Triolette


class BoardServer:
    """The board served on 127.0.0.1 in a thread of its own; stop() and start() again on the
    same port is a server restart (same data directory, so the same session key)."""

    def __init__(self, data_dir: Path, **options: Any) -> None:
        self.data_dir = data_dir
        self.options = options
        self.port = 0
        self.app: Triolette | None = None
        self._thread: threading.Thread | None = None
        self._stop: Any = None

    def start(self) -> str:
        app = self.app = create_app(self.data_dir, **self.options)
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.graceful_timeout = 1
        config.accesslog = None
        started: queue.Queue[Any] = queue.Queue()

        framework = cast(Framework, app)  # hypercorn types an app with its own scope TypedDicts

        async def main() -> None:
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                binds = await nursery.start(
                    lambda task_status: serve(framework, config, shutdown_trigger=stop.wait, task_status=task_status)
                )
                started.put((binds[0], stop, trio.lowlevel.current_trio_token()))

        self._thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
        self._thread.start()
        base, stop, token = started.get(timeout=15)
        self._stop = (stop, token)
        self.port = int(base.rsplit(":", 1)[1])
        return str(base)

    def stop(self) -> None:
        stop, token = self._stop
        trio.from_thread.run_sync(stop.set, trio_token=token)
        assert self._thread is not None
        self._thread.join(timeout=15)
        assert not self._thread.is_alive()
