"""What a new user does first: clone the repository and collect its tests; build the package and install it.

Both tests start real processes: ``git clone`` and ``pytest --collect-only`` in a folder with
nothing beside the clone; ``python -m build`` (an sdist, then a wheel built from that sdist) and
``pip install`` of the wheel with its extras into a fresh virtual environment that does not see
this one's packages. They are marked ``slow`` (tens of seconds) and run with the rest of the suite.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _plugins_disabled_here() -> list[str]:
    """The ``-p no:NAME`` options this pytest runs with (scripts/test-lowest leaves anyio's plugin
    out): the clone's collection runs in the same environment, so it needs them too."""
    args = sys.argv[1:]
    disabled: list[str] = []
    for option, value in itertools.pairwise(args):
        if option == "-p" and value.startswith("no:") and value != "no:cacheprovider":
            disabled += ["-p", value]
    return disabled


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout's PYTHONPATH or virtual environment."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(extra)
    return env


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{args!r} exited with {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout: nothing to clone")
@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_fresh_clone_with_nothing_beside_it_collects_every_test(tmp_path: Path) -> None:
    clone = tmp_path / "triolette"
    run(["git", "clone", "--quiet", str(ROOT), str(clone)], cwd=tmp_path, env=clean_env(), timeout=120)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["triolette"]  # nothing beside the clone
    env = clean_env(PYTHONPATH=f"{clone / 'src'}{os.pathsep}{clone}")
    where = run([sys.executable, "-c", "import triolette; print(triolette.__file__)"], cwd=clone, env=env, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(clone)
    result = run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *_plugins_disabled_here()],
        cwd=clone,
        env=env,
        timeout=300,
    )
    match = re.search(r"^(\d+) tests? collected", result.stdout, re.MULTILINE)
    assert match is not None, result.stdout[-2000:]
    assert int(match.group(1)) > 1000
    assert "error" not in result.stdout.splitlines()[-1].lower()


def test_no_test_or_script_reads_outside_the_repository() -> None:
    outside = ("../" + "shared", 'parent / "' + 'shared"')
    for folder in ("tests", "scripts", ".ci", "src", "examples", "benchmarks"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix in ("", ".py", ".sh", ".toml", ".cfg"):
                text = path.read_text(errors="replace")
                assert not any(needle in text for needle in outside), f"{path.relative_to(ROOT)} reads outside"


def test_the_sdist_builds_a_wheel_that_installs_and_imports_in_a_clean_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # Without --sdist/--wheel, build makes the sdist, then the wheel from the unpacked sdist:
    # a file the sdist leaves out breaks the wheel here, not on a user's machine.
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=tmp_path, env=clean_env(), timeout=300)
    (sdist,) = dist.glob("triolette-*.tar.gz")
    (wheel,) = dist.glob("triolette-*-py3-none-any.whl")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "src/triolette/__init__.py", "src/triolette/py.typed"} <= names

    venv = tmp_path / "venv"  # a plain venv: without --system-site-packages, nothing of ours leaks in
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path, env=clean_env(), timeout=120)
    python = venv / "bin" / "python"
    run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{wheel}[full]"],
        cwd=tmp_path,
        env=clean_env(),
        timeout=600,
    )
    script = (
        "import sys, hypercorn, httpx, jinja2, multipart, itsdangerous, triolette\n"
        "from triolette.applications import Triolette\n"
        "from triolette.testclient import TestClient\n"
        "from triolette.responses import PlainTextResponse\n"
        "from triolette.routing import Route\n"
        "app = Triolette(routes=[Route('/', lambda request: PlainTextResponse('hello'))])\n"
        "assert TestClient(app).get('/').text == 'hello'\n"
        "print(triolette.__file__)\n"
    )
    result = run([str(python), "-c", script], cwd=tmp_path, env=clean_env(), timeout=120)
    assert Path(result.stdout.strip()).is_relative_to(venv)
    version = run([str(venv / "bin" / "triolette"), "--version"], cwd=tmp_path, env=clean_env(), timeout=60)
    assert version.stdout.strip() == "triolette 0.1.0"
