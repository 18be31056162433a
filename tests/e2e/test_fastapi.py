"""End to end: a FastAPI app (FastAPI from PyPI) on triolette through the ``starlette`` alias.

The app opts in with ``import triolette.compat.starlette`` and is served by
``python -m triolette shop:app`` in a real process on 127.0.0.1 (port picked by the OS), so
the alias never touches this test process. Every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio
from httpx_ws import AsyncWebSocketSession, aconnect_ws

from tests.e2e.test_serve import Server, wait_for_file

pytestmark = [
    pytest.mark.e2e,
    # Looked up, not imported: importing FastAPI here would import the real Starlette.
    pytest.mark.skipif(importlib.util.find_spec("fastapi") is None, reason="FastAPI is a dev dependency"),
]

SRC = Path(__file__).resolve().parents[2] / "src"

SHOP = """
import triolette.compat.starlette  # the alias: before anything imports fastapi or starlette

import pathlib
from typing import Annotated

import trio
from fastapi import BackgroundTasks, Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel

HERE = pathlib.Path(__file__).parent
app = FastAPI(title="Shop", version="1.0")


class Item(BaseModel):
    name: str
    price: float


@app.post("/items/{item_id}")
async def create_item(item_id: int, item: Item) -> dict:
    return {"id": item_id, "name": item.name, "price": item.price}


async def session():
    (HERE / "dependency-entered").write_text("yes")
    try:
        yield "db"
    finally:
        (HERE / "dependency-cleanup").write_text("ran")


@app.get("/slow")
async def slow(db: Annotated[str, Depends(session)]) -> dict:
    try:
        await trio.sleep(30)
    except trio.Cancelled:
        (HERE / "endpoint-cancelled").write_text("yes")
        raise
    return {"db": db}


def write_receipt(order: str) -> None:
    (HERE / "receipt").write_text(order)


@app.post("/orders/{order}")
async def order(order: str, background_tasks: BackgroundTasks) -> dict:
    background_tasks.add_task(write_receipt, order)
    return {"queued": order}


@app.get("/drain")
async def drain(request: Request) -> dict:
    (HERE / "drain-started").write_text("yes")
    await trio.sleep(2)
    return {"draining": request.app.draining.is_set(), "app": type(request.app).__name__}


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text("echo " + await websocket.receive_text())
    except WebSocketDisconnect:
        (HERE / "websocket-closed").write_text("yes")
"""


@asynccontextmanager
async def shop(tmp_path: Path) -> AsyncIterator[Server]:
    (tmp_path / "shop.py").write_text(SHOP)
    environment = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-m", "triolette", "shop:app", "--port", "0", "--graceful-timeout", "30"]
    process = await trio.lowlevel.open_process(command, cwd=tmp_path, env=environment, stderr=subprocess.PIPE)
    server = Server(process, tmp_path)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.read_stderr)
            await server.wait_serving()
            yield server
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            assert await server.wait_exit(20) == 0, server.stderr
    finally:
        if process.returncode is None:  # pragma: no cover - only when a test failed
            process.kill()
            await process.wait()


async def test_fastapi_validation_error_is_422_with_fastapis_body(tmp_path: Path) -> None:
    async with shop(tmp_path) as server, httpx.AsyncClient(base_url=server.url) as client:
        good = await client.post("/items/7", json={"name": "pen", "price": 1.5})
        assert (good.status_code, good.json()) == (200, {"id": 7, "name": "pen", "price": 1.5})
        bad = await client.post("/items/seven", json={"name": "pen"})
    assert bad.status_code == 422
    assert bad.json() == {
        "detail": [
            {
                "type": "int_parsing",
                "loc": ["path", "item_id"],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": "seven",
            },
            {"type": "missing", "loc": ["body", "price"], "msg": "Field required", "input": {"name": "pen"}},
        ]
    }


async def test_fastapi_openapi_schema_and_docs_page(tmp_path: Path) -> None:
    async with shop(tmp_path) as server, httpx.AsyncClient(base_url=server.url) as client:
        schema = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
    assert schema["info"] == {"title": "Shop", "version": "1.0"}
    assert sorted(schema["paths"]) == ["/drain", "/items/{item_id}", "/orders/{order}", "/slow"]
    assert "Item" in schema["components"]["schemas"]
    assert docs.status_code == 200
    assert docs.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>Shop - Swagger UI</title>" in docs.text
    assert "/openapi.json" in docs.text


async def test_fastapi_dependency_with_yield_cleanup_runs_when_client_disconnects(tmp_path: Path) -> None:
    async with shop(tmp_path) as server:
        started = trio.current_time()
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:

                async def leaves_early() -> None:
                    async with httpx.AsyncClient(base_url=server.url) as client:
                        await client.get("/slow", timeout=60)  # cancelled below: the client goes away

                nursery.start_soon(leaves_early)
                await wait_for_file(tmp_path / "dependency-entered")
                nursery.cancel_scope.cancel(reason="the client leaves mid-request")
            await wait_for_file(tmp_path / "dependency-cleanup")
            await wait_for_file(tmp_path / "endpoint-cancelled")
        took = trio.current_time() - started
    assert (tmp_path / "dependency-cleanup").read_text() == "ran"
    assert took < 15  # well before the endpoint's 30 s sleep would have ended


async def test_fastapi_background_task_runs_after_the_response(tmp_path: Path) -> None:
    async with shop(tmp_path) as server, httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post("/orders/42")
        assert response.json() == {"queued": "42"}
        await wait_for_file(tmp_path / "receipt")
    assert (tmp_path / "receipt").read_text() == "42"


async def test_fastapi_websocket_echo(tmp_path: Path) -> None:
    async with shop(tmp_path) as server, httpx.AsyncClient() as client:
        with trio.fail_after(10):
            ws: AsyncWebSocketSession
            async with aconnect_ws(f"{server.url}/ws", client) as ws:
                await ws.send_text("hi")
                assert await ws.receive_text() == "echo hi"
                await ws.send_text("again")
                assert await ws.receive_text() == "echo again"
            await wait_for_file(tmp_path / "websocket-closed")


async def test_fastapi_sigterm_drain_answers_the_request_in_flight(tmp_path: Path) -> None:
    answers: list[httpx.Response] = []
    async with shop(tmp_path) as server:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:

                async def in_flight() -> None:
                    async with httpx.AsyncClient(base_url=server.url) as client:
                        answers.append(await client.get("/drain", timeout=20))

                nursery.start_soon(in_flight)
                await wait_for_file(tmp_path / "drain-started")
                server.process.send_signal(signal.SIGTERM)
            assert await server.wait_exit(10) == 0
    assert answers[0].status_code == 200
    assert answers[0].json() == {"draining": True, "app": "FastAPI"}
    assert "SIGTERM: shutting down" in server.stderr
