"""The benchmark EC2 endpoint (tests/support/ec2_endpoint.py) against moto and against EC2's documented behaviour.

The same small fleet is seeded into moto_server and into the benchmark endpoint;
the handler runs against each at the same event times and must produce the same
summary (instance IDs mapped to names by launch order) and leave the same states. So
the endpoint the benchmarks measure against cannot drift into a toy.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

import ec2_powercycle
from tests.support.ec2_endpoint import Fleet, serve_in_thread
from tests.support.local_endpoint import dummy_keys, endpoint_environment, moto_server
from tests.support.sample_fleet import schedule_server

TAG = ec2_powercycle.DEFAULT_TAG
IMAGE_ID = "ami-12c6146b"
LONDON = json.dumps({"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5", "tz": "Europe/London"})
NEW_YORK = json.dumps({"start": "0 8 * * MON-FRI", "stop": "30 18 * * MON-FRI", "tz": "America/New_York"})
NIGHTLY = '{"stop": "0 20 * * *"}'
ENFORCED = json.dumps({"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5", "tz": "Europe/London", "enforce": True})
CONFLICT = '{"start": "0 8 * * *", "stop": "0 8 * * *", "tz": "Europe/London"}'
URL_DOCUMENT = {"start": "0 9 * * 1-5", "stop": "0 19 * * 1-5", "tz": "Europe/Berlin"}
URL_PATH = "/schedules/berlin.json"
# Monday 23 November 2026: London start, New York start, London/Berlin stop, nightly stop, New York stop.
EVENT_TIMES = (
    "2026-11-23T08:07:00Z",
    "2026-11-23T13:07:00Z",
    "2026-11-23T18:07:00Z",
    "2026-11-23T20:07:00Z",
    "2026-11-23T23:37:00Z",
)


def fleet_specs(schedule_url: str) -> list[dict[str, Any]]:
    """(name, tag value or None, state, extra tags, disable_api_stop, reservation) of the comparison fleet.

    One instance per case (two where a reservation holds several, or a shared schedule meets two states).
    """
    specs: list[dict[str, Any]] = []

    def add(group: str, count: int, schedule: str | None, states: tuple[str, ...], **extra: Any) -> None:
        for k in range(count):
            specs.append(
                {
                    "name": f"{group}-{k}",
                    "schedule": schedule,
                    "state": states[k % len(states)],
                    "tags": extra.get("tags", {}),
                    "disable_api_stop": extra.get("disable_api_stop", False),
                    "reservation": f"{group}-{k // extra.get('per_reservation', 1)}",
                }
            )

    add("london", 3, LONDON, ("stopped", "running", "stopped"), per_reservation=3)
    add("stop-protected", 1, LONDON, ("running",), disable_api_stop=True)
    add("london-late", 2, LONDON, ("running", "stopped"), per_reservation=2)
    add("new-york", 2, NEW_YORK, ("stopped", "running"), per_reservation=2)
    add("berlin-url", 2, schedule_url, ("stopped",), per_reservation=2)
    add("nightly", 1, NIGHTLY, ("running",))
    add("enforced", 2, ENFORCED, ("running", "stopped"))
    add("conflict", 1, CONFLICT, ("stopped",))
    add("prod", 1, LONDON, ("stopped",), tags={"Environment": "P"})
    add("not-prod", 1, LONDON, ("stopped",), tags={"environment": "prod"})
    add("asg", 1, LONDON, ("stopped",), tags={"aws:autoscaling:groupName": "web"})
    add("typo", 1, '{"stat": "0 8 * * 1-5"}', ("stopped",))
    add("not-json", 1, "0 8 * * 1-5", ("running",))
    add("bad-cron", 1, '{"start": "0 25 * * *"}', ("stopped",))
    add("bad-zone", 1, '{"start": "0 8 * * *", "tz": "Mars/Olympus"}', ("stopped",))
    add("empty", 1, "", ("running",))
    add("dead-url", 1, schedule_url.replace("berlin", "missing"), ("stopped",))
    add("untagged", 1, None, ("stopped",))
    add("terminated", 1, LONDON, ("terminated",))
    return specs


def _tags(spec: dict[str, Any]) -> dict[str, str]:
    """An instance's tags (the same for every member of a reservation): its names are kept by launch order."""
    tags = dict(spec["tags"])
    if spec["schedule"] is not None:
        tags[TAG] = spec["schedule"]
    return tags


def seed_moto(ec2: Any, specs: list[dict[str, Any]]) -> dict[str, str]:
    """Launch the fleet in moto, a tagged reservation per group; return instance ID -> name."""
    names: dict[str, str] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for spec in specs:
        groups.setdefault(spec["reservation"], []).append(spec)
    for members in groups.values():
        extra: dict[str, Any] = {"DisableApiStop": True} if members[0]["disable_api_stop"] else {}
        tags = _tags(members[0])
        if tags:
            extra["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ]
        reply = ec2.run_instances(
            ImageId=IMAGE_ID, InstanceType="t3.micro", MinCount=len(members), MaxCount=len(members), **extra
        )
        for spec, instance in zip(members, reply["Instances"], strict=True):
            names[instance["InstanceId"]] = spec["name"]
    by_name = {name: instance_id for instance_id, name in names.items()}
    for state, call in (("stopped", ec2.stop_instances), ("terminated", ec2.terminate_instances)):
        ids = [by_name[spec["name"]] for spec in specs if spec["state"] == state]
        if ids:
            call(InstanceIds=ids)
    return names


def seed_bench(fleet: Fleet, specs: list[dict[str, Any]], xml: str = "full") -> dict[str, str]:
    ids = fleet.seed(
        [
            {
                "tags": _tags(spec),
                "state": spec["state"],
                "disable_api_stop": spec["disable_api_stop"],
                "reservation": spec["reservation"],
            }
            for spec in specs
        ],
        xml=xml,
    )
    return {instance_id: spec["name"] for instance_id, spec in zip(ids, specs, strict=True)}


def normalised(summary: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The summary with instance IDs replaced by names, lists sorted, API error messages cut after the code."""

    def text(value: str) -> str:
        value = re.sub(r"^((?:start|stop) failed: [\w.]+):.*$", r"\1", value)
        for instance_id, name in names.items():
            value = value.replace(instance_id, name)
        return value

    def entries(items: list[dict[str, Any]], key: str) -> list[tuple[str, str]]:
        return sorted((names.get(item["instance_id"], str(item["instance_id"])), text(item[key])) for item in items)

    return {
        **{k: summary[k] for k in ("time", "window_start", "window_end", "dry_run", "instances")},
        "started": sorted(names[i] for i in summary["started"]),
        "stopped": sorted(names[i] for i in summary["stopped"]),
        "skipped": entries(summary["skipped"], "reason"),
        "errors": entries(summary["errors"], "error"),
    }


def states_by_name(ec2: Any, names: dict[str, str]) -> dict[str, str]:
    result = {}
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                result[names[instance["InstanceId"]]] = instance["State"]["Name"]
    return result


@pytest.fixture(scope="module")
def schedules() -> Iterator[str]:
    with schedule_server({URL_PATH: URL_DOCUMENT}) as base:
        yield base


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def bench() -> Iterator[tuple[str, Fleet]]:
    with serve_in_thread() as served:
        yield served


def _client(url: str) -> Any:
    return boto3.client("ec2", endpoint_url=url, region_name="eu-west-1", **dummy_keys())


def _run(monkeypatch: pytest.MonkeyPatch, url: str, schedules: str, moment: str) -> dict[str, Any]:
    for name, value in endpoint_environment(url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("EC2_POWERCYCLE_URL_ALLOW", schedules + "/schedules/")
    return ec2_powercycle.handler({"time": moment})


def test_handler_gives_the_same_summaries_and_states_as_on_moto(
    monkeypatch: pytest.MonkeyPatch, moto_url: str, bench: tuple[str, Fleet], schedules: str
) -> None:
    specs = fleet_specs(schedules + URL_PATH)
    bench_url, bench_fleet = bench
    moto_ec2, bench_ec2 = _client(moto_url), _client(bench_url)
    moto_names = seed_moto(moto_ec2, specs)
    bench_names = seed_bench(bench_fleet, specs)
    assert states_by_name(bench_ec2, bench_names) == states_by_name(moto_ec2, moto_names)

    acted = set()
    for moment in EVENT_TIMES:
        on_moto = normalised(_run(monkeypatch, moto_url, schedules, moment), moto_names)
        on_bench = normalised(_run(monkeypatch, bench_url, schedules, moment), bench_names)
        assert on_bench == on_moto, moment
        assert states_by_name(bench_ec2, bench_names) == states_by_name(moto_ec2, moto_names), moment
        acted |= set(on_bench["started"]) | set(on_bench["stopped"])

    # The comparison covered what it is meant to: starts, stops, a refused stop, guards, bad tags.
    assert {"london-0", "london-1", "new-york-0", "berlin-url-0", "nightly-0", "enforced-1"} <= acted
    final = states_by_name(bench_ec2, bench_names)
    assert final["stop-protected-0"] == "running"
    assert final["prod-0"] == "stopped" and final["asg-0"] == "stopped" and final["terminated-0"] == "terminated"


def test_lean_xml_gives_the_handler_what_full_xml_does(
    monkeypatch: pytest.MonkeyPatch, bench: tuple[str, Fleet], schedules: str
) -> None:
    bench_url, fleet = bench
    specs = fleet_specs(schedules + URL_PATH)
    summaries = {}
    for xml in ("full", "lean"):
        names = seed_bench(fleet, specs, xml)
        summaries[xml] = normalised(_run(monkeypatch, bench_url, schedules, "2026-11-23T08:07:00Z"), names)
    assert summaries["lean"] == summaries["full"]
    assert summaries["lean"]["started"] and summaries["lean"]["skipped"]
    with pytest.raises(ValueError, match="unknown xml 'small'"):
        fleet.seed([], xml="small")


def test_refused_stop_is_bisected_to_the_protected_instance(
    monkeypatch: pytest.MonkeyPatch, bench: tuple[str, Fleet], schedules: str
) -> None:
    bench_url, fleet = bench
    specs = fleet_specs(schedules + URL_PATH)
    names = seed_bench(fleet, specs)
    summary = normalised(_run(monkeypatch, bench_url, schedules, "2026-11-23T18:07:00Z"), names)
    assert ("stop-protected-0", "stop failed: OperationNotPermitted") in summary["errors"]
    assert "london-1" in summary["stopped"]
    counts = fleet.counts()["calls"]
    assert counts["StopInstances"] > 1  # the failed batch was split


# --- The endpoint on its own: paging, filters, errors ------------------------------------


@pytest.fixture
def small(bench: tuple[str, Fleet]) -> tuple[Any, Fleet, list[str]]:
    url, fleet = bench
    specs = [
        {
            "name": f"n{k}",
            "tags": {TAG: LONDON, "team": "a" if k % 2 else "b"} if k % 4 else {"team": "c"},
            "state": ("running", "stopped", "terminated")[k % 3],
            "reservation": k // 3,
        }
        for k in range(23)
    ]
    specs[1]["disable_api_stop"] = True
    return _client(url), fleet, fleet.seed(specs)


def _page_sizes(ec2: Any, **kwargs: Any) -> list[int]:
    sizes = []
    for page in ec2.get_paginator("describe_instances").paginate(**kwargs):
        sizes.append(sum(len(r["Instances"]) for r in page["Reservations"]))
    return sizes


def test_pages_hold_max_results_instances_across_reservations(small: tuple[Any, Fleet, list[str]]) -> None:
    ec2, fleet, ids = small
    assert _page_sizes(ec2, PaginationConfig={"PageSize": 5}) == [5, 5, 5, 5, 3]
    assert fleet.counts()["calls"]["DescribeInstances"] == 5
    seen = [
        instance["InstanceId"]
        for page in ec2.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5})
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    ]
    assert seen == ids
    assert _page_sizes(ec2) == [23]  # no MaxResults: everything at once


@pytest.mark.parametrize("bad", [0, 4, 1001])
def test_max_results_outside_5_to_1000_is_invalid(small: tuple[Any, Fleet, list[str]], bad: int) -> None:
    ec2, _, _ = small
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        ec2.describe_instances(MaxResults=bad)


def test_max_results_with_instance_ids_is_refused(small: tuple[Any, Fleet, list[str]]) -> None:
    ec2, _, ids = small
    with pytest.raises(ClientError, match="InvalidParameterCombination"):
        ec2.describe_instances(InstanceIds=ids[:2], MaxResults=5)


def test_unknown_next_token_is_refused(small: tuple[Any, Fleet, list[str]]) -> None:
    ec2, _, _ = small
    with pytest.raises(ClientError, match="InvalidPaginationToken"):
        ec2.describe_instances(MaxResults=5, NextToken="nope")


def _ids(ec2: Any, filters: list[dict[str, Any]]) -> list[str]:
    return [
        instance["InstanceId"]
        for reservation in ec2.describe_instances(Filters=filters)["Reservations"]
        for instance in reservation["Instances"]
    ]


def test_filters(small: tuple[Any, Fleet, list[str]]) -> None:
    ec2, _, ids = small
    tagged = [i for k, i in enumerate(ids) if k % 4]
    assert _ids(ec2, [{"Name": "tag-key", "Values": [TAG]}]) == tagged
    assert _ids(ec2, [{"Name": "tag:team", "Values": ["a"]}]) == [i for k, i in enumerate(ids) if k % 4 and k % 2]
    assert _ids(ec2, [{"Name": "tag:team", "Values": ["a", "c"]}]) == [
        i for k, i in enumerate(ids) if not k % 4 or k % 2
    ]
    assert _ids(ec2, [{"Name": "tag:team", "Values": ["?"]}]) == ids
    assert _ids(ec2, [{"Name": "instance-state-name", "Values": ["stopped"]}]) == ids[1::3]
    both = [{"Name": "tag-key", "Values": [TAG]}, {"Name": "instance-state-name", "Values": ["running", "stopped"]}]
    assert _ids(ec2, both) == [i for k, i in enumerate(ids) if k % 4 and k % 3 != 2]
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        ec2.describe_instances(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])


def test_instances_look_like_ec2s(small: tuple[Any, Fleet, list[str]]) -> None:
    ec2, _, ids = small
    reply = ec2.describe_instances(InstanceIds=[ids[9]])
    (reservation,) = reply["Reservations"]
    assert reservation["ReservationId"].startswith("r-") and reservation["OwnerId"] == "123456789012"
    (instance,) = reservation["Instances"]
    assert instance["State"] == {"Code": 16, "Name": "running"}
    assert instance["InstanceType"] and instance["Placement"]["AvailabilityZone"].startswith("eu-west-1")
    assert {"Key": TAG, "Value": LONDON} in instance["Tags"]
    assert instance["LaunchTime"].tzinfo is not None and instance["NetworkInterfaces"][0]["PrivateIpAddress"]


def test_start_and_stop_report_and_change_states(small: tuple[Any, Fleet, list[str]]) -> None:
    ec2, fleet, ids = small
    started = ec2.start_instances(InstanceIds=[ids[4], ids[6]])["StartingInstances"]
    assert [(s["PreviousState"]["Name"], s["CurrentState"]["Name"]) for s in started] == [
        ("stopped", "pending"),
        ("running", "running"),
    ]
    stopped = ec2.stop_instances(InstanceIds=[ids[4]])["StoppingInstances"]
    assert (stopped[0]["PreviousState"]["Name"], stopped[0]["CurrentState"]["Name"]) == ("running", "stopping")
    assert fleet.states()[ids[4]] == "stopped"
    assert fleet.counts() == {
        "calls": {"StartInstances": 1, "StopInstances": 1},
        "instance_ids": {"StartInstances": 2, "StopInstances": 1},
    }


@pytest.mark.parametrize(
    ("call", "pick", "code"),
    [
        ("stop_instances", lambda ids: [ids[0], ids[1], ids[3]], "OperationNotPermitted"),  # ids[1] protected
        ("start_instances", lambda ids: [ids[4], ids[2]], "IncorrectInstanceState"),  # ids[2] terminated
        ("stop_instances", lambda ids: [ids[0], "i-0123456789abcdef0"], "InvalidInstanceID.NotFound"),
        ("start_instances", lambda ids: [ids[0], "nonsense"], "InvalidInstanceID.Malformed"),
    ],
)
def test_a_refused_batch_changes_nothing(small: tuple[Any, Fleet, list[str]], call: str, pick: Any, code: str) -> None:
    ec2, fleet, ids = small
    before = fleet.states()
    with pytest.raises(ClientError) as raised:
        getattr(ec2, call)(InstanceIds=pick(ids))
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert fleet.states() == before


def test_admin_paths_seed_reset_and_count(bench: tuple[str, Fleet]) -> None:
    url, _ = bench

    def admin(path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    ids = admin("/_bench/seed", {"instances": [{"name": "a", "state": "stopped"}, {"name": "b"}]})["ids"]
    ec2 = _client(url)
    ec2.start_instances(InstanceIds=ids)
    assert admin("/_bench/states") == {ids[0]: "running", ids[1]: "running"}
    assert admin("/_bench/counts")["calls"] == {"StartInstances": 1}
    admin("/_bench/reset", {})
    assert admin("/_bench/states") == {ids[0]: "stopped", ids[1]: "running"}
    assert admin("/_bench/counts")["calls"] == {}


def test_status_tags_and_events_are_served_and_reset(
    monkeypatch: pytest.MonkeyPatch, bench: tuple[str, Fleet], schedules: str
) -> None:
    """What the benchmark of status tags and events needs: CreateTags/DeleteTags shown by the next
    DescribeInstances and undone by a reset, PutEvents accepted and counted."""
    url, fleet = bench
    [due, stale] = fleet.seed(
        [
            {"name": "due", "tags": {TAG: LONDON}, "state": "stopped"},
            {"name": "stale", "tags": {TAG: LONDON, f"{TAG}:error": "2026-11-20T08:07:00Z old"}, "state": "running"},
        ]
    )
    monkeypatch.setenv(ec2_powercycle.STATUS_TAGS_SETTING, "true")
    monkeypatch.setenv(ec2_powercycle.EVENT_BUS_SETTING, "default")
    summary = _run(monkeypatch, url, schedules, "2026-11-23T08:07:00Z")
    assert (summary["started"], summary["status_tag_errors"], summary["event_errors"]) == ([due], 0, 0)
    counts = fleet.counts()
    assert counts["calls"] | {"DescribeInstances": 0} == {
        "DescribeInstances": 0, "StartInstances": 1, "CreateTags": 1, "DeleteTags": 1, "PutEvents": 1,
        "DescribeAutoScalingGroups": 1,  # the region's groups, read once: none carries the tag
    }  # fmt: skip
    tags = {
        instance["InstanceId"]: {tag["Key"]: tag["Value"] for tag in instance["Tags"]}
        for reservation in _client(url).describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    }
    assert tags[due][f"{TAG}:last-action"] == "started 2026-11-23T08:07:00Z schedule"
    assert f"{TAG}:error" not in tags[stale] and tags[stale]["Name"] == "stale"
    fleet.reset()
    assert fleet.by_id[stale].tags[f"{TAG}:error"] == "2026-11-20T08:07:00Z old"
    assert f"{TAG}:last-action" not in fleet.by_id[due].tags
