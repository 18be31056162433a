"""Exceptions an endpoint raises to answer with an error."""

from __future__ import annotations

import http.client
from collections.abc import Mapping

__all__ = ["HTTPException", "TrioletteDeprecationWarning", "WebSocketException"]


class HTTPException(Exception):
    """Raise from an endpoint to answer with ``status_code`` and ``detail``.

    ``detail`` defaults to the status code's standard phrase ("Not Found"), or ``""`` for a
    code without one (599).
    """

    def __init__(self, status_code: int, detail: str | None = None, headers: Mapping[str, str] | None = None) -> None:
        if detail is None:
            detail = http.client.responses.get(status_code, "")
        self.status_code = status_code
        self.detail = detail
        self.headers = headers

    def __str__(self) -> str:
        return f"{self.status_code}: {self.detail}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status_code={self.status_code!r}, detail={self.detail!r})"


class WebSocketException(Exception):
    """Raise from a WebSocket endpoint to close the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or ""

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r})"


class TrioletteDeprecationWarning(DeprecationWarning):
    """Warns of an API that a future release removes."""


# Defined here, low in the import graph, so that the RequestScope can name them without
# importing requests.py or websockets.py; those modules re-export them, where Starlette has them.


class ClientDisconnect(Exception):
    """The client went away while the request body was being read."""


class WebSocketDisconnect(Exception):
    """The connection is closed: the client went away (or closed it) with ``code``."""

    def __init__(self, code: int = 1000, reason: str | None = None) -> None:
        self.code = code
        self.reason = reason or ""
