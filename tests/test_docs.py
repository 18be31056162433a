"""Every ```python block in README.md and docs/ runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _snippets() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for i, match in enumerate(BLOCK.finditer(page.read_text())):
            found.append((f"{page.relative_to(ROOT)}#{i + 1}", match.group(1)))
    return found


@pytest.mark.parametrize(("where", "code"), _snippets(), ids=[where for where, _ in _snippets()])
def test_snippet_runs(where: str, code: str) -> None:
    if "triolette.compat" in code:
        # The starlette alias changes what 'import starlette' gives for the rest of the
        # process: such a snippet runs in a fresh interpreter of its own.
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            check=False,
        )
        assert result.returncode == 0, f"{where} failed:\n{result.stderr}"
        return
    namespace: dict[str, object] = {"__name__": f"snippet_{where}"}
    exec(compile(code, where, "exec"), namespace)


def test_readme_example_answers() -> None:
    from triolette.testclient import TestClient

    code = BLOCK.findall((ROOT / "README.md").read_text())[0]
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    with TestClient(namespace["app"]) as client:  # type: ignore[arg-type]
        assert client.get("/report").json() == ["a", "b", "c"]


def test_migrating_lists_the_multipart_messages_that_say_more_than_starlettes() -> None:
    from triolette.formparsers import _HEADER_LIMITS

    text = " ".join((ROOT / "docs" / "migrating.md").read_text(encoding="utf-8").split())
    for message in _HEADER_LIMITS.values():
        assert f'"{message}"' in text, f"docs/migrating.md does not list {message!r}"
