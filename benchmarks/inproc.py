"""In-process benchmark: triolette against Starlette, same scenarios, same trio run.

    python benchmarks/inproc.py            # both, if Starlette is installed
    BENCH_ROUNDS=9 python benchmarks/inproc.py

Prints microseconds per request (median of alternating rounds), the ratio
triolette / Starlette, and F: trio's floor for one nursery with one task started,
cancelled and joined (DESIGN.md section 6). The budget column checks the issue's
targets: time <= factor x Starlette + F (+ slack).
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
REQUESTS = 2000
# scenario: (factor of Starlette's time, slack in microseconds), from the core issue
BUDGETS = {
    "hello": (1.0, 5.0),
    "json-1k": (1.0, 0.0),
    "body-1MiB": (1.0, 0.0),
    "form-50": (0.7, 0.0),
    "stream-64k": (1.0, 0.0),
    "routing-120": (0.5, 0.0),
    "middleware-4": (1.0, 0.0),
    "websocket": (1.0, 0.0),
}

Scope = dict[str, Any]
App = Callable[..., Awaitable[None]]


def _scope(path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }


def _ws_scope() -> Scope:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "scheme": "ws",
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "subprotocols": [],
    }


def _receiver(messages: list[dict[str, Any]]) -> Callable[[], Awaitable[dict[str, Any]]]:
    queue: list[dict[str, Any]] = list(reversed(messages))

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    return receive


def _body(chunks: list[bytes]) -> list[dict[str, Any]]:
    return [{"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)]


async def _discard(message: dict[str, Any]) -> None:
    pass


def build(framework: str) -> dict[str, tuple[App, Callable[[], Scope], Callable[[], Any]]]:
    """The scenarios, built from ``framework``'s public API only."""

    def module(name: str) -> Any:
        return importlib.import_module(f"{framework}.{name}")

    applications, responses, routing = module("applications"), module("responses"), module("routing")
    App_ = getattr(applications, "Triolette", None) or applications.Starlette
    Route, WebSocketRoute = routing.Route, routing.WebSocketRoute

    async def hello(request: Any) -> Any:
        return responses.PlainTextResponse("Hello, world!")

    async def echo_json(request: Any) -> Any:
        return responses.JSONResponse(await request.json())

    async def body(request: Any) -> Any:
        return responses.PlainTextResponse(str(len(await request.body())))

    async def form(request: Any) -> Any:
        return responses.PlainTextResponse(str(len(await request.form())))

    async def stream(request: Any) -> Any:
        async def chunks() -> Any:
            for _ in range(64):
                yield b"x" * 1024

        return responses.StreamingResponse(chunks())

    async def item(request: Any) -> Any:
        return responses.PlainTextResponse(str(request.path_params["id"]))

    async def ws_echo(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    routes = [
        Route("/", hello),
        Route("/json", echo_json, methods=["POST"]),
        Route("/body", body, methods=["POST"]),
        Route("/form", form, methods=["POST"]),
        Route("/stream", stream),
        WebSocketRoute("/ws", ws_echo),
    ]
    table = []
    for group in range(30):
        table += [
            Route(f"/r{group}", hello),
            Route(f"/r{group}/{{id:int}}", item),
            Route(f"/r{group}/{{id:int}}/edit", item),
            Route(f"/r{group}/new", hello),
        ]
    Middleware = module("middleware").Middleware
    stack = [
        Middleware(module("middleware.trustedhost").TrustedHostMiddleware, allowed_hosts=["*"]),
        Middleware(module("middleware.cors").CORSMiddleware, allow_origins=["*"]),
        Middleware(module("middleware.gzip").GZipMiddleware, minimum_size=500),
        Middleware(module("middleware.sessions").SessionMiddleware, secret_key="k" * 32),
    ]
    app, routed, wrapped = App_(routes=routes), App_(routes=table), App_(routes=routes, middleware=stack)
    payload = json.dumps({"items": [{"id": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(12)]}).encode()
    form_body = "&".join(f"f{i}=v{i}" for i in range(50)).encode()
    ctype = [(b"content-type", b"application/json")]
    ftype = [(b"content-type", b"application/x-www-form-urlencoded")]
    megabyte = [b"x" * 65536] * 16
    return {
        "hello": (app, lambda: _scope("/"), lambda: _receiver(_body([b""]))),
        "json-1k": (app, lambda: _scope("/json", "POST", ctype), lambda: _receiver(_body([payload]))),
        "body-1MiB": (app, lambda: _scope("/body", "POST"), lambda: _receiver(_body(megabyte))),
        "form-50": (app, lambda: _scope("/form", "POST", ftype), lambda: _receiver(_body([form_body]))),
        "stream-64k": (app, lambda: _scope("/stream"), lambda: _receiver(_body([b""]))),
        "routing-120": (routed, lambda: _scope("/r29/77/edit"), lambda: _receiver(_body([b""]))),
        "middleware-4": (
            wrapped,
            lambda: _scope("/", headers=[(b"origin", b"http://x")]),
            lambda: _receiver(_body([b""])),
        ),
        "websocket": (
            app,
            _ws_scope,
            lambda: _receiver([{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}]),
        ),
    }


async def _per_request_us(app: App, make_scope: Callable[[], Scope], make_receive: Callable[[], Any], n: int) -> float:
    calls = [(make_scope(), make_receive()) for _ in range(n)]
    start = time.perf_counter()
    for scope, receive in calls:
        await app(scope, receive, _discard)
    return (time.perf_counter() - start) / n * 1e6


async def floor_us(n: int = 5000) -> float:
    """F: one nursery, one task started and blocked, cancelled, joined."""
    start = time.perf_counter()
    for _ in range(n):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            nursery.cancel_scope.cancel()
    return (time.perf_counter() - start) / n * 1e6


def run(frameworks: list[str]) -> dict[tuple[str, str], float]:
    built = {fw: build(fw) for fw in frameworks}
    results: dict[tuple[str, str], float] = {}
    for name in built[frameworks[0]]:
        n = REQUESTS // 10 if name == "body-1MiB" else REQUESTS
        for fw in frameworks:
            trio.run(_per_request_us, *built[fw][name], 200)  # warm up
        rounds: dict[str, list[float]] = {fw: [] for fw in frameworks}
        for _ in range(ROUNDS):
            for fw in frameworks:  # alternate, so drift falls on both alike
                rounds[fw].append(trio.run(_per_request_us, *built[fw][name], n))
        for fw in frameworks:
            results[(fw, name)] = statistics.median(rounds[fw])
    return results


def main() -> None:
    frameworks = ["triolette"]
    try:
        importlib.import_module("starlette")
        frameworks.insert(0, "starlette")
    except ImportError:
        print("Starlette is not installed: triolette alone, no ratios.", file=sys.stderr)
    results = run(frameworks)
    floor = statistics.median(trio.run(floor_us) for _ in range(5))
    print(f"{'scenario':14}" + "".join(f"{fw + ' us':>16}" for fw in frameworks) + "   ratio   budget")
    for name in BUDGETS:
        row = f"{name:14}" + "".join(f"{results[(fw, name)]:16.1f}" for fw in frameworks)
        if len(frameworks) == 2:
            ours, theirs = results[("triolette", name)], results[("starlette", name)]
            factor, slack = BUDGETS[name]
            limit = factor * theirs + floor + slack
            row += f"   {ours / theirs:5.2f}   {'ok' if ours <= limit else 'OVER'} (<= {limit:.0f})"
        print(row)
    print(f"{'F (floor)':14}{floor:16.1f}")


if __name__ == "__main__":
    main()
