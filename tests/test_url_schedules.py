"""Schedules behind URLs: a real HTTP server on 127.0.0.1, and untrusted-input rules."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import ec2_powercycle
from ec2_powercycle import ScheduleError, Settings, check_url, fetch_schedule_text, handler
from tests.support.faults import ApiRecorder
from tests.support.fleet import Fleet
from tests.support.local_endpoint import free_port

MONDAY_0807 = {"time": "2026-11-23T08:07:00Z"}
STOP_AT_EIGHT = {"stop": "0 8 * * *"}


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
    assert check_url("https://public.example/s.json", (), resolved.__getitem__) == ["93.184.215.14"]


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
    def dns(host: str) -> list[str]:
        return ["10.0.0.5"]

    if allowed:  # resolved once all the same: the fetch connects to this address
        assert check_url(url, ("http://10.0.0.5:8080/schedules/",), dns) == ["10.0.0.5"]
    else:
        with pytest.raises(ScheduleError):
            check_url(url, ("http://10.0.0.5:8080/schedules/",), dns)


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
            connection.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"stop": ')

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


# --- The request goes to an address that was checked ------------------------------------

PUBLIC_ADDRESS = "93.184.216.34"  # example.com's; the connections fixture keeps every test off it


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (address, port) a socket connects to; anything but loopback is refused, never reached."""
    attempted: list[tuple[str, int]] = []
    real_connect = socket.socket.connect

    def loopback_only(sock: socket.socket, address: Any) -> None:
        attempted.append(address[:2])
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise OSError(errno.ENETUNREACH, "tests reach nothing beyond loopback")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    return attempted


@dataclass
class TlsServer:
    """What a one-request HTTPS server on 127.0.0.1 saw: TLS server names (SNI) and request heads."""

    port: int
    server_names: list[str] = field(default_factory=list)
    request_heads: list[str] = field(default_factory=list)


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], TlsServer]]:
    """Starts one-request HTTPS servers on 127.0.0.1 whose certificate names a given host.

    The certificates come from a CA made for the test, which requests trusts in place of its
    bundle (the fetch ignores the environment, so REQUESTS_CA_BUNDLE cannot say so).
    """
    ca_key, ca_cert = _certificate("ec2-powercycle test CA")
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setattr("requests.adapters.DEFAULT_CA_BUNDLE_PATH", str(tmp_path / "ca.pem"))
    listeners: list[socket.socket] = []

    def start(host_name: str) -> TlsServer:
        key, cert = _certificate(host_name, issuer=(ca_key, ca_cert))
        chain = tmp_path / f"{host_name}.pem"
        chain.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)
        server = TlsServer(listener.getsockname()[1])
        context.sni_callback = lambda _socket, server_name, _context: server.server_names.append(server_name)
        threading.Thread(target=_serve_one_request, args=(listener, context, server), daemon=True).start()
        return server

    yield start
    for listener in listeners:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() still waiting
        listener.close()


def _serve_one_request(listener: socket.socket, context: ssl.SSLContext, server: TlsServer) -> None:
    with contextlib.suppress(OSError):  # never connected to, or the client refused the certificate
        connection, _ = listener.accept()
        with connection, context.wrap_socket(connection, server_side=True) as tls:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := tls.recv(4096)):
                head += chunk
            server.request_heads.append(head.decode())
            body = json.dumps(STOP_AT_EIGHT).encode()
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def _certificate(
    name: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A key and certificate: a CA's when issuer is None, else a server's for host name, signed by issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signing_key, issuer_name = (key, subject) if issuer is None else (issuer[0], issuer[1].subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2000, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2100, 1, 1, tzinfo=UTC))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
    return key, builder.sign(signing_key, hashes.SHA256())


def test_a_dns_answer_that_changes_after_the_check_cannot_steer_the_request(
    fleet: Fleet,
    api: ApiRecorder,
    tls_server: Callable[[str], TlsServer],
    connections: list[tuple[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: public for the check, then loopback, where a server with a valid certificate waits."""
    loopback = tls_server("rebind.example")
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_dns(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return real_getaddrinfo(host, *args, **kwargs)
        lookups.append(host)
        return real_getaddrinfo(PUBLIC_ADDRESS if len(lookups) == 1 else "127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    [instance] = fleet.launch(f"https://rebind.example:{loopback.port}/schedules/s.json")
    [error] = handler(MONDAY_0807)["errors"]
    assert error["instance_id"] == instance and "cannot fetch schedule URL" in error["error"]
    assert (lookups, connections) == (["rebind.example"], [(PUBLIC_ADDRESS, loopback.port)])
    assert loopback.server_names == loopback.request_heads == []


def test_a_pinned_https_fetch_names_the_host_in_tls_and_in_the_host_header(
    tls_server: Callable[[str], TlsServer], connections: list[tuple[str, int]]
) -> None:
    server = tls_server("schedules.example")
    url = f"https://schedules.example:{server.port}/schedules/s.json"
    assert json.loads(fetch_schedule_text(url, ["127.0.0.1"])) == STOP_AT_EIGHT
    assert connections == [("127.0.0.1", server.port)]
    assert server.server_names == ["schedules.example"]
    assert f"\r\nHost: schedules.example:{server.port}\r\n" in server.request_heads[0]


def test_a_pinned_https_fetch_refuses_a_certificate_for_another_name(
    tls_server: Callable[[str], TlsServer], connections: list[tuple[str, int]]
) -> None:
    server = tls_server("other.example")
    url = f"https://schedules.example:{server.port}/schedules/s.json"
    with pytest.raises(ScheduleError, match=r"cannot fetch schedule URL .*: SSLError"):
        fetch_schedule_text(url, ["127.0.0.1"])
    assert server.request_heads == []


def test_an_address_that_cannot_be_reached_gives_way_to_the_next(
    httpserver: HTTPServer, connections: list[tuple[str, int]]
) -> None:
    httpserver.expect_request("/schedules/s.json").respond_with_json(STOP_AT_EIGHT)
    url = f"http://schedules.example:{httpserver.port}/schedules/s.json"
    assert json.loads(fetch_schedule_text(url, ["127.0.0.2", "127.0.0.1"])) == STOP_AT_EIGHT
    assert connections == [("127.0.0.2", httpserver.port), ("127.0.0.1", httpserver.port)]


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://schedules.example/s.json", "schedules.example"),
        ("https://schedules.example:443/s.json", "schedules.example"),
        ("https://schedules.example:8443/s.json", "schedules.example:8443"),
        ("http://schedules.example:80/s.json", "schedules.example"),
        ("http://Schedules.Example:8080/s.json?token=x", "schedules.example:8080"),
        ("https://user:secret@schedules.example/s.json", "schedules.example"),
        ("https://[2001:db8::1]/s.json", "[2001:db8::1]"),
        ("https://[2001:db8::1]:8443/s.json", "[2001:db8::1]:8443"),
    ],
)
def test_the_host_header_names_the_urls_host_and_any_port_that_is_not_the_default(url: str, host: str) -> None:
    assert ec2_powercycle._host_header(url) == host


# --- URL rules: dot segments, the allow-list's paths, IPv6 forms that carry IPv4, host names --------

ALLOW = ("http://10.0.0.5:8080/schedules/",)


def internal_dns(host: str) -> list[str]:
    return ["10.0.0.5"]


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8080/schedules/../admin/keys.json",
        "http://10.0.0.5:8080/schedules/%2e%2e/admin/keys.json",
        "http://10.0.0.5:8080/schedules/%2E./admin/keys.json",
        "http://10.0.0.5:8080/schedules/.%2e/admin/keys.json",
        "http://10.0.0.5:8080/schedules/%252e%252e/admin/keys.json",
        "http://10.0.0.5:8080/schedules/%25252e%25252e/admin/keys.json",
        "http://10.0.0.5:8080/schedules/..%5cadmin/keys.json",
        "http://10.0.0.5:8080/schedules\\..\\admin/keys.json",
        "http://10.0.0.5:8080/schedules/..;x/admin/keys.json",
        "http://10.0.0.5:8080/schedules/./a.json",
        "http://10.0.0.5:8080/schedules/%2e/a.json",
        "https://schedules.example/a/../b.json",  # not allowed either way: refused for its path all the same
    ],
)
def test_a_url_whose_path_holds_dot_segments_is_refused_allowed_or_not(url: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape("its path holds a '.' or '..' segment")):
        check_url(url, ALLOW, internal_dns)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8080/schedules/a..json",
        "http://10.0.0.5:8080/schedules/.hidden.json",
        "http://10.0.0.5:8080/schedules/v1.2/a.json",
        "http://10.0.0.5:8080/%73chedules/a.json",  # the same path, normalised
        "http://10.0.0.5:8080/schedules/%7Eteam/a.json",
    ],
)
def test_an_allowed_prefix_matches_the_normalised_path(url: str) -> None:
    assert check_url(url, ALLOW, internal_dns) == ["10.0.0.5"]


def test_an_allow_prefix_with_dot_segments_is_a_settings_error() -> None:
    with pytest.raises(ec2_powercycle.ConfigError, match=r"EC2_POWERCYCLE_URL_ALLOW.*'\.\.' path segments"):
        Settings.from_env({"AWS_REGION": "eu-west-1", "EC2_POWERCYCLE_URL_ALLOW": "http://10.0.0.5/a/../b/"})


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("::ffff:169.254.169.254", "169.254.169.254"),  # IPv4-mapped
        ("::a9fe:a9fe", "169.254.169.254"),  # IPv4-compatible
        ("::127.0.0.1", "127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64, well-known prefix
        ("64:ff9b::10.1.2.3", "10.1.2.3"),
        ("64:ff9b:1:a9fe:a9:fe00::", "169.254.169.254"),  # NAT64, local-use /48 (RFC 6052 positions)
        ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4
        ("2002:c0a8:1::1", "192.168.0.1"),
        ("2001:0:5db8:d822::f5ff:fffe", "10.0.0.1"),  # Teredo: public server, client 10.0.0.1 (stored inverted)
        ("2001:0:a00:1::a247:27dd", "10.0.0.1"),  # Teredo: server 10.0.0.1, public client
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),  # plain public IPv6: allowed
        ("64:ff9b::5db8:d822", None),  # NAT64 of public 93.184.216.34: allowed
        ("64:ff9b:1:5db8:d8:2200::", None),
        ("2002:5db8:d822::1", None),  # 6to4 of public 93.184.216.34: allowed
        ("2001:0:5db8:d822::a247:27dd", None),  # Teredo, public server and client: allowed
    ],
)
def test_ipv6_addresses_that_carry_ipv4_are_judged_by_the_ipv4(address: str, carried: str | None) -> None:
    def dns(host: str) -> list[str]:
        return [address]

    if carried is None:
        assert check_url("https://h.example/s.json", (), dns) == [address]
    else:
        assert carried in {str(ip) for ip in ec2_powercycle.embedded_ipv4(ipaddress.ip_address(address))}
        with pytest.raises(ScheduleError, match=re.escape(f"non-public address {address}")):
            check_url("https://h.example/s.json", (), dns)


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a..example", ".example", "b." + "a" * 63 + "x.example"])
def test_a_host_name_idna_cannot_encode_is_refused_before_any_look_up(host: str) -> None:
    looked_up: list[str] = []

    def dns(name: str) -> list[str]:
        looked_up.append(name)
        return ["93.184.215.14"]

    with pytest.raises(ScheduleError, match="host name IDNA cannot encode"):
        check_url(f"https://{host}/s.json", (), dns)
    assert looked_up == []


def test_a_host_label_over_63_characters_is_its_instances_error(fleet: Fleet, api: ApiRecorder) -> None:
    [bad] = fleet.launch(f"https://{'a' * 64}.example/s.json")
    [good] = fleet.launch(json.dumps(STOP_AT_EIGHT))
    summary = handler(MONDAY_0807)
    assert summary["stopped"] == [good]
    [error] = summary["errors"]
    assert error["instance_id"] == bad and "host name IDNA cannot encode" in error["error"]


def test_a_long_url_is_shown_cut_with_its_length() -> None:
    url = "https://schedules.example/" + "p" * 5000 + ".json?token=SECRET"
    with pytest.raises(ScheduleError) as refused:
        check_url(url, (), internal_dns)
    message = str(refused.value)
    assert len(message) < 400 and f"... ({len(url)} characters)" in message and "SECRET" not in message


# --- Time is bounded: URLs fetched at once, within each fetch's deadline and the run's budget -------


@pytest.fixture
def threaded_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[HTTPServer]:
    """A loopback schedule server that answers requests at once (pytest-httpserver's default takes them in turn)."""
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    monkeypatch.setenv("EC2_POWERCYCLE_URL_ALLOW", server.url_for("/schedules/"))
    yield server
    server.clear()
    server.stop()


class LambdaContext:
    """The part of Lambda's context that bounds a run: the time left."""

    function_name = "ec2-powercycle"

    def __init__(self, remaining_ms: int) -> None:
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


def fetch_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("schedule-")]


def test_distinct_slow_urls_are_fetched_at_once(fleet: Fleet, api: ApiRecorder, threaded_server: HTTPServer) -> None:
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most at once

    def slow(request: Request) -> Response:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        time.sleep(2)
        with lock:
            in_flight[0] -= 1
        return Response(json.dumps(STOP_AT_EIGHT), mimetype="application/json")

    ids = []
    for number in range(24):
        threaded_server.expect_request(f"/schedules/{number}.json").respond_with_handler(slow)
        ids += fleet.launch(threaded_server.url_for(f"/schedules/{number}.json"))
    started = time.monotonic()
    summary = handler(MONDAY_0807)
    elapsed = time.monotonic() - started
    assert sorted(summary["stopped"]) == sorted(ids) and summary["errors"] == []
    assert len(threaded_server.log) == 24
    assert elapsed < 12  # one at a time: 48 s; 16 at a time: two rounds of 2 s
    assert in_flight[1] == ec2_powercycle.URL_FETCH_WORKERS  # at once, and no more than the pool
    assert fetch_threads() == []


@pytest.mark.parametrize(
    ("left", "fetching"),
    [(300.0, 240.0), (900.0, 720.0), (100.0, 50.0), (30.0, 15.0), (0.0, 0.0)],
)
def test_url_fetching_leaves_the_larger_of_60_s_and_a_fifth_never_over_half(left: float, fetching: float) -> None:
    assert ec2_powercycle.url_fetch_deadline(1000.0, 1000.0 + left) == pytest.approx(1000.0 + fetching)
    assert ec2_powercycle.url_fetch_deadline(1000.0, None) is None


def test_a_url_past_the_runs_budget_is_its_instances_error_only(
    fleet: Fleet, api: ApiRecorder, threaded_server: HTTPServer
) -> None:
    released = threading.Event()

    def held(request: Request) -> Response:
        released.wait(10)
        return Response(json.dumps(STOP_AT_EIGHT), mimetype="application/json")

    threaded_server.expect_request("/schedules/held.json").respond_with_handler(held)
    threaded_server.expect_request("/schedules/quick.json").respond_with_json(STOP_AT_EIGHT)
    held_ids = fleet.launch(threaded_server.url_for("/schedules/held.json"), count=2)
    quick = fleet.launch(threaded_server.url_for("/schedules/quick.json"))
    inline = fleet.launch(json.dumps(STOP_AT_EIGHT))
    started = time.monotonic()
    try:
        # 1.5 s for URLs (half of what is left): room for the quick one on a loaded machine.
        summary = handler(MONDAY_0807, LambdaContext(remaining_ms=3000))
    finally:
        released.set()
    assert time.monotonic() - started < 2.8
    assert sorted(summary["stopped"]) == sorted(quick + inline)
    assert sorted(error["instance_id"] for error in summary["errors"]) == sorted(held_ids)
    held_url = threaded_server.url_for("/schedules/held.json")
    assert all(f"not fetched: {held_url}: the run's time" in error["error"] for error in summary["errors"])
    assert fetch_threads() == []


def test_once_the_budget_is_spent_a_url_fails_without_a_connection(
    fleet: Fleet, api: ApiRecorder, threaded_server: HTTPServer, connections: list[tuple[str, int]]
) -> None:
    threaded_server.expect_request("/schedules/late.json").respond_with_json(STOP_AT_EIGHT)
    [late] = fleet.launch(threaded_server.url_for("/schedules/late.json"))
    [inline] = fleet.launch(json.dumps(STOP_AT_EIGHT))
    summary = handler(MONDAY_0807, LambdaContext(remaining_ms=0))
    assert summary["stopped"] == [inline]
    [error] = summary["errors"]
    assert error["instance_id"] == late and "not fetched:" in error["error"] and "is spent" in error["error"]
    assert connections == [] and threaded_server.log == []


def test_no_fetch_thread_outlives_a_fetch_given_up_at_its_deadline(
    fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ec2_powercycle, "URL_DEADLINE_SECONDS", 0.3)  # the read timeout stays 5 s
    with socket.create_server(("127.0.0.1", 0)) as silent:  # takes connections (the backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/schedules/silent.json"
        monkeypatch.setenv("EC2_POWERCYCLE_URL_ALLOW", url)
        [instance] = fleet.launch(url)
        started = time.monotonic()
        [error] = handler(MONDAY_0807)["errors"]
        assert time.monotonic() - started < 2
    assert error["instance_id"] == instance and "took longer than 0.3 s" in error["error"]
    assert fetch_threads() == []


def test_the_name_look_up_counts_within_the_fetchs_deadline(
    fleet: Fleet,
    api: ApiRecorder,
    httpserver: HTTPServer,
    connections: list[tuple[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ec2_powercycle, "URL_DEADLINE_SECONDS", 0.3)
    httpserver.expect_request("/schedules/s.json").respond_with_json(STOP_AT_EIGHT)
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def slow_dns(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "slow-dns.example":
            return real_getaddrinfo(host, *args, **kwargs)
        lookups.append(host)
        time.sleep(0.6)  # a resolver that answers, late: it cannot be interrupted
        return real_getaddrinfo("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_dns)
    url = f"http://slow-dns.example:{httpserver.port}/schedules/s.json"
    monkeypatch.setenv("EC2_POWERCYCLE_URL_ALLOW", url)
    [slow] = fleet.launch(url)
    [good] = fleet.launch(json.dumps(STOP_AT_EIGHT))
    summary = handler(MONDAY_0807)
    assert summary["stopped"] == [good]
    [error] = summary["errors"]
    assert error["instance_id"] == slow and "took longer than 0.3 s" in error["error"]
    assert lookups == ["slow-dns.example"] and connections == [] and httpserver.log == []
    assert fetch_threads() == []  # the look-up ended, and its thread with it, before the run did
