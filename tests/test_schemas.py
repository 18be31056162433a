from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest

from triolette.applications import Triolette
from triolette.endpoints import HTTPEndpoint
from triolette.requests import Request
from triolette.responses import JSONResponse, Response
from triolette.routing import Host, Mount, Route, Router, WebSocketRoute
from triolette.schemas import BaseSchemaGenerator, EndpointInfo, OpenAPIResponse, SchemaGenerator
from triolette.testclient import TestClient
from triolette.websockets import WebSocket

yaml = pytest.importorskip("yaml")

schemas = SchemaGenerator({"openapi": "3.0.0", "info": {"title": "Example API", "version": "1.0"}})


def list_users(request: Request) -> Response:
    """
    responses:
      200:
        description: A list of users.
    """
    return JSONResponse([])


def create_user(request: Request) -> Response:
    """
    Create a user. This prose is not part of the schema.
    ---
    responses:
      201:
        description: A user.
    """
    return JSONResponse({}, status_code=201)


def get_user(request: Request) -> Response:
    """Just prose, no YAML."""
    return JSONResponse({})


def undocumented(request: Request) -> Response:
    return JSONResponse({})


def hidden(request: Request) -> Response:
    """
    responses:
      200:
        description: Hidden.
    """
    return JSONResponse({})


class Organisations(HTTPEndpoint):
    def get(self, request: Request) -> Response:
        """
        responses:
          200:
            description: A list of organisations.
        """
        return JSONResponse([])

    def post(self, request: Request) -> Response:
        """
        responses:
          201:
            description: An organisation.
        """
        return JSONResponse({})

    def query(self, request: Request) -> Response:
        """
        responses:
          200:
            description: Queried organisations.
        """
        return JSONResponse([])


async def ws(websocket: WebSocket) -> None:  # pragma: no cover - never connected
    await websocket.close()


def openapi(request: Request) -> Response:
    return schemas.OpenAPIResponse(request=request)


subapp = Triolette(routes=[Route("/subapp-endpoint", list_users)])

app = Triolette(
    routes=[
        WebSocketRoute("/ws", ws),
        Route("/users", list_users, methods=["GET", "HEAD"]),
        Route("/users", create_user, methods=["POST"]),
        Route("/users/{id:int}", get_user),
        Route("/undocumented", undocumented),
        Route("/hidden", hidden, include_in_schema=False),
        Route("/orgs", Organisations),
        Mount("/v2", routes=[Route("/users/{id:int}", list_users)]),
        Mount("/subapp", subapp),
        Host("api.example.com", Router(routes=[Route("/host-users", list_users)])),
        Route("/schema", openapi, include_in_schema=False),
    ]
)

EXPECTED = {
    "openapi": "3.0.0",
    "info": {"title": "Example API", "version": "1.0"},
    "paths": {
        "/users": {
            "get": {"responses": {200: {"description": "A list of users."}}},
            "post": {"responses": {201: {"description": "A user."}}},
        },
        "/orgs": {
            "get": {"responses": {200: {"description": "A list of organisations."}}},
            "post": {"responses": {201: {"description": "An organisation."}}},
        },
        "/v2/users/{id}": {"get": {"responses": {200: {"description": "A list of users."}}}},
        "/subapp/subapp-endpoint": {"get": {"responses": {200: {"description": "A list of users."}}}},
        "/host-users": {"get": {"responses": {200: {"description": "A list of users."}}}},
    },
}


def test_schema_generation() -> None:
    assert schemas.get_schema(routes=app.routes) == EXPECTED


def test_query_needs_openapi_3_2() -> None:
    newer = SchemaGenerator({"openapi": "3.2.0", "info": {"title": "x", "version": "1"}})
    paths = newer.get_schema(routes=app.routes)["paths"]
    assert paths["/orgs"]["query"] == {"responses": {200: {"description": "Queried organisations."}}}
    assert "query" not in schemas.get_schema(routes=app.routes)["paths"]["/orgs"]
    no_version = SchemaGenerator({})
    assert "query" not in no_version.get_schema(routes=app.routes)["paths"]["/orgs"]


def test_base_schema_is_not_changed() -> None:
    base: dict[str, Any] = {"openapi": "3.0.0", "paths": {"/users": {"put": {"x": 1}}}}
    generated = SchemaGenerator(base).get_schema(routes=app.routes)
    assert generated["paths"]["/users"]["put"] == {"x": 1}
    assert "get" in generated["paths"]["/users"]
    assert base == {"openapi": "3.0.0", "paths": {"/users": {"put": {"x": 1}}}}


def test_get_endpoints() -> None:
    endpoints = schemas.get_endpoints(app.routes)
    assert EndpointInfo("/users", "get", list_users) in endpoints
    assert EndpointInfo("/users/{id}", "get", get_user) in endpoints
    assert not any(info.http_method == "head" for info in endpoints)
    assert not any(info.path in ("/hidden", "/ws", "/schema") for info in endpoints)


def test_parse_docstring() -> None:
    assert schemas.parse_docstring(undocumented) == {}
    assert schemas.parse_docstring(get_user) == {}
    assert schemas.parse_docstring(create_user) == {"responses": {201: {"description": "A user."}}}


def test_schema_endpoint() -> None:
    response = TestClient(app).get("/schema")
    assert response.headers["content-type"] == "application/vnd.oai.openapi"
    assert yaml.safe_load(response.text) == EXPECTED


def test_openapi_response_needs_a_dict() -> None:
    with pytest.raises(TypeError, match=r"The schema passed to OpenAPIResponse should be a dictionary, got list"):
        OpenAPIResponse([1, 2])


def test_base_generator_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        BaseSchemaGenerator().get_schema([])


def test_missing_yaml_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ModuleNotFoundError, match=r"needs the 'pyyaml' package. Install it with 'pip install pyyaml'"):
        schemas.parse_docstring(list_users)
    with pytest.raises(ModuleNotFoundError, match=r"OpenAPIResponse needs the 'pyyaml' package"):
        OpenAPIResponse({})
    # Importing the module itself does not need yaml.
    monkeypatch.delitem(sys.modules, "triolette.schemas")
    assert importlib.import_module("triolette.schemas").SchemaGenerator
