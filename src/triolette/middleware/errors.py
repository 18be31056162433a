"""ServerErrorMiddleware: the outermost layer, turning an unhandled exception into a 500.

With ``debug=True`` the 500 carries a traceback page (HTML for browsers, plain text
otherwise). The exception is re-raised after the response so the server logs it.
"""

from __future__ import annotations

import html
import inspect
import traceback

from triolette._conversation import BodyTooLarge
from triolette._exception_handler import ResponseWatch, call_handler
from triolette._scope import INTERNAL_EXCEPTIONS, SCOPE_KEY, RequestScope
from triolette.middleware.body_limit import answer_too_large
from triolette.requests import Request
from triolette.responses import HTMLResponse, PlainTextResponse, Response
from triolette.types import ASGIApp, ExceptionHandler, Receive, Scope, Send

__all__ = ["ServerErrorMiddleware"]

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d1d1f; }}
h1 {{ font-size: 1.4rem; }} h2 {{ font-size: 1rem; color: #6e6e73; }}
.frame {{ border: 1px solid #d2d2d7; border-radius: 6px; margin: 0.75rem 0; }}
.frame-title {{ background: #f5f5f7; padding: 0.4rem 0.75rem; font-family: monospace; }}
.lines {{ margin: 0; padding: 0.4rem 0; }}
.line {{ font-family: monospace; white-space: pre; padding: 0 0.75rem; }}
.line.current {{ background: #fff1c2; }}
.lineno {{ color: #86868b; display: inline-block; min-width: 3.5em; }}
</style>
</head>
<body>
<h1>500 Server Error</h1>
<h2>{title}</h2>
<p>Traceback, most recent call last:</p>
{frames}
</body>
</html>
"""


_ASYNCIO_ONLY_NOTE = (
    "triolette runs on trio, not asyncio: this is asyncio-only code (asyncio.sleep, asyncio.current_task, "
    "or a client built on asyncio such as asyncpg, aiosqlite or databases). Use trio or anyio, or a "
    "trio-compatible client; see docs/database.md for databases that work."
)
_NO_LOOP_MESSAGES = ("no running event loop", "There is no current event loop")


def _explain_asyncio_only_code(exc: BaseException) -> None:
    """Add a note to asyncio's "no running event loop" error: what it means under trio, and the fix.

    The note is printed with the traceback, in the server's error log and on the debug page.
    """
    if (
        isinstance(exc, RuntimeError)
        and any(message in str(exc) for message in _NO_LOOP_MESSAGES)
        and _ASYNCIO_ONLY_NOTE not in getattr(exc, "__notes__", ())
    ):
        exc.add_note(_ASYNCIO_ONLY_NOTE)


def _response_started(watch: ResponseWatch | None, rs: RequestScope | None) -> bool:
    """Whether the app started its response: the watch on a wrapped send, else the scope knows."""
    return watch.started if watch is not None else rs is not None and rs.response_started


class ServerErrorMiddleware:
    """Answers an unhandled exception with a 500 (a traceback page with ``debug=True``), then re-raises it.

    The 500 handler is called for every unhandled exception, also one raised after the response
    started (a failing background task); only then its response is not sent.
    """

    def __init__(self, app: ASGIApp, handler: ExceptionHandler | None = None, debug: bool = False) -> None:
        self.app = app
        self.handler = handler
        self.debug = debug

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The RequestScope knows whether its own send started a response: a watch is needed
        # only when a middleware outside this one wrapped send.
        rs: RequestScope | None = scope.get(SCOPE_KEY)
        watch = None if rs is not None and send is rs.asgi_send else ResponseWatch(scope, send)
        try:
            await self.app(scope, receive, send if watch is None else watch.send)
        except BodyTooLarge:
            # A middleware read the body past the app's max_body_size, outside the exception
            # middleware: the client's fault, answered 413 as the limit's own middleware does.
            if _response_started(watch, rs):
                raise
            await answer_too_large(scope, receive, send)
        except Exception as exc:
            if isinstance(exc, INTERNAL_EXCEPTIONS):
                raise
            _explain_asyncio_only_code(exc)
            # The handler runs for every unhandled exception (it may log or report it); its
            # response is sent only if the app had not started one.
            response = await self.build_response(Request(scope), exc)
            if response is not None and not _response_started(watch, rs):
                await response(scope, receive, send)
            raise

    async def build_response(self, request: Request, exc: BaseException) -> Response | None:
        """The 500 for ``exc``: the debug page, the app's 500 handler, or plain text."""
        if self.debug:
            return self.debug_response(request, exc)
        if self.handler is None or not isinstance(exc, Exception):
            return self.error_response(request, exc)
        response: Response | None = await call_handler(self.handler, request, exc)
        return response

    # -- the debug page ------------------------------------------------------------------

    def format_line(self, index: int, line: str, frame_lineno: int, frame_index: int) -> str:
        lineno = frame_lineno + (index - frame_index)
        current = " current" if index == frame_index else ""
        return (
            f'<div class="line{current}"><span class="lineno">{lineno}</span>'
            f"{html.escape(line.rstrip(chr(10))).replace(' ', '&nbsp;')}</div>"
        )

    def generate_frame_html(self, frame: inspect.FrameInfo, is_collapsed: bool) -> str:
        lines = frame.code_context or []
        index = frame.index if frame.index is not None else 0
        code = "".join(self.format_line(i, line, frame.lineno, index) for i, line in enumerate(lines))
        hidden = ' style="display:none"' if is_collapsed else ""
        return (
            '<div class="frame">'
            f'<div class="frame-title">File {html.escape(frame.filename)}, line {frame.lineno}, '
            f"in <b>{html.escape(frame.function)}</b></div>"
            f'<div class="lines"{hidden}>{code}</div>'
            "</div>"
        )

    def generate_html(self, exc: BaseException, limit: int = 7) -> str:
        frames = inspect.getinnerframes(exc.__traceback__, limit) if exc.__traceback__ else []
        frames_html = "".join(
            self.generate_frame_html(frame, is_collapsed=i != len(frames) - 1) for i, frame in enumerate(frames)
        )
        title = html.escape(f"{type(exc).__name__}: {exc}")
        notes = "".join(f'<p class="note">{html.escape(str(note))}</p>' for note in getattr(exc, "__notes__", ()))
        return _PAGE.format(title=title, frames=notes + frames_html)

    def generate_plain_text(self, exc: BaseException) -> str:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))

    def debug_response(self, request: Request, exc: BaseException) -> Response:
        accept = request.headers.get("accept", "")
        if "text/html" in accept:
            return HTMLResponse(self.generate_html(exc), status_code=500)
        return PlainTextResponse(self.generate_plain_text(exc), status_code=500)

    def error_response(self, request: Request, exc: BaseException) -> Response:
        return PlainTextResponse("Internal Server Error", status_code=500)
