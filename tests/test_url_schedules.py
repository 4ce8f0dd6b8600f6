"""Schedules behind URLs: a real HTTP server on 127.0.0.1, and untrusted-input rules."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import ec2_powercycle
from ec2_powercycle import ScheduleError, Settings, check_url, handler
from tests.support.faults import ApiRecorder
from tests.support.fleet import Fleet
from tests.support.local_endpoint import free_port

MONDAY_0807 = {"time": "2026-11-23T08:07:00Z"}
STOP_AT_EIGHT = {"stop": "0 8 * * *"}


@pytest.fixture
def allow_server(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> HTTPServer:
    """The loopback server's /schedules/ allowed, as an operator would allow an internal server."""
    monkeypatch.setenv("EC2_POWERCYCLE_URL_ALLOW", httpserver.url_for("/schedules/"))
    return httpserver


def test_one_document_drives_many_instances_and_is_fetched_once(
    fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer
) -> None:
    allow_server.expect_request("/schedules/fleet.json").respond_with_json(STOP_AT_EIGHT)
    url = allow_server.url_for("/schedules/fleet.json")
    ids = fleet.launch(url, count=5) + fleet.launch(f"  {url} ", count=3)
    summary = handler(MONDAY_0807)
    assert sorted(summary["stopped"]) == sorted(ids)
    assert len(allow_server.log) == 1


def test_each_distinct_url_is_fetched_once(fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer) -> None:
    allow_server.expect_request("/schedules/a.json").respond_with_json(STOP_AT_EIGHT)
    allow_server.expect_request("/schedules/b.json").respond_with_json({"start": "0 8 * * *"})
    stopping = fleet.launch(allow_server.url_for("/schedules/a.json"), count=3)
    starting = fleet.launch(allow_server.url_for("/schedules/b.json"), count=3, state="stopped")
    summary = handler(MONDAY_0807)
    assert (sorted(summary["stopped"]), sorted(summary["started"])) == (sorted(stopping), sorted(starting))
    assert sorted(request.path for request, _ in allow_server.log) == ["/schedules/a.json", "/schedules/b.json"]


def test_a_url_document_takes_its_own_time_zone(fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer) -> None:
    allow_server.expect_request("/schedules/tokyo.json").respond_with_json({"start": "0 17 * * *", "tz": "Asia/Tokyo"})
    [instance] = fleet.launch(allow_server.url_for("/schedules/tokyo.json"), state="stopped")
    assert handler(MONDAY_0807)["started"] == [instance]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("not json SECRET-BODY", 200, "not valid JSON"),
        ('["SECRET-BODY"]', 200, "must be a JSON object"),
        ('{"stat": "0 8 * * *"}', 200, "unknown key 'stat'"),
        ('{"stop": "61 8 * * *"}', 200, "invalid cron"),
        ("SECRET-BODY", 404, "answered HTTP 404, expected 200"),
        ("SECRET-BODY", 500, "answered HTTP 500, expected 200"),
    ],
)
def test_a_bad_document_is_that_instances_error_and_its_body_is_never_logged(
    fleet: Fleet,
    api: ApiRecorder,
    allow_server: HTTPServer,
    caplog: pytest.LogCaptureFixture,
    body: str,
    status: int,
    message: str,
) -> None:
    allow_server.expect_request("/schedules/bad.json").respond_with_data(body, status=status)
    [bad] = fleet.launch(allow_server.url_for("/schedules/bad.json"))
    [good] = fleet.launch(json.dumps(STOP_AT_EIGHT))
    with caplog.at_level(logging.DEBUG):
        summary = handler(MONDAY_0807)
    assert summary["stopped"] == [good]
    [error] = summary["errors"]
    assert error["instance_id"] == bad and message in error["error"]
    assert "/schedules/bad.json" in error["error"]
    assert "SECRET-BODY" not in json.dumps(summary) and "SECRET-BODY" not in caplog.text


def test_a_redirect_is_not_followed(fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer) -> None:
    allow_server.expect_request("/schedules/moved.json").respond_with_data(
        "", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    [instance] = fleet.launch(allow_server.url_for("/schedules/moved.json"))
    [error] = handler(MONDAY_0807)["errors"]
    assert error["instance_id"] == instance and "answered HTTP 302" in error["error"]
    assert len(allow_server.log) == 1


def test_an_oversized_document_is_refused(fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer) -> None:
    padding = " " * (ec2_powercycle.URL_MAX_BYTES + 10)
    allow_server.expect_request("/schedules/big.json").respond_with_data('{"stop": "0 8 * * *"}' + padding)
    [instance] = fleet.launch(allow_server.url_for("/schedules/big.json"))
    [error] = handler(MONDAY_0807)["errors"]
    assert error["instance_id"] == instance and f"larger than {ec2_powercycle.URL_MAX_BYTES} bytes" in error["error"]


def test_the_size_cap_holds_while_reading_a_body_of_unknown_length(
    fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer
) -> None:
    sent: list[int] = []

    def endless(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(10_000):  # 80 MB if nobody stops reading
                sent.append(1)
                yield b" " * 8192

        return Response(chunks(), mimetype="application/json")

    allow_server.expect_request("/schedules/endless.json").respond_with_handler(endless)
    [instance] = fleet.launch(allow_server.url_for("/schedules/endless.json"))
    [error] = handler(MONDAY_0807)["errors"]
    assert error["instance_id"] == instance and "larger than" in error["error"]
    assert len(sent) < 1_000  # what fits in socket buffers, not the 10,000 chunks on offer


def test_a_slow_server_cannot_hold_the_run(
    fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ec2_powercycle, "URL_DEADLINE_SECONDS", 1.0)

    def trickle(request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(20):  # a byte every 0.2 s: never a read timeout, 4 s in all
                time.sleep(0.2)
                yield b" "

        return Response(chunks(), mimetype="application/json")

    allow_server.expect_request("/schedules/slow.json").respond_with_handler(trickle)
    [slow] = fleet.launch(allow_server.url_for("/schedules/slow.json"))
    [good] = fleet.launch(json.dumps(STOP_AT_EIGHT))
    started = time.monotonic()
    summary = handler(MONDAY_0807)
    assert time.monotonic() - started < 3.5
    assert summary["stopped"] == [good]
    assert summary["errors"][0]["instance_id"] == slow and "took longer than 1 s" in summary["errors"][0]["error"]


def test_a_server_that_never_answers_times_out(
    fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ec2_powercycle, "URL_TIMEOUT_SECONDS", 0.5)

    def hang(request: Request) -> Response:
        time.sleep(1)
        return Response("{}")

    allow_server.expect_request("/schedules/hang.json").respond_with_handler(hang)
    [instance] = fleet.launch(allow_server.url_for("/schedules/hang.json"))
    [error] = handler(MONDAY_0807)["errors"]
    assert error["instance_id"] == instance and "cannot fetch schedule URL" in error["error"]
    assert "ReadTimeout" in error["error"]


def test_a_dead_url_is_that_instances_error(fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}/schedules/gone.json"
    monkeypatch.setenv("EC2_POWERCYCLE_URL_ALLOW", dead)
    [instance] = fleet.launch(dead)
    [good] = fleet.launch(json.dumps(STOP_AT_EIGHT))
    summary = handler(MONDAY_0807)
    assert summary["stopped"] == [good]
    assert summary["errors"][0]["instance_id"] == instance
    assert "cannot fetch schedule URL" in summary["errors"][0]["error"]


# --- What is refused before any request is sent ---------------------------------------


def test_a_refused_url_is_that_instances_error_and_never_fetched(
    fleet: Fleet, api: ApiRecorder, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/schedules/fleet.json").respond_with_json(STOP_AT_EIGHT)
    [refused] = fleet.launch(httpserver.url_for("/schedules/fleet.json"))  # loopback, not allowed
    [good] = fleet.launch(json.dumps(STOP_AT_EIGHT))
    summary = handler(MONDAY_0807)
    assert summary["stopped"] == [good]
    [error] = summary["errors"]
    assert error["instance_id"] == refused and "only https is allowed" in error["error"]
    assert fleet.state(refused) == "running"
    assert [request for request, _ in httpserver.log if request.path == "/schedules/fleet.json"] == []


def system_resolver(host: str) -> list[str]:
    """The addresses the system resolver gives (the hosts below are IP literals or localhost: no DNS query)."""
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://schedules.example.com/x.json", "only https is allowed"),
        ("https://127.0.0.1/x.json", "non-public address 127.0.0.1"),
        ("https://localhost/x.json", "non-public address"),
        ("https://[::1]/x.json", "non-public address ::1"),
        ("https://169.254.169.254/latest/meta-data/", "non-public address 169.254.169.254"),
        ("https://10.1.2.3/x.json", "non-public address 10.1.2.3"),
        ("https://192.168.0.1/x.json", "non-public address 192.168.0.1"),
        ("https://172.16.0.1/x.json", "non-public address 172.16.0.1"),
        ("https://100.64.0.1/x.json", "non-public address 100.64.0.1"),
        ("https://0.0.0.0/x.json", "non-public address 0.0.0.0"),
        ("https://[::ffff:127.0.0.1]/x.json", "non-public address"),
        ("https://[fd00::1]/x.json", "non-public address fd00::1"),
        ("https:///x.json", "has no host"),
        ("https://host:99999/x.json", "malformed schedule URL"),
        ("https://93.184.215.14/x.json", None),  # https to a public address: allowed
        ("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/x.json", None),
    ],
)
def test_non_public_and_non_https_urls_are_refused(url: str, message: str | None) -> None:
    if message is None:
        check_url(url, (), system_resolver)
    else:
        with pytest.raises(ScheduleError, match=re.escape(message)):
            check_url(url, (), system_resolver)


def test_every_resolved_address_must_be_public() -> None:
    resolved = {"mixed.example": ["93.184.215.14", "10.0.0.1"], "public.example": ["93.184.215.14"]}
    with pytest.raises(ScheduleError, match=r"non-public address 10\.0\.0\.1"):
        check_url("https://mixed.example/s.json", (), resolved.__getitem__)
    check_url("https://public.example/s.json", (), resolved.__getitem__)


def test_an_unresolvable_host_is_refused() -> None:
    def fails(host: str) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(ScheduleError, match="cannot resolve host"):
        check_url("https://nowhere.invalid/s.json", (), fails)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://10.0.0.5:8080/schedules/a.json", True),
        ("http://10.0.0.5:8080/schedules/", True),
        ("http://10.0.0.5:8080/other/a.json", False),
        ("http://10.0.0.5:8081/schedules/a.json", False),
        ("https://10.0.0.5:8080/schedules/a.json", False),
        ("http://10.0.0.5:8080.evil.example/schedules/a.json", False),
        ("http://evil@10.0.0.5:8080/schedules/a.json", False),
    ],
)
def test_allow_prefixes_match_scheme_host_port_and_path(url: str, allowed: bool) -> None:
    def no_dns(host: str) -> list[str]:
        raise AssertionError("resolved a host")

    if allowed:
        check_url(url, ("http://10.0.0.5:8080/schedules/",), no_dns)
    else:
        with pytest.raises(ScheduleError):
            check_url(url, ("http://10.0.0.5:8080/schedules/",), lambda host: ["10.0.0.5"])


def test_secrets_in_urls_are_never_logged_or_reported(
    fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    allow_server.expect_request("/schedules/private.json").respond_with_data("nope", status=403)
    url = allow_server.url_for("/schedules/private.json") + "?X-Amz-Signature=SECRET-SIGNATURE&token=SECRET-TOKEN"
    fleet.launch(url)
    with caplog.at_level(logging.DEBUG):
        summary = handler(MONDAY_0807)
    assert "answered HTTP 403" in summary["errors"][0]["error"]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("ec2_powercycle", "urllib3", "requests"))]
    assert any("private.json" in message for message in ours)
    assert "SECRET" not in json.dumps(summary) + "\n".join(ours)


def test_url_allow_setting_is_checked_at_start_up() -> None:
    with pytest.raises(ec2_powercycle.ConfigError, match="EC2_POWERCYCLE_URL_ALLOW"):
        Settings.from_env({"AWS_REGION": "eu-west-1", "EC2_POWERCYCLE_URL_ALLOW": "ftp://files/"})


def test_a_connection_cut_mid_body_is_that_instances_error(
    fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve_once() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"stop\": ")

    server = threading.Thread(target=serve_once, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}/schedules/cut.json"
    monkeypatch.setenv("EC2_POWERCYCLE_URL_ALLOW", url)
    [cut] = fleet.launch(url)
    [good] = fleet.launch(json.dumps(STOP_AT_EIGHT))
    summary = handler(MONDAY_0807)
    server.join(timeout=5)
    listener.close()
    assert summary["stopped"] == [good]
    [error] = summary["errors"]
    assert error["instance_id"] == cut and "cannot fetch schedule URL" in error["error"]
