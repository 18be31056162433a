"""OpenAPI schemas assembled from the YAML in endpoint docstrings.

Reading and writing YAML needs the ``pyyaml`` package (``pip install pyyaml``).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

from triolette.requests import Request
from triolette.responses import Response
from triolette.routing import BaseRoute, Host, Mount, Route

__all__ = ["BaseSchemaGenerator", "EndpointInfo", "OpenAPIResponse", "SchemaGenerator"]

_CONVERTOR = re.compile(r":\w+}")
_SCHEMA_METHODS = ("get", "post", "put", "patch", "delete", "options", "query")


def _yaml(purpose: str) -> ModuleType:
    try:
        return importlib.import_module("yaml")
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"{purpose} needs the 'pyyaml' package. Install it with 'pip install pyyaml'."
        ) from exc


class OpenAPIResponse(Response):
    """An OpenAPI schema (a dict) sent as YAML, ``application/vnd.oai.openapi``."""

    media_type = "application/vnd.oai.openapi"

    def render(self, content: Any) -> bytes:
        if not isinstance(content, dict):
            raise TypeError(
                f"The schema passed to OpenAPIResponse should be a dictionary, got {type(content).__name__}"
            )
        dumped: str = _yaml("OpenAPIResponse").dump(content, default_flow_style=False)
        return dumped.encode("utf-8")


class EndpointInfo(NamedTuple):
    """One operation: the path template, the lowercase HTTP method, and the function documenting it."""

    path: str
    http_method: str
    func: Callable[..., Any]


class BaseSchemaGenerator:
    """Base class for schema generators: walks the routes and reads their docstrings."""

    def get_schema(self, routes: list[BaseRoute]) -> dict[str, Any]:
        raise NotImplementedError()

    def get_endpoints(self, routes: list[BaseRoute]) -> list[EndpointInfo]:
        """Every (path, method, function) the routes serve, looking into Mounts and Hosts.

        Function endpoints give one entry per method (HEAD left out); class endpoints
        (HTTPEndpoint) give one per handler method they define. Routes with
        ``include_in_schema=False`` are left out, and convertors are dropped from paths
        (``/users/{id:int}`` is ``/users/{id}``).
        """
        endpoints: list[EndpointInfo] = []
        for route in routes:
            if isinstance(route, Mount | Host):
                prefix = self._remove_converter(route.path) if isinstance(route, Mount) else ""
                endpoints.extend(
                    EndpointInfo(prefix + info.path, info.http_method, info.func)
                    for info in self.get_endpoints(list(route.routes or []))
                )
            elif not isinstance(route, Route) or not route.include_in_schema:
                continue
            elif inspect.isfunction(route.endpoint) or inspect.ismethod(route.endpoint):
                path = self._remove_converter(route.path)
                endpoints.extend(
                    EndpointInfo(path, method.lower(), route.endpoint)
                    for method in route.methods or ["GET"]
                    if method != "HEAD"
                )
            else:
                path = self._remove_converter(route.path)
                endpoints.extend(
                    EndpointInfo(path, method, getattr(route.endpoint, method))
                    for method in _SCHEMA_METHODS
                    if hasattr(route.endpoint, method)
                )
        return endpoints

    def _remove_converter(self, path: str) -> str:
        return _CONVERTOR.sub("}", path)

    def parse_docstring(self, func_or_method: Callable[..., Any]) -> dict[str, Any]:
        """The YAML mapping in the function's docstring (after its last ``---``), or ``{}``."""
        docstring = func_or_method.__doc__
        if not docstring:
            return {}
        parsed = _yaml("SchemaGenerator.parse_docstring").safe_load(docstring.split("---")[-1])
        # Prose without YAML parses as a string; only a mapping describes an operation.
        return parsed if isinstance(parsed, dict) else {}

    def OpenAPIResponse(self, request: Request) -> Response:
        """An endpoint that serves the schema of ``request.app``'s routes."""
        return OpenAPIResponse(self.get_schema(routes=request.app.routes))


class SchemaGenerator(BaseSchemaGenerator):
    """Builds an OpenAPI document: ``base_schema`` plus one operation per documented endpoint.

    The ``QUERY`` method is included only when ``base_schema["openapi"]`` is 3.2 or later.
    """

    def __init__(self, base_schema: dict[str, Any]) -> None:
        self.base_schema = base_schema

    def get_schema(self, routes: list[BaseRoute]) -> dict[str, Any]:
        schema = dict(self.base_schema)
        paths: dict[str, dict[str, Any]] = {path: dict(ops) for path, ops in (schema.get("paths") or {}).items()}
        schema["paths"] = paths
        version = re.match(r"(\d+)\.(\d+)", str(schema.get("openapi", "")))
        supports_query = version is not None and (int(version[1]), int(version[2])) >= (3, 2)
        for endpoint in self.get_endpoints(routes):
            if endpoint.http_method == "query" and not supports_query:
                continue
            parsed = self.parse_docstring(endpoint.func)
            if parsed:
                paths.setdefault(endpoint.path, {})[endpoint.http_method] = parsed
        return schema
