"""Urlencoded form bodies, sans-IO: where the fields are, and their percent-decoding.

`FormParser` parses a large body in three steps, so that nothing is decoded before the
limits are checked and no step holds the event loop for long:

1. `field_spans` finds the non-empty fields, one at a time, so the parser stops counting
   past ``max_fields``;
2. the parser compares each field's encoded length with ``max_part_size``;
3. each name and value is cut into `slices` and each slice goes through `percent_decode`,
   with a checkpoint between slices; the joined bytes are then decoded as UTF-8.

The text is the same as ``urllib.parse.unquote_plus(field.decode("latin-1"))``, which is
what Starlette gives: ``+`` is a space, ``%XX`` escapes are UTF-8 (invalid sequences become
U+FFFD), malformed escapes stay as they are and raw non-ASCII bytes are latin-1. It is
computed in a fixed number of passes of the interpreter's C code over the bytes: Python
3.11's ``unquote`` splits at each ``%`` and loops over the pieces, about 0.5 s and 75 MB
for one MiB of escapes. Nothing here awaits.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator

__all__ = ["field_spans", "percent_decode", "slices"]

_FIELD_START = re.compile(rb"[^&]")

# Each byte's class: "h" for a hex digit, "%" for itself, "." for any other byte.
_CLASSES = bytes(
    ord("h") if chr(byte) in "0123456789ABCDEFabcdef" else byte if byte == ord("%") else ord(".") for byte in range(256)
)
# Translates classes to a difference to add to the bytes: "V" (a "%" that starts a valid
# escape) gets the distance from "%" to "\", everything else nothing.
_TO_BACKSLASH = bytes(ord("\\") - ord("%") if byte == ord("V") else 0 for byte in range(256))


def field_spans(body: bytes | bytearray) -> Iterator[tuple[int, int, int]]:
    """The non-empty ``&``-separated fields of ``body`` as ``(start, equals, end)`` offsets, lazily.

    ``equals`` is the offset of the field's first ``=``, or ``end`` when it has none: the
    name is ``body[start:equals]`` and the value ``body[equals + 1:end]``. Runs of ``&``
    are skipped by the regex engine, not one by one.
    """
    size = len(body)
    found = _FIELD_START.search(body)
    while found is not None:
        start = found.start()
        end = body.find(b"&", start)
        if end < 0:
            end = size
        equals = body.find(b"=", start, end)
        yield start, end if equals < 0 else equals, end
        found = _FIELD_START.search(body, end)


def slices(raw: bytes | bytearray, size: int) -> Iterator[bytes | bytearray]:
    """``raw`` in pieces of at most ``size`` bytes (``size`` >= 3), never cut inside a ``%XX`` escape.

    A cut just before a ``%`` is always safe, and so is a cut with no ``%`` among the two
    bytes before it; one of the last three positions of each piece is such a cut.
    """
    start = 0
    while len(raw) - start > size:
        cut = start + size
        if raw[cut - 1] == ord("%"):
            cut -= 1
        elif raw[cut - 2] == ord("%"):
            cut -= 2
        yield raw[start:cut]
        start = cut
    yield raw[start:]


def percent_decode(raw: bytes | bytearray) -> bytes | bytearray:
    """``raw`` with ``+`` as a space, each valid ``%XX`` as its byte and raw non-ASCII bytes as UTF-8.

    Decoding the result as UTF-8 gives the field's text. Raw non-ASCII bytes are re-encoded
    (latin-1 to UTF-8) so that they decode to themselves; their UTF-8 lead byte also ends
    any incomplete escaped sequence before them, as ``unquote`` does. The escapes are
    rewritten as ``\\xXX`` for the ``unicode_escape`` codec, backslashes first becoming
    ``%5C`` so that no other escape is read. When some ``%`` does not start a valid escape,
    the valid ones are found by classifying every byte and are turned into backslashes by
    adding a difference, all bytes at once, as one integer.
    """
    if b"+" in raw:
        raw = raw.replace(b"+", b" ")
    if not raw.isascii():
        raw = raw.decode("latin-1").encode()
    if b"%" not in raw:
        return raw
    raw = raw.replace(b"\\", b"%5C")
    classes = raw.translate(_CLASSES)
    if classes.count(b"%") == classes.count(b"%hh"):
        marked = raw.replace(b"%", b"\\")
    else:
        shift = classes.replace(b"%hh", b"Vhh").translate(_TO_BACKSLASH)
        marked = (int.from_bytes(raw) + int.from_bytes(shift)).to_bytes(len(raw))
    return codecs.decode(marked.replace(b"\\", b"\\x"), "unicode_escape").encode("latin-1")
