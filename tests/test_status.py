import http
import re

import pytest

from triolette import status
from triolette.exceptions import TrioletteDeprecationWarning

CONSTANTS = [name for name in status.__all__ if re.fullmatch(r"(HTTP|WS)_\d+_[A-Z0-9_]+", name)]


def ruff_sorted(names: list[str]) -> list[str]:
    """The order ruff's RUF022 wants: SCREAMING_CASE, then CamelCase, then the rest."""
    return sorted(names, key=lambda name: (0 if name.isupper() else 1 if name[:1].isupper() else 2, name))


def test_all_is_sorted_and_holds_only_constants() -> None:
    assert status.__all__ == ruff_sorted(status.__all__)
    assert status.__all__ == CONSTANTS


def test_every_constant_is_exported() -> None:
    defined = {name for name in vars(status) if re.fullmatch(r"(HTTP|WS)_\d+_\w+", name)}
    assert defined == set(status.__all__)


@pytest.mark.parametrize("name", CONSTANTS)
def test_constant_value_matches_its_name(name: str) -> None:
    assert getattr(status, name) == int(name.split("_")[1])


@pytest.mark.parametrize("name", [n for n in CONSTANTS if n.startswith("HTTP_") and n != "HTTP_306_RESERVED"])
def test_http_constants_are_known_status_codes(name: str) -> None:
    # 306 is reserved (unused) in the registry, so http.HTTPStatus leaves it out.
    assert http.HTTPStatus(getattr(status, name))


def test_well_known_names() -> None:
    assert status.HTTP_200_OK == 200
    assert status.HTTP_404_NOT_FOUND == 404
    assert status.HTTP_413_CONTENT_TOO_LARGE == 413
    assert status.HTTP_422_UNPROCESSABLE_CONTENT == 422
    assert status.HTTP_511_NETWORK_AUTHENTICATION_REQUIRED == 511
    assert status.WS_1000_NORMAL_CLOSURE == 1000
    assert status.WS_1015_TLS_HANDSHAKE == 1015


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("HTTP_413_REQUEST_ENTITY_TOO_LARGE", "HTTP_413_CONTENT_TOO_LARGE"),
        ("HTTP_414_REQUEST_URI_TOO_LONG", "HTTP_414_URI_TOO_LONG"),
        ("HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE", "HTTP_416_RANGE_NOT_SATISFIABLE"),
        ("HTTP_422_UNPROCESSABLE_ENTITY", "HTTP_422_UNPROCESSABLE_CONTENT"),
    ],
)
def test_deprecated_names_warn_and_resolve(old: str, new: str) -> None:
    message = re.escape(f"'{old}' is deprecated. Use '{new}' instead.")
    with pytest.warns(TrioletteDeprecationWarning, match=message) as record:
        value = getattr(status, old)
    assert value == getattr(status, new)
    assert record[0].filename == __file__
    assert old not in status.__all__
    assert old in dir(status)


def test_deprecated_name_through_from_import_warns_at_the_import() -> None:
    with pytest.warns(TrioletteDeprecationWarning, match="HTTP_422_UNPROCESSABLE_CONTENT") as record:
        from triolette.status import HTTP_422_UNPROCESSABLE_ENTITY
    assert HTTP_422_UNPROCESSABLE_ENTITY == 422
    assert record[0].filename == __file__


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match=r"module 'triolette\.status' has no attribute 'HTTP_999_NOPE'"):
        status.HTTP_999_NOPE  # noqa: B018


def test_dir_is_sorted() -> None:
    assert dir(status) == sorted(dir(status))
