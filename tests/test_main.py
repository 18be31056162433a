"""python -m triolette: arguments, help, and the one-line errors."""

from __future__ import annotations

import gc
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import triolette
import triolette._server
from triolette.__main__ import build_parser, main


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "site_app.py").write_text(
        "import contextlib\n"
        "from triolette.applications import Triolette\n"
        "@contextlib.asynccontextmanager\n"
        "async def broken(app):\n"
        "    raise RuntimeError('database unreachable')\n"
        "    yield\n"
        "app = Triolette()\n"
        "failing = Triolette(lifespan=broken)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("site_app", None)


def test_help_reads_well(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: triolette [-h]")
    for option in ("--host", "--port", "--workers", "--graceful-timeout", "--reload", "--log-level", "--access-log"):
        assert option in out
    assert "On SIGTERM or SIGINT the server stops accepting connections" in out
    assert "(default: 127.0.0.1)" in out


def test_defaults_fit_production() -> None:
    args = build_parser().parse_args(["main:app"])
    assert (args.host, args.port, args.workers, args.graceful_timeout) == ("127.0.0.1", 8000, 1, 30)
    assert (args.access_log, args.reload, args.log_level) == (False, False, "info")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["main:app", "--port", "http"], "argument --port: expected a port number, got 'http'"),
        (["main:app", "--port", "70000"], "expected a port from 0 to 65535 (0: any free port), got '70000'"),
        (["main:app", "--workers", "0"], "argument --workers: expected a whole number >= 1, got '0'"),
        (["main:app", "--graceful-timeout", "-1"], "expected a number of seconds >= 0, got '-1'"),
        (["main:app", "--graceful-timeout", "soon"], "expected a number of seconds, got 'soon'"),
        (["main:app", "--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
        ([], "the following arguments are required: APP"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("nowhere:app", "triolette: error: could not import module 'nowhere' (no module named 'nowhere')"),
        ("site_app:application", "triolette: error: module 'site_app' has no attribute 'application'"),
        ("site_app", "triolette: error: the app must be given as 'module:attribute' (e.g. 'main:app')"),
    ],
)
def test_a_bad_app_is_one_line_and_exit_2(
    project: Path, app: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([app]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_options_reach_serve(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(triolette._server, "serve", lambda app, **kw: calls.append((app, kw)))
    argv = ["site_app:app", "--host", "0.0.0.0", "--port", "0", "--workers", "3", "--graceful-timeout", "12.5"]
    argv += ["--reload", "--log-level", "debug", "--access-log", "--keep-alive-timeout", "2", "--root-path", "/api"]
    assert main(argv) == 0
    assert calls == [
        (
            "site_app:app",
            {
                "host": "0.0.0.0",
                "port": 0,
                "workers": 3,
                "graceful_timeout": 12.5,
                "reload": True,
                "log_level": "debug",
                "access_log": True,
                "keep_alive_timeout": 2.0,
                "root_path": "/api",
                "read_timeout": None,
                "certfile": None,
                "keyfile": None,
            },
        )
    ]


def test_a_failed_startup_exits_1_with_the_message(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["site_app:failing", "--port", "0", "--log-level", "critical"]) == 1
    err = capsys.readouterr().err
    assert err.endswith("triolette: error: application startup failed: RuntimeError: database unreachable\n")


@pytest.mark.parametrize(
    ("source", "logged"),
    [
        ("raise RuntimeError('not in a worker')\n", "RuntimeError: not in a worker"),
        ("app = None\n", "'worker_only:app' is None, not an ASGI app"),
    ],
    ids=["module-raises", "no-attribute"],
)
def test_an_app_that_imports_here_but_not_in_a_worker_is_one_line_and_exit_2(
    project: Path, source: str, logged: str, capfd: pytest.CaptureFixture[str]
) -> None:
    (project / "worker_only.py").write_text(
        "import multiprocessing\n"
        "from triolette.applications import Triolette\n"
        "if multiprocessing.parent_process() is None:\n"
        "    app = Triolette()\n"
        "else:\n" + "".join(f"    {line}\n" for line in source.splitlines())
    )
    try:
        assert main(["worker_only:app", "--port", "0", "--workers", "2", "--log-level", "error"]) == 2
    finally:
        sys.modules.pop("worker_only", None)
    err = capfd.readouterr().err  # the workers' log lines are on the file descriptor
    assert logged in err
    assert err.endswith("triolette: error: a worker could not import worker_only:app (its error is logged above)\n")


def test_a_port_in_use_is_one_line_and_exit_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            assert main(["site_app:app", "--port", str(port), "--log-level", "critical"]) == 1
            gc.collect()  # hypercorn leaves the socket it could not bind unclosed; let it go here
    err = capsys.readouterr().err
    assert err.startswith(f"triolette: error: could not listen on 127.0.0.1:{port}: ")


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"triolette {triolette.__version__}\n"


@pytest.mark.parametrize(
    ("app", "suggested"),
    [("app.py:app", "'app:app'"), ("site_app.py:app", "'site_app:app'"), ("pkg/web.py:api", "'pkg.web:api'")],
)
def test_a_file_name_suggests_the_module(
    project: Path, app: str, suggested: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([app]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"triolette: error: {app!r} names a file, but the app is given as module:attribute: "
        f"try {suggested}, from the directory that holds it\n"
    )


def test_a_file_name_without_an_attribute_suggests_module_colon_app(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["app.py"]) == 2
    assert capsys.readouterr().err == (
        "triolette: error: the app must be given as 'module:attribute' (e.g. 'app:app'), got 'app.py'\n"
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_plain_function_is_refused_at_startup_in_one_line(
    project: Path, workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "site_plain.py").write_text("def hello(request):\n    return 'hi'\n")
    try:
        assert main(["site_plain:hello", "--port", "0", "--workers", workers]) == 2
    finally:
        sys.modules.pop("site_plain", None)
    err = capsys.readouterr().err
    assert err.startswith("triolette: error: 'site_plain:hello' is <function hello at ")
    assert "which cannot be called as app(scope, receive, send): not an ASGI app" in err
    assert err.count("\n") == 1


def test_an_app_whose_signature_cannot_be_read_is_let_through(project: Path) -> None:
    (project / "site_builtin.py").write_text("app = max\n")  # inspect.signature(max) raises ValueError
    try:
        loaded: object = triolette._server.load_app("site_builtin:app")
        assert loaded is max
    finally:
        sys.modules.pop("site_builtin", None)


def test_read_timeout_and_tls_options_reach_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(triolette._server, "serve", lambda app, **options: seen.update(options))
    argv = ["main:app", "--read-timeout", "7", "--certfile", "c.pem", "--keyfile", "k.pem"]
    assert main(argv) == 0
    assert (seen["read_timeout"], seen["certfile"], seen["keyfile"]) == (7, "c.pem", "k.pem")
    assert build_parser().parse_args(["main:app"]).read_timeout is None
