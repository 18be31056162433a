"""End to end over loopback: ``python -m triolette`` against plain ``hypercorn --worker-class trio``.

    python benchmarks/e2e_served.py                 # rps and server CPU per request (needs wrk)
    BENCH_CALLGRIND=1 python benchmarks/e2e_served.py   # also instructions per request (valgrind)

Serves the triolette hello app and a bare ASGI app (``served_apps.py``) both ways, in
interleaved rounds (A B A B ...), each round a fresh server process: wrk warms it up, then
measures requests per second; the server's CPU time over the measured run comes from
``/proc/<pid>/stat`` (user + system ticks), divided by the requests wrk counted. With
``BENCH_CALLGRIND=1`` each server also runs once under callgrind (instrumentation switched
on only around a fixed number of keep-alive requests from one client) for instructions per
request, a figure that a busy machine does not disturb. Env: ``BENCH_ROUNDS`` (3),
``BENCH_SECONDS`` (5), ``BENCH_CONNS`` (32), ``BENCH_CALLGRIND_REQUESTS`` (400).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNS = int(os.environ.get("BENCH_CONNS", "32"))
CALLGRIND = os.environ.get("BENCH_CALLGRIND") == "1"
CALLGRIND_REQUESTS = int(os.environ.get("BENCH_CALLGRIND_REQUESTS", "400"))
TICKS = os.sysconf("SC_CLK_TCK")

SERVERS = {
    "triolette": lambda app, port: [sys.executable, "-m", "triolette", f"served_apps:{app}", "--port", str(port),
                                    "--log-level", "warning"],
    "hypercorn-trio": lambda app, port: [sys.executable, "-m", "hypercorn", "--worker-class", "trio",
                                         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", f"served_apps:{app}"],
}  # fmt: skip
if os.environ.get("BENCH_ACCESS_LOG") == "1":
    SERVERS["triolette+log"] = lambda app, port: [*SERVERS["triolette"](app, port), "--access-log"]
APPS = ["hello", "raw"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{HERE}"}
    process = subprocess.Popen(command, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if get(port).startswith(b"HTTP/1.1 200"):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{command} did not answer on port {port}")


def get(port: int, count: int = 1) -> bytes:
    """``count`` keep-alive requests on one connection; returns the last response's bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        answer = b""
        for _ in range(count):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            answer = b""
            while not answer.endswith(b"Hello, world!"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise OSError("the server closed the connection")
                answer += chunk
        return answer


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(2)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def cpu_ticks(pid: int) -> int:
    """User + system CPU ticks of ``pid`` and its descendants (hypercorn serves from a child process)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        total += sum(cpu_ticks(int(child)) for child in children.read_text().split())
    return total


def serving_pid(pid: int) -> int:
    """The process that serves: ``pid`` itself, or hypercorn's worker process (its child that
    is not multiprocessing's resource tracker)."""
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    return pid


def wrk(port: int, seconds: int) -> tuple[float, int]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNS}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    requests = re.search(r"(\d+) requests in", out)
    if rps is None or requests is None:
        raise RuntimeError(f"wrk printed no 'Requests/sec' or 'requests in': {out!r}")
    return float(rps.group(1)), int(requests.group(1))


def measure(server: str, app: str) -> tuple[float, float]:
    port = free_port()
    process = start(SERVERS[server](app, port), port)
    try:
        wrk(port, 2)  # warm up
        before = cpu_ticks(process.pid)
        rps, requests = wrk(port, SECONDS)
        ticks = cpu_ticks(process.pid) - before
    finally:
        stop(process)
    return rps, ticks / TICKS / requests * 1e6


def instructions(server: str, app: str) -> float:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--trace-children=yes",
                   f"--callgrind-out-file={tmp}/callgrind.%p",
                   *SERVERS[server](app, port)]  # fmt: skip
        process = start(command, port)
        try:
            get(port, 20)
            target = str(serving_pid(process.pid))
            subprocess.run(["callgrind_control", "-i", "on", target], check=True, capture_output=True)
            get(port, CALLGRIND_REQUESTS)
            subprocess.run(["callgrind_control", "-i", "off", target], check=True, capture_output=True)
        finally:
            stop(process)
        total = 0
        for line in (Path(tmp) / f"callgrind.{target}").read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
        return total / CALLGRIND_REQUESTS


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("e2e_served.py needs wrk (apt-get install wrk)")
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for round_ in range(ROUNDS):
        for app in APPS:
            for server in SERVERS:  # interleaved: A B A B
                results.setdefault((server, app), []).append(measure(server, app))
        print(f"round {round_ + 1}/{ROUNDS} done", file=sys.stderr)
    counts: dict[tuple[str, str], float] = {}
    if CALLGRIND and shutil.which("valgrind"):
        for app in APPS:
            for server in SERVERS:
                counts[server, app] = instructions(server, app)
    print(f"{'server':<16}{'app':<7}{'rps':>9}{'CPU us/req':>12}{'instr/req':>12}")
    for app in APPS:
        for server in SERVERS:
            rps = statistics.median(r for r, _ in results[server, app])
            cpu = statistics.median(c for _, c in results[server, app])
            instr = f"{counts[server, app] / 1e6:.2f}M" if (server, app) in counts else "-"
            print(f"{server:<16}{app:<7}{rps:>9.0f}{cpu:>12.1f}{instr:>12}")
        ours = [statistics.median(r for r, _ in results["triolette", app]),
                statistics.median(c for _, c in results["triolette", app])]  # fmt: skip
        theirs = [statistics.median(r for r, _ in results["hypercorn-trio", app]),
                  statistics.median(c for _, c in results["hypercorn-trio", app])]  # fmt: skip
        line = f"{app}: rps x{ours[0] / theirs[0]:.2f}, CPU per request x{ours[1] / theirs[1]:.2f}"
        if ("triolette", app) in counts:
            line += f", instructions per request x{counts['triolette', app] / counts['hypercorn-trio', app]:.2f}"
        print(line)
        if ("triolette+log", app) in counts:
            print(f"{app}: access log on, instructions per request x"
                  f"{counts['triolette+log', app] / counts['triolette', app]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
