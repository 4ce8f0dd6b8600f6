"""post-to-lambda.sh end to end: the real AWS CLI against moto_server on 127.0.0.1.

Also holds iam/pipeline-policy.json to the Lambda API calls the script makes, as the server recorded them.
"""

from __future__ import annotations

import functools
import json
import os
import pty
import re
import select
import shutil
import subprocess
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.session
import pytest

from tests.support.deploy import (
    POST_TO_LAMBDA_SH,
    REPO,
    b64sha256,
    lambda_trust_policy,
    package_zip,
    parse_report,
    tool_path_env,
)
from tests.support.local_endpoint import dummy_keys, endpoint_environment, moto_server, reset

FUNCTION = "ec2-powercycle"
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    recording = tmp_path_factory.mktemp("moto") / "recording"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_RECORDER_FILEPATH", str(recording))  # read by the server we start
        with moto_server() as url:
            yield url


@pytest.fixture
def function(endpoint: str, tmp_path: Path) -> str:
    """A fresh endpoint with an existing function (placeholder code), as the script expects."""
    reset(endpoint)
    iam = _client("iam", endpoint)
    role_arn = iam.create_role(RoleName="ec2-powercycle", AssumeRolePolicyDocument=lambda_trust_policy())["Role"]["Arn"]
    placeholder = tmp_path / "placeholder.zip"
    with zipfile.ZipFile(placeholder, "w") as archive:
        archive.writestr("ec2_powercycle.py", "def handler(event, context):\n    return {}\n")
    _client("lambda", endpoint).create_function(
        FunctionName=FUNCTION,
        Runtime="python3.13",
        Role=role_arn,
        Handler="ec2_powercycle.handler",
        Code={"ZipFile": placeholder.read_bytes()},
    )
    return endpoint


def _client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name=REGION, **dummy_keys())


def _env(url: str, **overrides: str | None) -> dict[str, str]:
    env = tool_path_env({**endpoint_environment(url, REGION), "AWS_LAMBDA_FUNCTION": FUNCTION})
    for name in ("AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_LAMBDA_ALIAS", "SMOKE_TEST", "AWS_LAMBDA_ZIP"):
        env.pop(name, None)
    env["HOME"] = os.environ.get("HOME", "/tmp")
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _deploy(url: str, *args: str, **env: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POST_TO_LAMBDA_SH), *args],
        env=_env(url, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _recorder(url: str, action: str) -> str:
    method = "GET" if action == "download-recording" else "POST"
    request = urllib.request.Request(f"{url}/moto-api/recorder/{action}", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def _recorded_requests(url: str) -> list[dict]:
    """Requests the server saw while recording: method, url (path and query), headers."""
    return [json.loads(line) for line in _recorder(url, "download-recording").splitlines() if line.strip()]


@functools.cache
def _lambda_routes() -> tuple[tuple[str, re.Pattern[str], str], ...]:
    """(HTTP method, path pattern, operation name) of every Lambda API operation, from botocore's model."""
    model = botocore.session.get_session().get_service_model("lambda")
    routes = []
    for name in model.operation_names:
        http = model.operation_model(name).http
        parts = re.split(r"(\{[^}]+\})", http["requestUri"].split("?", 1)[0])
        pattern = "".join(
            (".+" if part.endswith("+}") else "[^/]+") if part.startswith("{") else re.escape(part) for part in parts
        )
        routes.append((http["method"], re.compile(pattern), name))
    return tuple(routes)


# The Lambda API operations whose IAM action has another name.
_IAM_NAMES = {"Invoke": "InvokeFunction"}


def _lambda_actions(requests: list[dict]) -> set[str]:
    """The IAM actions of recorded Lambda API requests (lambda:PublishVersion, ...)."""
    actions = set()
    for request in requests:
        path = urlsplit(request["url"]).path
        if path.startswith("/moto-api/"):
            continue
        method = request["method"]
        names = [name for verb, pattern, name in _lambda_routes() if verb == method and pattern.fullmatch(path)]
        assert len(names) == 1, (method, path, names)
        actions.add(f"lambda:{_IAM_NAMES.get(names[0], names[0])}")
    return actions


def _other_zip(tmp_path: Path) -> Path:
    """The package with one more file: different code, so Lambda would publish a new version."""
    changed = tmp_path / "ec2-powercycle-changed.zip"
    shutil.copy(package_zip(), changed)
    with zipfile.ZipFile(changed, "a") as archive:
        archive.writestr("CHANGED.txt", "a second release\n")
    return changed


def test_headless_deploy_publishes_versions_and_moves_the_alias(function, tmp_path):
    zip_path = package_zip()
    lam = _client("lambda", function)
    _recorder(function, "reset-recording")
    _recorder(function, "start-recording")
    first = _deploy(function, "--zip", str(zip_path))
    _recorder(function, "stop-recording")
    first_requests = _recorded_requests(function)
    assert first.returncode == 0, first.stderr

    report = parse_report(first.stdout)
    assert report == {
        "function": FUNCTION,
        "version": "1",
        "alias": f"live -> 1 (arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}:live)",
        "CodeSha256": b64sha256(zip_path),
    }
    assert lam.get_function(FunctionName=FUNCTION)["Configuration"]["CodeSha256"] == b64sha256(zip_path)
    version_one = lam.get_function(FunctionName=FUNCTION, Qualifier="1")["Configuration"]
    assert version_one["CodeSha256"] == b64sha256(zip_path)
    assert lam.get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"] == "1"
    # The smoke invocation is off unless asked for.
    urls = [request["url"] for request in first_requests]
    assert any(urlsplit(url).path.endswith(f"/functions/{FUNCTION}/versions") for url in urls)
    assert not [url for url in urls if "/invocations" in url]

    changed = _other_zip(tmp_path)
    _recorder(function, "start-recording")  # added to the first deploy's requests
    second = _deploy(function, "--zip", str(changed), "--smoke-test")
    _recorder(function, "stop-recording")
    assert second.returncode == 0, second.stderr
    assert parse_report(second.stdout)["version"] == "2"
    assert "moving alias live from version 1 to 2" in second.stderr
    assert lam.get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"] == "2"
    assert lam.get_function(FunctionName=FUNCTION, Qualifier="2")["Configuration"]["CodeSha256"] == b64sha256(changed)
    assert lam.get_function(FunctionName=FUNCTION, Qualifier="1")["Configuration"]["CodeSha256"] == b64sha256(zip_path)

    # iam/pipeline-policy.json allows exactly the calls of these two deploys (the alias created, then
    # moved, the new version smoke-tested), on the function, its versions and its aliases.
    (statement,) = json.loads((REPO / "iam" / "pipeline-policy.json").read_text())["Statement"]
    assert statement["Effect"] == "Allow"
    both_requests = _recorded_requests(function)
    assert both_requests[: len(first_requests)] == first_requests
    assert set(statement["Action"]) == _lambda_actions(both_requests)
    assert set(statement["Resource"]) == {
        f"arn:aws:lambda:*:*:function:{FUNCTION}",
        f"arn:aws:lambda:*:*:function:{FUNCTION}:*",
    }


def test_default_zip_is_the_one_package_sh_names(function):
    """Without --zip it deploys dist/ec2-powercycle-<version>.zip, as the Docker entrypoint relies on."""
    result = _deploy(function, VERSION="0.0.0-no-such-build")
    assert result.returncode == 1
    assert "dist/ec2-powercycle-0.0.0-no-such-build.zip not found" in result.stderr
    assert "./package.sh" in result.stderr


def test_other_alias_is_created_when_missing(function):
    result = _deploy(function, "--zip", str(package_zip()), AWS_LAMBDA_ALIAS="canary")
    assert result.returncode == 0, result.stderr
    assert "creating alias canary at version 1" in result.stderr
    lam = _client("lambda", function)
    assert lam.get_alias(FunctionName=FUNCTION, Name="canary")["FunctionVersion"] == "1"
    assert [a["Name"] for a in lam.list_aliases(FunctionName=FUNCTION)["Aliases"]] == ["canary"]


def test_smoke_test_invokes_the_new_version_as_a_dry_run(function):
    _recorder(function, "reset-recording")
    _recorder(function, "start-recording")
    result = _deploy(function, "--zip", str(package_zip()), "--smoke-test")
    _recorder(function, "stop-recording")
    assert result.returncode == 0, result.stderr
    assert "version 1 can be invoked" in result.stderr
    invocations = [request for request in _recorded_requests(function) if "/invocations" in request["url"]]
    assert len(invocations) == 1
    assert invocations[0]["headers"].get("X-Amz-Invocation-Type") == "DryRun"
    assert parse_qs(urlsplit(invocations[0]["url"]).query) == {"Qualifier": ["1"]}


def test_missing_variable_without_a_terminal_fails_clearly(function):
    lam = _client("lambda", function)
    before = lam.get_function(FunctionName=FUNCTION)["Configuration"]["CodeSha256"]
    result = _deploy(function, "--zip", str(package_zip()), AWS_LAMBDA_FUNCTION=None, AWS_SECRET_ACCESS_KEY=None)
    assert result.returncode == 2
    assert "AWS_LAMBDA_FUNCTION AWS_SECRET_ACCESS_KEY not set, and no terminal to ask on" in result.stderr
    assert result.stdout == ""
    assert lam.get_function(FunctionName=FUNCTION)["Configuration"]["CodeSha256"] == before
    assert lam.list_versions_by_function(FunctionName=FUNCTION)["Versions"][-1]["Version"] == "$LATEST"


def test_unknown_function_fails_with_the_cli_error(function):
    result = _deploy(function, "--zip", str(package_zip()), AWS_LAMBDA_FUNCTION="no-such-function")
    assert result.returncode == 1
    assert "cannot use function no-such-function in eu-west-1" in result.stderr
    assert "ResourceNotFoundException" in result.stderr  # the CLI's own words, shown


def test_interactive_prompts_through_a_terminal(function):
    secret = "s3cr3t-never-echoed"
    env = _env(function, AWS_LAMBDA_FUNCTION=None, AWS_SECRET_ACCESS_KEY=None, AWS_DEFAULT_REGION=None, AWS_REGION=None)
    transcript = _run_in_terminal(
        [str(POST_TO_LAMBDA_SH), "--zip", str(package_zip())],
        env,
        answers=[
            ("AWS_LAMBDA_FUNCTION: ", FUNCTION),
            ("AWS_DEFAULT_REGION: ", REGION),
            ("AWS_SECRET_ACCESS_KEY (not shown): ", secret),
        ],
    )
    returncode, output = transcript
    assert returncode == 0, output
    assert secret not in output
    assert FUNCTION in output.split("AWS_LAMBDA_FUNCTION: ", 1)[1]  # the terminal echoed the name typed
    assert "version: 1" in output
    assert _client("lambda", function).get_alias(FunctionName=FUNCTION, Name="live")["FunctionVersion"] == "1"


def _run_in_terminal(command: list[str], env: dict[str, str], answers: list[tuple[str, str]]) -> tuple[int, str]:
    """Run `command` on a pseudo-terminal; answer each prompt as it appears; return (exit code, everything shown)."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        command, env=env, stdin=terminal, stdout=terminal, stderr=terminal, start_new_session=True, close_fds=True
    )
    os.close(terminal)
    shown = b""
    pending = list(answers)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # the terminal closed: the script has exited
                    break
                if not chunk:
                    break
                shown += chunk
            if pending and shown.decode(errors="replace").endswith(pending[0][0]):
                os.write(controller, (pending.pop(0)[1] + "\n").encode())
            if process.poll() is not None and not ready:
                break
        returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    assert not pending, f"never prompted for {[prompt for prompt, _ in pending]}: {shown!r}"
    return returncode, shown.decode(errors="replace")
