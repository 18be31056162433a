"""Small helpers shared across modules."""

from __future__ import annotations

import functools
import inspect
from typing import Any


def is_async_callable(obj: Any) -> bool:
    """Whether calling ``obj`` returns a coroutine (looks through partials and ``__call__``)."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or (callable(obj) and inspect.iscoroutinefunction(obj.__call__))


def get_route_path(scope: dict[str, Any] | Any) -> str:
    """The path below the mount point: ``scope["path"]`` less ``root_path``."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path:
        return path
    if not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    if path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path


class AwaitableOrContextManagerWrapper:
    """Lets ``request.form()`` be awaited or used as ``async with request.form() as form:``."""

    __slots__ = ("_aw", "_entered")

    def __init__(self, aw: Any) -> None:
        self._aw = aw
        self._entered: Any = None

    def __await__(self) -> Any:
        return self._aw.__await__()

    async def __aenter__(self) -> Any:
        self._entered = await self._aw
        return self._entered

    async def __aexit__(self, *args: object) -> None:
        await self._entered.close()


class ConfigurationError(ValueError, AssertionError):
    """A mistake in how an app is put together (a route path, a missing argument).

    Starlette reported these with ``assert``; triolette raises a real exception that
    survives ``python -O`` and is still an ``AssertionError`` for code that caught one.
    """
