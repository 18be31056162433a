"""triolette.compat: the opt-in ``starlette`` alias.

The in-process tests run with every ``starlette`` module taken out of ``sys.modules`` and put
back afterwards (the real Starlette may be installed and imported by other tests); the ones
about a fresh program run in a subprocess.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import triolette.applications
import triolette.compat
from triolette.compat import (
    StarletteAliasError,
    install_starlette_alias,
    starlette_alias_installed,
    uninstall_starlette_alias,
)

SRC = Path(__file__).resolve().parent.parent / "src"

# Every module of Starlette 1.x that triolette keeps (middleware.wsgi is not kept).
STARLETTE_MODULES = [
    "starlette",
    "starlette.applications",
    "starlette.authentication",
    "starlette.background",
    "starlette.concurrency",
    "starlette.config",
    "starlette.convertors",
    "starlette.datastructures",
    "starlette.endpoints",
    "starlette.exceptions",
    "starlette.formparsers",
    "starlette.middleware",
    "starlette.middleware.authentication",
    "starlette.middleware.base",
    "starlette.middleware.body_limit",
    "starlette.middleware.cors",
    "starlette.middleware.errors",
    "starlette.middleware.exceptions",
    "starlette.middleware.gzip",
    "starlette.middleware.httpsredirect",
    "starlette.middleware.opentelemetry",
    "starlette.middleware.sessions",
    "starlette.middleware.trustedhost",
    "starlette.requests",
    "starlette.responses",
    "starlette.routing",
    "starlette.schemas",
    "starlette.staticfiles",
    "starlette.status",
    "starlette.templating",
    "starlette.testclient",
    "starlette.types",
    "starlette.websockets",
]

# What FastAPI 0.165, sse-starlette 3.7 and starlette-exporter 0.24 import from starlette by
# name, private helpers included (read off their sources).
IMPORTED_BY_LIBRARIES = {
    "starlette": ["routing", "status"],
    "starlette._exception_handler": ["wrap_app_handling_exceptions"],
    "starlette._utils": ["get_route_path", "is_async_callable"],
    "starlette.applications": ["Starlette"],
    "starlette.background": ["BackgroundTask", "BackgroundTasks"],
    "starlette.concurrency": ["iterate_in_threadpool", "run_in_threadpool", "run_until_first_complete"],
    "starlette.datastructures": [
        "Address",
        "FormData",
        "Headers",
        "ImmutableMultiDict",
        "MutableHeaders",
        "QueryParams",
        "State",
        "URL",
        "URLPath",
        "UploadFile",
    ],
    "starlette.exceptions": ["HTTPException", "WebSocketException"],
    "starlette.middleware": ["Middleware", "body_limit"],
    "starlette.middleware.base": ["BaseHTTPMiddleware"],
    "starlette.middleware.body_limit": ["MAX_BODY_SIZE_SCOPE_KEY", "RequestBodyLimitMiddleware"],
    "starlette.middleware.cors": ["CORSMiddleware"],
    "starlette.middleware.errors": ["ServerErrorMiddleware"],
    "starlette.middleware.exceptions": ["ExceptionMiddleware"],
    "starlette.middleware.gzip": ["GZipMiddleware"],
    "starlette.middleware.httpsredirect": ["HTTPSRedirectMiddleware"],
    "starlette.middleware.trustedhost": ["TrustedHostMiddleware"],
    "starlette.requests": ["HTTPConnection", "Request"],
    "starlette.responses": [
        "FileResponse",
        "HTMLResponse",
        "JSONResponse",
        "PlainTextResponse",
        "RedirectResponse",
        "Response",
        "StreamingResponse",
    ],
    "starlette.routing": [
        "BaseRoute",
        "Host",
        "Match",
        "Mount",
        "NoMatchFound",
        "Route",
        "Router",
        "WebSocketRoute",
        "compile_path",
        "get_name",
        "replace_params",
        "request_response",
        "websocket_session",
    ],
    "starlette.staticfiles": ["StaticFiles"],
    "starlette.status": ["HTTP_401_UNAUTHORIZED", "WS_1008_POLICY_VIOLATION"],
    "starlette.templating": ["Jinja2Templates"],
    "starlette.testclient": ["TestClient"],
    "starlette.types": ["ASGIApp", "AppType", "ExceptionHandler", "Lifespan", "Message", "Receive", "Scope", "Send"],
    "starlette.websockets": ["WebSocket", "WebSocketDisconnect", "WebSocketState"],
}


def _starlette_modules() -> dict[str, types.ModuleType]:
    return {name: module for name, module in sys.modules.items() if name.partition(".")[0] == "starlette"}


@pytest.fixture
def clean_modules() -> Iterator[None]:
    """No starlette module imported during the test; whatever was there before is put back."""
    saved = _starlette_modules()
    for name in saved:
        del sys.modules[name]
    try:
        yield
    finally:
        uninstall_starlette_alias()
        for name in _starlette_modules():
            del sys.modules[name]
        sys.modules.update(saved)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.mark.usefixtures("clean_modules")
def test_starlette_alias_gives_triolette_modules() -> None:
    install_starlette_alias()
    import starlette.applications
    import starlette.routing
    import starlette.testclient

    import triolette.routing
    import triolette.testclient

    assert starlette_alias_installed()
    aliased: object = starlette.applications.Starlette  # mypy sees the real Starlette, installed beside
    assert aliased is triolette.applications.Triolette
    assert starlette.routing is triolette.routing
    assert starlette.testclient.TestClient is triolette.testclient.TestClient


@pytest.mark.usefixtures("clean_modules")
@pytest.mark.parametrize("name", STARLETTE_MODULES)
def test_starlette_alias_covers_every_starlette_module(name: str) -> None:
    install_starlette_alias()
    module = importlib.import_module(name)
    assert module is importlib.import_module("triolette" + name[len("starlette") :])
    assert sys.modules[name] is module


@pytest.mark.usefixtures("clean_modules")
@pytest.mark.parametrize("name", sorted(IMPORTED_BY_LIBRARIES))
def test_starlette_alias_has_what_fastapi_and_libraries_import(name: str) -> None:
    install_starlette_alias()
    module = importlib.import_module(name)
    missing = [attribute for attribute in IMPORTED_BY_LIBRARIES[name] if not hasattr(module, attribute)]
    assert missing == []


@pytest.mark.usefixtures("clean_modules")
def test_starlette_alias_names_a_module_triolette_does_not_keep() -> None:
    install_starlette_alias()
    with pytest.raises(ModuleNotFoundError, match=r"WSGIMiddleware is deprecated.*hypercorn's TrioWSGIMiddleware"):
        importlib.import_module("starlette.middleware.wsgi")
    with pytest.raises(ModuleNotFoundError, match=r"maps it to 'triolette\.nothing_here', which triolette does not"):
        importlib.import_module("starlette.nothing_here")


@pytest.mark.usefixtures("clean_modules")
def test_starlette_alias_refuses_when_real_starlette_is_imported() -> None:
    real = types.ModuleType("starlette")
    real.__file__ = "/site-packages/starlette/__init__.py"
    sys.modules["starlette"] = real
    with pytest.raises(
        StarletteAliasError,
        match=r"The real Starlette is already imported \('starlette' from '/site-packages/starlette/__init__.py'\)"
        r".*install_starlette_alias\(\).*first thing",
    ):
        install_starlette_alias()
    assert not starlette_alias_installed()
    assert sys.modules["starlette"] is real


@pytest.mark.usefixtures("clean_modules")
def test_starlette_alias_install_twice_is_harmless_and_uninstall_undoes_it() -> None:
    install_starlette_alias()
    install_starlette_alias()
    assert sys.meta_path.count(triolette.compat._FINDER) == 1
    importlib.import_module("starlette.responses")
    uninstall_starlette_alias()
    assert not starlette_alias_installed()
    assert _starlette_modules() == {}
    assert not hasattr(triolette.applications, "Starlette")
    uninstall_starlette_alias()  # a second time: nothing to undo


def test_starlette_alias_is_never_installed_implicitly() -> None:
    result = run_python(
        """
        import sys
        import triolette, triolette.compat, triolette.applications, triolette.routing, triolette.testclient
        assert not triolette.compat.starlette_alias_installed()
        assert not any(name == "starlette" or name.startswith("starlette.") for name in sys.modules)
        assert not hasattr(triolette.applications, "Starlette")
        print("ok")
        """
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


@pytest.mark.skipif(importlib.util.find_spec("starlette") is None, reason="the real Starlette is not installed")
def test_starlette_without_the_alias_is_the_real_starlette() -> None:
    result = run_python(
        """
        import starlette.applications, triolette
        print(starlette.applications.__file__.startswith(triolette.__path__[0]))
        """
    )
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr


def test_import_triolette_compat_starlette_installs_the_alias() -> None:
    result = run_python(
        """
        import triolette.compat.starlette
        from starlette.applications import Starlette
        from starlette.testclient import TestClient
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from triolette.applications import Triolette

        async def hello(request):
            return PlainTextResponse("hello from " + type(request.app).__name__)

        app = Starlette(routes=[Route("/", hello)])
        assert Starlette is Triolette
        print(TestClient(app).get("/").text)
        """
    )
    assert (result.returncode, result.stdout.strip()) == (0, "hello from Triolette"), result.stderr


@pytest.mark.skipif(importlib.util.find_spec("starlette") is None, reason="the real Starlette is not installed")
def test_starlette_alias_refuses_after_real_starlette_in_a_fresh_program() -> None:
    result = run_python(
        """
        import starlette.routing
        import triolette.compat.starlette
        """
    )
    assert result.returncode == 1
    assert "StarletteAliasError: The real Starlette is already imported ('starlette'" in result.stderr


@pytest.mark.usefixtures("clean_modules")
def test_import_triolette_compat_starlette_installs_the_alias_in_process() -> None:
    sys.modules.pop("triolette.compat.starlette", None)
    try:
        importlib.import_module("triolette.compat.starlette")
        assert starlette_alias_installed()
        assert importlib.import_module("starlette.applications").Starlette is triolette.applications.Triolette
    finally:
        sys.modules.pop("triolette.compat.starlette", None)


@pytest.mark.usefixtures("clean_modules")
def test_starlette_alias_names_the_deprecation_warning_as_starlette_does() -> None:
    import triolette.exceptions

    install_starlette_alias()
    exceptions = importlib.import_module("starlette.exceptions")
    assert exceptions.StarletteDeprecationWarning is triolette.exceptions.TrioletteDeprecationWarning
    uninstall_starlette_alias()
    assert not hasattr(triolette.exceptions, "StarletteDeprecationWarning")


def test_a_warning_filter_naming_starlettes_deprecation_warning_works_under_the_alias() -> None:
    # Starlette's own suite (and FastAPI apps' pytest configs) filter it by that name.
    result = run_python(
        """
        import warnings
        import triolette.compat.starlette
        from starlette.exceptions import StarletteDeprecationWarning
        from triolette.exceptions import TrioletteDeprecationWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.filterwarnings("ignore", category=StarletteDeprecationWarning)
            warnings.warn("filtered out", TrioletteDeprecationWarning)
            warnings.warn("still shown", DeprecationWarning)
        print([str(w.message) for w in caught])
        """
    )
    assert (result.returncode, result.stdout.strip()) == (0, "['still shown']"), result.stderr
