"""Signed-cookie sessions: ``request.session`` kept in a cookie the client cannot forge."""

from __future__ import annotations

import json
from base64 import b64decode, b64encode
from binascii import Error as Base64Error
from typing import Any, Literal

from triolette.datastructures import Secret
from triolette.middleware._headers import add_vary, response_headers
from triolette.requests import cookie_parser
from triolette.types import ASGIApp, Message, Receive, Scope, Send

try:
    import itsdangerous
    from itsdangerous.exc import BadSignature
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "SessionMiddleware needs the 'itsdangerous' package. Install it with 'pip install triolette[sessions]'."
    ) from exc

__all__ = ["Session", "SessionMiddleware"]

_SAME_SITE_VALUES = ("lax", "strict", "none")
_EXPIRED = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "


class SessionMiddleware:
    """Keeps ``request.session`` (a dict of JSON values) in a signed, timestamped cookie.

    The data is readable by the client but not changeable: the cookie is signed with
    ``secret_key`` using itsdangerous' ``TimestampSigner`` and rejected after ``max_age``
    seconds (``None``: a browser-session cookie). A cookie with a bad signature gives an
    empty session. The cookie is only sent when the session changed.
    """

    def __init__(
        self,
        app: ASGIApp,
        secret_key: str | Secret,
        session_cookie: str = "session",
        max_age: int | None = 14 * 24 * 60 * 60,
        path: str = "/",
        same_site: Literal["lax", "strict", "none"] = "lax",
        https_only: bool = False,
        domain: str | None = None,
        partitioned: bool = False,
    ) -> None:
        if same_site not in _SAME_SITE_VALUES:
            raise ValueError(f"SessionMiddleware same_site must be 'lax', 'strict' or 'none', got {same_site!r}")
        self.app = app
        self.signer = itsdangerous.TimestampSigner(str(secret_key))
        self.session_cookie = session_cookie
        self.max_age = max_age
        self.path = path
        flags = "httponly; samesite=" + same_site
        if https_only:
            flags += "; secure"
        if domain is not None:
            flags += f"; domain={domain}"
        if partitioned:
            flags += "; partitioned"
        self.security_flags = flags
        max_age_attribute = f"Max-Age={max_age}; " if max_age is not None else ""
        # Everything of the Set-Cookie values but the data is known now.
        self._cookie_prefix = f"{session_cookie}="
        self._cookie_suffix = f"; path={path}; {max_age_attribute}{flags}"
        self._clear_cookie = f"{session_cookie}=null; path={path}; {_EXPIRED}{flags}".encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        session, had_session = self._load(scope)
        scope["session"] = session

        async def send_with_session(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._store(scope["session"], had_session, message)
            await send(message)

        await self.app(scope, receive, send_with_session)

    def _load(self, scope: Scope) -> tuple[Session, bool]:
        value = None
        for key, cookie_header in scope.get("headers", ()):
            if key == b"cookie":  # every Cookie header counts, a later one overriding (as request.cookies)
                value = cookie_parser(cookie_header.decode("latin-1")).get(self.session_cookie, value)
        if value is None:
            return Session(), False
        try:
            data = json.loads(b64decode(self.signer.unsign(value.encode("utf-8"), max_age=self.max_age)))
        except (BadSignature, Base64Error, ValueError):
            # Forged, expired, or signed with another key: start afresh.
            return Session(), False
        if not isinstance(data, dict):
            return Session(), False
        return Session(data), True

    def _store(self, session: Any, had_session: bool, message: Message) -> None:
        accessed = getattr(session, "accessed", True)
        modified = getattr(session, "modified", True)
        if not (accessed or modified):
            return
        headers = response_headers(message)
        if accessed:
            add_vary(headers, b"Cookie")
        if modified and session:
            data = self.signer.sign(b64encode(json.dumps(session).encode("utf-8"))).decode("utf-8")
            headers.append((b"set-cookie", (self._cookie_prefix + data + self._cookie_suffix).encode("latin-1")))
        elif modified and had_session:
            headers.append((b"set-cookie", self._clear_cookie))


class Session(dict[str, Any]):
    """The session's data: a dict that records reads (``accessed``) and changes (``modified``)."""

    accessed: bool = False
    modified: bool = False

    def mark_accessed(self) -> None:
        """Record a read: the response then varies by Cookie."""
        self.accessed = True

    def mark_modified(self) -> None:
        """Record a change: the response then sets the cookie again."""
        self.accessed = True
        self.modified = True

    def __setitem__(self, key: str, value: Any) -> None:
        self.mark_modified()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.mark_modified()
        super().__delitem__(key)

    def __ior__(self, other: Any, /) -> Session:  # type: ignore[override,misc]  # dict's signature, narrowed to Session
        self.mark_modified()
        super().update(other)
        return self

    def clear(self) -> None:
        self.mark_modified()
        super().clear()

    def pop(self, key: str, *args: Any) -> Any:
        if key in self:
            self.mark_modified()
        return super().pop(key, *args)

    def popitem(self) -> tuple[str, Any]:
        item = super().popitem()
        self.mark_modified()
        return item

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.mark_modified()
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.mark_modified()
        super().update(*args, **kwargs)
