import os
from pathlib import Path

import pytest

from triolette import config as config_module
from triolette.config import Config, Environ, EnvironError, environ, undefined
from triolette.datastructures import CommaSeparatedStrings, Secret


def ruff_sorted(names: list[str]) -> list[str]:
    """The order ruff's RUF022 wants: SCREAMING_CASE, then CamelCase, then the rest."""
    return sorted(names, key=lambda name: (0 if name.isupper() else 1 if name[:1].isupper() else 2, name))


def test_all_is_sorted() -> None:
    assert config_module.__all__ == ruff_sorted(config_module.__all__)
    for name in config_module.__all__:
        assert hasattr(config_module, name)


def test_module_environ_wraps_os_environ() -> None:
    assert isinstance(environ, Environ)
    assert environ._environ is os.environ


# --------------------------------------------------------------------------- Environ


def test_environ_reads_writes_and_deletes_unread_keys() -> None:
    backing = {"A": "1"}
    env = Environ(backing)
    env["B"] = "2"
    assert backing == {"A": "1", "B": "2"}
    del env["B"]
    assert backing == {"A": "1"}
    assert list(env) == ["A"]
    assert len(env) == 1
    assert env["A"] == "1"
    assert repr(env) == "Environ(1 variables)"


def test_environ_refuses_to_set_a_key_already_read() -> None:
    env = Environ({"DEBUG": "true"})
    assert env["DEBUG"] == "true"
    already_read = r"^Attempting to set environ\['DEBUG'\], but the value has already been read"  # Starlette's words
    with pytest.raises(EnvironError, match=already_read):
        env["DEBUG"] = "false"
    assert env["DEBUG"] == "true"


def test_environ_refuses_to_delete_a_key_already_read() -> None:
    env = Environ({"DEBUG": "true"})
    assert env.get("DEBUG") == "true"
    already_read = r"^Attempting to delete environ\['DEBUG'\], but the value has already been read.*Delete it before"
    with pytest.raises(EnvironError, match=already_read):
        del env["DEBUG"]


def test_environ_counts_a_failed_read_as_a_read() -> None:
    # Code that saw "missing" would not see a later value either.
    env = Environ({})
    with pytest.raises(KeyError):
        env["LATE"]
    with pytest.raises(EnvironError, match=r"Attempting to set environ\['LATE'\]"):
        env["LATE"] = "1"


# --------------------------------------------------------------------------- Config


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n"
        "\n"
        "DATABASE_URL=postgres://user:pass@localhost/db\n"
        "  SPACED  =  value with spaces  \n"
        'DOUBLE="quoted value"\n'
        "SINGLE='single'\n"
        "MISMATCHED=\"half'\n"
        'LONE="\n'
        "EMPTY=\n"
        "EQUALS=a=b=c\n"
        "not a setting\n"
        "#COMMENTED=1\n"
        "PORT=8000\n"
        "DEBUG=True\n"
        "HOSTS=a.com, 'b.com'\n"
        "SECRET=hunter2\n",
        encoding="utf-8",
    )
    return path


def test_env_file_parsing(env_file: Path) -> None:
    config = Config(env_file, environ={})
    assert config.file_values == {
        "DATABASE_URL": "postgres://user:pass@localhost/db",
        "SPACED": "value with spaces",
        "DOUBLE": "quoted value",
        "SINGLE": "single",
        "MISMATCHED": "\"half'",
        "LONE": '"',
        "EMPTY": "",
        "EQUALS": "a=b=c",
        "PORT": "8000",
        "DEBUG": "True",
        "HOSTS": "a.com, 'b.com'",
        "SECRET": "hunter2",
    }


def test_env_file_as_str_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.env"
    path.write_bytes("NAME=caf\xe9\n".encode("latin-1"))
    assert Config(str(path), environ={}, encoding="latin-1")("NAME") == "café"


def test_missing_env_file_warns(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    with pytest.warns(UserWarning, match=r"Config file '.*nope\.env' not found\.") as record:
        config = Config(missing, environ={"X": "1"})
    assert record[0].filename == __file__
    assert config.file_values == {}
    assert config("X") == "1"


def test_no_env_file() -> None:
    config = Config(environ={"X": "1"})
    assert config.file_values == {}
    assert config.get("X") == "1"


def test_environment_beats_file_beats_default(env_file: Path) -> None:
    config = Config(env_file, environ={"PORT": "9000"})
    assert config("PORT", cast=int) == 9000
    assert config("DATABASE_URL") == "postgres://user:pass@localhost/db"
    assert config("MISSING", default="fallback") == "fallback"


def test_casts(env_file: Path) -> None:
    config = Config(env_file, environ={})
    assert config("PORT", cast=int) == 8000
    assert config("DEBUG", cast=bool) is True
    assert list(config("HOSTS", cast=CommaSeparatedStrings)) == ["a.com", "b.com"]
    secret = config("SECRET", cast=Secret)
    assert str(secret) == "hunter2"
    assert "hunter2" not in repr(secret)
    assert config.get("PORT", int) == 8000


def test_default_goes_through_the_cast() -> None:
    config = Config(environ={})
    assert config("PORT", cast=int, default="8000") == 8000
    assert config("DEBUG", cast=bool, default="0") is False
    assert config("DEBUG", cast=bool, default=True) is True
    assert config("RATIO", cast=float, default=1) == 1.0


def test_none_default_is_not_cast() -> None:
    config = Config(environ={})
    assert config("OPTIONAL", default=None) is None
    assert config("OPTIONAL", cast=int, default=None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("false", False),
        ("FaLsE", False),
        ("0", False),
    ],
)
def test_bool_cast(text: str, expected: bool) -> None:
    assert Config(environ={"FLAG": text})("FLAG", cast=bool) is expected


@pytest.mark.parametrize("text", ["yes", "", "2", "on"])
def test_bool_cast_rejects_other_strings(text: str) -> None:
    config = Config(environ={"FLAG": text})
    message = rf"Config 'FLAG' has value '{text}'\. Not a valid bool\. Use 'true', '1', 'false' or '0'\."
    with pytest.raises(ValueError, match=message):
        config("FLAG", cast=bool)


def test_cast_error_names_key_and_cast() -> None:
    config = Config(environ={"PORT": "eighty"})
    with pytest.raises(ValueError, match=r"Config 'PORT' has value 'eighty'\. Not a valid int\.") as info:
        config("PORT", cast=int)
    assert isinstance(info.value.__cause__, ValueError)


def test_cast_type_error_is_reported_as_value_error() -> None:
    def needs_two(a: str, b: str) -> str:  # pragma: no cover (never called: the arity is wrong)
        return a + b

    config = Config(environ={"X": "1"})
    with pytest.raises(ValueError, match=r"Config 'X' has value '1'\. Not a valid needs_two\."):
        config("X", cast=needs_two)  # type: ignore[arg-type]  # a cast of the wrong arity is the point


def test_cast_without_a_name_is_shown_by_repr() -> None:
    class Parser:
        def __call__(self, value: str) -> str:
            raise ValueError("bad")

        def __repr__(self) -> str:
            return "<Parser>"

    config = Config(environ={"X": "1"})
    with pytest.raises(ValueError, match=r"Config 'X' has value '1'\. Not a valid <Parser>\."):
        config("X", cast=Parser())


def test_missing_key_without_default() -> None:
    config = Config(environ={})
    with pytest.raises(KeyError, match=r"Config 'MISSING' is missing, and has no default\."):
        config("MISSING")


def test_env_prefix(env_file: Path) -> None:
    config = Config(env_file, environ={"APP_DEBUG": "1", "DEBUG": "0"}, env_prefix="APP_")
    assert config("DEBUG", cast=bool) is True
    with pytest.raises(KeyError, match=r"Config 'APP_PORT' is missing, and has no default\."):
        config("PORT")


def test_reading_through_environ_locks_the_key() -> None:
    env = Environ({"TOKEN": "abc"})
    config = Config(environ=env)
    assert config("TOKEN") == "abc"
    with pytest.raises(EnvironError, match=r"Attempting to set environ\['TOKEN'\]"):
        env["TOKEN"] = "def"


def test_undefined_is_a_sentinel_class() -> None:
    config = Config(environ={})
    with pytest.raises(KeyError, match="has no default"):
        config.get("X", default=undefined)
