import copy
import io
import pickle
import tempfile
import threading
from collections.abc import Sequence
from typing import Any, BinaryIO, Literal

import pytest

from triolette import datastructures
from triolette.datastructures import (
    URL,
    Address,
    CommaSeparatedStrings,
    FormData,
    Headers,
    ImmutableMultiDict,
    MultiDict,
    MutableHeaders,
    QueryParams,
    Secret,
    State,
    UploadFile,
    URLPath,
)


def ruff_sorted(names: list[str]) -> list[str]:
    """The order ruff's RUF022 wants: SCREAMING_CASE, then CamelCase, then the rest."""
    return sorted(names, key=lambda name: (0 if name.isupper() else 1 if name[:1].isupper() else 2, name))


def test_all_is_sorted() -> None:
    assert datastructures.__all__ == ruff_sorted(datastructures.__all__)
    for name in datastructures.__all__:
        assert hasattr(datastructures, name)


def test_address() -> None:
    address = Address("127.0.0.1", 8000)
    assert address.host == "127.0.0.1"
    assert address.port == 8000
    assert address == ("127.0.0.1", 8000)
    assert repr(address) == "Address(host='127.0.0.1', port=8000)"


# --------------------------------------------------------------------------- URL


def test_url_parts() -> None:
    url = URL("https://user:pw@example.org:123/path/to/somewhere?abc=123#anchor")
    assert url.scheme == "https"
    assert url.netloc == "user:pw@example.org:123"
    assert url.path == "/path/to/somewhere"
    assert url.query == "abc=123"
    assert url.fragment == "anchor"
    assert url.username == "user"
    assert url.password == "pw"
    assert url.hostname == "example.org"
    assert url.port == 123
    assert url.is_secure
    assert url.components is url.components  # parsed once


@pytest.mark.parametrize(
    ("url", "secure"),
    [
        ("http://a/", False),
        ("https://a/", True),
        ("ws://a/", False),
        ("wss://a/", True),
        ("/relative", False),
    ],
)
def test_url_is_secure(url: str, secure: bool) -> None:
    assert URL(url).is_secure is secure


def test_url_equality_hash_str() -> None:
    url = URL("http://example.org/")
    assert url == "http://example.org/"
    assert url == URL("http://example.org/")
    assert url != URL("http://example.org/other")
    assert hash(url) == hash(URL("http://example.org/"))
    assert {url: 1}[URL("http://example.org/")] == 1
    assert str(url) == "http://example.org/"


def test_url_repr_hides_password() -> None:
    assert repr(URL("http://example.org/")) == "URL('http://example.org/')"
    assert repr(URL("https://user:secret@example.org/p")) == "URL('https://user:********@example.org/p')"
    assert repr(URL("https://user@example.org/p")) == "URL('https://user@example.org/p')"


def test_url_from_components() -> None:
    url = URL(scheme="https", netloc="example.org", path="/p", query="a=1", fragment="f")
    assert url == "https://example.org/p?a=1#f"
    assert URL(scheme="http", hostname="example.org", port=8080, path="/") == "http://example.org:8080/"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "http://a/", "scope": {"path": "/"}}, 'Cannot set both "url" and "scope".'),
        ({"scope": {"path": "/"}, "path": "/"}, 'Cannot set both "scope" and "\\*\\*components".'),
        ({"url": "http://a/", "path": "/"}, 'Cannot set both "url" and "\\*\\*components".'),
    ],
)
def test_url_rejects_mixed_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AssertionError, match=message):  # as Starlette's assert
        URL(**kwargs)


def http_scope(**changes: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "scheme": "http",
        "path": "/path",
        "query_string": b"",
        "headers": [],
        "server": ("10.0.0.1", 8000),
    }
    scope.update(changes)
    return scope


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # The Host header wins over the server.
        ({"headers": [(b"host", b"example.org")]}, "http://example.org/path"),
        ({"headers": [(b"host", b"example.org:8080")]}, "http://example.org:8080/path"),
        ({"headers": [(b"host", b"[::1]:8080")]}, "http://[::1]:8080/path"),
        ({"headers": [(b"host", b"[v1.fe80]")]}, "http://[v1.fe80]/path"),
        ({"headers": [(b"host", b"example.org:00080")]}, "http://example.org:00080/path"),
        ({"headers": [(b"accept", b"*/*"), (b"host", b"a.b"), (b"host", b"c.d")]}, "http://a.b/path"),
        # Without one, the server, with the port unless it is the scheme's default.
        ({}, "http://10.0.0.1:8000/path"),
        ({"server": ("10.0.0.1", 80)}, "http://10.0.0.1/path"),
        ({"scheme": "https", "server": ("h", 443)}, "https://h/path"),
        ({"scheme": "https", "server": ("h", 80)}, "https://h:80/path"),
        ({"scheme": "ws", "server": ("h", 80)}, "ws://h/path"),
        ({"scheme": "wss", "server": ("h", 443)}, "wss://h/path"),
        ({"scheme": "gopher", "server": ("h", 70)}, "gopher://h:70/path"),
        ({"server": ("::1", 8000)}, "http://[::1]:8000/path"),
        ({"server": ("[::1]", 8000)}, "http://[::1]:8000/path"),
        ({"server": ("/tmp/sock", None)}, "http:///tmp/sock/path"),
        # Neither: a relative URL; a leading "//" must not read as an authority.
        ({"server": None}, "/path"),
        ({"server": None, "query_string": b"a=1"}, "/path?a=1"),
        ({"server": None, "path": "//evil.com/x"}, "/%2Fevil.com/x"),
        ({"path": "//evil.com/x", "server": ("h", 80)}, "http://h//evil.com/x"),
        # The path is decoded: characters that would end it are escaped again.
        ({"path": "/a?b#c\\d", "server": ("h", 80)}, "http://h/a%3Fb%23c%5Cd"),
        ({"path": "/a b", "server": ("h", 80)}, "http://h/a b"),
        ({"path": "", "server": ("h", 80)}, "http://h"),
        ({"path": "p", "server": ("h", 80)}, "http://h/p"),
        # root_path is already part of path (ASGI).
        ({"path": "/app/users", "root_path": "/app", "server": ("h", 80)}, "http://h/app/users"),
        ({"query_string": b"a=1&b=", "server": ("h", 80)}, "http://h/path?a=1&b="),
        ({"query_string": b"a=\xff", "server": ("h", 80)}, "http://h/path?a=\ufffd"),
    ],
)
def test_url_from_scope(changes: dict[str, Any], expected: str) -> None:
    assert str(URL(scope=http_scope(**changes))) == expected


def test_url_from_scope_defaults_scheme_query_and_headers() -> None:
    assert URL(scope={"path": "/p", "server": ("h", 80)}) == "http://h/p"


@pytest.mark.parametrize(
    "host",
    [
        b"evil.com/path",
        b"evil.com?x",
        b"evil.com#x",
        b"user@evil.com",
        b"evil .com",
        b"",
        b"host:",
        b"host:port",
        b"host:65536",
        b"host:999999",
        b"host:" + b"1" * 5000,
        b"[::1",
        b"[not-ipv6]",
        b"[fe80::1%eth0]",
        b"[v1.]",
        b"[::1]x",
    ],
)
def test_url_from_scope_ignores_invalid_host_headers(host: bytes) -> None:
    scope = http_scope(headers=[(b"host", host)], server=("10.0.0.1", 80))
    assert str(URL(scope=scope)) == "http://10.0.0.1/path"


def test_url_from_scope_accepts_high_valid_port() -> None:
    assert str(URL(scope=http_scope(headers=[(b"host", b"h:65535")]))) == "http://h:65535/path"
    assert str(URL(scope=http_scope(headers=[(b"host", b"h:0")]))) == "http://h:0/path"


@pytest.mark.parametrize(
    ("url", "kwargs", "expected"),
    [
        ("http://a.com/p?q#f", {"scheme": "https"}, "https://a.com/p?q#f"),
        ("http://a.com/p?q#f", {"path": "/x", "query": "", "fragment": ""}, "http://a.com/x"),
        ("http://a.com/p", {"netloc": "b.com:1"}, "http://b.com:1/p"),
        ("http://u:p@a.com:80/p", {"hostname": "b.com"}, "http://u:p@b.com:80/p"),
        ("http://u:p@a.com:80/p", {"port": None}, "http://u:p@a.com/p"),
        ("http://u:p@a.com:80/p", {"port": 81}, "http://u:p@a.com:81/p"),
        ("http://a.com/p", {"port": 81}, "http://a.com:81/p"),
        ("http://u:p@a.com/p", {"username": "v"}, "http://v:p@a.com/p"),
        ("http://u:p@a.com/p", {"password": None}, "http://u@a.com/p"),
        ("http://u:p@a.com/p", {"username": None}, "http://a.com/p"),
        ("http://a.com/p", {"username": "u", "password": "p"}, "http://u:p@a.com/p"),
        ("http://a.com/p", {"hostname": "::1"}, "http://[::1]/p"),
        ("http://a.com/p", {"hostname": "[::1]"}, "http://[::1]/p"),
        ("http://a.com/p", {"hostname": "not:ipv6"}, "http://not:ipv6/p"),
        ("http://[::1]/p", {"port": 8000}, "http://[::1]:8000/p"),
        ("http://[::1]:80/p", {"port": 8000}, "http://[::1]:8000/p"),
        ("http://u@[::1]:80/p", {"port": None}, "http://u@[::1]/p"),
        ("/relative", {"port": 1}, "//:1/relative"),
    ],
)
def test_url_replace(url: str, kwargs: dict[str, Any], expected: str) -> None:
    replaced = URL(url).replace(**kwargs)
    assert type(replaced) is URL
    assert str(replaced) == expected


def test_url_replace_keeps_subclass() -> None:
    class MyURL(URL):
        pass

    assert type(MyURL("http://a/").replace(path="/b")) is MyURL


def test_url_replace_rejects_unknown_part() -> None:
    with pytest.raises(ValueError, match="unexpected field names"):
        URL("http://a/").replace(nonsense="x")


def test_url_query_param_helpers() -> None:
    url = URL("https://example.org/p?page=1&tag=a&tag=b#top")
    assert url.include_query_params(page=2, q="x y") == "https://example.org/p?tag=a&tag=b&page=2&q=x+y#top"
    assert url.include_query_params() == "https://example.org/p?page=1&tag=a&tag=b#top"
    assert url.replace_query_params(only=1) == "https://example.org/p?only=1#top"
    assert url.replace_query_params() == "https://example.org/p#top"
    assert url.remove_query_params("tag") == "https://example.org/p?page=1#top"
    assert url.remove_query_params(["tag", "page"]) == "https://example.org/p#top"
    assert url.remove_query_params("absent") == "https://example.org/p?page=1&tag=a&tag=b#top"
    assert URL("/p?blank=").include_query_params(x=1) == "/p?blank=&x=1"


# --------------------------------------------------------------------------- URLPath


def test_url_path_is_a_str() -> None:
    path = URLPath("/users/1", protocol="http", host="example.org")
    assert path == "/users/1"
    assert isinstance(path, str)
    assert path.protocol == "http"
    assert path.host == "example.org"
    plain = URLPath("/x")
    assert (plain.protocol, plain.host) == ("", "")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/a\\b", "/a%5Cb"), ("//evil.com", "/%2Fevil.com"), ("/ok//x", "/ok//x")],
)
def test_url_path_escapes(path: str, expected: str) -> None:
    assert URLPath(path) == expected


def test_url_path_rejects_unknown_protocol() -> None:
    with pytest.raises(ValueError, match=r"URLPath protocol must be 'http', 'websocket' or '', got 'ftp'\."):
        URLPath("/", protocol="ftp")  # type: ignore[arg-type]  # an unknown protocol is the point


@pytest.mark.parametrize(
    ("protocol", "host", "base", "expected"),
    [
        ("", "", "https://example.org/root/", "https://example.org/root/users"),
        ("", "", URL("http://example.org"), "http://example.org/users"),
        ("http", "", "https://example.org", "https://example.org/users"),
        ("http", "", "http://example.org", "http://example.org/users"),
        ("http", "", "wss://example.org", "https://example.org/users"),
        ("websocket", "", "https://example.org", "wss://example.org/users"),
        ("websocket", "", "http://example.org", "ws://example.org/users"),
        ("http", "api.example.org", "http://example.org/", "http://api.example.org/users"),
    ],
)
def test_url_path_make_absolute_url(
    protocol: Literal["http", "websocket", ""], host: str, base: str | URL, expected: str
) -> None:
    url = URLPath("/users", protocol=protocol, host=host).make_absolute_url(base)
    assert isinstance(url, URL)
    assert str(url) == expected


# --------------------------------------------------------------------------- Secret, CommaSeparatedStrings


def test_secret() -> None:
    secret = Secret("hunter2")
    assert str(secret) == "hunter2"
    assert repr(secret) == "Secret('**********')"
    assert "hunter2" not in repr([secret])
    assert secret
    assert not Secret("")


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("a, b, c", ["a", "b", "c"]),
        ("a,b", ["a", "b"]),
        ("'a, b', c", ["a, b", "c"]),
        ('"x y",z', ["x y", "z"]),
        ("single", ["single"]),
        ("", []),
        (["a", "b"], ["a", "b"]),
        (("a",), ["a"]),
    ],
)
def test_comma_separated_strings(value: str | Sequence[str], items: list[str]) -> None:
    strings = CommaSeparatedStrings(value)
    assert list(strings) == items
    assert len(strings) == len(items)


def test_comma_separated_strings_sequence_and_text() -> None:
    strings = CommaSeparatedStrings("a, b, c")
    assert strings[0] == "a"
    assert strings[-1] == "c"
    assert strings[1:] == ["b", "c"]
    assert "b" in strings
    assert repr(strings) == "CommaSeparatedStrings(['a', 'b', 'c'])"
    assert str(strings) == "'a', 'b', 'c'"


# --------------------------------------------------------------------------- multidicts


def test_immutable_multidict_reads() -> None:
    d = ImmutableMultiDict([("a", "1"), ("b", "2"), ("a", "3")])
    assert d["a"] == "3"
    assert d.get("a") == "3"
    assert d.get("z") is None
    assert d.getlist("a") == ["1", "3"]
    assert d.getlist("z") == []
    assert list(d.keys()) == ["a", "b"]
    assert list(d.values()) == ["3", "2"]
    assert list(d.items()) == [("a", "3"), ("b", "2")]
    assert d.multi_items() == [("a", "1"), ("b", "2"), ("a", "3")]
    assert list(d) == ["a", "b"]
    assert len(d) == 2
    assert "a" in d
    assert "z" not in d
    assert repr(d) == "ImmutableMultiDict([('a', '1'), ('b', '2'), ('a', '3')])"
    with pytest.raises(KeyError, match="'z'"):
        d["z"]


def test_immutable_multidict_multi_items_is_a_copy() -> None:
    d = ImmutableMultiDict([("a", "1")])
    d.multi_items().append(("b", "2"))
    assert d.multi_items() == [("a", "1")]


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((), {}, []),
        (([],), {}, []),
        (({"a": "1", "b": "2"},), {}, [("a", "1"), ("b", "2")]),
        (([("a", "1"), ("a", "2")],), {}, [("a", "1"), ("a", "2")]),
        ((ImmutableMultiDict([("a", "1"), ("a", "2")]),), {}, [("a", "1"), ("a", "2")]),
        (((pair for pair in [("a", "1")]),), {}, [("a", "1")]),
        (([["a", "1"]],), {}, [("a", "1")]),
        (([("a", "1")],), {"b": "2", "a": "3"}, [("a", "1"), ("b", "2"), ("a", "3")]),
        ((), {"x": "1"}, [("x", "1")]),
    ],
)
def test_immutable_multidict_construction(
    args: tuple[Any, ...], kwargs: dict[str, str], expected: list[tuple[str, str]]
) -> None:
    d = ImmutableMultiDict(*args, **kwargs)
    assert d.multi_items() == expected
    assert dict(d.items()) == dict(expected)


def test_immutable_multidict_copies_its_input() -> None:
    items = [("a", "1")]
    d = ImmutableMultiDict(items)
    items.append(("b", "2"))
    assert d.multi_items() == [("a", "1")]


@pytest.mark.parametrize("cls", [ImmutableMultiDict, MultiDict, QueryParams, FormData])
def test_multidicts_take_one_positional_argument(cls: type[ImmutableMultiDict[Any, Any]]) -> None:
    with pytest.raises(TypeError, match=rf"{cls.__name__}\(\) takes at most 1 positional argument, got 2\."):
        cls([("a", "1")], [("b", "2")])


def test_immutable_multidict_equality() -> None:
    d = ImmutableMultiDict([("a", "1"), ("b", "2"), ("a", "3")])
    assert d == ImmutableMultiDict([("b", "2"), ("a", "1"), ("a", "3")])
    assert d != ImmutableMultiDict([("a", "3"), ("b", "2"), ("a", "1")])  # one key's order matters
    assert d != ImmutableMultiDict([("a", "3"), ("b", "2")])
    assert d != {"a": "3", "b": "2"}
    assert d != [("a", "1"), ("b", "2"), ("a", "3")]
    with pytest.raises(TypeError, match="unhashable type"):
        hash(d)


def test_multidict_setitem_and_delitem() -> None:
    d = MultiDict([("a", 1), ("b", 2), ("a", 3)])
    d["a"] = 4
    assert d.multi_items() == [("b", 2), ("a", 4)]
    d["c"] = 5
    assert d.multi_items() == [("b", 2), ("a", 4), ("c", 5)]
    del d["a"]
    assert d.multi_items() == [("b", 2), ("c", 5)]
    assert "a" not in d
    with pytest.raises(KeyError, match="'a'"):
        del d["a"]


def test_multidict_pop() -> None:
    d = MultiDict([("a", 1), ("b", 2), ("a", 3)])
    assert d.pop("a") == 3
    assert d.multi_items() == [("b", 2)]
    assert d.pop("missing") is None
    assert d.pop("missing", "default") == "default"


def test_multidict_popitem() -> None:
    d = MultiDict([("a", 1), ("b", 2), ("a", 3)])
    assert d.popitem() == ("b", 2)
    assert d.multi_items() == [("a", 1), ("a", 3)]
    assert d.popitem() == ("a", 3)
    with pytest.raises(KeyError, match="dictionary is empty"):
        d.popitem()


def test_multidict_poplist() -> None:
    d = MultiDict([("a", 1), ("b", 2), ("a", 3)])
    assert d.poplist("a") == [1, 3]
    assert d.multi_items() == [("b", 2)]
    assert d.poplist("a") == []


def test_multidict_clear() -> None:
    d = MultiDict([("a", 1)])
    d.clear()
    assert d.multi_items() == []
    assert len(d) == 0


def test_multidict_setdefault() -> None:
    d = MultiDict([("a", 1)])
    assert d.setdefault("a", 9) == 1
    assert d.setdefault("b", 2) == 2
    assert d.setdefault("c") is None
    assert d.multi_items() == [("a", 1), ("b", 2), ("c", None)]


def test_multidict_setlist() -> None:
    d = MultiDict([("a", 1), ("b", 2), ("a", 3)])
    d.setlist("a", [4, 5])
    assert d.multi_items() == [("b", 2), ("a", 4), ("a", 5)]
    assert d["a"] == 5
    d.setlist("b", [])
    assert d.multi_items() == [("a", 4), ("a", 5)]
    d.setlist("missing", [])
    assert "missing" not in d


def test_multidict_append() -> None:
    d = MultiDict([("a", 1)])
    d.append("a", 2)
    assert d.getlist("a") == [1, 2]
    assert d["a"] == 2


def test_multidict_update() -> None:
    d = MultiDict([("a", 1), ("b", 2), ("a", 3)])
    d.update([("a", 4), ("a", 5)], c=6)
    assert d.multi_items() == [("b", 2), ("a", 4), ("a", 5), ("c", 6)]
    assert d["a"] == 5
    d.update({"b": 7})
    assert d.multi_items() == [("a", 4), ("a", 5), ("c", 6), ("b", 7)]
    d.update(MultiDict([("c", 8), ("c", 9)]))
    assert d.getlist("c") == [8, 9]
    d.update()
    assert len(d.multi_items()) == 5


def test_multidict_repr_and_equality() -> None:
    d = MultiDict([("a", 1)])
    assert repr(d) == "MultiDict([('a', 1)])"
    assert d == MultiDict({"a": 1})
    assert d != ImmutableMultiDict([("a", 1)])


# --------------------------------------------------------------------------- QueryParams


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a=123&a=456&b=789", [("a", "123"), ("a", "456"), ("b", "789")]),
        ("a=&b", [("a", ""), ("b", "")]),
        ("q=hello+world&e=%C3%A9", [("q", "hello world"), ("e", "é")]),
        ("", []),
        (b"a=1&b=%20", [("a", "1"), ("b", " ")]),
        (b"raw=\xe9", [("raw", "é")]),
        ({"a": 1, "b": True}, [("a", "1"), ("b", "True")]),
        ([("a", 1), ("a", 2)], [("a", "1"), ("a", "2")]),
        (ImmutableMultiDict([("x", "1")]), [("x", "1")]),
    ],
)
def test_query_params_construction(value: Any, expected: list[tuple[str, str]]) -> None:
    params = QueryParams(value)
    assert params.multi_items() == expected


def test_query_params_with_kwargs() -> None:
    assert QueryParams("a=1", b=2).multi_items() == [("a", "1"), ("b", "2")]
    assert QueryParams(b"a=1", a=2)["a"] == "2"
    assert QueryParams([("a", 1)], b=2).multi_items() == [("a", "1"), ("b", "2")]
    assert QueryParams(x=1).multi_items() == [("x", "1")]
    assert QueryParams().multi_items() == []


def test_query_params_reads_and_text() -> None:
    params = QueryParams("a=123&a=456&b=789")
    assert params["a"] == "456"
    assert params.getlist("a") == ["123", "456"]
    assert dict(params) == {"a": "456", "b": "789"}
    assert str(params) == "a=123&a=456&b=789"
    assert repr(params) == "QueryParams('a=123&a=456&b=789')"
    assert str(QueryParams({"q": "a b&c"})) == "q=a+b%26c"
    assert params == QueryParams([("b", "789"), ("a", "123"), ("a", "456")])
    assert params != ImmutableMultiDict(params.multi_items())


# --------------------------------------------------------------------------- UploadFile, FormData


class ThreadRecordingFile(tempfile.SpooledTemporaryFile[bytes], BinaryIO):
    """A SpooledTemporaryFile that notes which thread each call ran in."""

    _rolled: bool  # SpooledTemporaryFile's own flag (typeshed leaves it out): True once on disk

    def __init__(self, max_size: int = 0) -> None:
        super().__init__(max_size=max_size)
        self.calls: list[tuple[str, bool]] = []

    def _note(self, name: str) -> None:
        self.calls.append((name, threading.current_thread() is threading.main_thread()))

    def write(self, data: Any) -> int:
        self._note("write")
        return super().write(data)

    def read(self, *args: Any) -> bytes:
        self._note("read")
        return super().read(*args)

    def seek(self, *args: Any) -> int:
        self._note("seek")
        return super().seek(*args)

    def close(self) -> None:
        self._note("close")
        super().close()


class PlainRecordingFile(io.BytesIO):
    """A file that is not spooled: nothing says it is in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bool]] = []

    def _note(self, name: str) -> None:
        self.calls.append((name, threading.current_thread() is threading.main_thread()))

    def write(self, data: Any) -> int:
        self._note("write")
        return super().write(data)

    def read(self, *args: Any) -> bytes:
        self._note("read")
        return super().read(*args)

    def seek(self, *args: Any) -> int:
        self._note("seek")
        return super().seek(*args)

    def close(self) -> None:
        self._note("close")
        super().close()


async def test_upload_file_in_memory_stays_on_the_trio_thread() -> None:
    file = ThreadRecordingFile(max_size=1024)
    upload = UploadFile(file, size=0, filename="a.txt")
    await upload.write(b"hello")
    await upload.write(b" world")
    assert upload.size == 11
    await upload.seek(0)
    assert await upload.read() == b"hello world"
    await upload.seek(6)
    assert await upload.read(3) == b"wor"
    await upload.close()
    assert file.calls == [
        ("write", True),
        ("write", True),
        ("seek", True),
        ("read", True),
        ("seek", True),
        ("read", True),
        ("close", True),
    ]


async def test_upload_file_unlimited_spool_never_blocks() -> None:
    file = ThreadRecordingFile(max_size=0)
    upload = UploadFile(file)
    await upload.write(b"x" * 100_000)
    assert file.calls == [("write", True)]
    assert upload.size is None
    await upload.close()


async def test_upload_file_moves_to_a_thread_when_it_rolls_over() -> None:
    file = ThreadRecordingFile(max_size=10)
    upload = UploadFile(file, size=0)
    await upload.write(b"12345")  # fits
    await upload.write(b"1234567890")  # this write rolls the file over to disk
    assert file._rolled
    await upload.write(b"more")  # on disk
    await upload.seek(0)
    assert await upload.read() == b"123451234567890more"
    await upload.close()
    assert upload.size == 19
    assert file.calls == [
        ("write", True),
        ("write", False),
        ("write", False),
        ("seek", False),
        ("read", False),
        ("close", False),
    ]


async def test_upload_file_that_is_not_spooled_always_uses_a_thread() -> None:
    file = PlainRecordingFile()
    upload = UploadFile(file)
    await upload.write(b"data")
    await upload.seek(0)
    assert await upload.read() == b"data"
    await upload.close()
    assert file.calls == [("write", False), ("seek", False), ("read", False), ("close", False)]


def test_upload_file_attributes_and_repr() -> None:
    headers = Headers({"content-type": "text/plain"})
    upload = UploadFile(io.BytesIO(), size=3, filename="a.txt", headers=headers)
    assert upload.filename == "a.txt"
    assert upload.size == 3
    assert upload.headers is headers
    assert upload.content_type == "text/plain"
    assert repr(upload) == "UploadFile(filename='a.txt', size=3, headers=Headers({'content-type': 'text/plain'}))"
    bare = UploadFile(io.BytesIO())
    assert bare.headers == Headers()
    assert bare.content_type is None
    assert bare.filename is None


async def test_form_data_close_closes_only_uploads() -> None:
    first, second = ThreadRecordingFile(), ThreadRecordingFile()
    form = FormData([("name", "value"), ("f", UploadFile(first)), ("f", UploadFile(second))], extra="x")
    assert form["name"] == "value"
    assert form["extra"] == "x"
    assert [u.file if isinstance(u, UploadFile) else u for u in form.getlist("f")] == [first, second]
    await form.close()
    assert first.closed
    assert second.closed


def test_form_data_construction() -> None:
    form = FormData({"a": "1"})
    assert form.multi_items() == [("a", "1")]
    assert FormData(form) == form
    assert repr(FormData([("a", "1")])) == "FormData([('a', '1')])"


# --------------------------------------------------------------------------- Headers


def test_headers_from_mapping_lowercases_names() -> None:
    headers = Headers({"Content-Type": "text/html", "X-Thing": "é"})
    assert headers.raw == [(b"content-type", b"text/html"), (b"x-thing", "é".encode("latin-1"))]
    assert headers["x-thing"] == "é"


def test_headers_lookups_are_case_insensitive() -> None:
    headers = Headers(raw=[(b"a", b"123"), (b"b", b"456"), (b"a", b"789")])
    assert headers["A"] == "123"
    assert headers["a"] == "123"
    assert headers.get("a") == "123"
    assert headers.get("B") == "456"
    assert headers.get("missing") is None
    assert headers.get("missing", "default") == "default"
    assert headers.getlist("A") == ["123", "789"]
    assert headers.getlist("missing") == []
    assert "A" in headers
    assert "missing" not in headers
    assert 1 not in headers  # type: ignore[comparison-overlap]  # a key that is not a str is the point
    with pytest.raises(KeyError, match="'Missing'"):
        headers["Missing"]


def test_headers_views_keep_duplicates() -> None:
    headers = Headers(raw=[(b"a", b"123"), (b"b", b"456"), (b"a", b"789")])
    assert headers.keys() == ["a", "b", "a"]
    assert headers.values() == ["123", "456", "789"]
    assert headers.items() == [("a", "123"), ("b", "456"), ("a", "789")]
    assert list(headers) == ["a", "b", "a"]
    assert len(headers) == 3
    assert dict(headers) == {"a": "123", "b": "456"}


def test_headers_raw_is_a_copy() -> None:
    raw = [(b"a", b"1")]
    headers = Headers(raw=raw)
    assert headers.raw == raw
    assert headers.raw is not raw
    headers.raw.append((b"b", b"2"))
    assert len(headers) == 1


def test_headers_empty() -> None:
    headers = Headers()
    assert headers.raw == []
    assert len(headers) == 0
    assert repr(headers) == "Headers({})"


def test_headers_from_scope_uses_the_list_as_it_is() -> None:
    raw = [(b"host", b"example.org")]
    scope = {"headers": raw}
    headers = Headers(scope=scope)
    assert headers._list is raw
    assert scope["headers"] is raw
    raw.append((b"accept", b"*/*"))
    assert headers["accept"] == "*/*"


def test_headers_from_scope_turns_a_tuple_into_a_shared_list() -> None:
    scope: dict[str, Any] = {"headers": ((b"host", b"example.org"),)}
    headers = MutableHeaders(scope=scope)
    assert scope["headers"] == [(b"host", b"example.org")]
    headers["x"] = "1"
    assert scope["headers"] == [(b"host", b"example.org"), (b"x", b"1")]


@pytest.mark.parametrize(
    ("kwargs", "given"),
    [
        ({"headers": {}, "raw": []}, '"headers" and "raw"'),
        ({"headers": {}, "scope": {"headers": []}}, '"headers" and "scope"'),
        ({"raw": [], "scope": {"headers": []}}, '"raw" and "scope"'),
        ({"headers": {}, "raw": [], "scope": {"headers": []}}, '"headers" and "raw"'),
    ],
)
@pytest.mark.parametrize("cls", [Headers, MutableHeaders])
def test_headers_take_one_source(cls: type[Headers], kwargs: dict[str, Any], given: str) -> None:
    with pytest.raises(  # as Starlette's assert, with its message first
        AssertionError,
        match=rf"^Cannot set both {given}: pass at most one of 'headers', 'raw' and 'scope' to {cls.__name__}\(\)\.",
    ):
        cls(**kwargs)


def test_headers_equality() -> None:
    headers = Headers(raw=[(b"a", b"1"), (b"b", b"2")])
    assert headers == Headers(raw=[(b"b", b"2"), (b"a", b"1")])
    assert headers == MutableHeaders({"A": "1", "B": "2"})
    assert headers != Headers(raw=[(b"a", b"1")])
    assert headers != {"a": "1", "b": "2"}
    with pytest.raises(TypeError, match="unhashable type"):
        hash(headers)


def test_headers_repr() -> None:
    assert repr(Headers({"a": "1"})) == "Headers({'a': '1'})"
    assert repr(Headers(raw=[(b"a", b"1"), (b"a", b"2")])) == "Headers(raw=[(b'a', b'1'), (b'a', b'2')])"
    assert repr(MutableHeaders({"a": "1"})) == "MutableHeaders({'a': '1'})"


def test_headers_mutablecopy_is_independent() -> None:
    headers = Headers({"a": "1"})
    copied = headers.mutablecopy()
    assert isinstance(copied, MutableHeaders)
    copied["a"] = "2"
    assert headers["a"] == "1"
    assert copied["a"] == "2"


def test_headers_from_non_latin1_name_fails_clearly() -> None:
    with pytest.raises(UnicodeEncodeError, match="latin-1"):
        Headers({"naïve-€": "x"})


# --------------------------------------------------------------------------- MutableHeaders


def test_mutable_headers_setitem_replaces_in_place_of_first() -> None:
    headers = MutableHeaders(raw=[(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"c", b"4"), (b"a", b"5")])
    headers["A"] = "new"
    assert headers.raw == [(b"a", b"new"), (b"b", b"2"), (b"c", b"4")]
    headers["D"] = "appended"
    assert headers.raw[-1] == (b"d", b"appended")


def test_mutable_headers_change_the_scope_list_in_place() -> None:
    raw = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]
    scope = {"headers": raw}
    headers = MutableHeaders(scope=scope)
    headers["a"] = "x"
    headers.append("c", "y")
    del headers["b"]
    headers.setdefault("d", "z")
    assert scope["headers"] is raw
    assert raw == [(b"a", b"x"), (b"c", b"y"), (b"d", b"z")]
    assert headers.raw is raw


def test_mutable_headers_delitem() -> None:
    headers = MutableHeaders(raw=[(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
    del headers["A"]
    assert headers.raw == [(b"b", b"2")]
    del headers["absent"]  # no error, as in Starlette
    assert headers.raw == [(b"b", b"2")]


def test_mutable_headers_append_keeps_duplicates() -> None:
    headers = MutableHeaders()
    headers.append("Set-Cookie", "a=1")
    headers.append("set-cookie", "b=2")
    assert headers.getlist("set-cookie") == ["a=1", "b=2"]


def test_mutable_headers_setdefault() -> None:
    headers = MutableHeaders({"a": "1"})
    assert headers.setdefault("A", "2") == "1"
    assert headers.setdefault("b", "3") == "3"
    assert headers.raw == [(b"a", b"1"), (b"b", b"3")]


def test_mutable_headers_update() -> None:
    headers = MutableHeaders(raw=[(b"a", b"1"), (b"a", b"2")])
    headers.update({"A": "3", "b": "4"})
    assert headers.raw == [(b"a", b"3"), (b"b", b"4")]


def test_mutable_headers_or_and_ior() -> None:
    headers = MutableHeaders({"a": "1"})
    merged = headers | {"b": "2"}
    assert isinstance(merged, MutableHeaders)
    assert merged.raw == [(b"a", b"1"), (b"b", b"2")]
    assert headers.raw == [(b"a", b"1")]
    same = headers
    headers |= {"a": "3"}
    assert headers is same
    assert headers.raw == [(b"a", b"3")]
    headers |= Headers({"c": "4"})
    assert headers["c"] == "4"


def test_mutable_headers_or_rejects_non_mappings() -> None:
    headers = MutableHeaders()
    with pytest.raises(TypeError, match=r"Can only merge a mapping with MutableHeaders, got list\."):
        headers | [("a", "1")]  # type: ignore[operator]  # a list is the point
    with pytest.raises(TypeError, match=r"Can only merge a mapping into MutableHeaders, got str\."):
        headers |= "a"  # type: ignore[arg-type]  # a str is the point


def test_mutable_headers_add_vary_header() -> None:
    headers = MutableHeaders()
    headers.add_vary_header("Origin")
    assert headers["vary"] == "Origin"
    headers.append("Vary", "Cookie")
    headers.add_vary_header("Accept-Encoding")
    assert headers.raw == [(b"vary", b"Origin, Cookie, Accept-Encoding")]


# --------------------------------------------------------------------------- State


def test_state_attributes() -> None:
    state = State()
    state.user = "ada"
    assert state.user == "ada"
    assert state["user"] == "ada"
    del state.user
    with pytest.raises(AttributeError, match=r"^'State' object has no attribute 'user'$"):
        state.user  # noqa: B018


def test_state_missing_attribute_error_names_it() -> None:
    with pytest.raises(AttributeError, match=r"^'State' object has no attribute 'x'$") as info:
        State().x  # noqa: B018
    assert info.value.name == "x"


def test_state_delete_missing_attribute() -> None:
    with pytest.raises(AttributeError, match=r"^'State' object has no attribute 'x'$"):
        del State().x


def test_state_subclass_name_in_error() -> None:
    class AppState(State):
        pass

    with pytest.raises(AttributeError, match=r"'AppState' object has no attribute 'x'"):
        AppState().x  # noqa: B018


def test_state_items_and_iteration() -> None:
    backing = {"a": 1}
    state = State(backing)
    state["b"] = 2
    assert backing == {"a": 1, "b": 2}  # the dict given is used, not copied
    assert state.a == 1
    assert list(state) == ["a", "b"]
    assert len(state) == 2
    del state["a"]
    assert list(state) == ["b"]
    with pytest.raises(KeyError, match="'a'"):
        state["a"]
    assert repr(state) == "State({'b': 2})"


def test_state_copy_and_pickle() -> None:
    state = State({"a": 1})
    shallow = copy.copy(state)
    assert shallow.a == 1
    deep = copy.deepcopy(state)
    deep.a = 2
    assert state.a == 1
    restored = pickle.loads(pickle.dumps(state))
    assert restored.a == 1
