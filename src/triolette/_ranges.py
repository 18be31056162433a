"""HTTP Range requests, sans-IO: parsing ``Range``, checking ``If-Range``, framing byteranges.

`FileResponse` asks this module which slices of the file to send and what to put around
them; it only opens the file, reads the slices and sends bytes. Nothing here awaits.

The decisions follow Starlette 1.10's ``FileResponse``:

- only the ``bytes`` unit (case-insensitive, surrounding whitespace ignored) is understood;
  a header without ``=`` or with another unit is malformed (400);
- a header with more than ``max_ranges`` comma-separated parts is ignored: the whole file is
  sent, as a 200 (the mitigation for CVE-2025-62727);
- parts that are empty, lack a ``-`` or are not made of digits are skipped; when no part
  is left the header is malformed;
- a number of more than `MAX_DIGITS` digits (leading zeros count) makes the whole header
  malformed (400), decided on its length before it is converted. No file has an offset
  that long, and Python refuses to convert more than 4300 digits; Starlette answers 400
  there too (for 20 to 4300 digits it answers as for any other large number);
- a range whose start lies at or past the end of the file (or a suffix of 0 bytes) is
  unsatisfiable. Unlike Starlette, which answers 416 as soon as one range is unsatisfiable,
  unsatisfiable ranges are dropped and 416 is raised only when none is left (RFC 9110,
  section 14.1.2);
- ``first-last`` with ``last < first`` is malformed, unless another range is unsatisfiable,
  in which case the answer is 416, as in Starlette;
- the satisfiable ranges are sorted, and ranges that overlap or touch are merged.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import NamedTuple

__all__ = [
    "MAX_DIGITS",
    "MalformedRange",
    "MultipartByteranges",
    "UnsatisfiableRange",
    "if_range_matches",
    "multipart_byteranges",
    "new_boundary",
    "parse_range_header",
]


class MalformedRange(ValueError):
    """The ``Range`` header cannot be parsed: answer 400 with the message as the body."""

    def __init__(self, message: str = "Malformed range header.") -> None:
        super().__init__(message)
        self.message = message


class UnsatisfiableRange(ValueError):
    """No requested range overlaps the file: answer 416 with ``Content-Range: bytes */{file_size}``."""

    def __init__(self, file_size: int) -> None:
        super().__init__(f"No requested range is satisfiable for a file of {file_size} bytes.")
        self.file_size = file_size


MAX_DIGITS = 19
"""The most digits a byte position may have: 2**63 - 1, the largest file offset, has 19."""


def _to_int(text: str) -> int | None:
    """``text`` as a non-negative integer, or None unless it is ASCII digits only.

    Raises `MalformedRange` for more than `MAX_DIGITS` digits, before converting them.
    """
    if text.isascii() and text.isdigit():
        if len(text) > MAX_DIGITS:
            raise MalformedRange(
                f"Range header: a byte position has at most {MAX_DIGITS} digits, got one of {len(text)}."
            )
        return int(text)
    return None


def parse_range_header(value: str, file_size: int, *, max_ranges: int | None = 100) -> list[tuple[int, int]]:
    """The byte ranges ``value`` asks for, as sorted, merged, half-open ``(start, end)`` pairs.

    An empty list means "ignore the header and send the whole file": the header names more
    than ``max_ranges`` ranges (None for no limit).

    Raises `MalformedRange` for a header that does not parse and `UnsatisfiableRange` when
    no range overlaps the file.
    """
    unit, sep, spec = value.partition("=")
    if not sep:
        raise MalformedRange()
    if unit.strip().lower() != "bytes":
        raise MalformedRange("Only support bytes range")
    if max_ranges is not None and spec.count(",") >= max_ranges:
        return []

    ranges: list[tuple[int, int]] = []
    requested = unsatisfiable = backwards = False
    for part in spec.split(","):
        first_text, dash, last_text = part.partition("-")
        if not dash:
            continue
        first_text, last_text = first_text.strip(), last_text.strip()
        last = _to_int(last_text)
        if first_text:
            first = _to_int(first_text)
            if first is None or (last is None and last_text):
                continue
            requested = True
            if first >= file_size:
                unsatisfiable = True
                continue
            if last is None or last >= file_size:
                ranges.append((first, file_size))
            elif last < first:
                backwards = True
            else:
                ranges.append((first, last + 1))
        elif last is not None:
            requested = True
            if last > 0 and file_size > 0:
                ranges.append((max(file_size - last, 0), file_size))
            else:
                unsatisfiable = True

    if not requested:
        raise MalformedRange("Range header: range must be requested")
    if backwards and not unsatisfiable:
        raise MalformedRange("Range header: start must be less than end")
    if backwards or not ranges:
        raise UnsatisfiableRange(file_size)
    if len(ranges) == 1:
        return ranges

    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            if end > last_end:
                merged[-1] = (last_start, end)
        else:
            merged.append((start, end))
    return merged


def if_range_matches(if_range: str, etag: str, last_modified: str) -> bool:
    """Whether a request's ``If-Range`` lets the range apply to the current representation.

    A weak validator (``W/...``) never matches; otherwise the value must equal the
    response's ``ETag`` or ``Last-Modified`` exactly.
    """
    if if_range.startswith("W/"):
        return False
    return if_range in (etag, last_modified)


def new_boundary() -> str:
    """A random ``multipart/byteranges`` boundary: 26 hex digits, 104 bits of entropy."""
    return secrets.token_hex(13)


class MultipartByteranges(NamedTuple):
    """How to frame several ranges as a ``multipart/byteranges`` body.

    The body is ``part_headers[i]`` followed by the bytes of range ``i``, for each range
    in order, then ``closing``; ``content_length`` is the length of all of it.
    """

    content_length: int
    part_headers: list[bytes]
    closing: bytes


def multipart_byteranges(
    ranges: Sequence[tuple[int, int]], boundary: str, content_type: str, file_size: int
) -> MultipartByteranges:
    """The framing of a ``multipart/byteranges`` body for half-open ``ranges`` of a file.

    The bytes produced are the same as Starlette's: each part is its delimiter, a
    ``Content-Type`` and a ``Content-Range`` header and a blank line; the CRLF that ends a
    part's data belongs to the next delimiter.
    """
    crlf = "\r\n"
    part_headers = [
        (
            f"{'' if i == 0 else crlf}--{boundary}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Range: bytes {start}-{end - 1}/{file_size}\r\n\r\n"
        ).encode("latin-1")
        for i, (start, end) in enumerate(ranges)
    ]
    closing = f"\r\n--{boundary}--".encode("latin-1")
    content_length = sum(map(len, part_headers)) + sum(end - start for start, end in ranges) + len(closing)
    return MultipartByteranges(content_length, part_headers, closing)
