"""triolette: a trio-native ASGI web framework that keeps Starlette's API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from triolette._server import serve

__all__ = ["__version__", "serve"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use, so that 'import triolette' does not import hypercorn.
    if name == "serve":
        from triolette._server import serve

        return serve
    raise AttributeError(f"module 'triolette' has no attribute {name!r}")
