"""Shared fixtures: fake credentials, moto's EC2 in process, and a recorder of API calls.

The code behind them is in tests/support/ (fleet.py, faults.py), where tests import it from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

# moto loads thousands of AMIs into every new EC2 backend unless told not to: a second a test.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

import pytest
from hypothesis import settings
from moto import mock_aws
from pytest_httpserver import HTTPServer

import ec2_powercycle
from tests.support.faults import ApiRecorder, on_every_client
from tests.support.fleet import REGION, Fleet, moto_client
from tests.support.inbox import Inbox
from tests.support.local_endpoint import DUMMY_CREDENTIALS

# CI replays the same examples every run, so a red build is reproducible; locally they vary.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


# Modules whose tests share what a process sets up once (module-scoped servers; package.sh's zip,
# built once per process for two modules): each group runs in one pytest-xdist worker, where the
# rest is spread test by test.
SHARED_SETUP = {
    "tests/test_cli.py": "cli",
    "tests/test_bench_endpoint.py": "bench-endpoint",
    "tests/test_package.py": "package",
    "tests/test_post_to_lambda.py": "package",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's load balancing with SHARED_SETUP's groups as units (xdist's own xdist_group
    marks do not group under pytest 9, whose node IDs xdist 3.8 cannot suffix)."""
    from xdist.scheduler import LoadScopeScheduling

    class SharedSetupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SHARED_SETUP.get(nodeid.split("::", 1)[0], nodeid)

    return SharedSetupScheduling(config, log)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with dummy credentials, one region and no settings of ours."""
    for name in list(os.environ):
        if name.startswith(("EC2_POWERCYCLE_", "AWS_")):
            monkeypatch.delenv(name)
    # No session token: the tests tell the function's own credentials from an assumed role's by it.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, DUMMY_CREDENTIALS[name])
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    # The suite's events are at fixed past times (a Monday of November 2026): the event-age check is
    # off here, and the tests of that check set it themselves (tests/test_events.py).
    monkeypatch.setenv("EC2_POWERCYCLE_MAX_EVENT_AGE_MINUTES", "0")
    # The process keeps one boto3 session, as a Lambda execution environment does; each test
    # makes its own clients (fixtures that wrap `ec2_client` see every call) and assumes its roles.
    ec2_powercycle.shared_aws().forget()


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def ec2(aws: None) -> Any:
    return moto_client("ec2")


@pytest.fixture
def allow_server(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    """The loopback schedule server's /schedules/ allowed, as an operator would allow an internal server."""
    monkeypatch.setenv("EC2_POWERCYCLE_URL_ALLOW", httpserver.url_for("/schedules/"))
    return httpserver


@pytest.fixture
def fleet(aws: None) -> Fleet:
    return Fleet()


@pytest.fixture
def inbox(aws: None, monkeypatch: pytest.MonkeyPatch) -> Inbox:
    """The notification topic (EC2_POWERCYCLE_NOTIFY_TOPIC_ARN) and what it received."""
    inbox = Inbox()
    monkeypatch.setenv(ec2_powercycle.NOTIFY_TOPIC_SETTING, inbox.topic)
    return inbox


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, aws: None) -> ApiRecorder:
    recorder = ApiRecorder()
    on_every_client(monkeypatch, "ec2_client", lambda client, *_: recorder.attach(client))
    return recorder


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry delays, recorded and not slept, so retry tests take no wall time."""
    from botocore.retries import standard

    delays: list[float] = []
    real_delay = standard.ExponentialBackoff.delay_amount

    def record(self: Any, context: Any) -> float:
        delays.append(real_delay(self, context))
        return 0.0

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", record)
    return delays


@pytest.fixture
def cli(aws: None, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """ec2_powercycle_cli.main in this process against moto: returns (exit code, stdout, stderr)."""
    import ec2_powercycle_cli

    level = ec2_powercycle.logger.level

    def call(*argv: str) -> tuple[int, str, str]:
        code = ec2_powercycle_cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield call
    ec2_powercycle.logger.setLevel(level)
