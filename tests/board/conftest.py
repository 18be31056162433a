"""The board runs its SQLite queries in worker threads. trio's autojump clock jumps ahead
whenever every task is blocked, and a task waiting for a thread counts as blocked, so a
threshold of 0 would race the threads: give them a few real milliseconds first."""

from __future__ import annotations

import pytest
import trio.testing


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.05)
