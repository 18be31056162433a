import math
import re
import uuid
from typing import Any

import pytest

from triolette import convertors
from triolette.convertors import (
    CONVERTOR_TYPES,
    Convertor,
    FloatConvertor,
    IntegerConvertor,
    PathConvertor,
    StringConvertor,
    UUIDConvertor,
    register_url_convertor,
)


def ruff_sorted(names: list[str]) -> list[str]:
    """The order ruff's RUF022 wants: SCREAMING_CASE, then CamelCase, then the rest."""
    return sorted(names, key=lambda name: (0 if name.isupper() else 1 if name[:1].isupper() else 2, name))


def test_all_is_sorted() -> None:
    assert convertors.__all__ == ruff_sorted(convertors.__all__)
    for name in convertors.__all__:
        assert hasattr(convertors, name)


def test_default_convertor_types() -> None:
    assert set(CONVERTOR_TYPES) == {"str", "path", "int", "float", "uuid"}
    assert isinstance(CONVERTOR_TYPES["str"], StringConvertor)
    assert isinstance(CONVERTOR_TYPES["path"], PathConvertor)
    assert isinstance(CONVERTOR_TYPES["int"], IntegerConvertor)
    assert isinstance(CONVERTOR_TYPES["float"], FloatConvertor)
    assert isinstance(CONVERTOR_TYPES["uuid"], UUIDConvertor)


UUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


@pytest.mark.parametrize(
    ("convertor", "text", "matches"),
    [
        (StringConvertor(), "abc", True),
        (StringConvertor(), "a b", True),
        (StringConvertor(), "a/b", False),
        (StringConvertor(), "", False),
        (PathConvertor(), "a/b/c", True),
        (PathConvertor(), "", True),
        (IntegerConvertor(), "0042", True),
        (IntegerConvertor(), "-1", False),
        (IntegerConvertor(), "1.5", False),
        (FloatConvertor(), "1", True),
        (FloatConvertor(), "1.25", True),
        (FloatConvertor(), "1.", False),
        (FloatConvertor(), "-1.5", False),
        (FloatConvertor(), "1e5", False),
        (UUIDConvertor(), UUID, True),
        (UUIDConvertor(), UUID.replace("-", "").upper(), True),
        (UUIDConvertor(), UUID[:-1], False),
        (UUIDConvertor(), UUID[:-1] + "g", False),
    ],
)
def test_regex(convertor: Convertor[Any], text: str, matches: bool) -> None:
    assert (re.fullmatch(convertor.regex, text) is not None) is matches


@pytest.mark.parametrize(
    ("convertor", "text", "value"),
    [
        (StringConvertor(), "abc", "abc"),
        (PathConvertor(), "a/b", "a/b"),
        (IntegerConvertor(), "0042", 42),
        (FloatConvertor(), "1.25", 1.25),
        (FloatConvertor(), "3", 3.0),
        (UUIDConvertor(), UUID.replace("-", ""), uuid.UUID(UUID)),
    ],
)
def test_convert(convertor: Convertor[Any], text: str, value: object) -> None:
    assert convertor.convert(text) == value
    assert type(convertor.convert(text)) is type(value)


@pytest.mark.parametrize(
    ("convertor", "text", "message"),
    [
        (IntegerConvertor(), "9" * 5000, "Exceeds the limit"),
        (FloatConvertor(), "9" * 5000, r"^A 'float' path parameter of 5000 characters is too large to be finite\.$"),
        (FloatConvertor(), "9" * 400 + ".5", r"of 402 characters is too large"),
    ],
)
def test_convert_refuses_numbers_too_large(convertor: Convertor[Any], text: str, message: str) -> None:
    """Issue 13, item 5: a ValueError, which makes the route not match (see test_routing)."""
    with pytest.raises(ValueError, match=message):
        convertor.convert(text)


@pytest.mark.parametrize(
    ("convertor", "value", "text"),
    [
        (StringConvertor(), "abc", "abc"),
        (StringConvertor(), 12, "12"),
        (PathConvertor(), "a/b", "a/b"),
        (PathConvertor(), "", ""),
        (IntegerConvertor(), 42, "42"),
        (IntegerConvertor(), "7", "7"),
        (IntegerConvertor(), 0, "0"),
        (FloatConvertor(), 1.25, "1.25"),
        (FloatConvertor(), 3.0, "3"),
        (FloatConvertor(), 0.0, "0"),
        (FloatConvertor(), 0.00001, "0.00001"),
        (FloatConvertor(), 1e20, "100000000000000000000"),
        (UUIDConvertor(), uuid.UUID(UUID), UUID),
    ],
)
def test_to_string(convertor: Convertor[Any], value: object, text: str) -> None:
    assert convertor.to_string(value) == text


@pytest.mark.parametrize(
    ("convertor", "value", "message"),
    [
        # Starlette's messages first (its tests match them), then what was given.
        (StringConvertor(), "a/b", r"^May not contain path separators: .* got 'a/b'; use a 'path' parameter"),
        (StringConvertor(), "", r"^Must not be empty"),
        (IntegerConvertor(), -1, r"^Negative integers are not supported: .* got -1\."),
        (FloatConvertor(), math.nan, r"^NaN values are not supported"),
        (FloatConvertor(), math.inf, r"^Infinite values are not supported: .* got inf\."),
        (FloatConvertor(), -math.inf, r"^Infinite values are not supported: .* got -inf\."),
        (FloatConvertor(), -0.5, r"^Negative floats are not supported: .* got -0.5\."),
    ],
)
def test_to_string_rejects(convertor: Convertor[Any], value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convertor.to_string(value)


def test_float_round_trip_matches_its_own_regex() -> None:
    for value in (0.1, 2.5, 123.456, 1e-7, 12345678.0):
        text = FloatConvertor().to_string(value)
        assert re.fullmatch(FloatConvertor.regex, text)
        assert math.isclose(FloatConvertor().convert(text), value)


def test_base_convertor_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        Convertor[int]().convert("1")
    with pytest.raises(NotImplementedError):
        Convertor[int]().to_string(1)


def test_register_url_convertor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convertors, "CONVERTOR_TYPES", dict(CONVERTOR_TYPES))

    class DateConvertor(Convertor[str]):
        regex = "[0-9]{4}-[0-9]{2}-[0-9]{2}"

        def convert(self, value: str) -> str:
            return value

        def to_string(self, value: str) -> str:
            return value

    date = DateConvertor()
    register_url_convertor("date", date)
    assert convertors.CONVERTOR_TYPES["date"] is date
    assert "date" not in CONVERTOR_TYPES
    # A second registration under the same key replaces the first.
    other = DateConvertor()
    register_url_convertor("date", other)
    assert convertors.CONVERTOR_TYPES["date"] is other
