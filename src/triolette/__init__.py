"""triolette: a trio-native ASGI web framework that keeps Starlette's API."""

__version__ = "0.1.0"
