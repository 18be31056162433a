"""hypercorn's logger, with one access-log line per request.

hypercorn writes the last bytes of a response, then marks the stream closed and logs the
request. A client that reads the response and closes the connection at once can get its
close in between: hypercorn then logs the request a first time with ``-`` as the status (as
if the client had left before the response), and again with the real status. Here a ``-``
line waits for the writer to catch up, and is dropped when the response is logged after all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from hypercorn.logging import Logger

if TYPE_CHECKING:
    from hypercorn.config import Config
    from hypercorn.typing import ResponseSummary, WWWScope

__all__ = ["AccessLogger"]

# How many scheduling rounds a "-" line waits for the response's own line. The writer is
# runnable already when the close arrives (its last send has completed), so one is enough;
# the rest is a margin that costs nothing when the client did leave early.
CATCH_UP_ROUNDS = 3


class AccessLogger(Logger):
    """hypercorn's ``Logger`` that logs each request once."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._closing: dict[int, bool] = {}  # id(scope) of a request logged as closing -> answered since?

    async def access(self, request: WWWScope, response: ResponseSummary | None, request_time: float) -> None:
        if self.access_logger is None:
            return  # no access log: nothing to wait for (hypercorn calls this for every request)
        key = id(request)
        if response is None:
            self._closing[key] = False
            try:
                for _ in range(CATCH_UP_ROUNDS):
                    await trio.lowlevel.cancel_shielded_checkpoint()
            finally:
                answered = self._closing.pop(key)
            if answered:
                return  # the response was complete after all, and has been logged with its status
        elif key in self._closing:
            self._closing[key] = True
        await super().access(request, response, request_time)  # type: ignore[arg-type] # None: hypercorn's "-"
