"""Peak server memory for one 15 MiB WebSocket frame to an app whose limit is 1 MiB.

    python benchmarks/ws_big_frame.py

Serves ``served_apps:ws_limited`` through ``python -m triolette`` (which hands the app's
limit to hypercorn, so the frame is refused while it arrives) and through plain
``hypercorn --worker-class trio`` (hypercorn's own 16 MiB limit: the server buffers the
message, then the app refuses it), in one run. Reports the rise of the serving process's
peak RSS (``VmHWM`` in ``/proc/<pid>/status``) over the frame, and the close code.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from e2e_served import free_port, serving_pid, start, stop

FRAME = 15 * 1024 * 1024
SERVERS: dict[str, Callable[[int], list[str]]] = {
    "triolette": lambda port: [sys.executable, "-m", "triolette", "served_apps:ws_limited", "--port", str(port),
                               "--log-level", "warning"],
    "hypercorn-trio": lambda port: [sys.executable, "-m", "hypercorn", "--worker-class", "trio",
                                    "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "served_apps:ws_limited"],
}  # fmt: skip


def peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")  # pragma: no cover


def send_big_frame(port: int) -> tuple[int | None, float]:
    """Handshake, then one 15 MiB binary frame; returns the close code the server sent and the seconds taken."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        started = time.monotonic()
        frame = b"\x82\xff" + struct.pack("!Q", FRAME) + b"\x00\x00\x00\x00"
        with contextlib.suppress(OSError):  # refused early: the server stopped reading
            sock.sendall(frame + b"\x00" * FRAME)
        data = head.partition(b"\r\n\r\n")[2]
        with contextlib.suppress(OSError):
            while len(data) < 4:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        code = struct.unpack("!H", data[2:4])[0] if len(data) >= 4 and data[0] & 0x0F == 8 else None
        return code, time.monotonic() - started


def main() -> None:
    print(f"{'server':<16}{'peak RSS rise':>15}{'close code':>12}{'seconds':>9}")
    for name, command in SERVERS.items():
        port = free_port()
        process = start(command(port), port)
        try:
            pid = serving_pid(process.pid)
            before = peak_kib(pid)
            code, seconds = send_big_frame(port)
            time.sleep(0.5)
            rise = peak_kib(pid) - before
        finally:
            stop(process)
        print(f"{name:<16}{rise / 1024:>12.1f} MiB{code!s:>12}{seconds:>9.2f}")


if __name__ == "__main__":
    main()
