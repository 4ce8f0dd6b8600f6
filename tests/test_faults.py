"""Faults injected at scale: a throttling storm, stop-protected instances in a large fleet, a hanging URL server.

The EC2 endpoint is the benchmark endpoint (tests/support/ec2_endpoint.py) on 127.0.0.1: fast at thousands of
instances, paging by instance, and refusing a stop batch that holds a ``DisableApiStop`` instance as a
whole, as EC2 does. It counts the calls that reach it. Faults are injected at the HTTP layer: a botocore
``before-send`` hook on the scheduler's own EC2 clients answers some attempts itself with EC2's error
XML and HTTP status, so those attempts never reach the endpoint and botocore's standard retry mode sees
exactly what EC2 would have sent. No boto3 API is mocked.
"""

from __future__ import annotations

import math
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.retries import quota, standard

import ec2_powercycle
from tests.support.ec2_endpoint import Fleet, serve_in_thread
from tests.support.faults import ec2_error_response, on_every_client, request_form

TAG = ec2_powercycle.DEFAULT_TAG
MONDAY_0807 = {"time": "2026-11-23T08:07:00Z"}
OFFICE_HOURS = '{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5"}'  # start due at 08:07
STOP_AT_EIGHT = '{"stop": "0 8 * * *"}'  # stop due at 08:07
EVENING = '{"start": "0 18 * * *", "stop": "0 23 * * *"}'  # nothing due at 08:07
BAD_TAGS = (
    "0 8 * * 1-5",  # not JSON
    '{"stat": "0 8 * * 1-5"}',  # typo
    '{"start": "0 25 * * *"}',  # bad cron
    '{"start": "0 8 * * *", "tz": "Mars/Olympus"}',  # bad zone
    '{"start": "0 8 * * *", "stop": "0 8 * * *"}',  # conflict
    "",  # empty
)


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    """The benchmark EC2 endpoint on 127.0.0.1, with boto3 pointed at it; stopped at the end."""
    with serve_in_thread() as (url, fleet):
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        yield fleet


# --- Fault injection at the HTTP layer ------------------------------------------------------------


THROTTLED = (503, "RequestLimitExceeded", "Request limit exceeded.")
INTERNAL = (500, "InternalError", "An internal error has occurred")


@dataclass(frozen=True)
class Attempt:
    action: str
    invocation: str  # botocore's amz-sdk-invocation-id: the same for every attempt of one API call
    number: int  # 1 for the first try (amz-sdk-request: attempt=N)
    fault: str | None  # the error code injected, or None when the attempt went to the endpoint


class FaultInjector:
    """A before-send hook that answers some EC2 HTTP attempts itself with an EC2 error.

    Deterministic: one seeded random draw per attempt (a single-region run makes its
    calls from one thread, in a fixed order). About `throttle_rate` of attempts get
    RequestLimitExceeded with HTTP 503 and `error_rate` InternalError with HTTP 500;
    the calls in `streaks` ((action, n-th call of that action)) fail on every attempt
    but the last. The last attempt botocore may make (EC2_MAX_ATTEMPTS) is never
    failed, so no request fails more than EC2_MAX_ATTEMPTS - 1 times in a row: every
    call succeeds within botocore's attempt budget.
    """

    def __init__(
        self,
        seed: int,
        throttle_rate: float = 0.20,
        error_rate: float = 0.02,
        streaks: frozenset[tuple[str, int]] = frozenset(),
    ) -> None:
        self.enabled = False
        self.attempts: list[Attempt] = []
        self._seed = seed
        self._random = random.Random(seed)
        self._throttle_rate = throttle_rate
        self._error_rate = error_rate
        self._streaks = streaks
        self._calls: dict[str, int] = {}
        self._per_action: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-send.ec2.*", self._before_send)
        return client

    def start(self) -> None:
        """Inject from now on, as if new: attempts, call numbering and random draws start afresh."""
        with self._lock:
            self.enabled = True
            self.attempts.clear()
            self._calls.clear()
            self._per_action.clear()
            self._random = random.Random(self._seed)

    def faults(self, code: str | None = None) -> list[Attempt]:
        return [a for a in self.attempts if a.fault is not None and (code is None or a.fault == code)]

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        action = request_form(request).get("Action", ["?"])[0]
        invocation = _header(request, "amz-sdk-invocation-id")
        number = int(re.search(r"attempt=(\d+)", _header(request, "amz-sdk-request")).group(1))
        with self._lock:
            if invocation not in self._calls:
                self._calls[invocation] = self._per_action[action]
                self._per_action[action] += 1
            fault = self._choose(action, self._calls[invocation], number)
            self.attempts.append(Attempt(action, invocation, number, fault and fault[1]))
        if fault is None:
            return None
        return ec2_error_response(request, *fault)

    def _choose(self, action: str, index: int, number: int) -> tuple[int, str, str] | None:
        draw = self._random.random()  # drawn for every attempt, so the sequence never shifts
        if not self.enabled or number >= ec2_powercycle.EC2_MAX_ATTEMPTS:
            return None
        if (action, index) in self._streaks:
            return THROTTLED if number % 2 else INTERNAL
        if draw < self._throttle_rate:
            return THROTTLED
        if draw < self._throttle_rate + self._error_rate:
            return INTERNAL
        return None


def _header(request: Any, name: str) -> str:
    value = request.headers[name]
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def injector(monkeypatch: pytest.MonkeyPatch) -> FaultInjector:
    """A FaultInjector on every EC2 client the scheduler makes (disabled until a test enables it)."""
    faults = FaultInjector(
        seed=20261123,
        # The 3rd DescribeInstances page and the 2nd StopInstances batch fail 4 times in a row:
        # the edge of the attempt budget.
        streaks=frozenset({("DescribeInstances", 2), ("StopInstances", 1)}),
    )
    on_every_client(monkeypatch, "ec2_client", lambda client, *_: faults.attach(client))
    return faults


def _fleet(groups: list[tuple[str, int, str | None, str, dict[str, str], bool]], seed: int) -> list[dict[str, Any]]:
    """Specs for the bench endpoint from (group, count, tag value, state, extra tags, stop-protected), shuffled."""
    specs = []
    for group, count, schedule, state, extra, protected in groups:
        for k in range(count):
            tags = {"Name": f"{group}-{k}", **extra}
            if schedule is not None:
                tags[TAG] = schedule
            specs.append({"tags": tags, "state": state, "disable_api_stop": protected})
    random.Random(seed).shuffle(specs)
    return specs


def _names(ids: list[str], specs: list[dict[str, Any]]) -> dict[str, str]:
    return {instance_id: spec["tags"]["Name"] for instance_id, spec in zip(ids, specs, strict=True)}


def _group(name: str) -> str:
    return name.rsplit("-", 1)[0]


STORM_GROUPS: list[tuple[str, int, str | None, str, dict[str, str], bool]] = [
    ("start", 120, OFFICE_HOURS, "stopped", {}, False),
    ("stop", 120, STOP_AT_EIGHT, "running", {}, False),
    ("already-running", 40, OFFICE_HOURS, "running", {}, False),
    ("idle", 40, EVENING, "running", {}, False),
    *((f"bad{n}", 4, bad, "stopped", {}, False) for n, bad in enumerate(BAD_TAGS)),
    ("stop-protected", 1, STOP_AT_EIGHT, "running", {}, True),
    ("protected-env", 20, OFFICE_HOURS, "stopped", {"environment": "p"}, False),
    ("asg", 10, STOP_AT_EIGHT, "running", {"aws:autoscaling:groupName": "web"}, False),
    ("untagged", 20, None, "running", {}, False),
]


def test_a_throttling_storm_ends_exactly_as_a_calm_run(
    endpoint: Fleet, injector: FaultInjector, backoff: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """~20% of EC2 HTTP attempts throttled (503), ~2% InternalError (500): same summary, same states.

    Small pages and batches make many calls for faults to land on: 375 tagged instances read 5 to a
    page (75 DescribeInstances pages), started and stopped 20 to a batch, one batch bisected down to a
    stop-protected instance.

    Retry budget: botocore's standard mode makes EC2_MAX_ATTEMPTS (5) attempts per call; the injector
    never fails the 5th, so each call fails at most 4 times in a row and then reaches the endpoint.
    Retry quota: each client has a token bucket (RetryQuota.INITIAL_CAPACITY, 500); a retry after a
    throttling error takes 5 from it, after any other error 14, and a successful call gives some back.
    The test asserts that the cost of *every* retry in the run, with nothing given back, stays below the
    bucket's capacity, so the quota can never refuse a retry here: every injected fault is retried.
    """
    monkeypatch.setattr(ec2_powercycle, "DESCRIBE_PAGE_SIZE", 5)
    monkeypatch.setattr(ec2_powercycle, "ACTION_BATCH_SIZE", 20)
    specs = _fleet(STORM_GROUPS, seed=7)

    ids = endpoint.seed(specs)
    names = _names(ids, specs)
    calm = ec2_powercycle.handler(MONDAY_0807)
    calm_states, calm_counts = endpoint.states(), endpoint.counts()
    assert injector.faults() == [] and backoff == []
    calm_attempts = len(injector.attempts)

    # The calm run covers what the storm must not disturb: starts, stops, skips, bad tags, a refused stop.
    by_group = Counter(_group(names[i]) for i in calm["started"] + calm["stopped"])
    assert by_group == {"start": 120, "stop": 120}
    assert Counter(_group(names[e["instance_id"]]) for e in calm["errors"]) == {
        **{f"bad{n}": 4 for n in range(len(BAD_TAGS))},
        "stop-protected": 1,
    }
    assert Counter(_group(names[e["instance_id"]]) for e in calm["skipped"]) == {
        "already-running": 40,
        "protected-env": 20,
        "asg": 10,
    }
    assert calm["instances"] == 375
    assert calm_counts["calls"]["DescribeInstances"] == 75 + 1  # the pages, then the Name of the refused stop
    assert calm_counts["calls"]["StopInstances"] > 7  # 7 batches, one of them bisected

    # The storm, on a fresh identical fleet (the same specs give the same IDs).
    assert endpoint.seed(specs) == ids
    injector.start()
    stormy = ec2_powercycle.handler(MONDAY_0807)

    # The same summary but for run_seconds: retries take time.
    assert {**stormy, "run_seconds": None} == {**calm, "run_seconds": None}
    assert endpoint.states() == calm_states
    # Every call reached the endpoint exactly as often as in the calm run: the injected attempts never did.
    assert endpoint.counts() == calm_counts

    throttled, internal = injector.faults("RequestLimitExceeded"), injector.faults("InternalError")
    attempts = len(injector.attempts)
    print(
        f"\nstorm: {attempts} HTTP attempts ({calm_attempts} calm), {len(throttled)} throttled (503), "
        f"{len(internal)} InternalError (500), {len(backoff)} retries"
    )
    assert attempts == calm_attempts + len(throttled) + len(internal)
    assert 0.15 <= len(throttled) / attempts <= 0.30
    assert len(throttled) >= 20 and len(internal) >= 4
    assert {a.action for a in injector.faults()} == {"DescribeInstances", "StartInstances", "StopInstances"}
    # Each fault was retried after a backoff that botocore computed (and the backoff fixture did not sleep).
    assert len(backoff) == len(throttled) + len(internal)
    assert all(delay >= 0 for delay in backoff)
    # No call used more than the attempt budget, and the streaks reached its edge.
    per_call = Counter(a.invocation for a in injector.attempts)
    assert max(per_call.values()) == ec2_powercycle.EC2_MAX_ATTEMPTS
    assert all(a.fault is None for a in injector.attempts if a.number == ec2_powercycle.EC2_MAX_ATTEMPTS)
    # The retry quota could not have run out even if no successful call gave any capacity back.
    spent = len(throttled) * standard.RetryQuotaChecker._THROTTLING_RETRY_COST
    spent += len(internal) * standard.RetryQuotaChecker._RETRY_COST
    assert spent < quota.RetryQuota.INITIAL_CAPACITY, spent


# --- 1% stop-protected in a large fleet -------------------------------------------------------------

LARGE_FLEET = 2_000
# 20 stop-protected positions (1%): most batches of 100 hold one, some two or three, some none.
PROTECTED_POSITIONS = (
    *(b * 100 + 37 for b in range(0, 20, 2)),  # one in each even batch: 10
    150, 151,  # two side by side in batch 1
    310, 355, 399,  # three in batch 3
    505, 1290, 1517, 1702, 1999,  # batch 5, 12, 15, 17, 19
)


def batch_bound(protected_in_batch: int, batch: int) -> int:
    """1 + 2 * k_b * ceil(log2(B)): the most StopInstances calls one batch of B with k_b stop-protected may cost."""
    return 1 + 2 * protected_in_batch * math.ceil(math.log2(batch))


def stop_call_bound(protected_positions: Iterable[int], total: int, batch: int) -> int:
    """sum over batches b of (1 + 2 * k_b * ceil(log2(B))), k_b the stop-protected instances in batch b."""
    per_batch = Counter(position // batch for position in protected_positions)
    return sum(batch_bound(per_batch[b], batch) for b in range(math.ceil(total / batch)))


@pytest.fixture
def stop_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The InstanceIds of every StopInstances call the scheduler's EC2 clients make (client side)."""
    calls: list[list[str]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(list(params["InstanceIds"]))

    on_every_client(
        monkeypatch,
        "ec2_client",
        lambda client, *_: client.meta.events.register("before-parameter-build.ec2.StopInstances", record),
    )
    return calls


def test_one_percent_stop_protected_costs_a_bounded_number_of_stop_calls(
    endpoint: Fleet, stop_calls: list[list[str]]
) -> None:
    """2,000 instances due to stop, 20 of them stop-protected (DisableApiStop): every other one stops.

    Bound on StopInstances calls, for n instances in batches of B = ACTION_BATCH_SIZE (100) with k_b
    stop-protected instances in batch b:

        calls <= sum over batches b of (1 + 2 * k_b * ceil(log2(B)))

    A batch without a protected instance is one call. A refused batch is split in halves; only halves
    holding a protected instance fail and split again, at most ceil(log2(B)) = 7 levels deep, so each
    protected instance adds at most 2 calls per level.
    """
    assert len(set(PROTECTED_POSITIONS)) == 20
    protected = set(PROTECTED_POSITIONS)
    specs = [
        {"name": f"n{k}", "tags": {TAG: STOP_AT_EIGHT}, "state": "running", "disable_api_stop": k in protected}
        for k in range(LARGE_FLEET)
    ]
    ids = endpoint.seed(specs)
    refused = {ids[k] for k in protected}

    summary = ec2_powercycle.handler(MONDAY_0807)

    states = endpoint.states()
    assert {i for i, state in states.items() if state == "stopped"} == set(ids) - refused
    assert {states[i] for i in refused} == {"running"}
    assert sorted(summary["stopped"]) == sorted(set(ids) - refused)
    assert sorted(e["instance_id"] for e in summary["errors"]) == sorted(refused)
    assert all(e["error"].startswith("stop failed: OperationNotPermitted:") for e in summary["errors"])
    assert summary["skipped"] == [] and summary["started"] == []

    batch = ec2_powercycle.ACTION_BATCH_SIZE
    bound = stop_call_bound(PROTECTED_POSITIONS, LARGE_FLEET, batch)
    calls = endpoint.counts()["calls"]["StopInstances"]
    print(f"\n{LARGE_FLEET} instances, {len(protected)} stop-protected: {calls} StopInstances calls, bound {bound}")
    assert bound == 20 + 2 * 20 * 7 == 300
    assert calls <= bound
    assert calls == 256  # measured (docs/operations.md, Faults); 16 of the 20 batches hold a stop-protected instance
    # The bound holds batch by batch too: each call's IDs lie within one batch of the plan's order.
    assert len(stop_calls) == calls
    position = {instance_id: k for k, instance_id in enumerate(ids)}
    per_batch: Counter[int] = Counter()
    for call in stop_calls:
        (which,) = {position[instance_id] // batch for instance_id in call}
        per_batch[which] += 1
    protected_per_batch = Counter(k // batch for k in protected)
    for which in range(LARGE_FLEET // batch):
        assert 1 <= per_batch[which] <= batch_bound(protected_per_batch[which], batch), which
    assert {which for which, count in per_batch.items() if count == 1} == set(range(20)) - set(protected_per_batch)


# --- A URL server that hangs ------------------------------------------------------------------------


class HangingServer:
    """An HTTP server on 127.0.0.1 that takes requests and never finishes answering them.

    mode "silent": reads the request, then says nothing; "trickle-body": sends a 200 and its headers,
    then one byte of body every `interval` s, forever; "trickle-headers": sends a status line, then one
    header byte every `interval` s, for at most `give_up` s (so a run that waits for it still ends).
    """

    def __init__(self, mode: str, interval: float = 0.1, give_up: float = 4.0) -> None:
        self.mode = mode
        self.interval = interval
        self.give_up = give_up
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> list[threading.Thread]:
        """Stop every thread; return those still alive (none, if all is well)."""
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()
        return [thread for thread in self._threads if thread.is_alive()]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(0.05)
            try:
                head = b""
                while b"\r\n\r\n" not in head and not self._stop.is_set():
                    try:
                        chunk = connection.recv(4096)
                    except TimeoutError:
                        continue
                    if not chunk:
                        return
                    head += chunk
                self.requests.append(head.split(b"\r\n", 1)[0].decode())
                if self.mode == "trickle-body":
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
                    self._trickle(connection, b" ", math.inf)
                elif self.mode == "trickle-headers":
                    connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    self._trickle(connection, b"a", self.give_up)
                else:
                    self._stop.wait()
            except OSError:
                return  # the client gave up and closed the connection

    def _trickle(self, connection: socket.socket, byte: bytes, seconds: float) -> None:
        ends = time.monotonic() + seconds
        while not self._stop.wait(self.interval) and time.monotonic() < ends:
            connection.sendall(byte)


@pytest.fixture
def hanging() -> Iterator[Callable[..., HangingServer]]:
    servers: list[HangingServer] = []

    def start(mode: str, **options: float) -> HangingServer:
        servers.append(HangingServer(mode, **options))
        return servers[-1]

    yield start
    alive = [thread for server in servers for thread in server.close()]
    assert alive == [], "server threads did not stop"


URL_TIMEOUT, URL_DEADLINE = 0.3, 0.8
# The run's own work (about 1 s here: clients, reading and acting on 250 instances), with room for a
# slow or busy machine.
RUN_SLACK_SECONDS = 3.0
RUN_BOUND_SECONDS = URL_DEADLINE + URL_TIMEOUT + RUN_SLACK_SECONDS


def _run_against_hanging_url(
    server: HangingServer, endpoint: Fleet, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], float, dict[str, set[str]]]:
    monkeypatch.setattr(ec2_powercycle, "URL_TIMEOUT_SECONDS", URL_TIMEOUT)
    monkeypatch.setattr(ec2_powercycle, "URL_DEADLINE_SECONDS", URL_DEADLINE)
    monkeypatch.setenv("EC2_POWERCYCLE_URL_ALLOW", server.url("/schedules/"))
    url = server.url("/schedules/fleet.json")
    specs = _fleet(
        [
            ("url", 140, url, "running", {}, False),
            ("url-stopped", 10, url, "stopped", {}, False),
            ("stop", 60, STOP_AT_EIGHT, "running", {}, False),
            ("start", 40, OFFICE_HOURS, "stopped", {}, False),
        ],
        seed=11,
    )
    ids = endpoint.seed(specs)
    names = _names(ids, specs)
    groups: dict[str, set[str]] = {}
    for instance_id, name in names.items():
        groups.setdefault(_group(name), set()).add(instance_id)
    started = time.monotonic()
    summary = ec2_powercycle.handler(MONDAY_0807)
    return summary, time.monotonic() - started, groups


def _assert_url_instances_failed_and_the_rest_acted_on(
    summary: dict[str, Any], groups: dict[str, set[str]], endpoint: Fleet, server: HangingServer, message: str
) -> None:
    url_ids = groups["url"] | groups["url-stopped"]
    assert len(server.requests) == 1 and server.requests[0].startswith("GET /schedules/fleet.json ")
    assert {e["instance_id"] for e in summary["errors"]} == url_ids
    assert len(summary["errors"]) == len(url_ids)
    assert all(message in e["error"] and "/schedules/fleet.json" in e["error"] for e in summary["errors"])
    assert (set(summary["stopped"]), set(summary["started"])) == (groups["stop"], groups["start"])
    states = endpoint.states()
    assert {states[i] for i in groups["stop"]} == {"stopped"} and {states[i] for i in groups["start"]} == {"running"}
    assert {states[i] for i in groups["url"]} == {"running"} and {states[i] for i in groups["url-stopped"]} == {
        "stopped"
    }
    assert endpoint.counts()["instance_ids"] == {"StopInstances": 60, "StartInstances": 40}


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("silent", "cannot fetch schedule URL"),  # ReadTimeout after URL_TIMEOUT_SECONDS
        ("trickle-body", f"took longer than {URL_DEADLINE:g} s"),  # the deadline, however the bytes trickle
    ],
)
def test_a_hanging_url_server_cannot_hold_the_run(
    endpoint: Fleet,
    hanging: Callable[..., HangingServer],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    message: str,
) -> None:
    """150 instances share a URL whose server never finishes answering: fetched once, 150 errors, the
    100 others acted on, and the run ends within URL_DEADLINE_SECONDS + URL_TIMEOUT_SECONDS (the deadline
    is checked after each read, and a read waits at most the timeout) plus the run's own work."""
    server = hanging(mode)
    summary, elapsed, groups = _run_against_hanging_url(server, endpoint, monkeypatch)
    print(f"\n{mode}: run took {elapsed:.2f} s")
    assert elapsed < RUN_BOUND_SECONDS
    assert elapsed >= URL_TIMEOUT  # it did wait on the server
    _assert_url_instances_failed_and_the_rest_acted_on(summary, groups, endpoint, server, message)


def test_a_server_trickling_its_headers_cannot_hold_the_run(
    endpoint: Fleet, hanging: Callable[..., HangingServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server gives up 2 s past the bound, so a run that waits for it still ends and shows the overrun.
    server = hanging("trickle-headers", give_up=RUN_BOUND_SECONDS + 2.0)
    summary, elapsed, groups = _run_against_hanging_url(server, endpoint, monkeypatch)
    print(f"\ntrickle-headers: run took {elapsed:.2f} s (bound {RUN_BOUND_SECONDS:g} s)")
    assert elapsed < RUN_BOUND_SECONDS
    _assert_url_instances_failed_and_the_rest_acted_on(summary, groups, endpoint, server, "/schedules/fleet.json")
