from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest

from triolette.applications import Triolette
from triolette.background import BackgroundTask
from triolette.requests import Request
from triolette.responses import Response
from triolette.routing import Route
from triolette.templating import Jinja2Templates
from triolette.testclient import TestClient
from triolette.types import Message


@pytest.fixture
def template_dir(tmp_path: Path) -> Path:
    (tmp_path / "index.html").write_text(
        "<p>{{ greeting }}, {{ name }}</p><a href='{{ url_for('user', id=7) }}'>{{ request.url.path }}</a>"
    )
    (tmp_path / "plain.j2").write_text("{{ name }}")
    return tmp_path


def make_client(templates: Jinja2Templates, **response_options: Any) -> TestClient:
    async def homepage(request: Request) -> Response:
        return templates.TemplateResponse(request, "index.html", {"name": "<b>World</b>"}, **response_options)

    def user(request: Request) -> Response:  # pragma: no cover - only its URL is used
        raise AssertionError

    app = Triolette(routes=[Route("/", homepage), Route("/users/{id:int}", user, name="user")])
    return TestClient(app)


def greeting(request: Request) -> dict[str, Any]:
    return {"greeting": "Hello"}


def test_template_response(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir, context_processors=[greeting])
    response = make_client(templates).get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    # Autoescaped, url_for through the request, the request in the context, the processor's values.
    assert response.text == "<p>Hello, &lt;b&gt;World&lt;/b&gt;</p><a href='http://testserver/users/7'>/</a>"


def test_test_client_sees_template_and_context(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir, context_processors=[greeting])
    response = make_client(templates).get("/")
    assert response.template.name == "index.html"  # type: ignore[attr-defined]  # the test client adds .template/.context, as Starlette's
    assert response.context["name"] == "<b>World</b>"  # type: ignore[attr-defined]  # the test client adds .template/.context, as Starlette's
    assert isinstance(response.context["request"], Request)  # type: ignore[attr-defined]  # the test client adds .template/.context, as Starlette's


def test_status_headers_media_type_and_background(template_dir: Path) -> None:
    ran: list[str] = []
    templates = Jinja2Templates(directory=template_dir, context_processors=[greeting])
    client = make_client(
        templates,
        status_code=201,
        headers={"x-extra": "1"},
        media_type="text/plain",
        background=BackgroundTask(ran.append, "done"),
    )
    response = client.get("/")
    assert response.status_code == 201
    assert response.headers["x-extra"] == "1"
    assert response.headers["content-type"].startswith("text/plain")
    assert ran == ["done"]


def test_every_template_is_autoescaped(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    assert templates.get_template("plain.j2").render(name="<i>") == "&lt;i&gt;"


def test_several_directories(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "one.html").write_text("one")
    (second / "two.html").write_text("two")
    templates = Jinja2Templates(directory=[first, second])
    assert templates.get_template("one.html").render() == "one"
    assert templates.get_template("two.html").render() == "two"


def test_custom_env_keeps_its_own_url_for(template_dir: Path) -> None:
    env = jinja2.Environment(loader=jinja2.DictLoader({"t.html": "{{ url_for('x') }}"}), autoescape=True)
    env.globals["url_for"] = lambda name: f"custom:{name}"
    templates = Jinja2Templates(env=env)
    assert templates.env is env
    assert templates.get_template("t.html").render() == "custom:x"


def test_custom_env_gets_url_for(template_dir: Path) -> None:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), autoescape=True)
    templates = Jinja2Templates(env=env, context_processors=[greeting])
    assert "http://testserver/users/7" in make_client(templates).get("/").text


def test_context_is_not_changed_in_place(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir, context_processors=[greeting])
    context = {"name": "x"}
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    response = templates.TemplateResponse(request, "plain.j2", context)
    assert context == {"name": "x"}
    assert response.context == {"name": "x", "request": request, "greeting": "Hello"}
    assert response.body == b"x"


def test_directory_or_env_but_not_both(template_dir: Path) -> None:
    with pytest.raises(AssertionError, match=r"^either 'directory' or 'env' arguments must be passed: .* got neither"):
        Jinja2Templates()  # type: ignore[call-overload]  # the wrong arguments are the point
    with pytest.raises(AssertionError, match=r"got both"):
        Jinja2Templates(directory=template_dir, env=jinja2.Environment())  # type: ignore[call-overload]  # the wrong arguments are the point


def test_request_must_come_first(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    with pytest.raises(TypeError, match=r"TemplateResponse takes the request first, then the template name"):
        templates.TemplateResponse(None, "index.html")  # type: ignore[arg-type]  # the wrong argument is the point


def test_the_0x_argument_order_hint_shows_the_right_call(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    with pytest.raises(TypeError) as info:
        templates.TemplateResponse("index.html", {"request": None})  # type: ignore[arg-type]  # the wrong argument is the point
    message = str(info.value)
    assert "got the template name 'index.html' first" in message
    assert "Write TemplateResponse(request, 'index.html', context)" in message
    assert "{'request'" not in message  # the context is not put where the template name belongs


def test_the_0x_argument_order_answers_500_with_the_hint_on_the_debug_page(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)

    async def homepage(request: Request) -> Response:
        return templates.TemplateResponse("index.html", {"request": request})  # type: ignore[arg-type]  # 0.x order

    app = Triolette(debug=True, routes=[Route("/", homepage)])
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/")
    assert response.status_code == 500
    assert "Write TemplateResponse(request, 'index.html', context)" in response.text


def test_missing_template(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    with pytest.raises(jinja2.TemplateNotFound, match=r"nope\.html"):
        templates.get_template("nope.html")


async def test_debug_extension_reports_template_and_context(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "extensions": {"http.response.debug": {}}}
    request = Request(scope)
    response = templates.TemplateResponse(request, "plain.j2", {"name": "n"})
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:  # pragma: no cover
        raise AssertionError

    await response(scope, receive, send)
    assert sent[0] == {
        "type": "http.response.debug",
        "info": {"template": response.template, "context": response.context},
    }
    assert sent[1]["type"] == "http.response.start"


async def test_without_the_debug_extension_only_the_response_is_sent(template_dir: Path) -> None:
    templates = Jinja2Templates(directory=template_dir)
    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    response = templates.TemplateResponse(Request(scope), "plain.j2", {"name": "n"})
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:  # pragma: no cover
        raise AssertionError

    await response(scope, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]


def test_missing_jinja2_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    monkeypatch.delitem(sys.modules, "triolette.templating")
    with pytest.raises(ModuleNotFoundError, match=r"pip install triolette\[templates\]"):
        importlib.import_module("triolette.templating")
