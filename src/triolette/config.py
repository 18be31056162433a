"""Settings read from environment variables and an optional ``.env`` file.

``config = Config(".env")`` then ``DEBUG = config("DEBUG", cast=bool, default=False)``.
The environment wins over the file; the file wins over the default. The module-level
``environ`` refuses changes to a key once it has been read, so a test that sets a
variable too late fails loudly instead of being silently ignored.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any, TypeVar, overload

__all__ = ["Config", "Environ", "EnvironError", "environ", "undefined"]

T = TypeVar("T")


class undefined:  # lower-case: Starlette's public name
    """Sentinel: the default of ``Config.get`` when no default was given."""


class EnvironError(Exception):
    """An environment variable was set or deleted after its value had been read."""


class Environ(MutableMapping[str, str]):
    """A view of ``os.environ`` (or another mapping) that remembers which keys were read."""

    def __init__(self, environ: MutableMapping[str, str] = os.environ) -> None:
        self._environ = environ
        self._has_been_read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self._has_been_read.add(key)
        return self._environ[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._refuse_if_read("set", key)
        self._environ[key] = value

    def __delitem__(self, key: str) -> None:
        self._refuse_if_read("delete", key)
        del self._environ[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._environ)

    def __len__(self) -> int:
        return len(self._environ)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} variables)"

    def _refuse_if_read(self, action: str, key: str) -> None:
        if key in self._has_been_read:
            raise EnvironError(
                f"Attempting to {action} environ['{key}'], but the value has already been read: "
                f"code that read it would not see the change. {action.capitalize()} it before "
                "the settings module is imported (for tests, at the top of conftest.py)."
            )


environ = Environ()


class Config:
    """Reads settings from ``environ``, then ``env_file``, then the default given to ``get``.

    Arguments:
        env_file: a file of ``KEY=value`` lines; a missing file only warns.
        environ: where environment variables come from (the module-level ``environ``).
        env_prefix: prepended to every key looked up, in the environment and in the file.
        encoding: the encoding of ``env_file``.
    """

    def __init__(
        self,
        env_file: str | Path | None = None,
        environ: Mapping[str, str] = environ,
        env_prefix: str = "",
        encoding: str = "utf-8",
    ) -> None:
        self.environ = environ
        self.env_prefix = env_prefix
        self.file_values: dict[str, str] = {}
        if env_file is not None:
            if os.path.isfile(env_file):
                self.file_values = _read_env_file(env_file, encoding)
            else:
                warnings.warn(f"Config file {str(env_file)!r} not found.", UserWarning, stacklevel=2)

    @overload
    def __call__(self, key: str, cast: None = None, default: str | type[undefined] = undefined) -> str: ...
    @overload
    def __call__(self, key: str, cast: None = None, *, default: T) -> str | T: ...
    @overload
    def __call__(self, key: str, cast: Callable[[Any], T], default: Any = undefined) -> T: ...

    def __call__(self, key: str, cast: Callable[[Any], Any] | None = None, default: Any = undefined) -> Any:
        """Same as ``get``."""
        return self.get(key, cast, default)

    @overload
    def get(self, key: str, cast: None = None, default: str | type[undefined] = undefined) -> str: ...
    @overload
    def get(self, key: str, cast: None = None, *, default: T) -> str | T: ...
    @overload
    def get(self, key: str, cast: Callable[[Any], T], default: Any = undefined) -> T: ...

    def get(self, key: str, cast: Callable[[Any], Any] | None = None, default: Any = undefined) -> Any:
        """The setting ``env_prefix + key``, passed through ``cast`` when one is given.

        A ``default`` other than ``None`` goes through ``cast`` too, so
        ``config("PORT", cast=int, default="8000")`` is ``8000``. ``cast=bool`` accepts
        "true", "1", "false" and "0" in any case.
        Raises ``KeyError`` when the setting is missing and there is no default, and
        ``ValueError`` when ``cast`` rejects the value.
        """
        key = self.env_prefix + key
        if key in self.environ:
            value: Any = self.environ[key]
        elif key in self.file_values:
            value = self.file_values[key]
        elif default is not undefined:
            value = default
        else:
            raise KeyError(f"Config '{key}' is missing, and has no default.")
        return _cast(key, value, cast)


_BOOLS = {"true": True, "1": True, "false": False, "0": False}


def _cast(key: str, value: Any, cast: Callable[[Any], Any] | None) -> Any:
    if cast is None or value is None:
        return value
    if cast is bool and isinstance(value, str):
        try:
            return _BOOLS[value.lower()]
        except KeyError:
            raise ValueError(
                f"Config {key!r} has value {value!r}. Not a valid bool. Use 'true', '1', 'false' or '0'."
            ) from None
    try:
        return cast(value)
    except (TypeError, ValueError) as exc:
        name = getattr(cast, "__name__", repr(cast))
        raise ValueError(f"Config {key!r} has value {value!r}. Not a valid {name}.") from exc


def _read_env_file(path: str | Path, encoding: str) -> dict[str, str]:
    """``KEY=value`` lines; blank lines, ``#`` comments and lines without ``=`` are skipped.

    Whitespace around keys and values is dropped, and so is one pair of matching quotes
    around a value.
    """
    values: dict[str, str] = {}
    with open(path, encoding=encoding) as file:
        for line in file:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values
