"""The public surface: every module has a sorted ``__all__``; Starlette's names exist with compatible signatures.

The expected names come from ``tests/starlette_api.md``: Starlette 1.10's public API, as triolette names it.
"""

from __future__ import annotations

import ast
import http
import importlib
import inspect
import pkgutil
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import triolette

ROOT = Path(__file__).resolve().parent.parent
API_FILE = ROOT / "tests" / "starlette_api.md"
SRC = ROOT / "src" / "triolette"


@dataclass
class Entry:
    module: str
    name: str
    kind: str  # "class", "def" or "value"
    signature: str | None
    members: list[str] = field(default_factory=list)


ENTRY = re.compile(r"^- (?:(class|def) )?`([A-Za-z_][A-Za-z0-9_]*)(\(.*\))?(?: -> .*)?`")


def parse_api(text: str) -> list[Entry]:
    entries: list[Entry] = []
    module = None
    for line in text.splitlines():
        if line.startswith("## "):
            name = line[3:].strip()
            module = name if name.startswith("triolette") else None
            continue
        if module is None:
            continue
        match = ENTRY.match(line)
        if match:
            kind, name, signature = match.groups()
            entries.append(Entry(module, name, kind or "value", signature))
        elif line.startswith("  - members:") and entries:
            entries[-1].members = [member.strip() for member in line.split(":", 1)[1].split(",")]
    return entries


API = parse_api(API_FILE.read_text(encoding="utf-8"))
API_MODULES = sorted({entry.module for entry in API} | {"triolette.status"})


def public_modules() -> list[str]:
    """Every public module (the package itself and its CLI entry point export nothing by __all__).

    ``triolette.compat.starlette`` is left out: importing it installs the ``starlette`` alias
    (tests/test_compat.py imports it with care)."""
    names = []
    for info in pkgutil.walk_packages([str(SRC)], prefix="triolette."):
        if info.name == "triolette.compat.starlette":
            continue
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def ruff_sorted(names: list[str]) -> list[str]:
    """The order ruff's RUF022 wants: SCREAMING_CASE, then CamelCase, then the rest."""
    return sorted(names, key=lambda name: (0 if name.isupper() else 1 if name[:1].isupper() else 2, name))


def test_the_api_file_was_parsed() -> None:
    assert len(API) > 100
    names = {(entry.module, entry.name) for entry in API}
    assert ("triolette.applications", "Triolette") in names
    assert ("triolette.config", "environ") in names
    triolette_app = next(entry for entry in API if entry.name == "Triolette")
    assert "add_middleware" in triolette_app.members


@pytest.mark.parametrize("module_name", public_modules())
def test_every_public_module_has_a_sorted_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{module_name} has no __all__"
    assert list(exported) == ruff_sorted(list(exported))
    assert len(set(exported)) == len(exported)
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names {name!r}, which does not exist"


def test_ruff_agrees_on_the_order_of_all() -> None:
    ruff = shutil.which("ruff") or str(Path(pytest.__file__).parents[4] / "bin" / "ruff")
    if not Path(ruff).exists():  # pragma: no cover - ruff is a dev dependency
        pytest.skip("ruff is not installed")
    result = subprocess.run(
        [ruff, "check", "--no-cache", "--select", "RUF022", "--output-format", "concise", str(SRC)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def md_parameters(signature: str) -> list[tuple[str, inspect._ParameterKind, Any]]:
    """The parameters of a signature as written in the API file: name, kind, default (or empty)."""
    source = f"def f{signature}: pass".replace("<factory>", "default_factory()")
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    args = node.args
    params: list[tuple[str, inspect._ParameterKind, Any]] = []
    positional = [*args.posonlyargs, *args.args]
    defaults: list[Any] = [inspect.Parameter.empty] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        only = index < len(args.posonlyargs)
        kind = inspect.Parameter.POSITIONAL_ONLY if only else inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append((arg.arg, kind, default))
    if args.vararg:
        params.append((args.vararg.arg, inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.empty))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        # ast gives None for a keyword-only parameter without a default.
        value = inspect.Parameter.empty if default is None else default
        params.append((arg.arg, inspect.Parameter.KEYWORD_ONLY, value))
    if args.kwarg:
        params.append((args.kwarg.arg, inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty))
    return params


def literal(node: Any) -> Any:
    """A default's value when it is a literal; otherwise a marker that matches any default."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ANY_DEFAULT


ANY_DEFAULT = object()


def check_signature(obj: Any, signature: str) -> None:
    expected = md_parameters(signature)
    if [kind for _, kind, _ in expected] == [inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD]:
        return  # enums and TypedDicts: nothing to compare
    actual = list(inspect.signature(obj).parameters.values())
    by_name = {param.name: param for param in actual}
    for name, kind, default in expected:
        if kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            assert any(param.kind is kind for param in actual), f"{obj!r} lacks *{name}/**{name}"
            continue
        assert name in by_name, f"{obj!r} has no parameter {name!r}"
        param = by_name[name]
        if kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            # Starlette callers may pass it by position: it must be at the same place.
            position = [n for n, k, _ in expected if k is not inspect.Parameter.KEYWORD_ONLY].index(name)
            assert actual[position].name == name, f"{obj!r}: {name!r} is not parameter {position}"
        if kind is not inspect.Parameter.POSITIONAL_ONLY:
            assert param.kind in (kind, inspect.Parameter.POSITIONAL_OR_KEYWORD), f"{obj!r}: {name!r} is {param.kind}"
        if default is inspect.Parameter.empty:
            assert param.default is inspect.Parameter.empty, f"{obj!r}: {name!r} should be required"
        else:
            assert param.default is not inspect.Parameter.empty, f"{obj!r}: {name!r} should have a default"
            value = literal(default)
            if value is not ANY_DEFAULT:
                assert param.default == value, f"{obj!r}: {name!r} defaults to {param.default!r}, not {value!r}"
    expected_names = {name for name, _, _ in expected}
    for param in actual:
        if param.name not in expected_names and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            assert param.default is not inspect.Parameter.empty, f"{obj!r}: added parameter {param.name!r} is required"


@pytest.mark.parametrize("entry", API, ids=lambda entry: f"{entry.module}.{entry.name}")
def test_starlette_name_exists_with_a_compatible_signature(entry: Entry) -> None:
    module = importlib.import_module(entry.module)
    assert hasattr(module, entry.name), f"{entry.module} has no {entry.name}"
    assert entry.name in module.__all__ or entry.kind == "value", f"{entry.name} is not in {entry.module}.__all__"
    obj = getattr(module, entry.name)
    if entry.kind == "class":
        assert inspect.isclass(obj)
    elif entry.kind == "def":
        assert callable(obj)
    for member in entry.members:
        assert hasattr(obj, member), f"{entry.module}.{entry.name} has no member {member!r}"
    if entry.signature is not None:
        check_signature(obj, entry.signature)


def test_status_has_every_http_status() -> None:
    from triolette import status

    names = set(status.__all__)
    for code in http.HTTPStatus:
        assert any(name.startswith(f"HTTP_{code.value}_") for name in names), f"no constant for {code.value}"
    for name in ("HTTP_200_OK", "HTTP_404_NOT_FOUND", "HTTP_511_NETWORK_AUTHENTICATION_REQUIRED"):
        assert name in names
    assert "WS_1000_NORMAL_CLOSURE" in names
    assert status.HTTP_418_IM_A_TEAPOT == 418


def test_the_package_imports_without_optional_extras() -> None:
    assert triolette.__name__ == "triolette"
    assert "triolette.status" in API_MODULES


def describe(signature: str) -> list[tuple[str, int, Any]]:
    out = []
    for name, kind, default in md_parameters(signature):
        shown = "required" if default is inspect.Parameter.empty else literal(default)
        out.append((name, int(kind), "non-literal" if shown is ANY_DEFAULT else shown))
    return out


def test_md_parameters() -> None:
    expected = [("a", 1, "required"), ("b", 1, 1), ("c", 3, None), ("d", 3, "required")]
    assert describe("(a, b: 'int' = 1, *, c=None, d)") == expected
    assert describe("(x, /, *args, f=<factory>, **kw)") == [
        ("x", 0, "required"),
        ("args", 2, "required"),
        ("f", 3, "non-literal"),
        ("kw", 4, "required"),
    ]
