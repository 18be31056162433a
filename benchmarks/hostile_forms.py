"""Hostile urlencoded bodies: server memory and a concurrent request's latency, before and after.

    python benchmarks/hostile_forms.py                 # before: 3aa4113 (issue 13's base)
    python benchmarks/hostile_forms.py --before REV    # any revision of this repository

For each version of ``src/`` (``before``: taken from git with ``git archive``; ``after``: the
working tree), the script starts ``python -m triolette`` on 127.0.0.1 with an app whose
``POST /form`` parses the form, and for each body below sends it on one connection while a
second connection asks ``GET /`` every 10 ms. It prints the status of the form request, how
long it took, the worst latency of the concurrent requests while it ran, and the server's
peak resident memory above what it held before the request (Linux ``VmHWM``, reset through
``/proc/PID/clear_refs``).

Bodies (issue 13, item 2): one field of 15 MiB of ``%41`` escapes (over the 1 MiB part
limit), and 15 fields of just under 1 MiB of ``%41`` escapes each.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024

APP = """
from triolette.applications import Triolette
from triolette.responses import PlainTextResponse
from triolette.routing import Route

async def form(request):
    return PlainTextResponse(str(len(await request.form())))

async def ping(request):
    return PlainTextResponse("ok")

app = Triolette(routes=[Route("/form", form, methods=["POST"]), Route("/", ping)])
"""

# Sends the body in a file with a plain blocking socket and prints the response's status line.
SENDER = """
import socket, sys
from urllib.parse import urlsplit
url = urlsplit(sys.argv[1])
with open(sys.argv[2], "rb") as file:
    body = file.read()
head = b"POST /form HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/x-www-form-urlencoded\\r\\n"
with socket.create_connection((url.hostname, url.port)) as sock:
    sock.sendall(head + b"Content-Length: %d\\r\\nConnection: close\\r\\n\\r\\n" % len(body) + body)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
print(answer.split(b"\\r\\n", 1)[0].decode())
"""

BODIES = {
    "one 15 MiB field": b"f=" + b"%41" * (15 * MIB // 3),
    "15 fields of 1 MiB": b"&".join(b"f%d=" % i + b"%41" * ((MIB - 6) // 3) for i in range(15)),
}


def status(pid: int, field: str) -> int:
    """A memory figure of /proc/PID/status, in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no {field} in /proc/{pid}/status")
    return int(found.group(1)) * 1024


def reset_peak(pid: int) -> int:
    """Resets the process's peak resident memory (VmHWM) to its current one, and returns that."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status(pid, "VmRSS")


async def quiet_latency(url: str) -> float:
    """The worst latency of 50 requests with nothing else going on: the machine's own noise."""
    worst = 0.0
    async with httpx.AsyncClient(base_url=url) as pinger:
        for _ in range(50):
            started = trio.current_time()
            await pinger.get("/")
            worst = max(worst, trio.current_time() - started)
            await trio.sleep(0.01)
    return worst


async def measure(url: str, pid: int, body: Path) -> tuple[int, float, float, int, int]:
    """Status, duration and worst concurrent latency (s), concurrent requests dropped, peak memory growth."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as pinger:
        for _ in range(20):  # warm up the ping connection and the app
            await pinger.get("/")
        baseline = reset_peak(pid)
        done = trio.Event()
        result: list[int] = []
        worst = 0.0
        dropped = 0

        async def post() -> None:
            # Sent from another process, so that the client's own work does not delay the pings.
            process = await trio.run_process([sys.executable, "-c", SENDER, url, str(body)], capture_stdout=True)
            result.append(int(process.stdout.split()[1]))
            done.set()

        async def ping() -> None:
            nonlocal worst, dropped
            while not done.is_set():
                started = trio.current_time()
                try:
                    await pinger.get("/")
                except httpx.TransportError:  # a connection the server closed while it was frozen
                    dropped += 1
                worst = max(worst, trio.current_time() - started)
                await trio.sleep(0.01)

        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(post)
            nursery.start_soon(ping)
        duration = trio.current_time() - started
        return result[0], duration, worst, dropped, status(pid, "VmHWM") - baseline


async def run_version(label: str, src: Path, directory: Path) -> None:
    (directory / "bench_forms_app.py").write_text(APP)
    environment = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "triolette", "bench_forms_app:app", "--port", "0"]
    process = await trio.lowlevel.open_process(command, cwd=directory, env=environment, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        output = b""
        with trio.fail_after(20):
            while (found := re.search(rb"Serving on (http://127\.0\.0\.1:\d+)", output)) is None:
                chunk = await process.stderr.receive_some()
                if not chunk:
                    raise RuntimeError(f"the server exited: {output.decode()}")
                output += chunk
        url = found.group(1).decode()
        print(f"{label:6} {'no hostile request':20} worst of 50 requests {await quiet_latency(url) * 1000:7.1f} ms")
        for name, body in BODIES.items():
            (directory / "body").write_bytes(body)
            code, duration, worst, dropped, peak = await measure(url, process.pid, directory / "body")
            print(
                f"{label:6} {name:20} status {code}  parse+upload {duration:6.2f} s  "
                f"worst concurrent {worst * 1000:7.1f} ms ({dropped} dropped)  peak memory +{peak / MIB:7.1f} MiB",
                flush=True,
            )
    finally:
        process.terminate()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()


def export_src(revision: str, directory: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory / "src"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="3aa4113", help="the revision to compare with (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as before_dir, tempfile.TemporaryDirectory() as after_dir:
        await run_version("before", export_src(args.before, Path(before_dir)), Path(before_dir))
        await run_version("after", ROOT / "src", Path(after_dir))


if __name__ == "__main__":
    trio.run(main)
