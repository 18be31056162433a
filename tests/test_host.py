"""The one Host header parser (triolette._host) that URL, the middleware and Host routes share."""

from __future__ import annotations

import pytest

from triolette._host import ParsedHost, parse_host


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.com", ParsedHost("example.com", None)),
        ("Example.COM:8080", ParsedHost("Example.COM", "8080")),
        ("127.0.0.1:80", ParsedHost("127.0.0.1", "80")),
        ("[::1]:443", ParsedHost("[::1]", "443")),
        ("[v1.fe80::a+en1]", ParsedHost("[v1.fe80::a+en1]", None)),
        ("xn--bcher-kva.example", ParsedHost("xn--bcher-kva.example", None)),
        ("api_service:000080", ParsedHost("api_service", "000080")),
        ("host:65536", ParsedHost("host", "65536")),
        (None, None),
        ("", None),
        ("[V1.foo]", None),  # IPvFuture takes a lowercase 'v' only, as urllib does
        ("[:::]", None),
        ("[1:2:3:4:5:6:7:8:9]", None),
        ("[::1::2]:80", None),
        ("[not-an-ip]", None),
        ("api.example.org:evil", None),
        ("api.example.org:", None),
        ("evil.com/x", None),
        ("a@b", None),
        ("a b", None),
    ],
)
def test_parse_host(value: str | None, expected: ParsedHost | None) -> None:
    assert parse_host(value) == expected


@pytest.mark.parametrize(
    ("value", "port"),
    [
        ("h", None),
        ("h:80", 80),
        ("h:000080", 80),
        ("h:0", 0),
        ("h:00000", 0),
        ("h:65535", 65535),
        ("h:65536", None),
        ("h:100000", None),
        ("h:" + "0" * 4000 + "443", 443),
        ("h:" + "9" * 5000, None),
    ],
)
def test_port_number_ignores_leading_zeros_and_refuses_more_than_65535(value: str, port: int | None) -> None:
    parsed = parse_host(value)
    assert parsed is not None
    assert parsed.port_number == port
    assert parsed.has_valid_port == (parsed.port is None or port is not None)


def test_authority_is_the_header_as_written() -> None:
    assert parse_host("Example.com:0080") == ParsedHost("Example.com", "0080")
    assert ParsedHost("Example.com", "0080").authority == "Example.com:0080"
    assert ParsedHost("[::1]", None).authority == "[::1]"
