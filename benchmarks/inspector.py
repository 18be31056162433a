"""What the inspector costs per request: triolette without it, with it, and Starlette, one run.

    python benchmarks/inspector.py            # BENCH_ROUNDS=9 for more rounds

Runs inproc.py's scenarios three ways in alternating rounds (so drift falls on all alike)
and prints microseconds per request (median), the ratios to Starlette, and the difference
the inspector makes. Without an inspector the request path has one extra ``is None`` check.
"""

from __future__ import annotations

import importlib
import statistics
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from inproc import REQUESTS, ROUNDS, _per_request_us, build

from triolette.applications import Triolette
from triolette.inspector import Inspector

SCENARIOS = ["hello", "json-1k", "stream-64k", "routing-120", "middleware-4", "websocket"]


def main() -> None:
    variants = {"triolette": build("triolette"), "inspected": build("triolette")}
    watched = set()
    for app, _, _ in variants["inspected"].values():
        assert isinstance(app, Triolette)  # build("triolette") builds Triolette apps
        if id(app) not in watched:
            watched.add(id(app))
            Inspector(app, allow=lambda request: True)
    try:
        importlib.import_module("starlette")
        variants["starlette"] = build("starlette")
    except ImportError:
        print("Starlette is not installed: no ratios to it.", file=sys.stderr)
    print(f"{'scenario':14}" + "".join(f"{name + ' us':>16}" for name in variants) + "   +inspector us  ratios")
    for scenario in SCENARIOS:
        rounds: dict[str, list[float]] = {name: [] for name in variants}
        for built in variants.values():
            trio.run(_per_request_us, *built[scenario], 200)  # warm up
        for _ in range(ROUNDS):
            for name, built in variants.items():
                rounds[name].append(trio.run(_per_request_us, *built[scenario], REQUESTS))
        median = {name: statistics.median(times) for name, times in rounds.items()}
        row = f"{scenario:14}" + "".join(f"{median[name]:16.1f}" for name in variants)
        row += f"{median['inspected'] - median['triolette']:16.2f}"
        if "starlette" in median:
            base = median["starlette"]
            row += f"  {median['triolette'] / base:.2f} / {median['inspected'] / base:.2f} of Starlette"
        print(row)


if __name__ == "__main__":
    main()
