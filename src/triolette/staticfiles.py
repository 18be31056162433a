"""Serving files from a directory: ``Mount("/static", StaticFiles(directory="static"))``."""

from __future__ import annotations

import errno
import importlib.util
import os
import stat
from collections.abc import Mapping
from email.utils import parsedate
from typing import Union

import trio

from triolette._utils import ConfigurationError, get_route_path
from triolette.datastructures import URL, Headers
from triolette.exceptions import HTTPException
from triolette.responses import FileResponse, RedirectResponse, Response
from triolette.types import Receive, Scope, Send

__all__ = ["NotModifiedResponse", "StaticFiles"]

PathLike = Union[str, "os.PathLike[str]"]


class NotModifiedResponse(Response):
    """A 304 Not Modified, keeping only the headers RFC 9110 lets a 304 carry."""

    NOT_MODIFIED_HEADERS = ("cache-control", "content-location", "date", "etag", "expires", "vary")

    def __init__(self, headers: Headers | Mapping[str, str]):
        super().__init__(
            status_code=304,
            headers={name: value for name, value in headers.items() if name.lower() in self.NOT_MODIFIED_HEADERS},
        )


class StaticFiles:
    """An ASGI app that serves the files under ``directory`` (and the packages' ``statics`` folders).

    GET and HEAD only (405 otherwise). Answers with ETag and Last-Modified, and 304 to a
    matching If-None-Match / If-Modified-Since. No path leaves the served directories:
    ``..``, absolute paths, backslashes and NUL bytes are 404, and so is a symlink pointing
    outside unless ``follow_symlink=True``. With ``html=True`` a directory serves its
    ``index.html`` and a missing file serves ``404.html`` when there is one. File system
    calls run in worker threads.
    """

    def __init__(
        self,
        *,
        directory: PathLike | None = None,
        packages: list[str | tuple[str, str]] | None = None,
        html: bool = False,
        check_dir: bool = True,
        follow_symlink: bool = False,
    ) -> None:
        self.directory = directory
        self.packages = packages
        self.all_directories = self.get_directories(directory, packages)
        self.html = html
        self.config_checked = False
        self.follow_symlink = follow_symlink
        if check_dir and directory is not None and not os.path.isdir(directory):
            raise RuntimeError(f"Directory '{directory}' does not exist")

    def get_directories(
        self,
        directory: PathLike | None = None,
        packages: list[str | tuple[str, str]] | None = None,
    ) -> list[PathLike]:
        """The directories to serve from, in lookup order: ``directory``, then each package's statics folder.

        A package is ``"name"`` (its ``statics`` folder) or ``("name", "folder")``.
        """
        directories: list[PathLike] = []
        if directory is not None:
            directories.append(directory)
        for package in packages or []:
            name, statics_dir = package if isinstance(package, tuple) else (package, "statics")
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                raise ConfigurationError(f"Package {name!r} could not be found.")
            package_directory = os.path.normpath(os.path.join(spec.origin, "..", statics_dir))
            if not os.path.isdir(package_directory):
                raise ConfigurationError(f"Directory '{statics_dir!r}' in package {name!r} could not be found.")
            directories.append(package_directory)
        return directories

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000, "reason": ""})
            return
        if scope["type"] != "http":
            raise RuntimeError(f"StaticFiles serves 'http' requests; it was called with a {scope['type']!r} scope")
        if not self.config_checked:
            await self.check_config()
            self.config_checked = True
        response = await self.get_response(self.get_path(scope), scope)
        await response(scope, receive, send)

    def get_path(self, scope: Scope) -> str:
        """The requested file's path relative to the served directories, normalized for this OS."""
        return os.path.normpath(os.path.join(*get_route_path(scope).split("/")))

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The response for ``path``: the file, a 304, a redirect to the directory URL, or 404.html.

        Raises ``HTTPException`` 405 for methods other than GET and HEAD and 404 when nothing matches.
        """
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})

        full_path, stat_result = await self._lookup(path)
        if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
            return self.file_response(full_path, stat_result, scope)

        if stat_result is not None and stat.S_ISDIR(stat_result.st_mode) and self.html:
            full_path, stat_result = await self._lookup(os.path.join(path, "index.html"))
            if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
                if not scope["path"].endswith("/"):
                    # Relative links in index.html resolve against the directory only with a trailing slash.
                    url = URL(scope=scope)
                    return RedirectResponse(url=url.replace(path=url.path + "/"))
                return self.file_response(full_path, stat_result, scope)

        if self.html:
            full_path, stat_result = await self._lookup("404.html")
            if stat_result is not None and stat.S_ISREG(stat_result.st_mode):
                return FileResponse(full_path, stat_result=stat_result, status_code=404)
        raise HTTPException(status_code=404)

    async def _lookup(self, path: str) -> tuple[str, os.stat_result | None]:
        try:
            return await trio.to_thread.run_sync(self.lookup_path, path)
        except PermissionError:
            raise HTTPException(status_code=401) from None
        except ValueError:
            # An embedded NUL byte: no such file can exist.
            raise HTTPException(status_code=404) from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise HTTPException(status_code=404) from None
            raise

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        """Find ``path`` in the served directories: its full path and stat result, or ``("", None)``.

        Blocking (it calls the file system); ``get_response`` runs it in a worker thread.
        """
        if not _is_safe_relative_path(path):
            return "", None
        for directory in self.all_directories:
            joined = os.path.join(directory, path)
            if self.follow_symlink:
                full_path, root = os.path.abspath(joined), os.path.abspath(directory)
            else:
                full_path, root = os.path.realpath(joined), os.path.realpath(directory)
            # commonpath, not a string prefix: "/static-secret" must not pass for "/static" (CVE-2023-29159).
            if os.path.commonpath([full_path, root]) != root:
                continue
            try:
                return full_path, os.stat(full_path)
            except (FileNotFoundError, NotADirectoryError):
                continue
        return "", None

    def file_response(
        self,
        full_path: PathLike,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """A FileResponse for the file, or a 304 when the request's validators match it."""
        response = FileResponse(full_path, status_code=status_code, stat_result=stat_result)
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response

    async def check_config(self) -> None:
        """Check once that ``directory`` is a directory, so a misconfiguration fails loudly, not as 404s."""
        if self.directory is None:
            return
        try:
            stat_result = await trio.Path(self.directory).stat()
        except FileNotFoundError:
            raise RuntimeError(f"StaticFiles directory '{self.directory}' does not exist.") from None
        if not (stat.S_ISDIR(stat_result.st_mode) or stat.S_ISLNK(stat_result.st_mode)):
            raise RuntimeError(f"StaticFiles path '{self.directory}' is not a directory.")

    def is_not_modified(self, response_headers: Headers, request_headers: Headers) -> bool:
        """Whether the request's If-None-Match or If-Modified-Since says the client's copy is current."""
        if_none_match = request_headers.get("if-none-match")
        if if_none_match:
            if if_none_match.strip() == "*":
                return True
            etag = response_headers.get("etag")
            return etag is not None and etag in (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))

        if_modified_since = request_headers.get("if-modified-since")
        last_modified = response_headers.get("last-modified")
        if if_modified_since is None or last_modified is None:
            return False
        since, modified = parsedate(if_modified_since), parsedate(last_modified)
        return since is not None and modified is not None and since >= modified


def _is_safe_relative_path(path: str) -> bool:
    """Whether ``path`` is relative, stays below its root, and has no backslash or NUL byte."""
    if not path or "\\" in path or "\x00" in path:
        return False
    if os.path.isabs(path) or os.path.splitdrive(path)[0]:
        return False
    normalized = os.path.normpath(path)
    return normalized != ".." and not normalized.startswith(".." + os.sep)
