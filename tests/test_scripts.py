"""The two commands of the README, run against a stand-in virtual environment.

``scripts/serve`` and ``scripts/test`` are copied beside a copy of ``pyproject.toml`` into a
temporary folder whose ``.venv/bin`` holds stand-ins for python, ruff and mypy that record
how they were called; ``PATH`` is a folder with the few tools the scripts use, no chromedriver,
and a stand-in ``apt-get`` that records any call to it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDER = '#!/bin/sh\necho "{name} $*" >> "$CALLS"\n'


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the scripts and pyproject.toml, with a .venv of stand-ins and a stand-in apt-get on PATH."""
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    (project / ".ci").mkdir()
    for name in ("scripts/serve", "scripts/test", ".ci/run", "pyproject.toml"):
        shutil.copy2(ROOT / name, project / name)
    for directory, names in ((project / ".venv" / "bin", ("python", "ruff", "mypy")), (tmp_path / "bin", ("apt-get",))):
        directory.mkdir(parents=True)
        for name in names:
            tool = directory / name
            tool.write_text(RECORDER.format(name=name))
            tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    # PATH is that bin folder alone: the few tools the scripts use, and no chromedriver.
    for program in ("bash", "dirname", "id", "cat", "cksum"):
        found = shutil.which(program)
        assert found is not None, f"{program} is not installed"
        (tmp_path / "bin" / program).symlink_to(found)
    return project


def _inherited() -> dict[str, str]:
    """This process's environment less the opt-outs a caller may have set (scripts/test-lowest
    sets TRIOLETTE_NO_BROWSER): each test sets the ones it is about."""
    opt_outs = ("TRIOLETTE_NO_BROWSER", "TRIOLETTE_NO_REDIS")
    return {key: value for key, value in os.environ.items() if key not in opt_outs}


def run(script: str, project: Path, extra: list[str] | None = None, **env: str) -> tuple[str, list[str]]:
    calls = project.parent / "calls"
    calls.write_text("")
    result = subprocess.run(
        [str(project / script), *(extra or [])],
        env={**_inherited(), "PATH": str(project.parent / "bin"), "CALLS": str(calls), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, calls.read_text().splitlines()


def installs(calls: list[str]) -> list[str]:
    return [call for call in calls if " -m pip install " in call]


def test_serve_installs_once_then_starts_at_once(checkout: Path) -> None:
    out, calls = run("scripts/serve", checkout)
    assert len(installs(calls)) == 2  # pip itself, then the project with its extras
    assert "-e .[full]" in installs(calls)[1]
    assert "Installing triolette[full] into .venv" in out
    out, calls = run("scripts/serve", checkout)
    assert installs(calls) == []
    assert "Installing" not in out
    assert calls == ["python -m triolette examples.board.app:app --host 127.0.0.1 --port 8000"]


def test_serve_passes_extra_arguments_to_the_command(checkout: Path) -> None:
    _, calls = run("scripts/serve", checkout, extra=["--workers", "2"])
    assert calls[-1] == "python -m triolette examples.board.app:app --host 127.0.0.1 --port 8000 --workers 2"


def test_serve_installs_again_when_pyproject_changes(checkout: Path) -> None:
    run("scripts/serve", checkout)
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# a new dependency\n")
    _, calls = run("scripts/serve", checkout)
    assert len(installs(calls)) == 2


def test_serve_prints_the_url_and_what_to_try_and_honours_port(checkout: Path) -> None:
    out, calls = run("scripts/serve", checkout, PORT="8123")
    assert "The demo board will be at http://127.0.0.1:8123/" in out
    assert "add a card" in out
    assert "http://127.0.0.1:8123/stats" in out
    assert "http://127.0.0.1:8123/stats?delay=2 passes it: 503" in out
    assert calls[-1] == "python -m triolette examples.board.app:app --host 127.0.0.1 --port 8123"


def test_the_test_command_installs_no_system_packages(checkout: Path) -> None:
    out, calls = run("scripts/test", checkout)
    assert "Installing triolette[full] and the dev group into .venv" in out
    assert not [call for call in calls if call.startswith("apt-get")]
    assert "-e .[full] --group dev" in installs(calls)[1]
    assert calls[-4:-1] == [
        "ruff check src tests examples benchmarks",
        "ruff format --check src tests examples benchmarks",
        "mypy ",
    ]
    assert calls[-1].startswith("python -m pytest -p no:cacheprovider --cov")
    _, calls = run("scripts/test", checkout)
    assert installs(calls) == []  # installed already


def test_ci_announces_the_system_packages_before_it_installs_them(checkout: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("the CI script installs system packages only as root")
    out, calls = run(".ci/run", checkout)
    assert "Installing Debian packages for the browser and Redis tests: chromium chromium-driver redis-server" in out
    assert calls[:2] == ["apt-get update -qq", "apt-get install -y -qq chromium chromium-driver redis-server"]
    assert calls[-1].startswith("python -m pytest")  # then the README's test command, as is
    _, calls = run(".ci/run", checkout, TRIOLETTE_NO_BROWSER="1")
    assert calls[:2] == ["apt-get update -qq", "apt-get install -y -qq redis-server"]
    _, calls = run(".ci/run", checkout, TRIOLETTE_NO_BROWSER="1", TRIOLETTE_NO_REDIS="1")
    assert not [call for call in calls if call.startswith("apt-get")]
