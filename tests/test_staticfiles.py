from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from triolette.applications import Triolette
from triolette.datastructures import Headers
from triolette.exceptions import HTTPException
from triolette.routing import Mount
from triolette.staticfiles import NotModifiedResponse, StaticFiles
from triolette.testclient import TestClient
from triolette.types import Message, Scope


@pytest.fixture
def statics(tmp_path: Path) -> Path:
    directory = tmp_path / "statics"
    directory.mkdir()
    (directory / "example.txt").write_text("<file content>")
    (directory / "sub").mkdir()
    (directory / "sub" / "index.html").write_text("<h1>sub index</h1>")
    return directory


def client_for(app: StaticFiles, **options: Any) -> TestClient:
    return TestClient(Triolette(routes=[Mount("/static", app=app)]), **options)


def test_serves_a_file_with_validators(statics: Path) -> None:
    client = client_for(StaticFiles(directory=statics))
    response = client.get("/static/example.txt")
    assert response.status_code == 200
    assert response.text == "<file content>"
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["etag"]
    assert response.headers["last-modified"]

    head = client.head("/static/example.txt")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len("<file content>"))


def test_pathlike_directory(statics: Path) -> None:
    assert client_for(StaticFiles(directory=str(statics))).get("/static/example.txt").status_code == 200


def test_not_modified_by_etag_and_by_date(statics: Path) -> None:
    client = client_for(StaticFiles(directory=statics))
    first = client.get("/static/example.txt")
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]

    for headers in (
        {"if-none-match": etag},
        {"if-none-match": f'"other", W/{etag}'},
        {"if-none-match": "*"},
        {"if-modified-since": last_modified},
    ):
        response = client.get("/static/example.txt", headers=headers)
        assert response.status_code == 304, headers
        assert response.content == b""
        assert "content-length" not in response.headers or response.headers["content-length"] == "0"

    assert client.get("/static/example.txt", headers={"if-none-match": '"other"'}).status_code == 200
    old = "Thu, 01 Jan 1970 00:00:00 GMT"
    assert client.get("/static/example.txt", headers={"if-modified-since": old}).status_code == 200
    assert client.get("/static/example.txt", headers={"if-modified-since": "garbage"}).status_code == 200
    # If-None-Match wins over If-Modified-Since.
    both = {"if-none-match": '"other"', "if-modified-since": last_modified}
    assert client.get("/static/example.txt", headers=both).status_code == 200


def test_not_modified_response_keeps_only_allowed_headers() -> None:
    response = NotModifiedResponse(
        Headers({"etag": '"x"', "Cache-Control": "no-cache", "content-length": "5", "content-type": "text/plain"})
    )
    assert response.status_code == 304
    assert dict(response.headers) == {"etag": '"x"', "cache-control": "no-cache"}


def test_missing_file_is_404(statics: Path) -> None:
    response = client_for(StaticFiles(directory=statics)).get("/static/nope.txt")
    assert response.status_code == 404
    assert response.text == "Not Found"


def test_directory_without_html_mode_is_404(statics: Path) -> None:
    assert client_for(StaticFiles(directory=statics)).get("/static/sub/").status_code == 404


def test_only_get_and_head(statics: Path) -> None:
    response = client_for(StaticFiles(directory=statics)).post("/static/example.txt")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_html_mode(statics: Path) -> None:
    client = client_for(StaticFiles(directory=statics, html=True), follow_redirects=False)
    response = client.get("/static/sub/")
    assert response.status_code == 200
    assert response.text == "<h1>sub index</h1>"

    redirect = client.get("/static/sub")
    assert redirect.status_code == 307
    assert redirect.headers["location"] == "http://testserver/static/sub/"

    assert client.get("/static/missing").status_code == 404
    (statics / "404.html").write_text("<h1>custom 404</h1>")
    response = client.get("/static/missing")
    assert response.status_code == 404
    assert response.text == "<h1>custom 404</h1>"
    # A directory without an index.html falls through to 404.html too.
    (statics / "empty").mkdir()
    assert client.get("/static/empty/").text == "<h1>custom 404</h1>"


def test_html_mode_serves_index_at_the_mount_root(statics: Path) -> None:
    (statics / "index.html").write_text("root index")
    client = client_for(StaticFiles(directory=statics, html=True))
    assert client.get("/static/").text == "root index"


def raw_scope(path: str, root_path: str = "", method: str = "GET") -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": root_path + path,
        "raw_path": (root_path + path).encode("latin-1", "backslashreplace"),
        "root_path": root_path,
        "query_string": b"",
        "headers": [],
        "scheme": "http",
        "server": ("testserver", 80),
    }


async def serve(app: StaticFiles, path: str) -> int:
    sent: list[Message] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if requests:
            return requests.pop()
        await trio.sleep_forever()  # the client stays until the response is complete
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(message: Message) -> None:
        sent.append(message)

    try:
        with trio.fail_after(10):
            await app(raw_scope(path), receive, send)
    except HTTPException as exc:
        return exc.status_code
    return int(sent[0]["status"])


@pytest.fixture
def with_secret_sibling(tmp_path: Path, statics: Path) -> Path:
    # CVE-2023-29159: a sibling directory whose name starts with the served one's.
    sibling = tmp_path / "statics_secret"
    sibling.mkdir()
    (sibling / "secret.txt").write_text("secret")
    (tmp_path / "outside.txt").write_text("outside")
    return sibling


@pytest.mark.parametrize(
    "path",
    [
        "/../statics_secret/secret.txt",  # CVE-2023-29159: prefix-sharing sibling directory
        "/../outside.txt",
        "/sub/../../outside.txt",
        "/../../../../../../etc/passwd",
        "/..",
        "/%2e%2e/outside.txt",  # left encoded: no such file, and never decoded by us
        "/..\\outside.txt",  # backslash: a separator on Windows
        "/sub\\..\\..\\outside.txt",
        "/\\\\server\\share\\secret.txt",  # UNC path
        "//etc/passwd",
        "/example.txt\x00.png",  # NUL byte
        "/C:/Windows/win.ini",
        "/\udcff",  # undecodable byte, as a surrogate
        "/" + chr(0xD800),  # a lone surrogate the file system cannot encode
        "/" + "a" * 5000,  # name too long
    ],
)
async def test_paths_outside_the_directory_are_404(with_secret_sibling: Path, statics: Path, path: str) -> None:
    assert await serve(StaticFiles(directory=statics), path) == 404


async def test_traversal_is_404_in_html_mode_too(with_secret_sibling: Path, statics: Path) -> None:
    assert await serve(StaticFiles(directory=statics, html=True), "/../statics_secret/secret.txt") == 404


def test_lookup_path_refuses_unsafe_paths(statics: Path) -> None:
    app = StaticFiles(directory=statics)
    for path in ("/etc/passwd", "../x", "..", "a\\b", "a\x00b", ""):
        assert app.lookup_path(path) == ("", None)
    full_path, stat_result = app.lookup_path("example.txt")
    assert full_path == os.path.realpath(statics / "example.txt")
    assert stat_result is not None


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
async def test_symlinks_outside_are_refused_unless_followed(tmp_path: Path, statics: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("outside")
    (statics / "link.txt").symlink_to(outside)
    assert await serve(StaticFiles(directory=statics), "/link.txt") == 404
    assert await serve(StaticFiles(directory=statics, follow_symlink=True), "/link.txt") == 200


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_symlinked_directory_itself_is_fine(tmp_path: Path, statics: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(statics, target_is_directory=True)
    assert client_for(StaticFiles(directory=link)).get("/static/example.txt").status_code == 200


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
async def test_unreadable_directory_is_401(statics: Path) -> None:  # pragma: no cover - skipped as root
    locked = statics / "locked"
    locked.mkdir()
    (locked / "file.txt").write_text("x")
    locked.chmod(0)
    try:
        assert await serve(StaticFiles(directory=statics), "/locked/file.txt") == 401
    finally:
        locked.chmod(stat.S_IRWXU)


async def test_permission_error_is_401_and_other_os_errors_propagate(statics: Path) -> None:
    class Failing(StaticFiles):
        def __init__(self, error: OSError) -> None:
            super().__init__(directory=statics)
            self.error = error

        def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
            raise self.error

    assert await serve(Failing(PermissionError("denied")), "/example.txt") == 401
    with pytest.raises(OSError, match="disk on fire"):
        await serve(Failing(OSError(5, "disk on fire")), "/example.txt")


def test_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "mypackage"
    (package / "statics").mkdir(parents=True)
    (package / "assets").mkdir()
    (package / "__init__.py").write_text("")
    (package / "statics" / "a.txt").write_text("from statics")
    (package / "assets" / "b.txt").write_text("from assets")
    monkeypatch.syspath_prepend(str(tmp_path))

    client = client_for(StaticFiles(packages=["mypackage", ("mypackage", "assets")]))
    assert client.get("/static/a.txt").text == "from statics"
    assert client.get("/static/b.txt").text == "from assets"


def test_directory_comes_before_packages(tmp_path: Path, statics: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "otherpackage"
    (package / "statics").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "statics" / "example.txt").write_text("package copy")
    (package / "statics" / "only.txt").write_text("only in package")
    monkeypatch.syspath_prepend(str(tmp_path))
    client = client_for(StaticFiles(directory=statics, packages=["otherpackage"]))
    assert client.get("/static/example.txt").text == "<file content>"
    assert client.get("/static/only.txt").text == "only in package"


def test_package_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AssertionError, match=r"Package 'no_such_package_here' could not be found."):
        StaticFiles(packages=["no_such_package_here"])
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AssertionError, match=r"Directory ''statics'' in package 'bare' could not be found."):
        StaticFiles(packages=["bare"])


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"Directory '.*missing' does not exist"):
        StaticFiles(directory=tmp_path / "missing")


def test_check_config_errors(tmp_path: Path) -> None:
    app = StaticFiles(directory=tmp_path / "missing", check_dir=False)
    client = client_for(app)
    with pytest.raises(RuntimeError, match=r"StaticFiles directory '.*missing' does not exist."):
        client.get("/static/x")

    file = tmp_path / "file.txt"
    file.write_text("not a directory")
    client = client_for(StaticFiles(directory=file, check_dir=False))
    with pytest.raises(RuntimeError, match=r"StaticFiles path '.*file.txt' is not a directory."):
        client.get("/static/x")


async def test_check_config_runs_once(statics: Path) -> None:
    app = StaticFiles(directory=statics)
    before = app.config_checked
    assert await serve(app, "/example.txt") == 200
    assert (before, app.config_checked) == (False, True)
    await app.check_config()
    assert await StaticFiles(packages=None, check_dir=False).check_config() is None  # type: ignore[func-returns-value]  # the None is the point


async def test_websocket_is_closed(statics: Path) -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:  # pragma: no cover
        raise AssertionError

    await StaticFiles(directory=statics)({"type": "websocket", "path": "/"}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1000, "reason": ""}]


async def test_lifespan_scope_is_an_error(statics: Path) -> None:
    async def never(*args: Any) -> Any:  # pragma: no cover
        raise AssertionError

    with pytest.raises(RuntimeError, match=r"StaticFiles serves 'http' requests; it was called with a 'lifespan'"):
        await StaticFiles(directory=statics)({"type": "lifespan"}, never, never)


def test_get_path(statics: Path) -> None:
    app = StaticFiles(directory=statics)
    assert app.get_path(raw_scope("/a/./b/../c.txt")) == os.path.join("a", "c.txt")
    assert app.get_path(raw_scope("/x.txt", root_path="/static")) == "x.txt"
    assert app.get_path(raw_scope("", root_path="/static")) == "."


def test_is_not_modified_without_etag(statics: Path) -> None:
    app = StaticFiles(directory=statics)
    assert not app.is_not_modified(Headers({}), Headers({"if-none-match": '"x"'}))
    assert not app.is_not_modified(Headers({}), Headers({}))
