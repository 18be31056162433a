"""Hostile input from raw sockets against ``python -m triolette`` (issue 13): no 500s, no frozen loop.

One server process (``tests/e2e/hostile_app.py``) serves the module on 127.0.0.1, on a port
the OS picks; it is stopped by its pid at the end, and its log must hold no traceback. The
SIGTERM test starts a server of its own. Every wait is bounded.

Run just this group with ``pytest -m hostile``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

pytestmark = [pytest.mark.e2e, pytest.mark.hostile]

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
SECRET = "the contents of secret.txt, outside the static directory"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    static: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def make_static(directory: Path) -> Path:
    static = directory / "static"
    (static / "sub").mkdir(parents=True)
    (static / "public.txt").write_text("public " * 1000)
    (static / "sub" / "inner.txt").write_text("inner")
    (directory / "secret.txt").write_text(SECRET)
    return static


def start_server(directory: Path, *args: str) -> Server:
    """``python -m triolette tests.e2e.hostile_app:app --port 0``, its log in a file."""
    static = make_static(directory)
    log = directory / "server.log"
    environment = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "HOSTILE_STATIC": str(static)}
    command = [sys.executable, "-m", "triolette", "tests.e2e.hostile_app:app", "--port", "0", *args]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while (found := re.search(r"Serving on http://127\.0\.0\.1:(\d+)", log.read_text())) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the server did not start (exit {process.returncode}):\n{log.read_text()}")
        time.sleep(0.05)
    return Server(process, int(found.group(1)), log, static)


def stop_server(server: Server) -> int:
    """SIGTERM, then wait (bounded); kill if it does not exit. Returns the exit code."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:  # pragma: no cover - only when a test failed
        server.process.kill()
        server.process.wait()
        raise


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("hostile"), "--graceful-timeout", "5")
    try:
        yield running
    finally:
        code = stop_server(running)
    log = running.log_text()
    if code != 0 or "Traceback" in log:
        pytest.fail(f"the server exited with {code}, or logged a traceback:\n{log}")


# --------------------------------------------------------------------------- raw HTTP


def request_bytes(method: str, target: str, *headers: str, body: bytes = b"", host: str | None = "127.0.0.1") -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [*headers, "Connection: close"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def exchange(port: int, raw: bytes, *, seconds: float = 20) -> bytes:
    """Send ``raw`` on a new connection and read until the server closes it.

    The server may answer (a 400, a 413) and close before it has read everything: what it
    said is the answer, and the rest of the send is dropped.
    """

    async def send(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(raw)

    with trio.fail_after(seconds):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(send, stream)
            answer = b""
            try:
                while chunk := await stream.receive_some(65536):
                    answer += chunk
            except trio.BrokenResourceError:  # a reset after the answer
                pass
            nursery.cancel_scope.cancel()
            return answer


def status(answer: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    assert match, answer[:200]
    return int(match.group(1))


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


async def get(port: int, target: str, *headers: str, host: str | None = "127.0.0.1") -> bytes:
    return await exchange(port, request_bytes("GET", target, *headers, host=host))


async def post(port: int, target: str, body: bytes, content_type: str) -> bytes:
    return await exchange(port, request_bytes("POST", target, f"Content-Type: {content_type}", body=body))


async def stats(port: int) -> dict[str, Any]:
    answer = await get(port, "/stats")
    assert status(answer) == 200
    result: dict[str, Any] = json.loads(body_of(answer))
    return result


def reset_peak_memory(pid: int) -> int:
    """Resets the process's peak resident memory to its current one; returns that, in bytes."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return proc_status(pid, "VmRSS")


def proc_status(pid: int, field: str) -> int:
    found = re.search(rf"^{field}:\s+(\d+) kB$", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    assert found, field
    return int(found.group(1)) * 1024


async def assert_healthy(port: int) -> None:
    assert body_of(await get(port, "/")) == b"pong"


# --------------------------------------------------------------------------- item 1: Range


@pytest.mark.parametrize("template", ["bytes={n}-", "bytes=0-{n}", "bytes=-{n}"], ids=["start", "end", "suffix"])
async def test_range_with_5000_digit_number_is_400(server: Server, template: str) -> None:
    answer = await get(server.port, "/file", "Range: " + template.format(n="9" * 5000))
    assert status(answer) == 400
    assert body_of(answer) == b"Range header: a byte position has at most 19 digits, got one of 5000."


async def test_range_with_thousands_of_parts_sends_the_whole_file(server: Server) -> None:
    header = "Range: bytes=" + ",".join(f"{i}-{i}" for i in range(2000))[:15000].rpartition(",")[0]
    with trio.fail_after(5):
        answer = await get(server.port, "/file", header)
    assert status(answer) == 200
    assert body_of(answer) == b"public " * 1000


# --------------------------------------------------------------------------- item 2: urlencoded forms


async def worst_latency_during(port: int, attack: Any) -> tuple[Any, float]:
    """Run ``attack()`` while a second connection asks ``GET /`` every 10 ms; the worst latency."""
    worst = 0.0
    done = trio.Event()
    result: list[Any] = []

    async def attacker() -> None:
        result.append(await attack())
        done.set()

    async def pinger() -> None:
        nonlocal worst
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            while not done.is_set():
                started = trio.current_time()
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answer = b""
                while not answer.endswith(b"pong"):
                    answer += await stream.receive_some(65536)
                worst = max(worst, trio.current_time() - started)
                await trio.sleep(0.01)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(attacker)
            nursery.start_soon(pinger)
    return result[0], worst


def send_from_a_thread(port: int, raw: bytes) -> bytes:
    """Send a large request with a blocking socket, off the test's event loop (so that the
    client's own work does not delay its pings)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


async def quiet_latency(port: int, seconds: float) -> float:
    """The worst latency of the pings over ``seconds`` with no attack: the machine's own noise."""
    _, worst = await worst_latency_during(port, partial(trio.sleep, seconds))
    return worst


URLENCODED_ATTACKS = {
    "one 15 MiB field": (b"f=" + b"%41" * (15 * MIB // 3), 400, b"Field exceeded maximum size of 1024KB."),
    "15 fields of 1 MiB": (b"&".join(b"f%d=" % i + b"%41" * ((MIB - 6) // 3) for i in range(15)), 200, b"15"),
}


@pytest.mark.parametrize("attack", URLENCODED_ATTACKS)
async def test_urlencoded_escapes_keep_memory_bounded_and_the_loop_responsive(server: Server, attack: str) -> None:
    """Issue 13, item 2: before, 1.2 GiB and a 10-16 s freeze for the 15 MiB field."""
    body, expected_status, expected_body = URLENCODED_ATTACKS[attack]
    raw = request_bytes("POST", "/form", "Content-Type: application/x-www-form-urlencoded", body=body)
    # A loaded machine (CI, coverage, other jobs on two cores) can deschedule the server for
    # tens of milliseconds by itself: the bound is 100 ms beyond the noise of an idle window
    # as long as the attack, and the best of three tries counts. A frozen loop (before the
    # fix: seconds) fails all three.
    tries = []
    for _ in range(3):
        baseline = reset_peak_memory(server.pid)
        started = trio.current_time()
        answer, worst = await worst_latency_during(
            server.port, lambda: trio.to_thread.run_sync(send_from_a_thread, server.port, raw)
        )
        peak = proc_status(server.pid, "VmHWM") - baseline
        assert status(answer) == expected_status
        assert body_of(answer) == expected_body
        assert peak < 3 * len(body), f"peak memory +{peak / MIB:.1f} MiB for a body of {len(body) / MIB:.1f} MiB"
        noise = await quiet_latency(server.port, trio.current_time() - started)
        tries.append(f"{worst * 1000:.0f} ms (idle: {noise * 1000:.0f} ms)")
        if worst < 0.1 + noise:
            break
    else:
        raise AssertionError(f"a concurrent request waited more than 100 ms beyond the noise: {tries}")


# --------------------------------------------------------------------------- items 4 and 5


@pytest.mark.parametrize(
    "body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000 + b"1" + b"}" * 100_000], ids=["arrays", "objects"]
)
async def test_json_nested_100k_deep_is_400(server: Server, body: bytes) -> None:
    answer = await post(server.port, "/json", body, "application/json")
    assert status(answer) == 400
    assert body_of(answer).startswith(b"JSON body nested too deeply: ")


@pytest.mark.parametrize("kind", ["int", "float", "uuid"])
async def test_path_parameter_of_5000_digits_is_404(server: Server, kind: str) -> None:
    answer = await get(server.port, f"/{kind}/{'9' * 5000}")
    assert status(answer) == 404
    assert body_of(await get(server.port, f"/{kind}/12" if kind != "uuid" else f"/uuid/{'a' * 32}")) != b""


# --------------------------------------------------------------------------- static files


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E%2Fsecret.txt",
    "/static/..%2fsecret.txt",
    "/static/sub/../../secret.txt",
    "/static/sub/%2e%2e/%2e%2e/secret.txt",
    "/static/..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static//..//secret.txt",
    "/static/%2fetc%2fpasswd",
    "/static//etc/passwd",
    "/static/public.txt%00.png",
    "/static/sub/inner.txt/..%2f..%2f..%2fsecret.txt",
    "/static/%c0%ae%c0%ae/secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_static_traversal_never_serves_outside_the_directory(server: Server, target: str) -> None:
    answer = await get(server.port, target)
    assert status(answer) in (400, 404), answer[:300]
    assert SECRET.encode() not in answer
    assert b"root:" not in answer


async def test_static_serves_what_is_inside(server: Server) -> None:
    assert body_of(await get(server.port, "/static/sub/inner.txt")) == b"inner"


# --------------------------------------------------------------------------- multipart


def multipart(parts: list[bytes]) -> bytes:
    return b"".join(b"--B\r\n" + part + b"\r\n" for part in parts) + b"--B--\r\n"


MULTIPART_ATTACKS = {
    "100k fields": (
        multipart([b'Content-Disposition: form-data; name="f"\r\n\r\nx'] * 100_000),
        b"Too many fields. Maximum number of fields is 1000.",
    ),
    "100k files": (
        multipart([b'Content-Disposition: form-data; name="f"; filename="a"\r\n\r\nx'] * 100_000),
        b"Too many files. Maximum number of files is 1000.",
    ),
    "oversized part header": (
        multipart([b'Content-Disposition: form-data; name="f"\r\nX-Big: ' + b"a" * 100_000 + b"\r\n\r\nx"]),
        b"Invalid multipart data: a part's header is too large.",
    ),
    "10k part headers": (
        multipart([b'Content-Disposition: form-data; name="f"\r\n' + b"X: y\r\n" * 10_000 + b"\r\nx"]),
        b"Invalid multipart data: a part has too many headers.",
    ),
}


@pytest.mark.parametrize("attack", MULTIPART_ATTACKS)
async def test_multipart_abuse_is_400_with_the_reason(server: Server, attack: str) -> None:
    body, reason = MULTIPART_ATTACKS[attack]
    with trio.fail_after(15):
        answer = await post(server.port, "/form", body, "multipart/form-data; boundary=B")
    assert status(answer) == 400
    assert body_of(answer) == reason
    await assert_healthy(server.port)


# --------------------------------------------------------------------------- sessions, hosts


async def test_tampered_session_cookies_start_a_new_session(server: Server) -> None:
    answer = await get(server.port, "/session")
    cookie = re.search(rb"set-cookie: session=([^;]+);", answer, re.IGNORECASE)
    assert cookie
    valid = cookie.group(1).decode()
    assert json.loads(body_of(await get(server.port, "/session", f"Cookie: session={valid}"))) == {"visits": 2}
    # Flip the signature's first character, which carries six bits of the MAC. Its
    # last character carries only four: "A" and "B" decode to the same bytes, so a
    # signature ending in "A" changed to "B" is still valid (1 run in 16 failed so).
    payload_and_time, signature = valid.rsplit(".", 1)
    flipped = "Q" if signature[0] != "Q" else "A"
    tampered = [
        f"{payload_and_time}.{flipped}{signature[1:]}",
        valid[:10],
        "x" + valid,
        valid.replace(".", "!"),
        "not-base64-at-all!!",
        "",
        "a" * 8000,
        "eyJ2aXNpdHMiOiA5OTl9.Zz.forged",
    ]
    for value in tampered:
        answer = await get(server.port, "/session", f"Cookie: session={value}")
        assert status(answer) == 200, value
        assert json.loads(body_of(answer)) == {"visits": 1}, value


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", 200),
        ("localhost:8000", 200),
        ("api.example.org", 200),
        ("evil.com", 400),
        ("example.org", 400),
        ("api.example.org.evil.com", 400),
        ("127.0.0.1:notaport", 400),
        ("[::1", 400),
        ("", 400),
        ("a" * 8000, 400),
        ("xn--80ak6aa92e.com", 400),
        ("127.0.0.1@evil.com", 400),
    ],
)
async def test_host_header_variants(server: Server, host: str, expected: int) -> None:
    answer = await get(server.port, "/", host=host)
    assert status(answer) == expected


@pytest.mark.parametrize("headers", [[], ["Host: 127.0.0.1", "Host: evil.com"]], ids=["no Host", "two Hosts"])
async def test_missing_or_repeated_host_is_400(server: Server, headers: list[str]) -> None:
    answer = await get(server.port, "/", *headers, host=None)
    assert status(answer) == 400


@pytest.mark.parametrize("length", ["9" * 5000, "9" * 30, "\u00b2", "1_0", "+5", "-1", "5, 6"])
async def test_malformed_content_length_is_400(server: Server, length: str) -> None:
    head = f"POST /body HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n"
    answer = await exchange(server.port, head.encode("latin-1") + b"abcde")
    assert status(answer) == 400


# --------------------------------------------------------------------------- slow clients


async def test_slow_body_is_408(server: Server) -> None:
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            head = "POST /body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
            await stream.send_all(head.encode() + b"x" * 10)
            started = trio.current_time()
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive_some(65536)
    assert status(answer) == 408
    assert trio.current_time() - started < 8  # body_timeout is 3 s


async def test_slow_reader_is_dropped(server: Server) -> None:
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    with sock, trio.fail_after(30):
        await sock.connect(("127.0.0.1", server.port))
        await sock.send(request_bytes("GET", "/big"))
        while (await stats(server.port))["streams_open"] == 0:  # noqa: ASYNC110 - another process
            await trio.sleep(0.05)
        # the client reads nothing: within send_timeout (1 s) and the socket's timeout, the
        # stream is abandoned and its finally runs
        while (await stats(server.port))["streams_open"] != 0:  # noqa: ASYNC110 - another process
            await trio.sleep(0.1)
    await assert_healthy(server.port)


# --------------------------------------------------------------------------- connection storms


async def vanish(port: int, rng: random.Random) -> None:
    """Open a connection and leave at a random point, politely or with a reset."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    if rng.random() < 0.5:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    choice = rng.randrange(6)
    try:
        if choice == 1:
            await stream.send_all(b"GET / HT")
        elif choice == 2:
            await stream.send_all(b"POST /body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\nabc")
        elif choice == 3:
            await stream.send_all(request_bytes("GET", "/slow?s=5"))
            await trio.sleep(rng.random() * 0.05)
        elif choice == 4:
            await stream.send_all(request_bytes("GET", "/big"))
            await stream.receive_some(rng.randrange(1, 200_000))
        elif choice == 5:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 3)
    except (trio.BrokenResourceError, trio.ClosedResourceError):  # pragma: no cover - the server may reset first
        pass
    finally:
        await stream.aclose()


async def settled_stats(port: int) -> dict[str, Any]:
    """The server's figures once its tasks and descriptors have held still for a second (bounded)."""
    history: list[tuple[int, int]] = []
    with trio.move_on_after(20):
        while len(history) < 4 or len(set(history[-4:])) > 1:
            now = await stats(port)
            history.append((now["tasks"], now["fds"]))
            await trio.sleep(0.3)
    return now


async def wait_for_baseline(port: int, baseline: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Poll the server until its tasks and file descriptors are back to ``baseline`` (bounded)."""
    now: dict[str, Any] = {}
    with trio.move_on_after(seconds):
        while True:
            now = await stats(port)
            if now["tasks"] == baseline["tasks"] and now["fds"] == baseline["fds"]:
                break
            await trio.sleep(0.1)
    return now


async def test_2000_connections_that_vanish_leave_nothing_behind(server: Server) -> None:
    for _ in range(50):  # warm up: allocator arenas, first connections
        await assert_healthy(server.port)
    baseline = await settled_stats(server.port)
    rng = random.Random(2000)
    limiter = trio.CapacityLimiter(100)

    async def one() -> None:
        async with limiter:
            await vanish(server.port, rng)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(2000):
                nursery.start_soon(one)
    # connections that left before sending a whole request are closed by the server's
    # keep-alive timeout (5 s)
    after = await wait_for_baseline(server.port, baseline, 20)
    assert (after["tasks"], after["fds"], after["in_flight"], after["streams_open"]) == (
        baseline["tasks"],
        baseline["fds"],
        0,
        0,
    )
    assert after["memory"] - baseline["memory"] < 32 * MIB
    await assert_healthy(server.port)


# --------------------------------------------------------------------------- drain


async def test_sigterm_with_200_requests_in_flight_answers_them_all(tmp_path: Path) -> None:
    drained = start_server(tmp_path, "--graceful-timeout", "20")
    try:
        answers: list[bytes] = []

        async def one() -> None:
            answers.append(await exchange(drained.port, request_bytes("GET", "/slow?s=2"), seconds=30))

        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                for _ in range(200):
                    nursery.start_soon(one)
                while (await stats(drained.port))["in_flight"] < 200:  # noqa: ASYNC110 - another process
                    await trio.sleep(0.05)
                drained.process.send_signal(signal.SIGTERM)
        assert len(answers) == 200
        assert {(status(answer), body_of(answer)) for answer in answers} == {(200, b"done, draining=True")}
        assert drained.process.wait(timeout=20) == 0  # after the drain, without a second signal
    finally:
        stop_server(drained)
    if "Traceback" in drained.log_text():
        pytest.fail(f"the server logged a traceback:\n{drained.log_text()}")
