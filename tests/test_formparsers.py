"""Form parsing: urlencoded bodies, multipart bodies, their limits and their advisories."""

from __future__ import annotations

import importlib.metadata
import re
import tempfile
import tomllib
import tracemalloc
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from python_multipart import QuerystringParser

from triolette import formparsers
from triolette.datastructures import FormData, Headers, UploadFile
from triolette.exceptions import TrioletteDeprecationWarning
from triolette.formparsers import (
    FormMessage,
    FormParser,
    MultiPartException,
    MultiPartParser,
    MultipartPart,
)

URLENCODED = Headers({"content-type": "application/x-www-form-urlencoded"})
MULTIPART = Headers({"content-type": "multipart/form-data; boundary=B"})


async def chunks(*parts: bytes) -> AsyncGenerator[bytes, None]:
    for part in parts:
        yield part


def split_every(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


async def values(form: FormData) -> list[tuple[str, Any]]:
    """The form's items, with each file shown as (filename, content type, size, content)."""
    out: list[tuple[str, Any]] = []
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            out.append((name, (value.filename, value.content_type, value.size, await value.read())))
        else:
            out.append((name, value))
    return out


# --------------------------------------------------------------------------- urlencoded


async def parse_urlencoded(*parts: bytes, **limits: Any) -> list[tuple[str, Any]]:
    return await values(await FormParser(URLENCODED, chunks(*parts), **limits).parse())


@pytest.fixture(params=["in one call", "field by field"])
def both_paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the test on a small body's path and on a large body's, in the smallest slices."""
    if request.param == "field by field":
        monkeypatch.setattr(FormParser, "small_body_size", -1)
        monkeypatch.setattr(FormParser, "slice_size", 3)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", []),
        (b"a", [("a", "")]),
        (b"a=", [("a", "")]),
        (b"=", [("", "")]),
        (b"=b", [("", "b")]),
        (b"a=1&b=2", [("a", "1"), ("b", "2")]),
        (b"x=1&x=2", [("x", "1"), ("x", "2")]),
        (b"a=1&&b=2", [("a", "1"), ("b", "2")]),
        (b"&a=1", [("a", "1")]),
        (b"a=1&", [("a", "1")]),
        (b"&&", []),
        (b"a&b=", [("a", ""), ("b", "")]),
        (b"a=1;b=2", [("a", "1;b=2")]),
        (b"a=1=2", [("a", "1=2")]),
        (b"a==", [("a", "=")]),
        (b"a+b=c+d", [("a b", "c d")]),
        (b"a=%26%3D", [("a", "&=")]),
        (b"%C3%A9=%E2%82%AC", [("é", "€")]),
        (b" a = b ", [(" a ", " b ")]),
        (b"a=b\r\n", [("a", "b\r\n")]),
        (b"%00=%00", [("\x00", "\x00")]),
        # as Starlette: malformed escapes stay, invalid UTF-8 escapes become U+FFFD,
        # raw non-ASCII bytes are read as latin-1
        (b"a=%20%zz%", [("a", " %zz%")]),
        (b"a=%ff%fe", [("a", "\ufffd\ufffd")]),
        (b"a=%e2%82", [("a", "\ufffd")]),
        ("a=é".encode(), [("a", "Ã©")]),
        ("a=é".encode("latin-1"), [("a", "é")]),
    ],
)
async def test_urlencoded(body: bytes, expected: list[tuple[str, str]], both_paths: None) -> None:
    assert await parse_urlencoded(body) == expected


async def test_urlencoded_chunk_boundaries_anywhere(both_paths: None) -> None:
    body = b"name=J%C3%B6rg+M&x=1&&empty=&flag&long=" + b"z" * 40
    expected = await parse_urlencoded(body)
    assert expected == [("name", "Jörg M"), ("x", "1"), ("empty", ""), ("flag", ""), ("long", "z" * 40)]
    for cut in range(len(body) + 1):
        assert await parse_urlencoded(body[:cut], b"", body[cut:]) == expected
    assert await parse_urlencoded(*split_every(body, 1)) == expected


async def test_urlencoded_reads_any_async_iterable() -> None:
    class Body:
        def __aiter__(self) -> AsyncIterator[bytes]:
            return chunks(b"a=1&", b"b=2")

    form = await FormParser(URLENCODED, Body()).parse()
    assert form.multi_items() == [("a", "1"), ("b", "2")]


@pytest.mark.parametrize(
    ("body", "max_fields"),
    [
        (b"", 0),
        (b"&&&", 0),
        (b"a=1&b=2", 2),
        (b"a=1&b=2&", 2),
        (b"&a=1&&&b=2&&", 2),
        (b"a&b&c", 3.5),
        (b"a&" * 5000, float("inf")),
    ],
)
async def test_urlencoded_max_fields_counts_only_fields(body: bytes, max_fields: float, both_paths: None) -> None:
    form = await FormParser(URLENCODED, chunks(body), max_fields=max_fields).parse()
    assert len(form.multi_items()) == body.count(b"a") + body.count(b"b") + body.count(b"c")


@pytest.mark.parametrize(
    ("body", "max_fields"),
    [(b"a", 0), (b"a=1&b=2&c=3", 2), (b"a=1&&b=2&&c", 2), (b"a&b&c&d", 3.5), (b"x=1&" * 1001, 1000)],
)
async def test_urlencoded_too_many_fields(body: bytes, max_fields: float, both_paths: None) -> None:
    """CVE-2023-30798: the number of fields is bounded."""
    with pytest.raises(MultiPartException, match=rf"^Too many fields\. Maximum number of fields is {max_fields}\.$"):
        await FormParser(URLENCODED, chunks(body), max_fields=max_fields).parse()


@pytest.mark.parametrize(
    ("body", "max_part_size"),
    [(b"ab=c", 3), (b"abc", 3), (b"a=1&b=2&c=3", 3), (b"a=" + b"x" * 1023 + b"&b=1", 1024)],
)
async def test_urlencoded_field_size_within_limit(body: bytes, max_part_size: int, both_paths: None) -> None:
    form = await FormParser(URLENCODED, chunks(body), max_part_size=max_part_size).parse()
    assert form


@pytest.mark.parametrize(
    ("body", "max_part_size", "kb"),
    [(b"ab=cd", 3, 0), (b"abcd", 3, 0), (b"a=1&bb=22", 3, 0), (b"a=" + b"x" * 1024 + b"&b=1", 1024, 1)],
)
async def test_urlencoded_field_too_large(body: bytes, max_part_size: int, kb: int, both_paths: None) -> None:
    with pytest.raises(MultiPartException, match=rf"^Field exceeded maximum size of {kb}KB\.$"):
        await FormParser(URLENCODED, chunks(body), max_part_size=max_part_size).parse()


MIB = 1024 * 1024


def escapes(size: int) -> bytes:
    """``size`` bytes of ``%41`` escapes (``size`` a multiple of 3)."""
    return b"%41" * (size // 3)


async def parse_with_peak_memory(body: bytes, **limits: Any) -> tuple[FormData | Exception, int]:
    """Parse ``body``; return the form (or the error) and the most memory held at once beyond the body."""
    tracemalloc.start()
    try:
        try:
            result: FormData | Exception = await FormParser(URLENCODED, chunks(body), **limits).parse()
        except MultiPartException as exc:
            result = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


async def test_urlencoded_15_mib_field_of_escapes_is_refused_before_decoding() -> None:
    body = b"f=" + escapes(15 * MIB)
    error, peak = await parse_with_peak_memory(body)
    assert isinstance(error, MultiPartException)
    assert error.message == "Field exceeded maximum size of 1024KB."
    # the body is joined from its chunks once; nothing is decoded
    assert peak < 1.5 * len(body)


async def test_urlencoded_15_fields_of_1_mib_escapes_in_bounded_memory() -> None:
    body = b"&".join(b"f%d=" % i + escapes(MIB - 6) for i in range(15))
    form, peak = await parse_with_peak_memory(body)
    assert isinstance(form, FormData)
    assert form.getlist("f0") == ["A" * ((MIB - 6) // 3)]
    assert len(form.multi_items()) == 15
    # the joined body, the decoded values (a third of it) and one slice in flight
    assert peak < 2 * len(body)


async def test_urlencoded_large_body_checks_the_field_count_before_decoding() -> None:
    body = b"&".join([escapes(3 * 1000)] * 1001)
    with pytest.raises(MultiPartException, match=r"^Too many fields\. Maximum number of fields is 1000\.$"):
        await FormParser(URLENCODED, chunks(body)).parse()


class StepCounter(trio.abc.Instrument):
    """Counts the steps of one task: the stretches it runs between two checkpoints."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_urlencoded_large_body_yields_between_slices() -> None:
    body = b"&".join(b"f%d=" % i + escapes(MIB - 6) for i in range(4))
    parser = FormParser(URLENCODED, chunks(body))
    counter = StepCounter(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(counter)
    try:
        form = await parser.parse()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert len(form.multi_items()) == 4
    # one step per 64 KiB slice at least: no step decodes much more than a slice
    assert counter.steps >= len(body) // FormParser.slice_size


async def test_urlencoded_many_fields_without_a_limit_yield_while_they_are_found() -> None:
    body = b"a=1&" * 50_000
    counter = StepCounter(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(counter)
    try:
        form = await FormParser(URLENCODED, chunks(body), max_fields=float("inf")).parse()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert form.getlist("a") == ["1"] * 50_000
    # 5 checkpoints while finding the fields (one per 10 000), 1 while decoding their 100 000 bytes
    assert counter.steps >= 5 + 1


async def test_urlencoded_small_body_is_parsed_without_yielding() -> None:
    body = b"&".join(b"f%d=v%d" % (i, i) for i in range(50))
    counter = StepCounter(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(counter)
    try:
        form = await FormParser(URLENCODED, chunks(body)).parse()
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert len(form) == 50
    assert counter.steps <= 2


def drive_hooks(parser: FormParser, body: bytes) -> list[tuple[str, str | UploadFile]]:
    """Run Starlette's streaming callbacks, as code written against them does."""
    qs = QuerystringParser(
        {
            "on_field_start": parser.on_field_start,
            "on_field_name": parser.on_field_name,
            "on_field_data": parser.on_field_data,
            "on_field_end": parser.on_field_end,
        }
    )
    qs.write(body)
    qs.finalize()
    return parser._items


async def test_urlencoded_hooks_give_the_same_fields_as_parse() -> None:
    body = b"a=1&&b+c=%C3%A9&flag&=x"
    parsed = await FormParser(URLENCODED, chunks(body)).parse()
    assert drive_hooks(FormParser(URLENCODED, chunks()), body) == parsed.multi_items()


async def test_urlencoded_hooks_enforce_the_limits() -> None:
    with pytest.raises(MultiPartException, match=r"^Too many fields\. Maximum number of fields is 1\.$"):
        drive_hooks(FormParser(URLENCODED, chunks(), max_fields=1), b"a=1&b=2")
    with pytest.raises(MultiPartException, match=r"^Field exceeded maximum size of 0KB\.$"):
        drive_hooks(FormParser(URLENCODED, chunks(), max_part_size=3), b"abcd=")
    with pytest.raises(MultiPartException, match=r"^Field exceeded maximum size of 0KB\.$"):
        drive_hooks(FormParser(URLENCODED, chunks(), max_part_size=3), b"a=bcd")


# --------------------------------------------------------------------------- multipart


def part(disposition: bytes, data: bytes, *headers: bytes, boundary: bytes = b"B") -> bytes:
    lines = [b"Content-Disposition: " + disposition, *headers]
    return b"--" + boundary + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n" + data + b"\r\n"


def field(name: str, value: bytes, *headers: bytes) -> bytes:
    return part(f'form-data; name="{name}"'.encode(), value, *headers)


def file(name: str, filename: str, data: bytes, content_type: bytes = b"text/plain") -> bytes:
    disposition = f'form-data; name="{name}"; filename="{filename}"'.encode()
    return part(disposition, data, b"Content-Type: " + content_type)


END = b"--B--\r\n"


class RecordingSpool(tempfile.SpooledTemporaryFile[bytes]):
    """A SpooledTemporaryFile that remembers every instance, to check they get closed."""

    made: list[RecordingSpool]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.made.append(self)


@pytest.fixture
def spools(monkeypatch: pytest.MonkeyPatch) -> list[RecordingSpool]:
    made: list[RecordingSpool] = []
    monkeypatch.setattr(RecordingSpool, "made", made, raising=False)
    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", RecordingSpool)
    return made


async def parse_multipart(*parts: bytes, headers: Headers = MULTIPART, **limits: Any) -> list[tuple[str, Any]]:
    form = await MultiPartParser(headers, chunks(*parts), **limits).parse()
    try:
        return await values(form)
    finally:
        await form.close()


HELLO = b"Hello\r\n-- B\r\n--\r\nworld\r\n-"
BODY = (
    field("a", b"1")
    + file("upload", "hello.txt", HELLO)
    + field("a", "é".encode())
    + file("empty", "", b"", b"application/octet-stream")
    + END
)
EXPECTED = [
    ("a", "1"),
    ("upload", ("hello.txt", "text/plain", len(HELLO), HELLO)),
    ("a", "é"),
    ("empty", ("", "application/octet-stream", 0, b"")),
]


async def test_multipart_fields_and_files() -> None:
    assert await parse_multipart(BODY) == EXPECTED


async def test_multipart_upload_file_details() -> None:
    form = await MultiPartParser(MULTIPART, chunks(BODY)).parse()
    upload = form["upload"]
    assert isinstance(upload, UploadFile)
    assert upload.headers.raw == [
        (b"content-disposition", b'form-data; name="upload"; filename="hello.txt"'),
        (b"content-type", b"text/plain"),
    ]
    assert upload.file.tell() == 0
    await form.close()
    assert upload.file.closed


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
async def test_multipart_chunks_of_any_size(size: int) -> None:
    assert await parse_multipart(*split_every(BODY, size)) == EXPECTED


async def test_multipart_chunk_boundary_anywhere() -> None:
    for cut in range(len(BODY) + 1):
        assert await parse_multipart(BODY[:cut], BODY[cut:]) == EXPECTED


async def test_multipart_header_names_are_lowercased_and_values_kept() -> None:
    body = part(b'form-data; name="f"; filename="x"', b"1", b"CONTENT-TYPE: Text/Plain", b"X-Extra:  v ") + END
    form = await MultiPartParser(MULTIPART, chunks(*split_every(body, 5))).parse()
    upload = form["f"]
    assert isinstance(upload, UploadFile)
    assert upload.headers.raw[1:] == [(b"content-type", b"Text/Plain"), (b"x-extra", b"v ")]
    assert upload.content_type == "Text/Plain"
    await form.close()


async def test_multipart_large_file_rolls_to_disk(spools: list[RecordingSpool]) -> None:
    data = bytes(range(256)) * 4096 * 3  # 3 MiB, over the 1 MiB spool
    form = await MultiPartParser(MULTIPART, chunks(*split_every(file("f", "big.bin", data) + END, 65536))).parse()
    upload = form["f"]
    assert isinstance(upload, UploadFile)
    assert spools[0]._rolled  # type: ignore[attr-defined]  # private; asking via fileno() would roll it over
    assert upload.size == len(data)
    assert await upload.read() == data
    await form.close()
    assert spools[0].closed


async def test_multipart_files_are_not_bounded_by_max_part_size() -> None:
    assert await parse_multipart(file("f", "x", b"y" * 5000) + END, max_part_size=1024) == [
        ("f", ("x", "text/plain", 5000, b"y" * 5000))
    ]


@pytest.mark.parametrize(
    ("content_type", "value", "expected"),
    [
        ("multipart/form-data; boundary=B", "é".encode(), "é"),
        ('multipart/form-data; boundary="B"', "é".encode(), "é"),
        ("multipart/form-data; boundary=B; charset=latin-1", "é".encode("latin-1"), "é"),
        ("multipart/form-data; boundary=B; charset=UTF-16", "é".encode("utf-16"), "é"),
        # a value that does not decode falls back to latin-1
        ("multipart/form-data; boundary=B", "é".encode("latin-1"), "é"),
        ("multipart/form-data; boundary=B; charset=undefined", b"\xe9", "é"),
        # an unknown charset, or one that is not a text encoding, means latin-1
        ("multipart/form-data; boundary=B; charset=bogus", "é".encode(), "Ã©"),
        ("multipart/form-data; boundary=B; charset=base64", "é".encode(), "Ã©"),
        ("multipart/form-data; boundary=B; charset=", "é".encode(), "Ã©"),
    ],
)
async def test_multipart_charset(content_type: str, value: bytes, expected: str) -> None:
    headers = Headers({"content-type": content_type})
    assert await parse_multipart(field("a", value) + END, headers=headers) == [("a", expected)]


async def test_multipart_names_and_filenames_use_the_charset() -> None:
    body = part('form-data; name="é"; filename="ü.txt"'.encode(), b"1") + END
    assert await parse_multipart(body) == [("é", ("ü.txt", None, 1, b"1"))]
    headers = Headers({"content-type": "multipart/form-data; boundary=B; charset=latin-1"})
    assert await parse_multipart(body, headers=headers) == [("Ã©", ("Ã¼.txt", None, 1, b"1"))]


async def test_multipart_charset_field_is_an_ordinary_field() -> None:
    # As in Starlette 1.10: a `_charset_` part does not change how later parts are decoded.
    body = field("_charset_", b"latin-1") + field("a", "é".encode()) + END
    assert await parse_multipart(body) == [("_charset_", "latin-1"), ("a", "é")]


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        # RFC 7578 forbids filename*; python-multipart ignores it and plain filename wins
        (b'form-data; name="f"; filename="a.txt"; filename*=UTF-8\'\'b.txt', ("f", ("a.txt", None, 1, b"1"))),
        (b"form-data; name=\"f\"; filename*=UTF-8''b.txt", ("f", "1")),
        (b'form-data; name="f"; filename="C:\\\\dir\\\\a.txt"', ("f", ("a.txt", None, 1, b"1"))),
        (b'form-data; name="f"; filename=""', ("f", ("", None, 1, b"1"))),
        (b"form-data; name=f", ("f", "1")),
        (b'attachment; name="f"', ("f", "1")),
    ],
)
async def test_multipart_content_disposition(disposition: bytes, expected: tuple[str, Any]) -> None:
    assert await parse_multipart(part(disposition, b"1") + END) == [expected]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        END,
        b"--B--",
        field("a", b"1") + b"--B--",
        field("a", b"1") + END + b"epilogue\r\n",
    ],
)
async def test_multipart_edges_of_the_body(body: bytes) -> None:
    assert await parse_multipart(body) == ([("a", "1")] if b"name" in body else [])


async def test_multipart_truncated_body_drops_the_open_part(spools: list[RecordingSpool]) -> None:
    # As Starlette: the body ended before the part did, so the part is not in the form;
    # unlike Starlette, its file is closed.
    body = field("a", b"1") + file("f", "x.txt", b"partial data")[:-2]
    assert await parse_multipart(body) == [("a", "1")]
    assert len(spools) == 1
    assert spools[0].closed
    assert await parse_multipart(field("a", b"1") + field("b", b"2")[:-2]) == [("a", "1")]


@pytest.mark.parametrize(
    "content_type",
    [None, "multipart/form-data", "multipart/form-data; charset=utf-8", "multipart/form-data; boundary="],
)
async def test_multipart_missing_boundary(content_type: str | None) -> None:
    headers = Headers({} if content_type is None else {"content-type": content_type})
    with pytest.raises(MultiPartException, match=r"^Missing boundary in multipart\.$"):
        await parse_multipart(field("a", b"1") + END, headers=headers)


@pytest.mark.parametrize(
    "body",
    [
        b"--B\r\n\r\nx\r\n" + END,
        b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n" + END,
        part(b'form-data; filename="a.txt"', b"1") + END,
        part(b"form-data", b"1") + END,
    ],
)
async def test_multipart_part_without_name(body: bytes) -> None:
    with pytest.raises(MultiPartException, match=r'^The Content-Disposition header field "name" must be provided\.$'):
        await parse_multipart(body)


@pytest.mark.parametrize(
    "body",
    [
        b"garbage",
        b"preamble\r\n" + field("a", b"1") + END,
        b"--B\r\nBad Header: 1\r\n\r\n1\r\n" + END,
        b"--B\r\n: empty name\r\n\r\n1\r\n" + END,
        b"--X\r\n" + field("a", b"1")[5:] + END,
    ],
)
async def test_multipart_invalid_data(body: bytes) -> None:
    with pytest.raises(MultiPartException, match=r"^Invalid multipart data\.$") as info:
        await parse_multipart(body)
    assert info.value.message == "Invalid multipart data."


async def test_multipart_too_many_fields(spools: list[RecordingSpool]) -> None:
    """CVE-2023-30798: the number of text parts is bounded, and files already open get closed."""
    assert await parse_multipart(field("a", b"1") * 2 + END, max_fields=2) == [("a", "1"), ("a", "1")]
    body = file("f", "x", b"data") + field("a", b"1") * 3 + END
    with pytest.raises(MultiPartException, match=r"^Too many fields\. Maximum number of fields is 2\.$"):
        await parse_multipart(body, max_fields=2)
    assert [spool.closed for spool in spools] == [True]


async def test_multipart_too_many_files(spools: list[RecordingSpool]) -> None:
    """CVE-2023-30798: the number of files is bounded, and those already open get closed."""
    body = b"".join(file("f", f"{i}.txt", b"x" * i) for i in range(3)) + END
    with pytest.raises(MultiPartException, match=r"^Too many files\. Maximum number of files is 2\.$"):
        await parse_multipart(body, max_files=2)
    assert len(spools) == 2
    assert all(spool.closed for spool in spools)
    spools.clear()
    assert len(await parse_multipart(body, max_files=3)) == 3
    assert all(spool.closed for spool in spools)


async def test_multipart_fields_and_files_are_counted_apart() -> None:
    body = field("a", b"1") + file("f", "x", b"") + field("b", b"2") + END
    assert len(await parse_multipart(body, max_fields=2, max_files=1)) == 3


@pytest.mark.parametrize("chunk_size", [1, 100, 100_000])
async def test_multipart_text_part_over_max_part_size(chunk_size: int) -> None:
    """CVE-2024-47874: a part without a filename is not buffered past max_part_size."""
    assert await parse_multipart(*split_every(field("a", b"x" * 1024) + END, chunk_size), max_part_size=1024) == [
        ("a", "x" * 1024)
    ]
    body = field("a", b"x" * 1025) + END
    with pytest.raises(MultiPartException, match=r"^Part exceeded maximum size of 1KB\.$"):
        await parse_multipart(*split_every(body, chunk_size), max_part_size=1024)


async def test_multipart_default_max_part_size_is_one_mib() -> None:
    with pytest.raises(MultiPartException, match=r"^Part exceeded maximum size of 1024KB\.$"):
        await parse_multipart(field("a", b"x" * (1024 * 1024 + 1)) + END)


async def test_multipart_too_many_part_headers() -> None:
    """python-multipart's own limit on the number of headers in a part."""
    headers = [f"X-H{i}: v".encode() for i in range(7)]
    assert await parse_multipart(field("a", b"1", *headers) + END) == [("a", "1")]
    with pytest.raises(MultiPartException, match=r"^Invalid multipart data: a part has too many headers\.$"):
        await parse_multipart(field("a", b"1", *headers, b"X-H7: v") + END)


async def test_multipart_part_header_too_large() -> None:
    """python-multipart's own limit on the size of a part's header line."""
    with pytest.raises(MultiPartException, match=r"^Invalid multipart data: a part's header is too large\.$"):
        await parse_multipart(*split_every(field("a", b"1", b"X-Big: " + b"v" * 5000) + END, 1000))


async def test_multipart_boundary_too_long() -> None:
    """python-multipart's own limit on the length of the boundary."""
    boundary = "b" * 300
    headers = Headers({"content-type": f"multipart/form-data; boundary={boundary}"})
    body = part(b'form-data; name="a"', b"1", boundary=boundary.encode()) + f"--{boundary}--".encode()
    with pytest.raises(MultiPartException, match=r"^Invalid multipart data: the boundary is too long\.$"):
        await parse_multipart(body, headers=headers)


async def test_multipart_stream_error_closes_files_and_propagates(spools: list[RecordingSpool]) -> None:
    class Disconnected(Exception):
        pass

    async def body() -> AsyncGenerator[bytes, None]:
        yield file("f", "x", b"done") + file("g", "y", b"half")[:-4]
        raise Disconnected("client went away")

    with pytest.raises(Disconnected, match="client went away"):
        await MultiPartParser(MULTIPART, body()).parse()
    assert len(spools) == 2
    assert all(spool.closed for spool in spools)


async def test_multipart_cancelled_mid_body_closes_files_and_the_stream(
    spools: list[RecordingSpool], autojump_clock: trio.testing.MockClock
) -> None:
    stream_closed = False

    async def body() -> AsyncGenerator[bytes, None]:
        nonlocal stream_closed
        try:
            yield file("f", "x", b"some")[:-4]
            await trio.sleep_forever()
        finally:
            stream_closed = True

    with trio.move_on_after(5) as scope:
        await MultiPartParser(MULTIPART, body()).parse()
    assert scope.cancelled_caught
    assert trio.current_time() == 5
    assert stream_closed
    assert len(spools) == 1
    assert spools[0].closed


async def test_multipart_error_closes_the_stream() -> None:
    closed = False

    async def body() -> AsyncGenerator[bytes, None]:
        nonlocal closed
        try:
            yield b"garbage"
            yield field("a", b"1") + END
        finally:
            closed = True

    with pytest.raises(MultiPartException, match=r"^Invalid multipart data\.$"):
        await MultiPartParser(MULTIPART, body()).parse()
    assert closed


async def test_multipart_items_attribute_holds_the_parsed_parts() -> None:
    parser = MultiPartParser(MULTIPART, chunks(field("a", b"1") + field("b", b"2") + END))
    form = await parser.parse()
    assert parser.items == form.multi_items() == [("a", "1"), ("b", "2")]


# --------------------------------------------------------------------------- the module


def test_form_message_is_deprecated() -> None:
    assert FormMessage.FIELD_START.value == 1
    assert [m.name for m in FormMessage] == ["FIELD_START", "FIELD_NAME", "FIELD_DATA", "FIELD_END", "END"]
    with pytest.warns(TrioletteDeprecationWarning, match=r"`FormMessage` is deprecated"):
        assert FormMessage(5) is FormMessage.END


def test_multipart_part_defaults() -> None:
    part = MultipartPart()
    assert part == MultipartPart(None, "", bytearray(), None, [])
    assert part.data is not MultipartPart().data


def test_multipart_exception_message() -> None:
    exc = MultiPartException("Too many files.")
    assert exc.message == str(exc) == "Too many files."


def test_all_is_sorted() -> None:
    assert list(formparsers.__all__) == sorted(formparsers.__all__)
    assert all(hasattr(formparsers, name) for name in formparsers.__all__)


def test_python_multipart_is_recent_enough() -> None:
    """python-multipart's advisories up to 0.0.31 (header and boundary limits) must stay fixed."""
    version = tuple(int(n) for n in re.findall(r"\d+", importlib.metadata.version("python-multipart"))[:3])
    assert version >= (0, 0, 31)
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    forms = pyproject["project"]["optional-dependencies"]["forms"]
    assert forms == ["python-multipart>=0.0.31"]
    assert "python-multipart>=0.0.31" in pyproject["project"]["optional-dependencies"]["full"]
