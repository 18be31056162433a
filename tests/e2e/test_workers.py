"""End to end: the worker processes of ``python -m triolette`` and what their log says.

A real ``python -m triolette`` on 127.0.0.1, port 0 (the port it logs), stopped with SIGTERM
by its pid; every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

pytestmark = pytest.mark.e2e

SRC = Path(__file__).resolve().parents[2] / "src"

APP = """
import asyncio
from triolette.applications import Triolette
from triolette.responses import PlainTextResponse
from triolette.routing import Route

async def hello(request):
    return PlainTextResponse("hello")

async def asyncio_only(request):
    await asyncio.sleep(1)

app = Triolette(routes=[Route("/", hello), Route("/asyncio", asyncio_only)])
"""

WORKER_SERVING = re.compile(r"\[(\d+)\] \[INFO\] Serving on http://127\.0\.0\.1:\d+$", re.MULTILINE)


class Server:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stdout = ""
        self.stderr = ""
        self.url = ""

    async def read(self, stream: trio.abc.ReceiveStream, name: str) -> None:
        async for chunk in stream:
            setattr(self, name, getattr(self, name) + chunk.decode())

    async def wait_for(self, pattern: str, count: int = 1, seconds: float = 30) -> None:
        with trio.fail_after(seconds):
            while len(re.findall(pattern, self.stderr, re.MULTILINE)) < count:
                if self.process.poll() is not None:
                    raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.stderr}")
                await trio.sleep(0.05)

    async def wait_workers(self, count: int) -> list[int]:
        await self.wait_for(WORKER_SERVING.pattern, count)
        self.url = re.findall(r"Serving on (http://127\.0\.0\.1:\d+)", self.stderr)[0]
        return [int(pid) for pid in WORKER_SERVING.findall(self.stderr)]

    async def get(self, path: str = "/") -> httpx.Response:
        async with httpx.AsyncClient() as client:  # a connection of its own, closed after the response
            return await client.get(f"{self.url}{path}", timeout=10)

    async def get_when_up(self, path: str = "/") -> httpx.Response:
        with trio.fail_after(30):
            while True:
                try:
                    response = await self.get(path)
                except httpx.TransportError:
                    await trio.sleep(0.05)
                    continue
                if response.status_code != 503:
                    return response
                await trio.sleep(0.05)

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(30):
            return await self.process.wait()


@asynccontextmanager
async def triolette(directory: Path, *args: str, source: str = APP) -> AsyncIterator[Server]:
    (directory / "workers_app.py").write_text(source)
    command = [sys.executable, "-m", "triolette", "workers_app:app", "--port", "0", *args]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = await trio.lowlevel.open_process(
        command, cwd=directory, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    server = Server(process)
    try:
        async with trio.open_nursery() as nursery:
            assert process.stdout is not None
            assert process.stderr is not None
            nursery.start_soon(server.read, process.stdout, "stdout")
            nursery.start_soon(server.read, process.stderr, "stderr")
            yield server
            with trio.fail_after(30):
                await process.wait()
    finally:
        if process.returncode is None:  # pragma: no cover - only when a test failed
            process.kill()
            await process.wait()


async def test_workers_log_each_request_once(tmp_path: Path) -> None:
    async with triolette(tmp_path, "--workers", "2", "--access-log") as server:
        await server.wait_workers(2)
        for _ in range(20):
            assert (await server.get()).text == "hello"
        assert await server.stop() == 0
    lines = server.stdout.splitlines()
    assert len(lines) == 20, server.stdout
    assert all('"GET / 1.1" 200 5' in line for line in lines), server.stdout


async def test_a_worker_killed_with_sigkill_is_restarted_with_one_log_line(tmp_path: Path) -> None:
    async with triolette(tmp_path, "--workers", "2") as server:
        first, second = await server.wait_workers(2)
        os.kill(first, signal.SIGKILL)
        await server.wait_for(rf"Worker {first} was killed by SIGKILL: starting a new one in 0\.5 s$")
        pids = await server.wait_workers(3)  # the new worker says it serves
        assert pids[2] not in (first, second)
        assert (await server.get_when_up()).text == "hello"
        assert await server.stop() == 0
    assert server.stderr.count("was killed by SIGKILL") == 1
    assert "Traceback" not in server.stderr


BROKEN = "\ndef broken(:\n"


async def test_reload_with_a_syntax_error_answers_503_at_once_and_recovers(tmp_path: Path) -> None:
    async with triolette(tmp_path, "--reload") as server:
        await server.wait_workers(1)
        assert (await server.get_when_up()).text == "hello"
        await trio.sleep(1.5)  # the watcher (it looks once a second) has its first snapshot
        source = tmp_path / "workers_app.py"
        source.write_text(APP + BROKEN)
        await server.wait_for("until then every request gets 503")
        with trio.fail_after(5):  # at once, not a hang
            response = await server.get()
        assert response.status_code == 503
        assert response.headers["connection"] == "close"
        first_line = response.text.splitlines()[0]
        assert first_line.startswith("The app cannot start: SyntaxError: ")
        assert "workers_app.py, line" in first_line
        source.write_text(APP.replace('"hello"', '"fixed"'))
        with trio.fail_after(30):
            while True:
                response = await server.get_when_up()
                if response.text == "fixed":
                    break
                await trio.sleep(0.1)  # the old worker answered
        assert await server.stop() == 0


async def test_reload_with_an_app_broken_from_the_start_answers_503_and_recovers(tmp_path: Path) -> None:
    async with triolette(tmp_path, "--reload", source=APP + BROKEN) as server:
        await server.wait_for("until then every request gets 503")
        server.url = re.findall(r"Serving on (http://127\.0\.0\.1:\d+)", server.stderr)[0]
        assert "Could not import workers_app:app: SyntaxError: " in server.stderr
        assert server.process.poll() is None  # the server waits for a fix rather than exiting
        with trio.fail_after(5):  # at once, not a hang
            response = await server.get()
        assert response.status_code == 503
        assert response.text.splitlines()[0].startswith("The app cannot start: SyntaxError: ")
        await trio.sleep(1.5)  # the watcher (it looks once a second) has its first snapshot
        (tmp_path / "workers_app.py").write_text(APP)
        assert (await server.get_when_up()).text == "hello"
        assert await server.stop() == 0


async def test_under_asyncio_hypercorn_the_first_log_line_is_the_refusal(tmp_path: Path) -> None:
    (tmp_path / "workers_app.py").write_text(APP)
    command = [sys.executable, "-m", "hypercorn", "workers_app:app", "--bind", "127.0.0.1:0"]
    with trio.fail_after(60):
        result = await trio.run_process(
            command,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(SRC)},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    first_line = result.stderr.decode().splitlines()[0]
    assert first_line == (
        "triolette runs under trio only, but was called from asyncio. "
        "Serve it with 'python -m triolette module:app' or 'hypercorn --worker-class trio module:app'."
    )


async def test_asyncio_code_in_an_endpoint_is_explained_in_the_error_log(tmp_path: Path) -> None:
    async with triolette(tmp_path) as server:
        await server.wait_workers(1)
        assert (await server.get("/asyncio")).status_code == 500
        await server.wait_for(r"^RuntimeError: no running event loop$")
        assert await server.stop() == 0
    lines = server.stderr.splitlines()
    note = lines[lines.index("RuntimeError: no running event loop") + 1]
    assert note.startswith("triolette runs on trio, not asyncio: this is asyncio-only code")
    assert note.endswith(
        "Use trio or anyio, or a trio-compatible client; see docs/database.md for databases that work."
    )
