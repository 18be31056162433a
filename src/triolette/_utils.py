"""Small helpers shared across modules."""

from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Any, NoReturn


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


def exception_leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, looking through (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in exception_leaves(inner)]
    return [exc]


def raise_as_itself(exc: BaseException) -> NoReturn:
    """Raise ``exc`` keeping its own ``__context__``: raised while handling the group it came
    in, Python would otherwise make that group its context."""
    context = exc.__context__
    try:
        raise exc
    finally:
        exc.__context__ = context
        del exc, context


def raise_child(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the one exception a nursery collected in ``group`` as itself, even when it is an
    exception group of its own (invariant 5); ``group`` when it holds several."""
    if len(group.exceptions) != 1:
        raise group
    raise_as_itself(group.exceptions[0])


def raise_single(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise the one exception in ``group`` as itself; the group when it holds several."""
    leaves = exception_leaves(group)
    if len(leaves) != 1:
        raise group
    raise_as_itself(leaves[0])


def aclosing_if_closable(iterable: Any) -> contextlib.AbstractAsyncContextManager[Any]:
    """``async with`` this around iterating ``iterable``: closes it where it ran (an async
    generator, or anything with ``aclose``), also when cancelled; a no-op otherwise."""
    return contextlib.aclosing(iterable) if hasattr(iterable, "aclose") else contextlib.nullcontext(iterable)
