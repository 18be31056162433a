"""Opt-in aliases that let libraries written for Starlette run on triolette.

``install_starlette_alias()`` makes ``import starlette`` and ``import starlette.X`` give
triolette's modules, so that FastAPI and other libraries that import Starlette by name run
on trio. Nothing is aliased until it is called (or ``import triolette.compat.starlette`` is
run, which calls it): a program that has Starlette installed and does not opt in gets
Starlette.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence

__all__ = ["StarletteAliasError", "install_starlette_alias", "starlette_alias_installed", "uninstall_starlette_alias"]

_PREFIX = "starlette"
_TARGET = "triolette"
# Starlette modules with no triolette counterpart, and why.
_NOT_KEPT = {
    "starlette.middleware.wsgi": (
        "WSGIMiddleware is deprecated in Starlette and triolette does not keep it; mount a WSGI app "
        "with hypercorn's TrioWSGIMiddleware instead (from hypercorn.middleware; a2wsgi's runs on asyncio only)"
    ),
}


class StarletteAliasError(RuntimeError):
    """The ``starlette`` alias cannot be installed: the real Starlette is already imported."""


def _aliased(fullname: str) -> bool:
    return fullname == _PREFIX or fullname.startswith(_PREFIX + ".")


class _StarletteAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``starlette`` and ``starlette.X`` as triolette's ``triolette`` and ``triolette.X``.

    The module object is triolette's own (``starlette.routing is triolette.routing``), so a
    library that patches or subclasses what it imported changes what triolette runs.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not _aliased(fullname):
            return None
        if fullname in _NOT_KEPT:
            raise ModuleNotFoundError(f"No module named {fullname!r}: {_NOT_KEPT[fullname]}", name=fullname)
        target_name = _TARGET + fullname[len(_PREFIX) :]
        target_spec = importlib.util.find_spec(target_name)
        if target_spec is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: the starlette alias maps it to {target_name!r}, "
                "which triolette does not have",
                name=fullname,
            )
        return importlib.util.spec_from_loader(
            fullname, self, is_package=target_spec.submodule_search_locations is not None
        )

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return importlib.import_module(_TARGET + spec.name[len(_PREFIX) :])

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: ``create_module`` returned triolette's module, already executed."""


_FINDER = _StarletteAliasFinder()


def starlette_alias_installed() -> bool:
    """True once ``install_starlette_alias()`` has run (and ``uninstall_starlette_alias()`` has not)."""
    return _FINDER in sys.meta_path


def install_starlette_alias() -> None:
    """Make ``import starlette`` and ``import starlette.X`` give triolette's modules from now on.

    ``starlette.applications.Starlette`` is ``Triolette`` and
    ``starlette.exceptions.StarletteDeprecationWarning`` is ``TrioletteDeprecationWarning``;
    every other name keeps its own.
    Call it before anything imports Starlette (first thing in the program, or in a
    ``conftest.py``). Calling it again does nothing. Raises ``StarletteAliasError`` if the
    real Starlette is already imported, since its classes would then live beside triolette's.
    """
    if starlette_alias_installed():
        return
    loaded = sorted(name for name in sys.modules if _aliased(name))
    if loaded:
        origin = getattr(sys.modules[loaded[0]], "__file__", None)
        raise StarletteAliasError(
            f"The real Starlette is already imported ({loaded[0]!r} from {origin!r}), so triolette "
            "cannot stand in for it. Install the alias before anything imports starlette or fastapi: "
            "call triolette.compat.install_starlette_alias() (or 'import triolette.compat.starlette') "
            "first thing in your entry point or conftest.py."
        )
    from triolette import applications, exceptions

    applications.Starlette = applications.Triolette  # type: ignore[attr-defined]  # Starlette's name for it
    # Starlette's name for it, as warning filters write it: ignore::starlette.exceptions.StarletteDeprecationWarning
    exceptions.StarletteDeprecationWarning = exceptions.TrioletteDeprecationWarning  # type: ignore[attr-defined]
    sys.meta_path.insert(0, _FINDER)


def uninstall_starlette_alias() -> None:
    """Undo ``install_starlette_alias()``: forget the aliased modules, so that ``import starlette``
    finds the real Starlette again (if it is installed). For test suites; modules that already
    imported names from ``starlette`` keep triolette's."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in [name for name in sys.modules if _aliased(name)]:
        del sys.modules[name]
    from triolette import applications, exceptions

    applications.__dict__.pop("Starlette", None)
    exceptions.__dict__.pop("StarletteDeprecationWarning", None)
