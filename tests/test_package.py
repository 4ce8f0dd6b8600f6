"""package.sh: the zip it builds is reproducible, holds what Lambda needs, and runs as Lambda would run it."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest

from tests.support.deploy import (
    REPO,
    b64sha256,
    lambda_runtime_version,
    package_report,
    parse_report,
    run_package,
    run_python_isolated,
    runtime_python,
    tool_path_env,
)
from tests.support.local_endpoint import dummy_keys, endpoint_environment, moto_server

# What the Lambda Python runtime provides besides the standard library.
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")


def module_version() -> str:
    match = re.search(r'^__version__ = "([^"]+)"', (REPO / "ec2_powercycle.py").read_text(), re.MULTILINE)
    assert match, "ec2_powercycle.py has no __version__"
    return match.group(1)


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, dict[str, str]]]:
    """The session's package (built once for all these tests) and a second build of the same tree."""
    first = package_report()
    result = run_package(tmp_path_factory.mktemp("second"))
    assert result.returncode == 0, result.stderr
    second = parse_report(result.stdout)
    return [(Path(first["zip"]), first), (Path(second["zip"]), second)]


def test_two_builds_of_the_same_tree_are_byte_identical(two_builds):
    (first, first_report), (second, second_report) = two_builds
    assert first.read_bytes() == second.read_bytes()
    key = "sha256 (base64, as Lambda CodeSha256)"
    assert first_report[key] == second_report[key]


def test_report_names_the_zip_its_size_and_its_code_sha256(two_builds):
    zip_path, report = two_builds[0]
    assert zip_path.name == f"ec2-powercycle-{module_version()}.zip"
    assert report["size"] == f"{zip_path.stat().st_size} bytes"
    assert report["sha256 (base64, as Lambda CodeSha256)"] == b64sha256(zip_path)


def test_zip_holds_the_module_readme_and_dependencies_and_nothing_else(two_builds):
    zip_path, _ = two_builds[0]
    with zipfile.ZipFile(zip_path) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        assert archive.read("ec2_powercycle.py") == (REPO / "ec2_powercycle.py").read_bytes()
        assert archive.read("README.md") == (REPO / "README.md").read_bytes()
    assert {name.split("/")[0] for name in names} - {"__pycache__"} == {"ec2_powercycle.py", "README.md", "lib"}
    top_level_libs = {name.split("/")[1] for name in names if name.startswith("lib/")}
    for needed in ("croniter", "requests", "dateutil", "urllib3", "idna", "certifi", "charset_normalizer"):
        assert needed in top_level_libs
    for runtime_provided in ("boto3", "botocore", "s3transfer"):
        assert runtime_provided not in top_level_libs
    assert not [n for n in names if n.startswith(("tests/", ".git"))]
    # Byte code only for the Lambda's Python, each file beside its source (the tests' 3.11 compiles its own).
    pyc_tag = f"cpython-{lambda_runtime_version().replace('.', '')}"
    compiled = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    for name in compiled:
        match = re.fullmatch(rf"((?:[^/]+/)*)__pycache__/([^/.]+)\.{pyc_tag}\.pyc", name)
        assert match, f"{name}: not a {pyc_tag} .pyc in a __pycache__"
        assert f"{match.group(1)}{match.group(2)}.py" in names, f"{name} has no source"
    assert "lib/bin" not in {name.rsplit("/", 1)[0] for name in names}
    # Fixed order, times and modes.
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {(1980, 1, 2, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}


def test_zip_carries_checked_hash_bytecode_for_the_runtime_python(two_builds):
    """With a Python of the runtime's version here, every module has a .pyc for it, checked against its source."""
    python = _interpreter("runtime")
    tag = f"cpython-{lambda_runtime_version().replace('.', '')}"
    for _, report in two_builds:  # so the two byte-identical builds above both carry byte code
        assert report["bytecode"].startswith(f"{tag}, checked-hash"), report
    zip_path, _ = two_builds[0]
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        sources = sorted(n for n in names if n.endswith(".py"))
        pairs = {}
        for source in sources:
            folder, _, stem = source.rpartition("/")
            pyc = f"{folder}/__pycache__/{stem[:-3]}.{tag}.pyc".lstrip("/")
            assert pyc in names, f"{source} has no {pyc}"
            pairs[source] = (archive.read(source).hex(), archive.read(pyc)[:16].hex())
    assert f"__pycache__/ec2_powercycle.{tag}.pyc" in names
    # The runtime's Python checks each header: its magic number, flags 0b11 (hash-based, checked
    # against the source at import) and the hash of the shipped source.
    check = subprocess.run(
        [python, "-I", "-S", "-c", _PYC_HEADER_CHECK],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout) == {}, "bad .pyc headers"


_PYC_HEADER_CHECK = """
import importlib.util, json, sys
bad = {}
for source, (text, header) in json.load(sys.stdin).items():
    header = bytes.fromhex(header)
    expected = importlib.util.MAGIC_NUMBER + (3).to_bytes(4, 'little') + importlib.util.source_hash(bytes.fromhex(text))
    if header != expected:
        bad[source] = header.hex()
print(json.dumps(bad))
"""


@pytest.fixture(scope="module")
def other_build(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """One build with the other options: --with-boto3, and a PYC_PYTHON of another version than the
    runtime's (like a machine without python3.13). Each option has its own test below."""
    return run_package(
        tmp_path_factory.mktemp("other"),
        "--with-boto3",
        env=tool_path_env({"PYTHON": sys.executable, "PYC_PYTHON": sys.executable}),
    )


def test_without_the_runtime_python_the_zip_carries_no_bytecode_and_says_so(other_build):
    result = other_build
    assert result.returncode == 0, result.stderr
    report = parse_report(result.stdout)
    assert report["bytecode"] == "none"
    notes = [line for line in result.stderr.splitlines() if "no bytecode" in line]
    assert notes == [
        f"package.sh: PYC_PYTHON ({sys.executable}) is not a working CPython {lambda_runtime_version()} "
        f"(it is {sys.implementation.cache_tag}): the zip carries no bytecode; cold starts compile the module"
    ]
    with zipfile.ZipFile(report["zip"]) as archive:
        assert not [n for n in archive.namelist() if "__pycache__" in n or n.endswith(".pyc")]


def test_zip_is_built_for_the_lambda_runtimes_python_and_runs_on_others(two_builds):
    """Compiled modules are the runtime's (template.yaml's python3.X), each with its pure-Python fallback."""
    zip_path, _ = two_builds[0]
    tag = f"cpython-{lambda_runtime_version().replace('.', '')}-"
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    compiled = [name for name in names if name.endswith(".so")]
    assert compiled, "no compiled modules: expected charset-normalizer's speed-ups"
    for name in compiled:
        assert tag in name.rsplit("/", 1)[1], name
        assert f"{name.split('.', 1)[0]}.py" in names, f"{name} has no pure-Python fallback"


def _interpreter(which: str) -> str:
    if which == "local":
        return sys.executable
    python = runtime_python()
    if python is None:
        pytest.skip(f"no Python {lambda_runtime_version()} on this machine (PATH or pyenv)")
    return python


@pytest.mark.parametrize("which", ["local", "runtime"], ids=["local-python", "lambda-runtime-python"])
def test_handler_runs_from_the_unpacked_zip_with_only_the_runtime_libraries(two_builds, tmp_path, which):
    python = _interpreter(which)
    zip_path, _ = two_builds[0]
    function_dir = tmp_path / "task"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(function_dir)
        has_bytecode = any("__pycache__" in name for name in archive.namelist())
    # A stand-in for the Lambda runtime's site-packages: boto3 and what it needs, nothing else.
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        assert spec and spec.origin
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (runtime / source.name).symlink_to(source)

    with moto_server() as url:
        env = {**endpoint_environment(url), "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
        env["EC2_POWERCYCLE_MAX_EVENT_AGE_MINUTES"] = "0"  # the event below is at a fixed past time
        probe = run_python_isolated(
            "import boto3\n"
            "for name in ('croniter', 'requests'):\n"
            "    try:\n"
            "        __import__(name)\n"
            "    except ImportError:\n"
            "        print(name, 'missing')\n",
            path=[runtime],
            env=env,
            python=python,
        )
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.split("\n")[:2] == ["croniter missing", "requests missing"]

        ec2 = boto3.client("ec2", endpoint_url=url, region_name="eu-west-1", **dummy_keys())
        tags = [{"Key": "ec2Powercycle", "Value": json.dumps({"stop": "0 18 * * *"})}]
        instance_id = ec2.run_instances(
            ImageId="ami-12c6146b",  # any ID works in moto
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]

        run = run_python_isolated(
            COMPILE_SPY + "import json, sys, ec2_powercycle  # first, as Lambda does: it puts lib/ on sys.path\n"
            "import croniter, requests\n"
            "summary = ec2_powercycle.handler({'time': '2026-11-23T18:00:00Z'}, None)\n"
            "print(json.dumps({'summary': summary, 'croniter': croniter.__file__, 'requests': requests.__file__,\n"
            "                  'boto3': __import__('boto3').__file__,\n"
            "                  'from_source': [any(path.endswith(name) for path in compiled)\n"
            "                                  for name in ('ec2_powercycle.py', 'croniter.py')]}))\n",
            path=[function_dir, runtime],
            env=env,
            python=python,
        )
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        state = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["State"]["Name"]

    assert result["summary"]["stopped"] == [instance_id]
    assert state == "stopped"
    assert Path(result["croniter"]).is_relative_to(function_dir / "lib")
    assert Path(result["requests"]).is_relative_to(function_dir / "lib")
    assert Path(result["boto3"]).is_relative_to(runtime)
    # The runtime's Python (the tests build with it as PYC_PYTHON) uses the zip's byte code; any other
    # compiles the sources and ignores it.
    assert has_bytecode or which == "local"
    assert result["from_source"] == [which == "local"] * 2

    # A source edited after packaging (the Lambda console's editor) is compiled, not shadowed by its .pyc.
    with (function_dir / "ec2_powercycle.py").open("a") as source:
        source.write("\nEDITED_AFTER_PACKAGING = True\n")
    edited = run_python_isolated(
        COMPILE_SPY + "import ec2_powercycle\n"
        "print(getattr(ec2_powercycle, 'EDITED_AFTER_PACKAGING', False),\n"
        "      any(path.endswith('ec2_powercycle.py') for path in compiled))\n",
        path=[function_dir, runtime],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        python=python,
    )
    assert edited.returncode == 0, edited.stderr
    assert edited.stdout.split() == ["True", "True"]


# Records each module the import system compiles from source (it calls SourceLoader.source_to_code only
# when no valid byte code is at hand).
COMPILE_SPY = (
    "import importlib._bootstrap_external as _external\n"
    "compiled = []\n"
    "_compile = _external.SourceLoader.source_to_code\n"
    "def _spy(self, data, path, *args, **kwargs):\n"
    "    compiled.append(str(path))\n"
    "    return _compile(self, data, path, *args, **kwargs)\n"
    "_external.SourceLoader.source_to_code = _spy\n"
)


def test_with_boto3_flag_vendors_boto3(other_build):
    assert other_build.returncode == 0, other_build.stderr
    with zipfile.ZipFile(parse_report(other_build.stdout)["zip"]) as archive:
        top_level_libs = {name.split("/")[1] for name in archive.namelist() if name.startswith("lib/")}
    assert {"boto3", "botocore", "s3transfer", "croniter"} <= top_level_libs


def test_missing_zip_tool_is_reported_with_what_to_install(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname"):
        (bin_dir / tool).symlink_to(subprocess.check_output(["which", tool], text=True).strip())
    result = run_package(tmp_path / "out", env={"PATH": str(bin_dir), "PYTHON": sys.executable})
    assert result.returncode == 1
    assert "zip not found" in result.stderr and "apt-get install zip" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_pip_is_reported_with_what_to_install(tmp_path):
    no_pip_python = tmp_path / "python-without-pip"
    no_pip_python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -I -S "$@"\n')
    no_pip_python.chmod(0o755)
    result = run_package(tmp_path / "out", env=tool_path_env({"PYTHON": str(no_pip_python)}))
    assert result.returncode == 1
    assert "pip not found" in result.stderr and "python3-pip" in result.stderr


def test_unknown_argument_is_an_error(tmp_path):
    result = run_package(tmp_path, "--frobnicate")
    assert result.returncode == 1
    assert "unknown argument '--frobnicate'" in result.stderr
