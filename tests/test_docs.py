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
    from triolette.applications import Triolette
    from triolette.testclient import TestClient

    code = BLOCK.findall((ROOT / "README.md").read_text())[0]
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app, Triolette)
    with TestClient(app) as client:
        assert client.get("/report").json() == ["a", "b", "c"]


def test_the_index_leads_a_newcomer_and_links_every_page_and_the_changelog() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    headings = [line for line in index.splitlines() if line.startswith("## ")]
    assert headings[:4] == ["## Installation", "## A first app", "## Running it", "## Testing it"]
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"docs/index.md does not link {page.name}"
    assert "](../CHANGELOG.md)" in index


@pytest.mark.parametrize(
    ("page", "blocks"),
    [("requests", 4), ("responses", 5), ("routing", 5), ("endpoints", 2), ("database", 2), ("server_push", 1)],
)
def test_a_page_that_was_thin_or_missing_has_runnable_code(page: str, blocks: int) -> None:
    assert len(BLOCK.findall((ROOT / "docs" / f"{page}.md").read_text())) >= blocks


def test_every_page_recommends_python_m_triolette_and_no_install_that_fails() -> None:
    for page in PAGES:
        text = page.read_text()
        assert "pip install 'triolette[" not in text, f"{page.name}: triolette is not on the package index"
        assert "pip install triolette[" not in text, f"{page.name}: triolette is not on the package index"
        if "hypercorn --worker-class trio" in text:
            before = text[: text.index("hypercorn --worker-class trio")]
            assert "python -m triolette" in before, f"{page.name} names hypercorn before python -m triolette"


def test_every_example_is_run_with_python_m_triolette_first() -> None:
    for example in [*(ROOT / "examples").glob("*.py"), ROOT / "examples" / "board" / "app.py"]:
        text = example.read_text()
        if "--worker-class" in text:
            assert "python -m triolette" in text[: text.index("--worker-class")], example.name


def test_migrating_names_starlette_1x_and_the_0x_apis_to_change() -> None:
    text = (ROOT / "docs" / "migrating.md").read_text()
    assert "triolette follows **Starlette 1.x**" in text
    old_apis = ["on_startup", "@app.route", "@app.middleware", "add_event_handler"]
    old_apis.append('TestClient(app, backend="asyncio")')
    for old in old_apis:
        assert old in text, old


def test_testing_says_how_to_install_pytest_trio() -> None:
    assert "pip install './triolette[test]' pytest pytest-trio" in (ROOT / "docs" / "testing.md").read_text()


def test_migrating_lists_the_multipart_messages_that_say_more_than_starlettes() -> None:
    from triolette.formparsers import _HEADER_LIMITS

    text = " ".join((ROOT / "docs" / "migrating.md").read_text(encoding="utf-8").split())
    for message in _HEADER_LIMITS.values():
        assert f'"{message}"' in text, f"docs/migrating.md does not list {message!r}"
