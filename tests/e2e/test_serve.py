"""End to end: ``python -m triolette`` in a real process on 127.0.0.1, stopped by a real signal.

The server is started with ``--port 0`` and reports the port the OS picked ("Serving on
http://127.0.0.1:PORT"). Every wait is bounded by ``trio.fail_after``.
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
import contextlib, os, pathlib, trio
from triolette.applications import Triolette
from triolette.responses import PlainTextResponse
from triolette.routing import Route

HERE = pathlib.Path(__file__).parent

async def service(*, task_status=trio.TASK_STATUS_IGNORED):
    task_status.started()
    try:
        await trio.sleep_forever()
    finally:
        (HERE / f"service-finally-{os.getpid()}").write_text("ran")

@contextlib.asynccontextmanager
async def lifespan(app):
    if os.environ.get("FAIL_STARTUP"):
        raise RuntimeError("database unreachable")
    await app.nursery.start(service)
    yield

async def slow(request):
    (HERE / "slow-started").write_text("yes")
    await trio.sleep(2)
    return PlainTextResponse(f"slow done, draining={request.app.draining.is_set()}")

async def hello(request):
    return PlainTextResponse("hello")

app = Triolette(routes=[Route("/slow", slow), Route("/", hello)], lifespan=lifespan)
"""


class Server:
    def __init__(self, process: trio.Process, directory: Path) -> None:
        self.process = process
        self.directory = directory
        self.stderr = ""
        self.url = ""
        self._serving = trio.Event()

    async def read_stderr(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.stderr += chunk.decode()
            found = re.search(r"Serving on (http://127\.0\.0\.1:\d+)", self.stderr)
            if found and not self._serving.is_set():
                self.url = found.group(1)
                self._serving.set()

    async def wait_serving(self) -> None:
        with trio.fail_after(15):
            while not self._serving.is_set():
                if self.process.poll() is not None:
                    raise AssertionError(f"the server exited with {self.process.returncode}:\n{self.stderr}")
                with trio.move_on_after(0.05):
                    await self._serving.wait()

    async def wait_exit(self, seconds: float) -> int:
        with trio.fail_after(seconds):
            return await self.process.wait()


@asynccontextmanager
async def triolette(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[Server]:
    (tmp_path / "e2e_app.py").write_text(APP)
    environment = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    command = [sys.executable, "-m", "triolette", "e2e_app:app", "--port", "0", *args]
    process = await trio.lowlevel.open_process(command, cwd=tmp_path, env=environment, stderr=subprocess.PIPE)
    server = Server(process, tmp_path)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.read_stderr)
            yield server
            with trio.fail_after(40):
                await process.wait()
    finally:
        if process.returncode is None:  # pragma: no cover - only when a test failed
            process.kill()
            await process.wait()


def service_markers(directory: Path) -> list[str]:
    return [marker.read_text() for marker in directory.glob("service-finally-*")]


async def wait_for_file(path: Path) -> None:
    with trio.fail_after(10):
        while not await trio.Path(path).exists():  # noqa: ASYNC110 - another process writes it
            await trio.sleep(0.02)


async def check_drain_on(signum: signal.Signals, tmp_path: Path, *args: str, workers: int = 1) -> Server:
    async with triolette(tmp_path, "--graceful-timeout", "30", *args) as server, httpx.AsyncClient() as client:
        await server.wait_serving()
        with trio.fail_after(15):
            # Every worker has started its service (a worker signalled during its startup has none).
            while len(re.findall(r"Serving on \S+$", server.stderr, re.MULTILINE)) < workers:  # noqa: ASYNC110
                await trio.sleep(0.05)
            while True:
                try:
                    assert (await client.get(f"{server.url}/")).text == "hello"
                    break
                except httpx.TransportError:
                    await trio.sleep(0.05)
        answers: list[httpx.Response] = []
        async with trio.open_nursery() as nursery:

            async def slow() -> None:
                async with httpx.AsyncClient() as own:
                    answers.append(await own.get(f"{server.url}/slow", timeout=20))

            nursery.start_soon(slow)
            await wait_for_file(tmp_path / "slow-started")
            signalled_at = trio.current_time()
            server.process.send_signal(signum)
            await trio.sleep(0.5)  # the request is still in flight (it takes 2 s)
            assert not answers
            async with httpx.AsyncClient() as fresh:
                with pytest.raises(httpx.ConnectError):
                    await fresh.get(f"{server.url}/")
        assert answers[0].status_code == 200
        assert answers[0].text == "slow done, draining=True"
        assert await server.wait_exit(10) == 0
        assert trio.current_time() - signalled_at < 10  # well within the graceful timeout of 30 s
    return server


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_drains_the_request_in_flight_and_exits_0(signum: signal.Signals, tmp_path: Path) -> None:
    server = await check_drain_on(signum, tmp_path)
    assert f"{signum.name}: shutting down" in server.stderr
    assert service_markers(tmp_path) == ["ran"]


async def test_worker_processes_drain_on_sigterm(tmp_path: Path) -> None:
    server = await check_drain_on(signal.SIGTERM, tmp_path, "--workers", "2", workers=2)
    assert "with 2 worker process(es)" in server.stderr
    assert service_markers(tmp_path) == ["ran", "ran"], server.stderr  # each worker's service had its finally


async def test_a_failing_startup_exits_non_zero_with_the_message(tmp_path: Path) -> None:
    async with triolette(tmp_path, env={"FAIL_STARTUP": "1"}) as server:
        assert await server.wait_exit(15) == 1
    assert "triolette: error: application startup failed: RuntimeError: database unreachable" in server.stderr
    assert "Serving on" not in server.stderr


async def test_a_bad_app_path_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "triolette", "e2e_missing:app"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "triolette: error: could not import module 'e2e_missing' (no module named 'e2e_missing'); "
        "run from the directory that contains it, or put it on PYTHONPATH\n"
    )


async def test_reload_restarts_the_worker_when_a_source_file_changes(tmp_path: Path) -> None:
    async with triolette(tmp_path, "--reload") as server, httpx.AsyncClient() as client:
        await server.wait_serving()
        # The worker's own line too, not just the parent's: a change made while the worker starts
        # kills it before it handles signals, and the test would wait for a line that never comes.
        with trio.fail_after(15):
            while server.stderr.count("Serving on http://127.0.0.1") < 2:  # noqa: ASYNC110 - another process logs it
                await trio.sleep(0.05)
        await trio.sleep(1.5)  # the watcher has its snapshot
        source = trio.Path(tmp_path / "e2e_app.py")
        await source.write_text(await source.read_text() + "\n# changed\n")
        with trio.fail_after(15):
            while "restarting" not in server.stderr or server.stderr.count("Serving on http://127.0.0.1") < 3:  # noqa: ASYNC110
                await trio.sleep(0.05)
            while True:
                try:
                    assert (await client.get(f"{server.url}/")).text == "hello"
                    break
                except httpx.TransportError:
                    await trio.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        assert await server.wait_exit(15) == 0
    assert service_markers(tmp_path) == ["ran", "ran"]  # the first worker's and the second's
