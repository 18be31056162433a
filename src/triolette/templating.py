"""Jinja2 templates rendered into HTML responses: ``templates.TemplateResponse(request, "page.html")``.

Needs the ``jinja2`` package: ``pip install triolette[templates]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from typing import Any, overload

try:
    import jinja2
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        "Jinja2Templates needs the 'jinja2' package. Install it with 'pip install triolette[templates]'."
    ) from exc

from triolette._utils import ConfigurationError
from triolette.background import BackgroundTask
from triolette.datastructures import URL
from triolette.requests import Request
from triolette.responses import HTMLResponse
from triolette.types import Receive, Scope, Send

__all__ = ["Jinja2Templates"]

ContextProcessor = Callable[[Request], dict[str, Any]]


class _TemplateResponse(HTMLResponse):
    """An HTML response rendered from a template; keeps ``template`` and ``context`` for tests to inspect."""

    def __init__(
        self,
        template: Any,
        context: dict[str, Any],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ):
        self.template = template
        self.context = context
        super().__init__(template.render(context), status_code, headers, media_type, background)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A test client that asks for it ("http.response.debug") learns the template and context.
        if "http.response.debug" in scope.get("extensions", {}):
            await send({"type": "http.response.debug", "info": {"template": self.template, "context": self.context}})
        await super().__call__(scope, receive, send)


class Jinja2Templates:
    """Renders Jinja2 templates from ``directory`` (or a ready-made ``env``) into HTML responses.

    Autoescaping is on for every template the directory loader finds. Templates can call
    ``url_for("route_name", **path_params)`` (through the request in their context), and
    each ``context_processors`` entry adds its dict, computed from the request, to every
    template's context.
    """

    @overload
    def __init__(
        self,
        directory: str | PathLike[str] | Sequence[str | PathLike[str]],
        *,
        context_processors: list[ContextProcessor] | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        *,
        env: jinja2.Environment,
        context_processors: list[ContextProcessor] | None = None,
    ) -> None: ...

    def __init__(
        self,
        directory: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None,
        *,
        context_processors: list[ContextProcessor] | None = None,
        env: jinja2.Environment | None = None,
    ) -> None:
        if (directory is None) == (env is None):
            raise ConfigurationError(
                "either 'directory' or 'env' arguments must be passed: Jinja2Templates needs exactly one, "
                + ("got both" if env is not None else "got neither")
            )
        self.context_processors = context_processors or []
        if env is None:
            env = jinja2.Environment(loader=jinja2.FileSystemLoader(directory), autoescape=True)  # type: ignore[arg-type]  # not None here
        self.env = env
        self.env.globals.setdefault("url_for", _url_for)

    def get_template(self, name: str) -> jinja2.Template:
        """The template called ``name``; raises ``jinja2.TemplateNotFound`` when there is none."""
        return self.env.get_template(name)

    def TemplateResponse(
        self,
        request: Request,
        name: str,
        context: dict[str, Any] | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> _TemplateResponse:
        """Render template ``name`` with ``context`` (plus ``request`` and the context processors' values).

        The request comes first, as in Starlette 1.x.
        """
        if not isinstance(request, Request):
            raise TypeError(_argument_order_hint(request, name))
        context = dict(context or {})
        context.setdefault("request", request)
        for processor in self.context_processors:
            context.update(processor(request))
        return _TemplateResponse(
            self.get_template(name),
            context,
            status_code=status_code,
            headers=headers,
            media_type=media_type,
            background=background,
        )


def _argument_order_hint(request: object, name: object) -> str:
    """Why a TemplateResponse call without a request first is wrong, and the call to write instead."""
    if isinstance(request, str):  # Starlette 0.x's order: TemplateResponse(name, context)
        return (
            f"TemplateResponse takes the request first, then the template name, then the context "
            f"(Starlette 1.x); got the template name {request!r} first. "
            f"Write TemplateResponse(request, {request!r}, context), "
            f"where context is the dict you passed (it no longer needs 'request' in it)"
        )
    return (
        f"TemplateResponse takes the request first, then the template name, then the context: "
        f"TemplateResponse(request, {name!r}, context); got {request!r} as the request"
    )


@jinja2.pass_context
def _url_for(context: Mapping[str, Any], name: str, /, **path_params: Any) -> URL:
    request: Request = context["request"]
    return request.url_for(name, **path_params)
