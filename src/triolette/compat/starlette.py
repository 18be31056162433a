"""Importing this module installs the ``starlette`` alias: see ``triolette.compat.install_starlette_alias``.

``import triolette.compat.starlette`` must run before anything imports ``starlette`` or
``fastapi``; import sorters move it after them, so keep it in its own block (or call
``install_starlette_alias()`` from the entry point instead).
"""

from __future__ import annotations

from triolette.compat import install_starlette_alias

__all__: list[str] = []

install_starlette_alias()
