"""Helpers for the packaging and deployment tests: the repository, the venv's tools, package.sh."""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PACKAGE_SH = REPO / "package.sh"
POST_TO_LAMBDA_SH = REPO / "post-to-lambda.sh"


def venv_tool(name: str) -> Path:
    """A tool that requirements-dev.txt installs into the venv running the tests."""
    path = VENV_BIN / name
    assert path.exists(), f"{name} is not in {VENV_BIN}: install requirements-dev.txt (make setup)"
    return path


def tool_path_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """os.environ with the venv's bin first on PATH (its aws, python), plus `extra`."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(extra or {})}


def b64sha256(path: Path) -> str:
    """SHA-256 in base64: what Lambda reports as CodeSha256."""
    return base64.b64encode(hashlib.sha256(path.read_bytes()).digest()).decode()


def parse_report(stdout: str) -> dict[str, str]:
    """'key: value' lines of a script's report."""
    report = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            report[key] = value
    return report


def run_package(output_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """package.sh with the venv's pip and, when this machine has one, the Lambda runtime's Python for byte code."""
    if env is None:
        runtime = runtime_python()
        env = tool_path_env({"PYTHON": sys.executable, **({"PYC_PYTHON": runtime} if runtime else {})})
    return subprocess.run(
        [str(PACKAGE_SH), "--output-dir", str(output_dir), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@functools.cache
def package_report() -> dict[str, str]:
    """What package.sh reports for this tree, built once per test session (zip, size, sha256)."""
    output_dir = Path(tempfile.mkdtemp(prefix="ec2-powercycle-dist-"))
    atexit.register(shutil.rmtree, output_dir, True)
    result = run_package(output_dir)
    assert result.returncode == 0, result.stderr
    return parse_report(result.stdout)


def package_zip() -> Path:
    """The zip package.sh builds from this tree, built once per test session."""
    return Path(package_report()["zip"])


def lambda_runtime_version() -> str:
    """The Lambda runtime's Python version, X.Y, from template.yaml (e.g. 3.13 for python3.13)."""
    match = re.search(r"^\s+Runtime: python(3\.\d+)\s*$", (REPO / "template.yaml").read_text(), re.MULTILINE)
    assert match, "template.yaml names no python3.X Runtime"
    return match.group(1)


@functools.cache
def runtime_python() -> str | None:
    """An interpreter of the Lambda runtime's Python version on this machine (PATH or pyenv), or None."""
    version = lambda_runtime_version()
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}")]
    candidates += [str(p) for p in sorted(pyenv_root.glob(f"versions/{version}.*/bin/python{version}"), reverse=True)]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-I", "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


def lambda_trust_policy() -> str:
    return (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
    )


def run_python_isolated(
    code: str, *, path: list[Path], env: dict[str, str], timeout: float = 120, python: str | None = None
):
    """Run `code` in this Python (or `python`) with no site-packages: only the stdlib and `path` importable."""
    bootstrap = f"import sys; sys.path[:0] = {[str(p) for p in path]!r}\n" + code
    return subprocess.run(
        [python or sys.executable, "-I", "-S", "-c", bootstrap],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
