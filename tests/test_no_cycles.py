"""A request leaves no reference cycles behind: what it allocated (its body among it) is
freed by reference counting when the call returns, not later by the garbage collector."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import call
from triolette.applications import Triolette
from triolette.middleware import Middleware
from triolette.middleware.cors import CORSMiddleware
from triolette.middleware.gzip import GZipMiddleware
from triolette.middleware.sessions import SessionMiddleware
from triolette.middleware.trustedhost import TrustedHostMiddleware
from triolette.requests import Request
from triolette.responses import PlainTextResponse, Response, StreamingResponse
from triolette.routing import Route


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def echo(request: Request) -> Response:
    return PlainTextResponse(await request.body())


async def stream(request: Request) -> Response:
    async def chunks() -> Any:
        for _ in range(3):
            yield b"x"

    return StreamingResponse(chunks())


app = Triolette(
    routes=[Route("/echo", echo, methods=["POST"]), Route("/stream", stream)],
    middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=["*"]),
        Middleware(CORSMiddleware, allow_origins=["*"]),
        Middleware(GZipMiddleware, minimum_size=500),
        Middleware(SessionMiddleware, secret_key="k" * 32),
    ],
)


@pytest.mark.usefixtures("collector_off")
async def test_requests_leave_no_cyclic_garbage() -> None:
    for _ in range(3):  # warm up: first calls build the middleware stack and caches
        await call(app, "/echo", "POST", body=b"hello")
    gc.collect()
    for _ in range(10):
        assert (await call(app, "/echo", "POST", body=b"x" * 100_000)).body == b"x" * 100_000
        assert (await call(app, "/stream")).body == b"xxx"
        assert (await call(app, "/missing")).status == 404
    assert gc.collect() == 0
