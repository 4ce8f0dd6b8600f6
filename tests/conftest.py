"""Shared fixtures: fake credentials, moto's EC2 in process, and a recorder of API calls."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

# moto loads thousands of AMIs into every new EC2 backend unless told not to: a second a test.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from hypothesis import settings
from moto import mock_aws

import ec2_powercycle

# CI replays the same examples every run, so a red build is reproducible; locally they vary.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")

REGION = "eu-west-1"
TAG = ec2_powercycle.DEFAULT_TAG
IMAGE_ID = "ami-12c6146b"  # any ID works in moto; looking one up costs a second per test
OFFICE_HOURS = '{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5"}'


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with dummy credentials, one region and no settings of ours."""
    for name in list(os.environ):
        if name.startswith(("EC2_POWERCYCLE_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    # The process keeps one boto3 session, as a Lambda execution environment does; each test
    # makes its own clients (fixtures that wrap `ec2_client` see every call) and assumes its roles.
    ec2_powercycle.shared_aws().forget()


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


# One session for the tests' own clients: moto resets boto3's default session at every mock, and a
# new session loads the EC2 service model again (over half a second per test).
_TEST_SESSION = boto3.session.Session()


def session_client(service: str, region: str = REGION, **kwargs: Any) -> Any:
    """A boto3 client for a test's own calls (seeding, reading states back), on the shared session."""
    return _TEST_SESSION.client(service, region_name=region, **kwargs)


@pytest.fixture
def ec2(aws: None) -> Any:
    return session_client("ec2")


class Fleet:
    """Launches tagged instances in moto and reads their states back."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def client(self, region: str = REGION) -> Any:
        if region not in self._clients:
            self._clients[region] = session_client("ec2", region)
        return self._clients[region]

    def launch(
        self,
        schedule: str | None = OFFICE_HOURS,
        state: str = "running",
        count: int = 1,
        region: str = REGION,
        tags: dict[str, str] | None = None,
        disable_api_stop: bool = False,
        hibernation: bool = False,
    ) -> list[str]:
        """Launch `count` instances (one reservation) with the tag set to `schedule`."""
        ec2 = self.client(region)
        all_tags = dict(tags or {})
        if schedule is not None:
            all_tags[TAG] = schedule
        extra: dict[str, Any] = {}
        if all_tags:
            extra["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}
            ]
        if disable_api_stop:
            extra["DisableApiStop"] = True
        if hibernation:
            extra["HibernationOptions"] = {"Configured": True}
        reply = ec2.run_instances(ImageId=IMAGE_ID, MinCount=count, MaxCount=count, **extra)
        ids = [instance["InstanceId"] for instance in reply["Instances"]]
        if state == "stopped":
            ec2.stop_instances(InstanceIds=ids)
        return ids

    def state(self, instance_id: str, region: str = REGION) -> str:
        reply = self.client(region).describe_instances(InstanceIds=[instance_id])
        return reply["Reservations"][0]["Instances"][0]["State"]["Name"]

    def states(self, region: str = REGION) -> dict[str, str]:
        result: dict[str, str] = {}
        for page in self.client(region).get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    result[instance["InstanceId"]] = instance["State"]["Name"]
        return result


@pytest.fixture
def fleet(aws: None) -> Fleet:
    return Fleet()


class ApiRecorder:
    """Every API call the scheduler's EC2 clients make, and errors to inject at the HTTP layer.

    The scheduler's clients are real boto3 clients; this only registers botocore
    event handlers on them (before-call to record, before-send to answer a request
    with a real EC2 error body instead of sending it).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.http_attempts: list[str] = []
        self._injectors: list[Callable[[str, dict[str, list[str]]], tuple[int, str, str] | None]] = []

    def operations(self, name: str | None = None) -> list[str]:
        return [op for op, _ in self.calls if name is None or op == name]

    def params(self, name: str) -> list[dict[str, Any]]:
        return [params for op, params in self.calls if op == name]

    def inject(self, injector: Callable[[str, dict[str, list[str]]], tuple[int, str, str] | None]) -> None:
        """injector(action, form) -> (http status, error code, message) to fail that request, or None."""
        self._injectors.append(injector)

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-parameter-build.ec2.*", self._record)
        client.meta.events.register("before-send.ec2.*", self._send)
        return client

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, json.loads(json.dumps(params, default=str))))

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        from urllib.parse import parse_qs

        form = parse_qs(request.body.decode() if isinstance(request.body, bytes) else (request.body or ""))
        action = form.get("Action", ["?"])[0]
        self.http_attempts.append(action)
        for injector in self._injectors:
            failure = injector(action, form)
            if failure:
                # botocore asks every before-send handler; moto's in-process stubber would still
                # carry the request out unless it no longer recognises it as an AWS request.
                request.url = "http://injected.invalid/"
                status, code, message = failure
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error></Errors><RequestID>injected</RequestID></Response>"
                ).encode()
                return AWSResponse(request.url, status, {"Content-Type": "text/xml"}, _Raw(body))
        return None


class _Raw:
    """The minimal raw-stream object AWSResponse reads its body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, aws: None) -> ApiRecorder:
    recorder = ApiRecorder()
    real_factory = ec2_powercycle.ec2_client
    monkeypatch.setattr(
        ec2_powercycle,
        "ec2_client",
        lambda region, session, credentials=None: recorder.attach(real_factory(region, session, credentials)),
    )
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


def instance_ids_in(form: dict[str, list[str]]) -> list[str]:
    """The InstanceId.N values of an EC2 Query-API form."""
    numbered = [(int(key.split(".")[1]), values[0]) for key, values in form.items() if key.startswith("InstanceId.")]
    return [instance_id for _, instance_id in sorted(numbered)]
