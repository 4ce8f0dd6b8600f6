"""Errors injected at botocore's HTTP layer, and a recorder of the API calls a client makes.

The scheduler's clients are real boto3 clients: these only register botocore event handlers on
them (``before-parameter-build`` to record a call, ``before-send`` to answer an HTTP attempt with
a real error body instead of sending it), so botocore parses and retries exactly what AWS would
have sent. No boto3 API is mocked.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.awsrequest import AWSResponse

import ec2_powercycle
from tests.support.ec2_endpoint import error_xml

# injector(action, form) -> (HTTP status, error code, message) to fail that attempt, or None.
Injector = Callable[[str, dict[str, list[str]]], tuple[int, str, str] | None]


class _RawBody:
    """The minimal raw-stream object AWSResponse reads its body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def injected_response(
    request: Any, status: int, body: bytes, headers: dict[str, str] | None = None
) -> AWSResponse:
    """An answer for a before-send handler to return: this status, body and headers, the request never sent.

    botocore asks every before-send handler; moto's in-process stubber would still carry the
    request out unless it no longer recognises it as an AWS request, hence the changed URL
    (botocore builds a new request for each attempt, so a retry goes out as usual).
    """
    request.url = "http://injected.invalid/"
    headers = headers or {"Content-Type": "text/xml;charset=UTF-8"}
    return AWSResponse(request.url, status, headers, _RawBody(body))


def ec2_error_response(request: Any, status: int, code: str, message: str) -> AWSResponse:
    """EC2's answer with this error: the HTTP status and the Query API's error XML."""
    return injected_response(request, status, error_xml(code, message))


def query_error_response(request: Any, status: int, code: str, message: str) -> AWSResponse:
    """The answer of a Query-API service other than EC2 (STS, SNS) with this error: its ErrorResponse XML."""
    body = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        "<RequestId>injected</RequestId></ErrorResponse>"
    ).encode()
    return injected_response(request, status, body)


def request_form(request: Any) -> dict[str, list[str]]:
    """The form fields of a Query-API request (Action, InstanceId.N, ...)."""
    body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
    return parse_qs(body)


def instance_ids_in(form: dict[str, list[str]]) -> list[str]:
    """The InstanceId.N values of an EC2 Query-API form."""
    numbered = [(int(key.split(".")[1]), values[0]) for key, values in form.items() if key.startswith("InstanceId.")]
    return [instance_id for _, instance_id in sorted(numbered)]


class ApiRecorder:
    """Every API call the scheduler's EC2 clients make, and errors to inject at the HTTP layer."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.http_attempts: list[str] = []
        self._injectors: list[Injector] = []

    def operations(self, name: str | None = None) -> list[str]:
        return [op for op, _ in self.calls if name is None or op == name]

    def params(self, name: str) -> list[dict[str, Any]]:
        return [params for op, params in self.calls if op == name]

    def inject(self, injector: Injector) -> None:
        """injector(action, form) -> (http status, error code, message) to fail that request, or None."""
        self._injectors.append(injector)

    def attach(self, client: Any, service: str = "ec2") -> Any:
        """Record `client`'s calls (an EC2 client's, or another Query-API service's such as "autoscaling")."""
        client.meta.events.register(f"before-parameter-build.{service}.*", self._record)
        respond = ec2_error_response if service == "ec2" else query_error_response
        client.meta.events.register(f"before-send.{service}.*", functools.partial(self._send, respond=respond))
        return client

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.calls.append((model.name, json.loads(json.dumps(params, default=str))))

    def _send(
        self, request: Any, respond: Callable[..., AWSResponse] = ec2_error_response, **_: Any
    ) -> AWSResponse | None:
        form = request_form(request)
        action = form.get("Action", ["?"])[0]
        self.http_attempts.append(action)
        for injector in self._injectors:
            failure = injector(action, form)
            if failure:
                return respond(request, *failure)
        return None


def on_every_client(monkeypatch: pytest.MonkeyPatch, factory: str, prepare: Callable[..., object]) -> None:
    """Hand every client ec2_powercycle.<factory> makes (ec2_client, sts_client, sns_client, ...) to
    prepare(client, *the factory's arguments) before the scheduler gets it: to register botocore
    event handlers on it, say. Factories patched before are kept underneath."""
    made_by = getattr(ec2_powercycle, factory)

    def factory_then_prepare(*args: Any) -> Any:
        client = made_by(*args)
        prepare(client, *args)
        return client

    monkeypatch.setattr(ec2_powercycle, factory, factory_then_prepare)


def fail_region(monkeypatch: pytest.MonkeyPatch, region: str) -> None:
    """DescribeInstances in `region` answers UnauthorizedOperation: that target fails as a whole."""

    def refuse_reading(action: str, form: dict[str, list[str]]) -> tuple[int, str, str] | None:
        return (403, "UnauthorizedOperation", "not allowed") if action == "DescribeInstances" else None

    def prepare(client: Any, client_region: str, *_: Any) -> None:
        if client_region == region:
            recorder = ApiRecorder()
            recorder.inject(refuse_reading)
            recorder.attach(client)

    on_every_client(monkeypatch, "ec2_client", prepare)


class PutEventsRecorder:
    """The PutEvents calls a run's EventBridge client sends (each attempt's entries, details parsed), and
    entries spoiled on their way: the entry of a chosen instance leaves with a malformed Detail, so that
    EventBridge (moto) itself fails that entry and delivers the rest of its call."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self._spoiled: dict[str, int] = {}  # instance ID -> attempts still to spoil
        self._lock = threading.Lock()

    def spoil(self, instance_id: str, attempts: int) -> None:
        self._spoiled[instance_id] = attempts

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.events.PutEvents", self._send)
        return client

    def _send(self, request: Any, **_: Any) -> None:
        body = json.loads(request.body)
        with self._lock:
            self.calls.append([json.loads(entry["Detail"]) for entry in body["Entries"]])
            for entry in body["Entries"]:
                instance_id = json.loads(entry["Detail"]).get("instance_id")
                if self._spoiled.get(instance_id, 0) > 0:
                    self._spoiled[instance_id] -= 1
                    entry["Detail"] = "{spoiled"
        request.body = json.dumps(body).encode()
        request.headers["Content-Length"] = str(len(request.body))
