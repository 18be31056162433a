"""Path parameter convertors: ``{name:type}`` in a route path.

Each convertor has a ``regex`` that matches its part of the path, ``convert`` that turns
the matched text into a value for ``request.path_params``, and ``to_string`` that turns a
value back into path text for ``url_path_for``. Add your own with
``register_url_convertor``.

When ``convert`` raises ``ValueError`` the path does not match the route (Starlette lets
it escape as a 500): ``/items/{id:int}`` with 5000 digits is a 404, not an error.
"""

from __future__ import annotations

import math
import uuid
from typing import Any, ClassVar, Generic, TypeVar

from triolette._utils import ConfigurationError

__all__ = [
    "CONVERTOR_TYPES",
    "Convertor",
    "FloatConvertor",
    "IntegerConvertor",
    "PathConvertor",
    "StringConvertor",
    "UUIDConvertor",
    "register_url_convertor",
]

T = TypeVar("T")


class Convertor(Generic[T]):
    """Base class of path convertors; subclasses set ``regex`` and implement both methods."""

    regex: ClassVar[str] = ""

    def convert(self, value: str) -> T:
        """Turn the text the regex matched into the path parameter's value.

        Raising ``ValueError`` means the path does not match the route after all: the
        router tries the next route, and answers 404 when none matches.
        """
        raise NotImplementedError

    def to_string(self, value: T) -> str:
        """Turn a value back into path text; raise ``ValueError`` if it cannot appear there."""
        raise NotImplementedError


class StringConvertor(Convertor[str]):
    """One path segment: any text without ``/``. The default type."""

    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        text = str(value)
        if "/" in text:
            raise ConfigurationError(
                f"May not contain path separators: a 'str' path parameter got {text!r}; use a 'path' parameter"
            )
        if not text:
            raise ConfigurationError("Must not be empty: a 'str' path parameter got ''.")
        return text


class PathConvertor(Convertor[str]):
    """The rest of the path, ``/`` included; may be empty."""

    regex = ".*"

    def convert(self, value: str) -> str:
        return str(value)

    def to_string(self, value: str) -> str:
        return str(value)


class IntegerConvertor(Convertor[int]):
    """A non-negative decimal integer.

    One of more digits than Python converts (4300 by default, ``sys.set_int_max_str_digits``)
    does not match: ``int`` raises ``ValueError`` and the route is passed over.
    """

    regex = "[0-9]+"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        number = int(value)
        if number < 0:
            raise ConfigurationError(f"Negative integers are not supported: an 'int' path parameter got {number!r}.")
        return str(number)


class FloatConvertor(Convertor[float]):
    """A non-negative decimal number, with or without a fractional part.

    One too large to be a finite float (over about 1.8e308) does not match.
    """

    regex = r"[0-9]+(\.[0-9]+)?"

    def convert(self, value: str) -> float:
        number = float(value)
        if math.isinf(number):
            raise ValueError(f"A 'float' path parameter of {len(value)} characters is too large to be finite.")
        return number

    def to_string(self, value: float) -> str:
        number = float(value)
        if math.isnan(number):
            raise ConfigurationError("NaN values are not supported in a 'float' path parameter.")
        if math.isinf(number):
            raise ConfigurationError(f"Infinite values are not supported: a 'float' path parameter got {number!r}.")
        if number < 0.0:
            raise ConfigurationError(f"Negative floats are not supported: a 'float' path parameter got {number!r}.")
        # Fixed notation (never "1e-05", which the regex would not match), without trailing zeros.
        return f"{number:.20f}".rstrip("0").rstrip(".")


class UUIDConvertor(Convertor[uuid.UUID]):
    """A UUID in hex, with or without dashes, either case."""

    regex = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"

    def convert(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_string(self, value: uuid.UUID) -> str:
        return str(value)


CONVERTOR_TYPES: dict[str, Convertor[Any]] = {
    "str": StringConvertor(),
    "path": PathConvertor(),
    "int": IntegerConvertor(),
    "float": FloatConvertor(),
    "uuid": UUIDConvertor(),
}


def register_url_convertor(key: str, convertor: Convertor[Any]) -> None:
    """Make ``{name:key}`` in route paths use ``convertor``; replaces any convertor of that name."""
    CONVERTOR_TYPES[key] = convertor
