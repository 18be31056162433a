"""The values a request is made of: URLs, headers, query strings, forms, uploads, state.

All of it is plain synchronous code except ``UploadFile``'s I/O methods, which move work to
a worker thread once the upload has spilled to disk. ``Headers`` and ``QueryParams`` are
built on every request, so both stay lazy: headers are looked up in the raw ASGI byte pairs
and decoded only when read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import (
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    Sequence,
    ValuesView,
)
from operator import itemgetter
from shlex import shlex
from typing import Any, BinaryIO, Literal, NamedTuple, TypeVar, overload
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from triolette._host import parse_host
from triolette._utils import ConfigurationError
from triolette.concurrency import run_in_threadpool
from triolette.types import Scope

__all__ = [
    "URL",
    "Address",
    "CommaSeparatedStrings",
    "FormData",
    "Headers",
    "ImmutableMultiDict",
    "MultiDict",
    "MutableHeaders",
    "QueryParams",
    "Secret",
    "State",
    "URLPath",
    "UploadFile",
]

_KeyType = TypeVar("_KeyType")
# Values are covariant: a mapping can only be read, so Mapping[str, Dog] is a Mapping[str, Animal].
_CovariantValueType = TypeVar("_CovariantValueType", covariant=True)
_T = TypeVar("_T")


class Address(NamedTuple):
    """A ``(host, port)`` pair: ``request.client`` and the like."""

    host: str
    port: int


# --------------------------------------------------------------------------- URLs

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _netloc_from_scope(scope: Scope, scheme: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"host":
            # A Host header that does not parse, or whose port is not a TCP port, is ignored:
            # the URL falls back to scope["server"] (see triolette._host).
            parsed = parse_host(value.decode("latin-1"))
            if parsed is not None and parsed.has_valid_port:
                return parsed.authority
            break
    server = scope.get("server")
    if server is None:
        return None
    host, port = server
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return str(host)
    return f"{host}:{port}"


class URL:
    """A URL string with its parts as properties and methods that return changed copies.

    Build one from a string, from an ASGI ``scope`` (the request's URL: scheme, the Host
    header or else ``scope["server"]``, ``scope["path"]`` which already holds the
    ``root_path``, and the query string), or from keyword components
    (``URL(scheme="https", netloc="example.com", path="/")``).
    """

    def __init__(self, url: str = "", scope: Scope | None = None, **components: Any) -> None:
        if scope is not None:
            if url:
                raise ConfigurationError('Cannot set both "url" and "scope".')
            if components:
                raise ConfigurationError('Cannot set both "scope" and "**components".')
            url = self._from_scope(scope)
        elif components:
            if url:
                raise ConfigurationError('Cannot set both "url" and "**components".')
            url = URL().replace(**components).components.geturl()
        self._url = url
        self._components: SplitResult | None = None

    @staticmethod
    def _from_scope(scope: Scope) -> str:
        scheme: str = scope.get("scheme", "http")
        # scope["path"] is already percent-decoded: re-escape what would end the path.
        path: str = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
        query = scope.get("query_string", b"").decode("utf-8", "replace")
        netloc = _netloc_from_scope(scope, scheme)
        if netloc is None:
            if path.startswith("//"):
                # Without an authority, "//x" would read as one.
                path = "/%2F" + path[2:]
            return f"{path}?{query}" if query else path
        if path and not path.startswith("/"):
            path = "/" + path
        url = f"{scheme}://{netloc}{path}"
        return f"{url}?{query}" if query else url

    @property
    def components(self) -> SplitResult:
        if self._components is None:
            self._components = urlsplit(self._url)
        return self._components

    @property
    def scheme(self) -> str:
        return self.components.scheme

    @property
    def netloc(self) -> str:
        return self.components.netloc

    @property
    def path(self) -> str:
        return self.components.path

    @property
    def query(self) -> str:
        return self.components.query

    @property
    def fragment(self) -> str:
        return self.components.fragment

    @property
    def username(self) -> str | None:
        return self.components.username

    @property
    def password(self) -> str | None:
        return self.components.password

    @property
    def hostname(self) -> str | None:
        return self.components.hostname

    @property
    def port(self) -> int | None:
        return self.components.port

    @property
    def is_secure(self) -> bool:
        """Whether the scheme is ``https`` or ``wss``."""
        return self.scheme in ("https", "wss")

    def replace(self, **kwargs: Any) -> URL:
        """A copy with some parts changed.

        Takes the fields of ``urllib.parse.SplitResult`` (``scheme``, ``netloc``, ``path``,
        ``query``, ``fragment``) and also ``username``, ``password``, ``hostname`` and ``port``,
        which rebuild the netloc from the parts not given.
        """
        if {"username", "password", "hostname", "port"} & kwargs.keys():
            kwargs["netloc"] = self._replace_netloc(
                hostname=kwargs.pop("hostname", None),
                port=kwargs.pop("port", self.port),
                username=kwargs.pop("username", self.username),
                password=kwargs.pop("password", self.password),
            )
        return type(self)(self.components._replace(**kwargs).geturl())

    def _replace_netloc(
        self, *, hostname: str | None, port: int | None, username: str | None, password: str | None
    ) -> str:
        if hostname is None:
            # Keep the current host as written (brackets and case included), less any userinfo and port.
            hostname = self.netloc.rpartition("@")[2]
            if ":" in hostname and not hostname.endswith("]"):
                hostname = hostname.rpartition(":")[0]
        elif ":" in hostname and not hostname.startswith("["):
            try:
                ipaddress.IPv6Address(hostname)
            except ValueError:
                pass
            else:
                hostname = f"[{hostname}]"
        netloc = hostname if port is None else f"{hostname}:{port}"
        if username is None:
            return netloc
        userinfo = username if password is None else f"{username}:{password}"
        return f"{userinfo}@{netloc}"

    def include_query_params(self, **kwargs: Any) -> URL:
        """A copy with these query parameters set, replacing any of the same names."""
        params = MultiDict(parse_qsl(self.query, keep_blank_values=True))
        params.update({str(key): str(value) for key, value in kwargs.items()})
        return self.replace(query=urlencode(params.multi_items()))

    def replace_query_params(self, **kwargs: Any) -> URL:
        """A copy whose query string holds these parameters and no others."""
        return self.replace(query=urlencode([(str(key), str(value)) for key, value in kwargs.items()]))

    def remove_query_params(self, keys: str | Sequence[str]) -> URL:
        """A copy without the query parameters of these names."""
        names = {keys} if isinstance(keys, str) else set(keys)
        params = [(k, v) for k, v in parse_qsl(self.query, keep_blank_values=True) if k not in names]
        return self.replace(query=urlencode(params))

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(self._url)

    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        url = str(self.replace(password="********")) if self.password else self._url
        return f"{type(self).__name__}({url!r})"


class URLPath(str):
    """A URL path, as ``url_path_for`` returns it, that may also know its protocol and host.

    ``make_absolute_url`` joins it to a base URL, choosing ``http``/``https`` or ``ws``/``wss``
    from the protocol and whether the base URL is secure.
    """

    protocol: Literal["http", "websocket", ""]
    host: str

    def __new__(cls, path: str, protocol: Literal["http", "websocket", ""] = "", host: str = "") -> URLPath:
        if protocol not in ("http", "websocket", ""):
            raise ConfigurationError(f"URLPath protocol must be 'http', 'websocket' or '', got {protocol!r}.")
        path = path.replace("\\", "%5C")
        if path.startswith("//"):
            # A leading "//" would read as an authority.
            path = "/%2F" + path[2:]
        return super().__new__(cls, path)

    def __init__(self, path: str, protocol: Literal["http", "websocket", ""] = "", host: str = "") -> None:
        self.protocol = protocol
        self.host = host

    def make_absolute_url(self, base_url: str | URL) -> URL:
        """This path below ``base_url``'s path, on this path's host or else the base URL's."""
        if isinstance(base_url, str):
            base_url = URL(base_url)
        if self.protocol == "http":
            scheme = "https" if base_url.is_secure else "http"
        elif self.protocol == "websocket":
            scheme = "wss" if base_url.is_secure else "ws"
        else:
            scheme = base_url.scheme
        netloc = self.host or base_url.netloc
        return URL(scheme=scheme, netloc=netloc, path=base_url.path.rstrip("/") + str(self))


# --------------------------------------------------------------------------- config values


class Secret:
    """A string that stays out of reprs and tracebacks; ``str(secret)`` where you need it."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('**********')"

    def __str__(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)


class CommaSeparatedStrings(Sequence[str]):
    """A list from ``"a, b, 'c, d'"``: split on commas, items stripped, quotes respected."""

    def __init__(self, value: str | Sequence[str]) -> None:
        if isinstance(value, str):
            lexer = shlex(value, posix=True)
            lexer.whitespace = ","
            lexer.whitespace_split = True
            self._items = [item.strip() for item in lexer]
        else:
            self._items = list(value)

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._items[index]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"

    def __str__(self) -> str:
        return ", ".join(repr(item) for item in self._items)


# --------------------------------------------------------------------------- multidicts


def _pairs(value: Any) -> list[tuple[Any, Any]]:
    """The (key, value) pairs of a multidict, a mapping or an iterable of pairs, as a new list."""
    if hasattr(value, "multi_items"):
        return list(value.multi_items())
    if hasattr(value, "items"):
        return list(value.items())
    return [(key, item) for key, item in value]


def _check_one_positional(cls: type, args: tuple[Any, ...]) -> None:
    if len(args) > 1:
        raise TypeError(f"{cls.__name__}() takes at most 1 positional argument, got {len(args)}.")


class ImmutableMultiDict(Mapping[_KeyType, _CovariantValueType]):
    """A read-only mapping that may hold several values per key.

    ``d[key]`` and ``d.get(key)`` give the last value for a key, ``d.getlist(key)`` all of them,
    and ``d.multi_items()`` every pair in order.
    """

    _dict: dict[_KeyType, _CovariantValueType]
    _list: list[tuple[_KeyType, _CovariantValueType]]

    def __init__(
        self,
        *args: ImmutableMultiDict[_KeyType, _CovariantValueType]
        | Mapping[_KeyType, _CovariantValueType]
        | Iterable[tuple[_KeyType, _CovariantValueType]],
        **kwargs: Any,
    ) -> None:
        _check_one_positional(type(self), args)
        items = _pairs(args[0]) if args else []
        if kwargs:
            items += kwargs.items()
        self._list = items
        self._dict = dict(items)

    def getlist(self, key: Any) -> list[_CovariantValueType]:
        """Every value for ``key``, in order; empty if there is none."""
        return [item_value for item_key, item_value in self._list if item_key == key]

    def keys(self) -> KeysView[_KeyType]:
        return self._dict.keys()

    def values(self) -> ValuesView[_CovariantValueType]:
        return self._dict.values()

    def items(self) -> ItemsView[_KeyType, _CovariantValueType]:
        return self._dict.items()

    def multi_items(self) -> list[tuple[_KeyType, _CovariantValueType]]:
        """Every (key, value) pair, repeated keys included, in order."""
        return list(self._list)

    def __getitem__(self, key: _KeyType) -> _CovariantValueType:
        return self._dict[key]

    def __contains__(self, key: object) -> bool:
        return key in self._dict

    def __iter__(self) -> Iterator[_KeyType]:
        return iter(self._dict)

    def __len__(self) -> int:
        return len(self._dict)

    def __eq__(self, other: object) -> bool:
        # Equal when they hold the same pairs; the order of different keys does not matter,
        # the order of one key's values does.
        if not isinstance(other, type(self)):
            return False
        by_key = itemgetter(0)
        return sorted(self._list, key=by_key) == sorted(other._list, key=by_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.multi_items()!r})"


class MultiDict(ImmutableMultiDict[Any, Any]):
    """A mutable ``ImmutableMultiDict``. Setting a key replaces all its values; ``append`` adds one."""

    def __setitem__(self, key: Any, value: Any) -> None:
        self.setlist(key, [value])

    def __delitem__(self, key: Any) -> None:
        del self._dict[key]
        self._list = [(k, v) for k, v in self._list if k != key]

    def pop(self, key: Any, default: Any = None) -> Any:
        """Remove every value for ``key``; return the last one, or ``default``."""
        self._list = [(k, v) for k, v in self._list if k != key]
        return self._dict.pop(key, default)

    def popitem(self) -> tuple[Any, Any]:
        """Remove the most recently added key; return it with its last value."""
        key, value = self._dict.popitem()
        self._list = [(k, v) for k, v in self._list if k != key]
        return key, value

    def poplist(self, key: Any) -> list[Any]:
        """Remove every value for ``key`` and return them, in order."""
        values = self.getlist(key)
        self.pop(key)
        return values

    def clear(self) -> None:
        self._dict.clear()
        self._list.clear()

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self._dict:
            self.append(key, default)
        return self._dict[key]

    def setlist(self, key: Any, values: list[Any]) -> None:
        """Replace every value for ``key`` with ``values`` (removing the key if it is empty)."""
        if not values:
            self.pop(key)
            return
        self._list = [(k, v) for k, v in self._list if k != key]
        self._list.extend((key, value) for value in values)
        self._dict[key] = values[-1]

    def append(self, key: Any, value: Any) -> None:
        """Add a value for ``key``, keeping the ones it has."""
        self._list.append((key, value))
        self._dict[key] = value

    def update(
        self,
        *args: ImmutableMultiDict[Any, Any] | Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        **kwargs: Any,
    ) -> None:
        """For each key in the arguments, replace its values with the ones given there."""
        other = MultiDict(*args, **kwargs)
        self._list = [(k, v) for k, v in self._list if k not in other._dict]
        self._list.extend(other._list)
        self._dict.update(other._dict)


class QueryParams(ImmutableMultiDict[str, str]):
    """A query string as a read-only multidict of strings.

    Takes a query string (``str``, or ``bytes`` read as latin-1), blank values kept, or
    anything ``ImmutableMultiDict`` takes, whose keys and values become strings.
    """

    def __init__(
        self,
        *args: ImmutableMultiDict[Any, Any] | Mapping[Any, Any] | list[tuple[Any, Any]] | str | bytes,
        **kwargs: Any,
    ) -> None:
        _check_one_positional(type(self), args)
        value = args[0] if args else ""
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str) and not kwargs:
            # The per-request path: parse_qsl already gives a fresh list of str pairs.
            items = parse_qsl(value, keep_blank_values=True)
        else:
            pairs = parse_qsl(value, keep_blank_values=True) if isinstance(value, str) else _pairs(value)
            items = [(str(k), str(v)) for k, v in [*pairs, *kwargs.items()]]
        self._list = items
        self._dict = dict(items)

    def __str__(self) -> str:
        return urlencode(self._list)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


# --------------------------------------------------------------------------- forms


class UploadFile:
    """A file uploaded in a form, held in ``file`` (usually a ``SpooledTemporaryFile``).

    The async methods do their I/O directly while the file is in memory and in a worker
    thread once it has rolled over to disk (or, for a file that is not spooled, always).
    ``size`` grows with each ``write``.
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        size: int | None = None,
        filename: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        self.filename = filename
        self.file = file
        self.size = size
        self.headers = headers if headers is not None else Headers()
        # SpooledTemporaryFile rolls over to disk once it holds more than this; 0 means never.
        self._max_mem_size: int = getattr(file, "_max_size", 0)

    @property
    def content_type(self) -> str | None:
        """The part's ``Content-Type`` header, if it had one."""
        return self.headers.get("content-type")

    @property
    def _in_memory(self) -> bool:
        # Only a SpooledTemporaryFile that has not rolled over is known not to block.
        return not getattr(self.file, "_rolled", True)

    def _write_blocks(self, length: int) -> bool:
        if not self._in_memory:
            return True
        # This write will roll the file over to disk, which blocks.
        return bool(self._max_mem_size) and self.file.tell() + length > self._max_mem_size

    async def write(self, data: bytes) -> None:
        if self.size is not None:
            self.size += len(data)
        if self._write_blocks(len(data)):
            await run_in_threadpool(self.file.write, data)
        else:
            self.file.write(data)

    async def read(self, size: int = -1) -> bytes:
        if self._in_memory:
            return self.file.read(size)
        return await run_in_threadpool(self.file.read, size)

    async def seek(self, offset: int) -> None:
        if self._in_memory:
            self.file.seek(offset)
        else:
            await run_in_threadpool(self.file.seek, offset)

    async def close(self) -> None:
        if self._in_memory:
            self.file.close()
        else:
            await run_in_threadpool(self.file.close)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(filename={self.filename!r}, size={self.size!r}, headers={self.headers!r})"


class FormData(ImmutableMultiDict[str, "UploadFile | str"]):
    """A parsed form: a read-only multidict of text fields and ``UploadFile`` s."""

    def __init__(
        self,
        *args: FormData | Mapping[str, str | UploadFile] | list[tuple[str, str | UploadFile]],
        **kwargs: str | UploadFile,
    ) -> None:
        super().__init__(*args, **kwargs)

    async def close(self) -> None:
        """Close every uploaded file in the form."""
        for _, value in self._list:
            if isinstance(value, UploadFile):
                await value.close()


# --------------------------------------------------------------------------- headers


def _header_key(key: str) -> bytes:
    return key.lower().encode("latin-1")


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive HTTP headers over a list of raw ``(name, value)`` byte pairs.

    Give at most one of ``headers`` (a mapping of str), ``raw`` (a list of lower-cased latin-1
    byte pairs, used as it is) or ``scope`` (whose ``scope["headers"]`` list is used as it is).
    ``h[name]`` gives the first value, ``h.getlist(name)`` all of them.
    """

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        raw: list[tuple[bytes, bytes]] | None = None,
        scope: MutableMapping[str, Any] | None = None,
    ) -> None:
        if (headers is not None) + (raw is not None) + (scope is not None) > 1:
            given = [name for name, arg in (("headers", headers), ("raw", raw), ("scope", scope)) if arg is not None]
            raise ConfigurationError(
                f'Cannot set both "{given[0]}" and "{given[1]}": pass at most one of '
                f"'headers', 'raw' and 'scope' to {type(self).__name__}()."
            )
        self._list: list[tuple[bytes, bytes]]
        # Built on every request from the scope: no copy, no decoding.
        if scope is not None:
            scope_headers = scope["headers"]
            if type(scope_headers) is not list:
                # Servers may send a tuple or other iterable; make it a list we can share.
                scope_headers = scope["headers"] = list(scope_headers)
            self._list = scope_headers
        elif raw is not None:
            self._list = raw
        elif headers is not None:
            self._list = [(_header_key(key), value.encode("latin-1")) for key, value in headers.items()]
        else:
            self._list = []

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """A copy of the raw ``(name, value)`` byte pairs."""
        return list(self._list)

    # keys/values/items return lists, not views: a header name may repeat.
    def keys(self) -> list[str]:  # type: ignore[override]  # a list, not a KeysView
        return [key.decode("latin-1") for key, _ in self._list]

    def values(self) -> list[str]:  # type: ignore[override]  # a list, not a ValuesView
        return [value.decode("latin-1") for _, value in self._list]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]  # a list, not an ItemsView
        return [(key.decode("latin-1"), value.decode("latin-1")) for key, value in self._list]

    def getlist(self, key: str) -> list[str]:
        """Every value of the header ``key``, in order; empty if it is absent."""
        wanted = _header_key(key)
        return [value.decode("latin-1") for name, value in self._list if name == wanted]

    def mutablecopy(self) -> MutableHeaders:
        """A ``MutableHeaders`` with a copy of these headers."""
        return MutableHeaders(raw=list(self._list))

    @overload
    def get(self, key: str, /) -> str | None: ...
    @overload
    def get(self, key: str, /, default: str) -> str: ...
    @overload
    def get(self, key: str, /, default: _T) -> str | _T: ...

    def get(self, key: str, /, default: Any = None) -> Any:
        wanted = key.lower().encode("latin-1")
        for name, value in self._list:
            if name == wanted:
                return value.decode("latin-1")
        return default

    def __getitem__(self, key: str) -> str:
        wanted = key.lower().encode("latin-1")
        for name, value in self._list:
            if name == wanted:
                return value.decode("latin-1")
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        wanted = key.lower().encode("latin-1")
        # A plain loop: any() over a generator is about 2.5x slower, and this runs per request.
        for name, _ in self._list:  # noqa: SIM110
            if name == wanted:
                return True
        return False

    def __iter__(self) -> Iterator[str]:
        return (key.decode("latin-1") for key, _ in self._list)

    def __len__(self) -> int:
        return len(self._list)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return False
        return sorted(self._list) == sorted(other._list)

    def __repr__(self) -> str:
        as_dict = dict(self.items())
        if len(as_dict) == len(self._list):
            return f"{type(self).__name__}({as_dict!r})"
        return f"{type(self).__name__}(raw={self.raw!r})"


class MutableHeaders(Headers):
    """Headers you can change. Built with ``scope=``, changes go to ``scope["headers"]`` itself."""

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """The raw ``(name, value)`` byte pairs: the list itself, not a copy."""
        return self._list

    def __setitem__(self, key: str, value: str) -> None:
        """Set the header, in the place of its first occurrence, removing any others."""
        name = _header_key(key)
        item = (name, value.encode("latin-1"))
        headers = self._list
        for index, (existing, _) in enumerate(headers):
            if existing == name:
                headers[index] = item
                # Slice assignment keeps the same list object (it may be scope["headers"]).
                headers[index + 1 :] = [pair for pair in headers[index + 1 :] if pair[0] != name]
                return
        headers.append(item)

    def __delitem__(self, key: str) -> None:
        """Remove every occurrence of the header; nothing happens if it is absent."""
        name = _header_key(key)
        self._list[:] = [pair for pair in self._list if pair[0] != name]

    def __ior__(self, other: Mapping[str, str]) -> MutableHeaders:
        if not isinstance(other, Mapping):
            raise TypeError(f"Can only merge a mapping into {type(self).__name__}, got {type(other).__name__}.")
        self.update(other)
        return self

    def __or__(self, other: Mapping[str, str]) -> MutableHeaders:
        if not isinstance(other, Mapping):
            raise TypeError(f"Can only merge a mapping with {type(self).__name__}, got {type(other).__name__}.")
        merged = self.mutablecopy()
        merged.update(other)
        return merged

    def setdefault(self, key: str, value: str) -> str:
        """The header's first value; if it is absent, set it to ``value`` first."""
        name = _header_key(key)
        for existing, existing_value in self._list:
            if existing == name:
                return existing_value.decode("latin-1")
        self._list.append((name, value.encode("latin-1")))
        return value

    def update(self, other: Mapping[str, str]) -> None:
        """Set each header in ``other``, as ``headers[key] = value`` does."""
        for key, value in other.items():
            self[key] = value

    def append(self, key: str, value: str) -> None:
        """Add a header, keeping any others of the same name."""
        self._list.append((_header_key(key), value.encode("latin-1")))

    def add_vary_header(self, vary: str) -> None:
        """Add ``vary`` to the ``Vary`` header, joining any existing values into one header."""
        self["vary"] = ", ".join([*self.getlist("vary"), vary])


# --------------------------------------------------------------------------- state


class State:
    """An attribute bag: ``request.state`` and ``app.state``.

    ``state.user = u`` stores, ``state.user`` reads, and a missing name raises
    ``AttributeError``. Item access (``state["user"]``) works too.
    """

    _state: dict[str, Any]

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_state", {} if state is None else state)

    def __setattr__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def __getattr__(self, key: str) -> Any:
        # Reached only for names that are not real attributes. vars() rather than self._state,
        # so that an instance without _state (copy, pickle) fails cleanly instead of recursing.
        state = vars(self).get("_state", {})
        try:
            return state[key]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {key!r}", name=key, obj=self
            ) from None

    def __delattr__(self, key: str) -> None:
        try:
            del self._state[key]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {key!r}", name=key, obj=self
            ) from None

    def __getitem__(self, key: str) -> Any:
        return self._state[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def __delitem__(self, key: str) -> None:
        del self._state[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._state!r})"
