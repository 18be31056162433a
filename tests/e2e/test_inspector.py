"""End to end: the inspector of an app served by a real hypercorn trio server on 127.0.0.1.

A slow request appears in flight with its nursery's tasks, then ends with "client
disconnected" when its client goes; the live page's event stream carries the same
snapshots. Every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import httpx
import pytest
import trio

from tests.e2e.servers import running
from tests.e2e.test_websocket_sse import _HTTPX_GENERATORS
from triolette.applications import Triolette
from triolette.requests import Request
from triolette.responses import Response
from triolette.routing import Route

pytestmark = pytest.mark.e2e


async def slow_search(request: Request) -> Response:
    for name in ("people", "places", "things"):
        request.nursery.start_soon(trio.sleep_forever, name=f"search {name}")
    await trio.sleep_forever()
    raise AssertionError("unreachable")  # pragma: no cover


async def wait_for_state(client: httpx.AsyncClient, base: str, check: Any) -> dict[str, Any]:
    while True:
        state: dict[str, Any] = (await client.get(f"{base}/_triolette/state.json")).json()
        if check(state):
            return state
        await trio.sleep(0.02)


@pytest.mark.filterwarnings(_HTTPX_GENERATORS)  # the client closes responses mid-stream
async def test_inspector_shows_a_request_in_flight_then_client_disconnected() -> None:
    app = Triolette(debug=True, inspector=True, routes=[Route("/search", slow_search, timeout=60)])
    with trio.fail_after(20):
        async with running(app) as base, httpx.AsyncClient() as client:
            async with trio.open_nursery() as nursery:
                request = trio.CancelScope()
                nursery.start_soon(_get_until_cancelled, base, request)

                def searching(state: dict[str, Any]) -> bool:
                    return any(item["path"] == "/search" for item in state["in_flight"])

                state = await wait_for_state(client, base, searching)
                [search] = [item for item in state["in_flight"] if item["path"] == "/search"]
                names = {task["name"] for task in search["tasks"]}
                assert {"search people", "search places", "search things"} <= names
                assert search["phase"] == "in handler"
                assert 0 < search["deadline_in"] <= 60
                request.cancel()  # the client goes: its connection is closed

            def ended(state: dict[str, Any]) -> bool:
                return any(item["path"] == "/search" for item in state["ended"])

            state = await wait_for_state(client, base, ended)
            assert state["ended"][0]["reason"] == "client disconnected"
            assert state["counts"]["client disconnected"] == 1
            assert not any(item["path"] == "/search" for item in state["in_flight"])

            page = await client.get(f"{base}/_triolette/")
            assert "triolette inspector" in page.text
            async with (
                client.stream("GET", f"{base}/_triolette/events") as stream,
                aclosing(stream.aiter_lines()) as lines,  # type: ignore[type-var]  # httpx types aiter_*() AsyncIterator; they have aclose()
            ):
                async for line in lines:
                    if line.startswith("data: "):
                        snapshot = json.loads(line.removeprefix("data: "))
                        break
            assert snapshot["ended"][0]["reason"] == "client disconnected"
            assert snapshot["sse"] == 1  # the stream itself


async def _get_until_cancelled(base: str, scope: trio.CancelScope) -> None:
    async with httpx.AsyncClient() as client:
        with scope:
            await client.get(f"{base}/search", timeout=None)
