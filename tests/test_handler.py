"""The handler against moto's EC2: instance states, calls that reached the endpoint, the summary."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import time_machine

import ec2_powercycle
from ec2_powercycle import ConfigError, RunError, handler
from tests.support.faults import ApiRecorder, fail_region, instance_ids_in, on_every_client
from tests.support.fleet import OFFICE_HOURS, Fleet

MONDAY_0807 = {"time": "2026-11-23T08:07:00Z"}
MONDAY_1807 = {"time": "2026-11-23T18:07:00Z"}
MONDAY_NOON = {"time": "2026-11-23T12:00:00Z"}


def test_from_import_star_exports_handler() -> None:
    namespace: dict[str, Any] = {}
    exec("from ec2_powercycle import *", namespace)
    assert namespace["handler"] is handler


def test_starts_at_start_time_and_stops_at_stop_time(fleet: Fleet, api: ApiRecorder) -> None:
    [office] = fleet.launch(OFFICE_HOURS, state="stopped")
    summary = handler(MONDAY_0807)
    assert summary["started"] == [office]
    assert fleet.state(office) == "running"
    summary = handler(MONDAY_1807)
    assert summary["stopped"] == [office]
    assert fleet.state(office) == "stopped"
    assert api.operations("StartInstances") == ["StartInstances"]
    assert api.operations("StopInstances") == ["StopInstances"]


def test_summary_shape(fleet: Fleet, api: ApiRecorder) -> None:
    fleet.launch(OFFICE_HOURS, state="stopped")
    summary = handler(MONDAY_0807)
    assert summary["time"] == "2026-11-23T08:07:00Z"
    assert summary["window_start"] == "2026-11-23T07:52:00Z"
    assert summary["window_end"] == "2026-11-23T08:07:00Z"
    assert summary["dry_run"] is False
    assert set(summary) >= {"time", "window_start", "window_end", "dry_run", "started", "stopped", "skipped", "errors"}
    assert json.loads(json.dumps(summary)) == summary  # plain JSON types only: what Lambda returns to its caller


def test_nothing_happens_outside_the_window(fleet: Fleet, api: ApiRecorder) -> None:
    [running] = fleet.launch(OFFICE_HOURS)
    [stopped] = fleet.launch(OFFICE_HOURS, state="stopped")
    summary = handler(MONDAY_NOON)
    assert (summary["started"], summary["stopped"], summary["skipped"], summary["errors"]) == ([], [], [], [])
    assert fleet.states() == {running: "running", stopped: "stopped"}
    assert api.operations() == ["DescribeInstances"]


def test_a_manual_change_is_respected_without_enforce_and_undone_with_it(fleet: Fleet, api: ApiRecorder) -> None:
    [respected] = fleet.launch(OFFICE_HOURS, state="stopped")
    [enforced] = fleet.launch('{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5", "enforce": true}', state="stopped")
    summary = handler(MONDAY_NOON)
    assert summary["started"] == [enforced]
    assert fleet.states() == {respected: "stopped", enforced: "running"}
    # Holding the state is quiet: the next run has nothing to note.
    assert handler(MONDAY_NOON)["skipped"] == []


def test_instances_already_in_place_are_noted(fleet: Fleet, api: ApiRecorder) -> None:
    [already] = fleet.launch(OFFICE_HOURS, state="running")
    summary = handler(MONDAY_0807)
    assert summary["skipped"] == [
        {
            "instance_id": already,
            "account": "own",
            "region": "eu-west-1",
            "reason": "start due at 2026-11-23T08:00:00Z but instance is running",
        }
    ]
    assert api.operations("StartInstances") == []


def test_start_only_and_stop_only_schedules(fleet: Fleet, api: ApiRecorder) -> None:
    [start_only] = fleet.launch('{"start": "0 8 * * *"}', state="stopped")
    [stop_only] = fleet.launch('{"stop": "0 8 * * *"}')
    summary = handler(MONDAY_0807)
    assert (summary["started"], summary["stopped"]) == ([start_only], [stop_only])


def test_schedule_in_a_time_zone(fleet: Fleet, api: ApiRecorder) -> None:
    [tokyo] = fleet.launch('{"start": "0 9 * * *", "tz": "Asia/Tokyo"}', state="stopped")
    assert handler(MONDAY_0807)["started"] == []
    assert handler({"time": "2026-11-23T00:00:00Z"})["started"] == [tokyo]


def test_default_time_zone_setting(fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    [instance] = fleet.launch('{"start": "0 9 * * *"}', state="stopped")
    monkeypatch.setenv("EC2_POWERCYCLE_TIMEZONE", "Europe/Paris")
    assert handler(MONDAY_0807)["started"] == [instance]


def test_window_setting(fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    [instance] = fleet.launch('{"start": "0 8 * * *"}', state="stopped")
    monkeypatch.setenv("EC2_POWERCYCLE_WINDOW_MINUTES", "5")
    summary = handler(MONDAY_0807)
    assert (summary["window_start"], summary["started"]) == ("2026-11-23T08:02:00Z", [])
    monkeypatch.setenv("EC2_POWERCYCLE_WINDOW_MINUTES", "10")
    assert handler(MONDAY_0807)["started"] == [instance]


def test_tag_key_setting(fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    [default_key] = fleet.launch('{"start": "0 8 * * *"}', state="stopped")
    [custom_key] = fleet.launch(None, state="stopped", tags={"power-schedule": '{"start": "0 8 * * *"}'})
    monkeypatch.setenv("EC2_POWERCYCLE_TAG", "power-schedule")
    assert handler(MONDAY_0807)["started"] == [custom_key]
    assert fleet.state(default_key) == "stopped"
    [describe] = api.params("DescribeInstances")
    assert {"Name": "tag-key", "Values": ["power-schedule"]} in describe["Filters"]


def test_untagged_instances_are_not_even_read(fleet: Fleet, api: ApiRecorder) -> None:
    [untagged] = fleet.launch(None, state="stopped")
    fleet.launch(OFFICE_HOURS, state="stopped")
    summary = handler(MONDAY_0807)
    assert untagged not in summary["started"] and summary["instances"] == 1
    [describe] = api.params("DescribeInstances")
    assert describe["Filters"] == [
        {"Name": "tag-key", "Values": ["ec2Powercycle"]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
    ]
    assert describe["MaxResults"] == 1000


def test_terminated_instances_are_never_touched(fleet: Fleet, api: ApiRecorder) -> None:
    [gone] = fleet.launch('{"start": "0 8 * * *"}', state="stopped")
    fleet.client().terminate_instances(InstanceIds=[gone])
    summary = handler(MONDAY_0807)
    assert summary["started"] == [] and summary["instances"] == 0
    assert fleet.state(gone) == "terminated"


# --- Guards ----------------------------------------------------------------------


@pytest.mark.parametrize("environment", ["p", "P", " p"])
def test_protected_environment_is_never_touched(fleet: Fleet, api: ApiRecorder, environment: str) -> None:
    [production] = fleet.launch('{"stop": "0 8 * * *"}', tags={"environment": environment})
    summary = handler(MONDAY_0807)
    assert summary["stopped"] == []
    assert summary["skipped"] == [
        {
            "instance_id": production,
            "account": "own",
            "region": "eu-west-1",
            "reason": f"protected environment {environment!r}",
        }
    ]
    assert fleet.state(production) == "running"
    assert api.operations("StopInstances") == []


def test_protected_values_setting(fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    [prod] = fleet.launch('{"stop": "0 8 * * *"}', tags={"Environment": "Production"})
    [p] = fleet.launch('{"stop": "0 8 * * *"}', tags={"environment": "p"})
    monkeypatch.setenv("EC2_POWERCYCLE_PROTECTED_ENVIRONMENTS", "production,live")
    summary = handler(MONDAY_0807)
    assert summary["stopped"] == [p]
    assert fleet.states() == {prod: "running", p: "stopped"}


def test_auto_scaling_members_are_never_touched(fleet: Fleet, api: ApiRecorder) -> None:
    [member] = fleet.launch('{"stop": "0 8 * * *"}', tags={"aws:autoscaling:groupName": "web"})
    summary = handler(MONDAY_0807)
    assert summary["skipped"] == [
        {"instance_id": member, "account": "own", "region": "eu-west-1", "reason": "in Auto Scaling group 'web'"}
    ]
    assert fleet.state(member) == "running"


# --- Bad input: a clear error for that instance, nothing else lost ------------------

BAD_VALUES = [
    ("", "empty schedule"),
    ("stop at six", "not valid JSON"),
    ('["0 8 * * *"]', "must be a JSON object"),
    ('{"tz": "UTC"}', "needs a 'start' or 'stop' key"),
    ('{"stat": "0 8 * * *"}', "unknown key 'stat'"),
    ('{"stop": 8}', "'stop' must be a cron string"),
    ('{"stop": "0 8 * * *", "enforce": "yes"}', "'enforce' must be true or false"),
    ('{"stop": "61 8 * * *"}', "invalid cron '61 8 * * *'"),
    ('{"stop": "0 8 * *"}', "4 fields, expected 5"),
    ('{"stop": "0 0 8 * * *"}', "6 fields, expected 5"),
    ('{"stop": "0 8 * * *", "tz": "Nowhere/City"}', "unknown time zone 'Nowhere/City'"),
    ('{"start": "0 8 * * *", "stop": "0 8 * * *"}', "schedule conflict"),
]


@pytest.mark.parametrize(("value", "message"), BAD_VALUES)
def test_a_bad_tag_is_reported_and_the_rest_proceed(fleet: Fleet, api: ApiRecorder, value: str, message: str) -> None:
    [good_before] = fleet.launch('{"stop": "0 8 * * *"}')
    [bad] = fleet.launch(value)
    [good_after] = fleet.launch('{"stop": "0 8 * * *"}')
    summary = handler(MONDAY_0807)
    assert sorted(summary["stopped"]) == sorted([good_before, good_after])
    [error] = summary["errors"]
    assert error["instance_id"] == bad and message in error["error"]
    assert fleet.state(bad) == "running"


def test_every_bad_tag_at_once(fleet: Fleet, api: ApiRecorder) -> None:
    bad = {fleet.launch(value)[0]: message for value, message in BAD_VALUES}
    [good] = fleet.launch('{"stop": "0 8 * * *"}')
    summary = handler(MONDAY_0807)
    assert summary["stopped"] == [good]
    assert {entry["instance_id"]: entry["error"] for entry in summary["errors"]}.keys() == bad.keys()
    for entry in summary["errors"]:
        assert bad[entry["instance_id"]] in entry["error"]


def test_a_schedule_croniter_cannot_evaluate_is_that_instances_error(fleet: Fleet, api: ApiRecorder) -> None:
    # With enforce, the state comes from the latest start at or before the run: for a run in the
    # first hour of year 1 the latest 29 February would fall in year 0, which datetime cannot hold.
    [leap_day] = fleet.launch('{"start": "0 0 29 2 *", "enforce": true}', state="stopped")
    [good] = fleet.launch('{"stop": "20 0 * * *"}')
    summary = handler({"time": "0001-01-01T00:30:00Z"})
    assert summary["stopped"] == [good]
    [error] = summary["errors"]
    assert error["instance_id"] == leap_day
    assert error["error"].startswith("cannot evaluate schedule in tag 'ec2Powercycle': ")
    assert fleet.states() == {leap_day: "stopped", good: "stopped"}


# --- Dry run ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "1", "YES"])
def test_dry_run_changes_nothing_and_lists_what_would_happen(
    fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    [to_start] = fleet.launch('{"start": "0 8 * * *"}', state="stopped")
    [to_stop] = fleet.launch('{"stop": "0 8 * * *"}')
    monkeypatch.setenv("EC2_POWERCYCLE_DRY_RUN", value)
    summary = handler(MONDAY_0807)
    assert (summary["dry_run"], summary["started"], summary["stopped"]) == (True, [to_start], [to_stop])
    assert fleet.states() == {to_start: "stopped", to_stop: "running"}
    assert api.operations() == ["DescribeInstances"]


@pytest.mark.parametrize("value", ["ture", "on", "dry"])
def test_a_mistyped_dry_run_fails_the_run_before_anything_is_touched(
    fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    [instance] = fleet.launch('{"stop": "0 8 * * *"}')
    monkeypatch.setenv("EC2_POWERCYCLE_DRY_RUN", value)
    with pytest.raises(ConfigError, match="EC2_POWERCYCLE_DRY_RUN"):
        handler(MONDAY_0807)
    assert api.operations() == []
    assert fleet.state(instance) == "running"


def test_bad_settings_touch_nothing(fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet.launch('{"stop": "0 8 * * *"}')
    monkeypatch.setenv("EC2_POWERCYCLE_WINDOW_MINUTES", "0")
    with pytest.raises(ConfigError, match="EC2_POWERCYCLE_WINDOW_MINUTES"):
        handler(MONDAY_0807)
    assert api.operations() == []


# --- Reference time --------------------------------------------------------------


def test_a_late_invocation_acts_as_the_on_time_one(fleet: Fleet, api: ApiRecorder) -> None:
    [instance] = fleet.launch('{"start": "0 8 * * *"}', state="stopped")
    with time_machine.travel("2026-11-23T09:30:00Z", tick=False):
        summary = handler(MONDAY_0807)
    assert summary["started"] == [instance]


def test_without_an_event_the_clock_is_the_reference(fleet: Fleet, api: ApiRecorder) -> None:
    [instance] = fleet.launch('{"start": "0 8 * * *"}', state="stopped")
    with time_machine.travel("2026-11-23T08:03:30Z", tick=False):
        summary = handler()
    assert (summary["time"], summary["started"]) == ("2026-11-23T08:03:30Z", [instance])


@pytest.mark.parametrize("event", [{"time": "yesterday"}, {"time": "2026-11-23T08:00:00"}])
def test_a_bad_event_time_fails_the_run(fleet: Fleet, api: ApiRecorder, event: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="event time"):
        handler(event)
    assert api.operations() == []


def test_event_time_with_offset(fleet: Fleet, api: ApiRecorder) -> None:
    [instance] = fleet.launch('{"start": "0 8 * * *"}', state="stopped")
    assert handler({"time": "2026-11-23T09:07:00+01:00"})["started"] == [instance]


# --- Batching, paging and failure isolation ---------------------------------------


def test_every_page_is_read(fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    # moto pages by reservation: 12 single-instance reservations at 5 a page make 3 pages.
    monkeypatch.setattr(ec2_powercycle, "DESCRIBE_PAGE_SIZE", 5)
    ids = [fleet.launch('{"start": "0 8 * * *"}', state="stopped")[0] for _ in range(12)]
    summary = handler(MONDAY_0807)
    assert sorted(summary["started"]) == sorted(ids)
    describes = api.params("DescribeInstances")
    assert len(describes) == 3
    assert [bool(params.get("NextToken")) for params in describes] == [False, True, True]
    assert set(fleet.states().values()) == {"running"}


def test_a_next_token_that_repeats_fails_the_target_instead_of_looping(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that hands back the token it was given would page forever: the target fails, clearly."""
    monkeypatch.setattr(ec2_powercycle, "DESCRIBE_PAGE_SIZE", 5)
    for _ in range(12):
        fleet.launch('{"start": "0 8 * * *"}', state="stopped")
    tokens: list[str] = []

    def stuck(parsed: dict[str, Any], **_: Any) -> None:
        tokens.append(parsed.get("NextToken", ""))
        if len(tokens) > 1:
            parsed["NextToken"] = tokens[1]  # the second page's token, again and again

    on_every_client(
        monkeypatch,
        "ec2_client",
        lambda client, *_: client.meta.events.register("after-call.ec2.DescribeInstances", stuck),
    )
    with pytest.raises(RunError) as raised:
        handler(MONDAY_0807)
    [error] = raised.value.summary["errors"]
    assert error["instance_id"] is None
    assert error["error"].startswith(
        "own/eu-west-1: cannot read instances: PaginationError: Error during pagination: "
        "DescribeInstances returned the same NextToken twice"
    )
    assert len(tokens) == 3  # the first page, the second, and the third that repeats the second's token
    assert raised.value.summary["started"] == []  # a target that cannot be read is not acted on


def test_actions_are_batched(fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ec2_powercycle, "ACTION_BATCH_SIZE", 5)
    to_stop = fleet.launch('{"stop": "0 8 * * *"}', count=12)
    to_start = fleet.launch('{"start": "0 8 * * *"}', count=6, state="stopped")
    summary = handler(MONDAY_0807)
    assert (sorted(summary["stopped"]), sorted(summary["started"])) == (sorted(to_stop), sorted(to_start))
    assert [len(params["InstanceIds"]) for params in api.params("StopInstances")] == [5, 5, 2]
    assert [len(params["InstanceIds"]) for params in api.params("StartInstances")] == [5, 1]
    assert fleet.states() == {**dict.fromkeys(to_stop, "stopped"), **dict.fromkeys(to_start, "running")}


def test_a_stop_protected_instance_does_not_sink_its_batch(
    fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ec2_powercycle, "ACTION_BATCH_SIZE", 9)
    first = fleet.launch('{"stop": "0 8 * * *"}', count=4)
    [protected] = fleet.launch('{"stop": "0 8 * * *"}', disable_api_stop=True)
    rest = fleet.launch('{"stop": "0 8 * * *"}', count=4)
    summary = handler(MONDAY_0807)
    assert sorted(summary["stopped"]) == sorted(first + rest)
    [error] = summary["errors"]
    assert error["instance_id"] == protected and "stop failed: OperationNotPermitted" in error["error"]
    states = fleet.states()
    assert states.pop(protected) == "running"
    assert set(states.values()) == {"stopped"}
    # One batch, then halves down to the offender: 1 + 2 * ceil(log2(9)) calls at most.
    assert len(api.operations("StopInstances")) <= 1 + 2 * 4


def test_an_instance_whose_stop_failed_is_named_through_one_look_up(fleet: Fleet, api: ApiRecorder) -> None:
    [protected] = fleet.launch('{"stop": "0 8 * * *"}', disable_api_stop=True, tags={"Name": "db-1"})
    [stopped] = fleet.launch('{"stop": "0 8 * * *"}', tags={"Name": "web-1"})
    [bad] = fleet.launch('{"stop": "61 8 * * *"}')  # a decision error with no Name tag: never looked up
    summary = handler(MONDAY_0807)
    assert summary["stopped"] == [stopped]
    assert {entry["instance_id"]: entry.get("name") for entry in summary["errors"]} == {bad: None, protected: "db-1"}
    look_up = api.params("DescribeInstances")[1:]
    assert look_up == [{"Filters": [{"Name": "instance-id", "Values": [protected]}]}]
    assert api.operations()[-1] == "DescribeInstances"  # after the calls that failed


def test_a_failed_name_look_up_leaves_the_run_as_it_was(
    fleet: Fleet, api: ApiRecorder, backoff: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    [protected] = fleet.launch('{"stop": "0 8 * * *"}', disable_api_stop=True, tags={"Name": "db-1"})

    def look_up_fails(action: str, form: dict[str, list[str]]) -> tuple[int, str, str] | None:
        by_id = form.get("Filter.1.Name") == ["instance-id"]
        return (503, "RequestLimitExceeded", "slow down") if action == "DescribeInstances" and by_id else None

    api.inject(look_up_fails)
    with caplog.at_level(logging.INFO, logger="ec2_powercycle"):
        summary = handler(MONDAY_0807)
    [error] = summary["errors"]
    assert error["instance_id"] == protected and "name" not in error
    assert "stop failed: OperationNotPermitted" in error["error"]
    assert any("could not read the Name tags of failed instances" in r.getMessage() for r in caplog.records)


def _fail_for(ids: set[str], code: str, action: str = "StopInstances"):
    def injector(request_action: str, form: dict[str, list[str]]) -> tuple[int, str, str] | None:
        if request_action == action and ids & set(instance_ids_in(form)):
            return 400, code, "injected"
        return None

    return injector


@pytest.mark.parametrize(
    "code", ["IncorrectInstanceState", "UnsupportedOperation", "InvalidInstanceID.NotFound", "UnauthorizedOperation"]
)
def test_each_instance_error_is_isolated_and_reported_with_its_code(
    fleet: Fleet, api: ApiRecorder, code: str
) -> None:
    ids = fleet.launch('{"stop": "0 8 * * *"}', count=8)
    bad = {ids[1], ids[5]}
    api.inject(_fail_for(bad, code))
    summary = handler(MONDAY_0807)
    assert sorted(summary["stopped"]) == sorted(set(ids) - bad)
    assert {entry["instance_id"] for entry in summary["errors"]} == bad
    assert all(f"stop failed: {code}: injected" in entry["error"] for entry in summary["errors"])
    states = fleet.states()
    assert {states[i] for i in bad} == {"running"}


def test_insufficient_capacity_on_start_is_reported(fleet: Fleet, api: ApiRecorder) -> None:
    ids = fleet.launch('{"start": "0 8 * * *"}', state="stopped", count=5)
    api.inject(_fail_for({ids[0]}, "InsufficientInstanceCapacity", "StartInstances"))
    summary = handler(MONDAY_0807)
    assert sorted(summary["started"]) == sorted(ids[1:])
    [error] = summary["errors"]
    assert error["instance_id"] == ids[0]
    assert error["error"].startswith("start failed: InsufficientInstanceCapacity")


def test_throttling_is_retried_by_botocore(fleet: Fleet, api: ApiRecorder, backoff: list[float]) -> None:
    ids = fleet.launch('{"stop": "0 8 * * *"}', count=5)
    failures = iter([True, True, False] * 3)

    def throttle(action: str, form: dict[str, list[str]]) -> tuple[int, str, str] | None:
        return (503, "RequestLimitExceeded", "Request limit exceeded.") if next(failures, False) else None

    api.inject(throttle)
    summary = handler(MONDAY_0807)
    assert sorted(summary["stopped"]) == sorted(ids) and summary["errors"] == []
    assert api.http_attempts.count("DescribeInstances") == 3
    assert api.operations() == ["DescribeInstances", "StopInstances"]
    assert len(backoff) >= 2


def test_throttling_beyond_the_retry_budget_fails_the_batch_without_bisecting(
    fleet: Fleet, api: ApiRecorder, backoff: list[float]
) -> None:
    ids = fleet.launch('{"stop": "0 8 * * *"}', count=8)
    api.inject(lambda action, form: (503, "RequestLimitExceeded", "slow down") if action == "StopInstances" else None)
    summary = handler(MONDAY_0807)
    assert summary["stopped"] == []
    assert sorted(entry["instance_id"] for entry in summary["errors"]) == sorted(ids)
    assert api.operations("StopInstances") == ["StopInstances"]
    assert api.http_attempts.count("StopInstances") == ec2_powercycle.EC2_MAX_ATTEMPTS


# --- Regions ---------------------------------------------------------------------


def test_two_regions(fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch) -> None:
    [ireland] = fleet.launch('{"stop": "0 8 * * *"}', region="eu-west-1")
    [virginia] = fleet.launch('{"stop": "0 8 * * *"}', region="us-east-1")
    [bad] = fleet.launch('{"stop": "nope"}', region="us-east-1")
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", "eu-west-1,us-east-1")
    summary = handler(MONDAY_0807)
    assert sorted(summary["stopped"]) == sorted([ireland, virginia])
    assert summary["errors"][0]["instance_id"] == bad and summary["errors"][0]["region"] == "us-east-1"
    assert fleet.state(ireland, "eu-west-1") == "stopped"
    assert fleet.state(virginia, "us-east-1") == "stopped"


def test_a_failing_region_does_not_stop_the_others_and_fails_the_run_at_the_end(
    fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    [ireland] = fleet.launch('{"stop": "0 8 * * *"}', region="eu-west-1")
    fleet.launch('{"stop": "0 8 * * *"}', region="us-east-1")
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", "us-east-1,eu-west-1")
    fail_region(monkeypatch, "us-east-1")
    with caplog.at_level(logging.INFO, logger="ec2_powercycle"), pytest.raises(RunError, match="us-east-1"):
        handler(MONDAY_0807)
    assert fleet.state(ireland, "eu-west-1") == "stopped"
    summary = json.loads([r.getMessage() for r in caplog.records if r.getMessage().startswith("{")][-1])
    assert summary["stopped"] == [ireland]
    assert summary["errors"] == [
        {
            "instance_id": None,
            "account": "own",
            "region": "us-east-1",
            "error": "own/us-east-1: cannot read instances: UnauthorizedOperation: not allowed",
        }
    ]


# --- Logging ---------------------------------------------------------------------


def test_the_summary_is_logged_as_one_json_line(
    fleet: Fleet, api: ApiRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    [instance] = fleet.launch('{"stop": "0 8 * * *"}')
    fleet.launch('{"stat": "0 8 * * *"}')
    with caplog.at_level(logging.INFO, logger="ec2_powercycle"):
        summary = handler(MONDAY_0807)
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("{")]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert json.loads(lines[0]) == summary
    assert any(record.levelno == logging.WARNING and "1 errors" in record.getMessage() for record in caplog.records)
    assert summary["stopped"] == [instance]


def test_a_huge_summary_is_cut_to_fit_a_log_event(caplog: pytest.LogCaptureFixture) -> None:
    summary = {
        "time": "t",
        "errors": [{"instance_id": f"i-{n:017x}", "error": "x" * 100} for n in range(5000)],
        "started": [],
        "stopped": [],
        "skipped": [],
    }
    with caplog.at_level(logging.INFO, logger="ec2_powercycle"):
        ec2_powercycle.log_summary(summary)
    [line] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("{")]
    logged = json.loads(line)
    assert len(line) < ec2_powercycle.SUMMARY_LOG_MAX_CHARS
    assert logged["truncated"] is True and logged["errors_count"] == 5000 and len(logged["errors"]) == 100
