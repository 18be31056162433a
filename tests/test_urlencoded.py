"""The sans-IO urlencoded helpers: field offsets, escape-safe slices and percent-decoding."""

from __future__ import annotations

import itertools
import random
from urllib.parse import unquote_plus

import pytest

from triolette._urlencoded import field_spans, percent_decode, slices

# The bytes that matter to the decoding: escapes and their hex digits, "+", backslashes
# (the codec's escape character), raw non-ASCII bytes and UTF-8 lead and continuation bytes.
ALPHABET = [bytes([b]) for b in b"%%%4Ccaf9E28+\\x0B5Dz\x00\xe9\xc3\xa9\x80\xff\xe2\x82"]


def text(raw: bytes, size: int = 1 << 20) -> str:
    return b"".join(percent_decode(piece) for piece in slices(raw, size)).decode("utf-8", "replace")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"plain",
        b"a+b",
        b"%41",
        b"%4",
        b"%",
        b"%%41",
        b"%4%41",
        b"%zz%41",
        b"%C3%A9",
        b"%c3%a9",
        b"%E2%82",
        b"%E2%82x",
        b"%E2\xe9",
        b"\xe9%A9",
        b"%C3\xa9",
        b"\\x41",
        b"\\%41\\",
        b"%5C",
        b"%5Cx41",
        b"\\u00e9",
        b"%00",
        b"%F0%9F%98%80",
        b"%ED%A0%80",
        "é€".encode(),
    ],
)
def test_percent_decode_gives_unquote_plus_text(raw: bytes) -> None:
    assert text(raw) == unquote_plus(raw.decode("latin-1"), errors="replace")


def test_percent_decode_matches_unquote_plus_on_random_fields() -> None:
    rng = random.Random(13)
    for _ in range(5000):
        raw = b"".join(rng.choice(ALPHABET) for _ in range(rng.randrange(30)))
        expected = unquote_plus(raw.decode("latin-1"), errors="replace")
        assert text(raw) == expected, raw
        assert text(raw, rng.randrange(3, 8)) == expected, raw


@pytest.mark.parametrize("size", [3, 4, 5, 64])
def test_slices_never_cut_an_escape(size: int) -> None:
    raw = b"%41%%4%%%41a%C3%A9%" * 20
    pieces = list(slices(raw, size))
    assert b"".join(pieces) == raw
    assert all(0 < len(piece) <= size for piece in pieces)
    offset = 0
    for piece in pieces[:-1]:
        offset += len(piece)
        # a cut is just before a "%", or has no "%" among the two bytes before it
        assert raw[offset : offset + 1] == b"%" or b"%" not in raw[offset - 2 : offset]


def test_slices_of_a_short_field_is_the_field() -> None:
    assert list(slices(b"abc", 3)) == [b"abc"]
    assert list(slices(b"", 3)) == [b""]


@pytest.mark.parametrize(
    ("body", "spans"),
    [
        (b"", []),
        (b"&&", []),
        (b"a", [(0, 1, 1)]),
        (b"a=1&&b", [(0, 1, 3), (5, 6, 6)]),
        (b"=x=y", [(0, 0, 4)]),
    ],
)
def test_field_spans(body: bytes, spans: list[tuple[int, int, int]]) -> None:
    assert list(field_spans(body)) == spans


def test_field_spans_are_found_one_at_a_time() -> None:
    body = b"a&b&&c" + b"&" * 10**6 + b"&e" * 10**6
    assert list(itertools.islice(field_spans(body), 3)) == [(0, 1, 1), (2, 3, 3), (5, 6, 6)]
    assert sum(1 for _ in field_spans(body)) == 3 + 10**6
