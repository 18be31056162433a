"""The tests and fixtures that docs/testing.md shows, run here as real pytest-trio tests.

tests/test_docs.py execs every snippet (which only defines them); this module collects the
``test_*`` functions and the fixtures of the page, so that pytest runs them exactly as a
user's suite would run them: fixtures, ``autojump_clock`` and all. Failures point at the
lines of docs/testing.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from _pytest.fixtures import FixtureFunctionDefinition  # what @pytest.fixture makes (pytest >= 8.4)

PAGE = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _page_tests() -> dict[str, Any]:
    """The page's test functions and fixtures, from the snippets that define tests."""
    text = PAGE.read_text()
    found: dict[str, Any] = {}
    for match in BLOCK.finditer(text):
        code = match.group(1)
        if "def test_" not in code:
            continue
        line = text.count("\n", 0, match.start(1))
        namespace: dict[str, Any] = {"__name__": f"docs.testing_line_{line + 1}"}
        exec(compile("\n" * line + code, str(PAGE), "exec"), namespace)
        for name, value in namespace.items():
            if name.startswith("test_") or isinstance(value, FixtureFunctionDefinition):
                if name in found:
                    raise RuntimeError(f"docs/testing.md defines {name!r} in two snippets; give one another name")
                found[name] = value
    return found


PAGE_TESTS = _page_tests()
globals().update(PAGE_TESTS)


def test_every_test_on_the_page_is_collected() -> None:
    assert sorted(PAGE_TESTS) == [
        "app",
        "client",
        "closed_feeds",
        "test_a_chat_between_two_people",
        "test_a_client_that_gives_up",
        "test_a_long_poll_is_woken_by_another_request",
        "test_a_slow_report_times_out",
        "test_home",
        "test_the_feed_stops_when_the_client_leaves",
        "test_the_socket_pings",
    ]
