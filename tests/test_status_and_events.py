"""Seen where people look: status tags on the instances, hours kept stopped, an event for every action.

The handler runs against moto's EC2, EventBridge, SQS in process: a rule on the bus sends every event
of ec2-powercycle to an SQS queue (tests/support/inbox.EventInbox), read back as delivered. Failed tag
writes are injected at botocore's before-send hook with EC2's error body (ApiRecorder); a failed event
entry is one whose Detail is spoiled on its way, so that EventBridge itself fails that entry alone.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import ec2_powercycle
from ec2_powercycle import (
    EVENT_BUS_SETTING,
    STATUS_TAGS_SETTING,
    Action,
    Cause,
    ConfigError,
    Due,
    InstanceRecord,
    Override,
    Schedule,
    Settings,
    decide,
    error_tag_value,
    follow_up,
    handler,
    hold,
)
from tests.support.faults import ApiRecorder, PutEventsRecorder, on_every_client
from tests.support.fleet import OFFICE_HOURS, REGION, TAG, Fleet
from tests.support.inbox import EventInbox
from tests.test_metrics import ACCOUNT, BAD_TAG, LambdaContext, emf_metrics

LAST_ACTION, ERROR = f"{TAG}:last-action", f"{TAG}:error"
MONDAY = "2026-11-23T"


def at(clock: str) -> dict[str, str]:
    """The scheduled event of a run on Monday 2026-11-23 at `clock` (UTC)."""
    return {"time": f"{MONDAY}{clock}:00Z"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def status_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATUS_TAGS_SETTING, "true")


@pytest.fixture
def bus(aws: None, monkeypatch: pytest.MonkeyPatch) -> EventInbox:
    inbox = EventInbox()
    monkeypatch.setenv(EVENT_BUS_SETTING, inbox.bus)
    return inbox


@pytest.fixture
def put_events(monkeypatch: pytest.MonkeyPatch) -> PutEventsRecorder:
    recorder = PutEventsRecorder()
    on_every_client(monkeypatch, "events_client", lambda client, *_: recorder.attach(client))
    return recorder


def tag_calls(api: ApiRecorder) -> list[tuple[str, dict[str, Any]]]:
    return [(op, params) for op, params in api.calls if op in ("CreateTags", "DeleteTags")]


# --- Status tags -------------------------------------------------------------------------


def test_instances_given_the_same_status_share_one_create_tags_call(
    fleet: Fleet, api: ApiRecorder, status_tags: None
) -> None:
    ids = fleet.launch(OFFICE_HOURS, state="stopped", count=3)
    handler(at("08:07"), LambdaContext())
    [(operation, params)] = tag_calls(api)
    assert operation == "CreateTags" and sorted(params["Resources"]) == sorted(ids)
    assert params["Tags"] == [{"Key": LAST_ACTION, "Value": "started 2026-11-23T08:07:00Z schedule"}]
    assert fleet.tags(ids[0])[LAST_ACTION] == "started 2026-11-23T08:07:00Z schedule"


def test_a_run_that_changes_nothing_writes_no_status_tag(fleet: Fleet, api: ApiRecorder, status_tags: None) -> None:
    fleet.launch(OFFICE_HOURS, state="stopped", count=2)
    handler(at("08:07"), LambdaContext())
    api.calls.clear()
    summary = handler(at("08:22"), LambdaContext())
    assert (summary["started"], summary["errors"], summary["status_tag_errors"]) == ([], [], 0)
    assert tag_calls(api) == []


def test_a_run_made_again_leaves_the_last_action_it_wrote(fleet: Fleet, api: ApiRecorder, status_tags: None) -> None:
    written = {LAST_ACTION: "started 2026-11-23T08:07:00Z schedule"}  # by this run's time, made before
    [again] = fleet.launch(OFFICE_HOURS, state="stopped", tags=written)
    [older] = fleet.launch(OFFICE_HOURS, state="stopped", tags={LAST_ACTION: "started 2026-11-20T08:07:00Z schedule"})
    summary = handler(at("08:07"), LambdaContext())
    assert sorted(summary["started"]) == sorted([again, older])
    [(operation, params)] = tag_calls(api)
    assert (operation, params["Resources"]) == ("CreateTags", [older])


def test_the_error_tag_is_set_kept_changed_and_deleted(fleet: Fleet, api: ApiRecorder, status_tags: None) -> None:
    [instance] = fleet.launch(BAD_TAG)
    handler(at("08:07"), LambdaContext())
    first = fleet.tags(instance)[ERROR]
    assert first.startswith("2026-11-23T08:07:00Z bad schedule in tag 'ec2Powercycle': unknown key")
    api.calls.clear()
    handler(at("08:22"), LambdaContext())  # the same reason: the tag keeps the time that first found it
    assert (tag_calls(api), fleet.tags(instance)[ERROR]) == ([], first)
    fleet.client().create_tags(Resources=[instance], Tags=[{"Key": TAG, "Value": '{"start": "61 8 * * *"}'}])
    handler(at("08:37"), LambdaContext())
    assert fleet.tags(instance)[ERROR].startswith("2026-11-23T08:37:00Z bad schedule in tag 'ec2Powercycle': invalid")
    fleet.client().create_tags(Resources=[instance], Tags=[{"Key": TAG, "Value": OFFICE_HOURS}])
    api.calls.clear()
    handler(at("08:52"), LambdaContext())
    assert ERROR not in fleet.tags(instance)
    assert tag_calls(api) == [("DeleteTags", {"Resources": [instance], "Tags": [{"Key": ERROR}]})]


@pytest.mark.parametrize(
    ("reason", "current", "expected"),
    [
        ("stop failed: X", None, "2026-11-23T08:07:00Z stop failed: X"),
        ("stop failed: X", "2026-11-20T09:00:00Z stop failed: X", "2026-11-20T09:00:00Z stop failed: X"),
        ("stop failed: Y", "2026-11-20T09:00:00Z stop failed: X", "2026-11-23T08:07:00Z stop failed: Y"),
        ("x" * 300, None, "2026-11-23T08:07:00Z " + "x" * 235),
        ("x" * 300, "2026-11-20T09:00:00Z " + "x" * 235, "2026-11-20T09:00:00Z " + "x" * 235),
        ("stop failed: X", "garbage", "2026-11-23T08:07:00Z stop failed: X"),
    ],
    ids=["new", "same-reason", "changed", "cut-to-256", "same-cut-reason", "unreadable-tag"],
)
def test_the_error_tag_value(reason: str, current: str | None, expected: str) -> None:
    value = error_tag_value(utc("2026-11-23T08:07:00"), reason, current)
    assert value == expected and len(value) <= ec2_powercycle.TAG_VALUE_MAX_CHARS


def test_a_status_tag_that_cannot_be_written_is_counted_and_harms_nothing(
    fleet: Fleet,
    api: ApiRecorder,
    status_tags: None,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = fleet.launch(OFFICE_HOURS, state="stopped", count=2)
    api.inject(lambda action, _: (403, "UnauthorizedOperation", "no") if action == "CreateTags" else None)
    with caplog.at_level(logging.WARNING, logger="ec2_powercycle"):
        summary = handler(at("08:07"), LambdaContext())
    assert sorted(summary["started"]) == sorted(ids) and summary["errors"] == []
    assert summary["status_tag_errors"] == 2
    assert emf_metrics(json.loads(capsys.readouterr().out.splitlines()[0]))["StatusTagErrors"] == 2
    [warning] = [r.getMessage() for r in caplog.records if "status tag" in r.getMessage()]
    assert LAST_ACTION in warning and "UnauthorizedOperation" in warning
    assert set(fleet.states().values()) == {"running"}


# --- Status tags on Auto Scaling groups ----------------------------------------------------

SIZE_TAG = f"{TAG}:size"


@pytest.fixture
def group_api(monkeypatch: pytest.MonkeyPatch, aws: None) -> ApiRecorder:
    """The Auto Scaling calls the scheduler makes, and errors to inject."""
    recorder = ApiRecorder()
    on_every_client(monkeypatch, "autoscaling_client", lambda client, *_: recorder.attach(client, "autoscaling"))
    return recorder


def group_tag_calls(api: ApiRecorder) -> list[tuple[str, list[dict[str, Any]]]]:
    """The status-tag calls among the Auto Scaling calls (the size tag's are the scaling's own)."""
    return [
        (op, params["Tags"])
        for op, params in api.calls
        if op in ("CreateOrUpdateTags", "DeleteTags") and all(t["Key"] in (LAST_ACTION, ERROR) for t in params["Tags"])
    ]


def group_status(group: str, key: str, value: str) -> dict[str, Any]:
    return {"ResourceId": group, "ResourceType": "auto-scaling-group", "Key": key, "Value": value,
            "PropagateAtLaunch": False}  # fmt: skip


def test_groups_scaled_carry_their_last_action_written_in_one_call_and_not_again(
    fleet: Fleet, group_api: ApiRecorder, status_tags: None
) -> None:
    fleet.launch_group("web", '{"stop": "0 8 * * *"}', sizes=(1, 4, 2))
    saved = {SIZE_TAG: '{"min": 1, "max": 4, "desired": 2}'}
    fleet.launch_group("api", '{"start": "0 8 * * *"}', sizes=(0, 4, 0), tags=saved)
    summary = handler(at("08:07"), LambdaContext())
    assert (len(summary["groups_stopped"]), len(summary["groups_started"]), summary["status_tag_errors"]) == (1, 1, 0)
    [(operation, tags)] = group_tag_calls(group_api)  # two values, one call
    assert operation == "CreateOrUpdateTags"
    assert sorted(tags, key=lambda tag: tag["ResourceId"]) == [
        group_status("api", LAST_ACTION, "started 2026-11-23T08:07:00Z schedule"),
        group_status("web", LAST_ACTION, "stopped 2026-11-23T08:07:00Z schedule"),
    ]
    assert fleet.group("web")[1][LAST_ACTION] == "stopped 2026-11-23T08:07:00Z schedule"
    group_api.calls.clear()
    handler(at("08:22"), LambdaContext())
    assert group_api.operations() == ["DescribeAutoScalingGroups"]


def test_a_groups_error_tag_is_set_kept_changed_and_deleted(
    fleet: Fleet, group_api: ApiRecorder, status_tags: None
) -> None:
    fleet.launch_group("web", BAD_TAG)
    handler(at("08:07"), LambdaContext())
    first = fleet.group("web")[1][ERROR]
    assert first.startswith("2026-11-23T08:07:00Z bad schedule in tag 'ec2Powercycle': unknown key")
    group_api.calls.clear()
    handler(at("08:22"), LambdaContext())  # the same reason: the tag keeps the time that first found it
    assert (group_tag_calls(group_api), fleet.group("web")[1][ERROR]) == ([], first)
    autoscaling = fleet.client(service="autoscaling")
    autoscaling.create_or_update_tags(Tags=[group_status("web", TAG, '{"start": "61 8 * * *"}')])
    handler(at("08:37"), LambdaContext())
    assert fleet.group("web")[1][ERROR].startswith("2026-11-23T08:37:00Z bad schedule in tag 'ec2Powercycle': invalid")
    autoscaling.create_or_update_tags(Tags=[group_status("web", TAG, OFFICE_HOURS)])
    group_api.calls.clear()
    handler(at("08:52"), LambdaContext())
    assert ERROR not in fleet.group("web")[1]
    assert group_tag_calls(group_api) == [
        ("DeleteTags", [{"ResourceId": "web", "ResourceType": "auto-scaling-group", "Key": ERROR}])
    ]


def test_a_groups_status_tag_that_cannot_be_written_is_counted_and_harms_nothing(
    fleet: Fleet, group_api: ApiRecorder, status_tags: None, caplog: pytest.LogCaptureFixture
) -> None:
    fleet.launch_group("web", '{"stop": "0 8 * * *"}')
    fleet.launch_group("api", '{"stop": "0 8 * * *"}')
    group_api.inject(
        lambda action, form: (
            (403, "AccessDenied", "no") if action == "CreateOrUpdateTags" and LAST_ACTION in str(form) else None
        )
    )
    with caplog.at_level(logging.WARNING, logger="ec2_powercycle"):
        summary = handler(at("08:07"), LambdaContext())
    assert (len(summary["groups_stopped"]), summary["errors"], summary["status_tag_errors"]) == (2, [], 2)
    assert fleet.group("web")[0] == fleet.group("api")[0] == (0, 4, 0)
    [warning] = [r.getMessage() for r in caplog.records if "status tag" in r.getMessage()]
    assert LAST_ACTION in warning and "on 2 groups" in warning and "AccessDenied" in warning


def test_a_dry_run_writes_no_status_tag_on_a_group(
    fleet: Fleet, group_api: ApiRecorder, status_tags: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ec2_powercycle.DRY_RUN_SETTING, "true")
    fleet.launch_group("web", '{"stop": "0 8 * * *"}')
    fleet.launch_group("bad", BAD_TAG)
    summary = handler(at("08:07"), LambdaContext())
    assert len(summary["groups_stopped"]) == len(summary["errors"]) == 1
    assert group_api.operations() == ["DescribeAutoScalingGroups"]
    assert LAST_ACTION not in fleet.group("web")[1] and ERROR not in fleet.group("bad")[1]


def test_guarded_groups_status_tags_are_never_touched(fleet: Fleet, group_api: ApiRecorder, status_tags: None) -> None:
    stale = {ERROR: "2026-11-20T09:00:00Z old"}
    fleet.launch_group("prod", '{"stop": "0 8 * * *"}', tags={"environment": "p", **stale})
    fleet.launch_group("eks", '{"stop": "0 8 * * *"}', tags={"eks:nodegroup-name": "workers", **stale})
    summary = handler(at("08:07"), LambdaContext())
    assert len(summary["skipped"]) == 2 and summary["groups_stopped"] == []
    assert group_api.operations() == ["DescribeAutoScalingGroups"]
    assert fleet.group("prod")[1][ERROR] == fleet.group("eks")[1][ERROR] == stale[ERROR]


# --- Hours kept stopped -------------------------------------------------------------------


def test_stopped_instance_hours_count_scheduled_instances_stopped_once_the_actions_are_made(
    fleet: Fleet, api: ApiRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch(OFFICE_HOURS, count=2, instance_type="t3.micro")  # stopped by this run
    fleet.launch(OFFICE_HOURS, state="stopped", instance_type="t3.micro")  # stopped already
    fleet.launch(OFFICE_HOURS, instance_type="m5.large", disable_api_stop=True)  # its stop fails: still running
    fleet.launch('{"start": "0 8 * * 1-5"}', state="stopped", instance_type="m5.large")  # nothing due, stopped
    fleet.launch(OFFICE_HOURS, state="stopped", instance_type="c5.xlarge", tags={"environment": "p"})  # guarded
    fleet.launch(BAD_TAG, state="stopped", instance_type="c5.xlarge")  # no valid schedule
    fleet.launch(None, state="stopped", instance_type="c5.xlarge")  # not scheduled
    summary = handler(at("18:07"), LambdaContext())  # the stop at 17:55, a 15-minute window
    assert summary["stopped_instance_hours"] == {"m5.large": 0.25, "t3.micro": 0.75}
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    run, *by_type = documents
    assert "InstanceType" not in run and emf_metrics(run)["StoppedInstanceHours"] == 1.0
    assert {d["InstanceType"]: emf_metrics(d) for d in by_type} == {
        "m5.large": {"StoppedInstanceHours": 0.25},
        "t3.micro": {"StoppedInstanceHours": 0.75},
    }
    assert {tuple(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) for d in by_type} == {
        ("FunctionName", "InstanceType")
    }


def test_stopped_instance_hours_count_a_groups_saved_desired_capacity_while_it_is_at_zero(
    fleet: Fleet, capsys: pytest.CaptureFixture[str]
) -> None:
    def saved(desired: int) -> dict[str, str]:
        return {SIZE_TAG: json.dumps({"min": 1, "max": 4, "desired": desired})}

    at_nine = '{"start": "0 9 * * *"}'  # nothing due at 08:07
    fleet.launch_group("web", '{"stop": "0 8 * * *"}', sizes=(1, 4, 2))  # stopped by this run: its desired 2
    fleet.launch_group("idle", at_nine, sizes=(0, 4, 0), tags=saved(3))  # at zero: its saved 3
    fleet.launch_group("up", at_nine, sizes=(1, 4, 1))  # running: nothing
    fleet.launch_group("prod", at_nine, sizes=(0, 4, 0), tags={**saved(5), "environment": "p"})  # guarded
    fleet.client(service="autoscaling").create_auto_scaling_group(
        AutoScalingGroupName="mixed",
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateName": "groups"},
                "Overrides": [{"InstanceType": "m5.large"}],
            }
        },
        MinSize=0, MaxSize=4, DesiredCapacity=0, AvailabilityZones=[f"{REGION}a"],
        Tags=[group_status("mixed", key, value) for key, value in {TAG: at_nine, **saved(1)}.items()],
    )  # fmt: skip
    summary = handler(at("08:07"), LambdaContext())  # a 15-minute window: a quarter of an hour each
    assert summary["stopped_instance_hours"] == {ec2_powercycle.GROUP_INSTANCE_TYPE: 1.25, "m5.large": 0.25}
    by_type = [json.loads(line) for line in capsys.readouterr().out.splitlines()[1:]]
    assert {d["InstanceType"]: emf_metrics(d)["StoppedInstanceHours"] for d in by_type} == {
        "auto-scaling-group": 1.25,
        "m5.large": 0.25,
    }


# --- Events -------------------------------------------------------------------------------


def test_every_action_and_error_is_an_event_put_in_batches_a_failed_entry_retried_once(
    fleet: Fleet,
    api: ApiRecorder,
    bus: EventInbox,
    put_events: PutEventsRecorder,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = fleet.launch(OFFICE_HOURS, state="stopped", count=10)
    [enforced] = fleet.launch('{"start": "0 6 * * 1-5", "enforce": true}', state="stopped")
    held = '{"state": "stopped", "until": "2026-11-23T20:00:00Z"}'
    [overridden] = fleet.launch(OFFICE_HOURS, tags={f"{TAG}:override": held})
    [hibernated] = fleet.launch('{"stop": "0 8 * * 1-5", "hibernate": true}', hibernation=True)
    [broken] = fleet.launch(BAD_TAG)
    put_events.spoil(broken, attempts=1)  # fails, then goes through on its retry
    put_events.spoil(started[0], attempts=2)  # fails twice: lost, counted
    with caplog.at_level(logging.ERROR, logger="ec2_powercycle"):
        summary = handler(at("08:07"), LambdaContext())
    assert summary["event_errors"] == 1
    assert emf_metrics(json.loads(capsys.readouterr().out.splitlines()[0]))["EventErrors"] == 1
    assert sorted(len(call) for call in put_events.calls) == [1, 1, 4, 10]  # 14 events; two retries of one
    [lost] = [r.getMessage() for r in caplog.records if "could not be put" in r.getMessage()]
    assert lost.startswith(f"1 events could not be put on the event bus {bus.bus}: ")
    delivered = bus.events()
    assert all(event["source"] == "ec2-powercycle" for event in delivered)
    details = {event["detail"]["instance_id"]: (event["detail-type"], event["detail"]) for event in delivered}
    assert len(delivered) == len(details) == 13 and started[0] not in details
    where = {"account": ACCOUNT, "region": REGION, "time": "2026-11-23T08:07:00Z"}

    def action(instance_id: str, action: str, due: str | None, reason: str) -> dict[str, Any]:
        return {"instance_id": instance_id, **where, "action": action, "due": due, "reason": reason}

    assert details[started[1]] == ("Instance Started", action(started[1], "start", f"{MONDAY}08:00:00Z", "schedule"))
    assert details[enforced] == ("Instance Started", action(enforced, "start", f"{MONDAY}06:00:00Z", "enforce"))
    assert details[overridden] == ("Instance Stopped", action(overridden, "stop", None, "override"))
    assert details[hibernated] == (
        "Instance Stopped",
        action(hibernated, "hibernate", f"{MONDAY}08:00:00Z", "schedule"),
    )
    detail_type, error = details[broken]
    assert detail_type == "Scheduling Error" and set(error) == {"instance_id", *where, "error"}
    assert error["error"] == summary["errors"][0]["error"]


@pytest.mark.parametrize(
    ("decision", "cause"),
    [
        (decide(Due(Action.STOP, utc("2026-11-23T18:00:00")), "running"), Cause.SCHEDULE),
        (decide(Due(Action.STOP, utc("2026-11-23T18:00:00"), enforced=True), "running"), Cause.SCHEDULE),
        (
            decide(Due(Action.STOP, utc("2026-11-23T12:00:00"), enforced=True, before_window=True), "running"),
            Cause.ENFORCE,
        ),
        (
            hold(Override("running", utc("2026-11-24T02:00:00")), "stopped", decide(Due(None), "stopped")),
            Cause.OVERRIDE,
        ),
        (
            follow_up(
                decide(Due(None), "stopped"),
                Schedule(start=("0 8 * * *",)),
                Due(Action.START, utc("2026-11-23T08:00:00")),
                InstanceRecord("stopped", utc("2026-11-22T18:00:00"), None, None),
                utc("2026-11-23T08:37:00"),
                timedelta(hours=1),
            ),
            Cause.CATCH_UP,
        ),
    ],
    ids=["schedule", "enforce-in-window", "enforce", "override", "catch-up"],
)
def test_each_action_names_its_cause(decision: ec2_powercycle.Decision, cause: Cause) -> None:
    assert decision.outcome is ec2_powercycle.Outcome.ACT and decision.cause is cause


def test_a_dry_run_writes_no_tag_and_puts_no_event(
    fleet: Fleet,
    api: ApiRecorder,
    status_tags: None,
    bus: EventInbox,
    put_events: PutEventsRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ec2_powercycle.DRY_RUN_SETTING, "true")
    [instance] = fleet.launch(OFFICE_HOURS, state="stopped")
    fleet.launch(BAD_TAG)
    summary = handler(at("08:07"), LambdaContext())
    assert summary["started"] == [instance] and len(summary["errors"]) == 1
    assert (tag_calls(api), put_events.calls, bus.events()) == ([], [], [])
    assert LAST_ACTION not in fleet.tags(instance) and fleet.state(instance) == "stopped"


# --- Settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, (False, None, None)),
        ({STATUS_TAGS_SETTING: "yes"}, (True, None, None)),
        ({EVENT_BUS_SETTING: "default"}, (False, "default", REGION)),
        (
            {EVENT_BUS_SETTING: "arn:aws:events:us-east-1:123456789012:event-bus/ops"},
            (False, "arn:aws:events:us-east-1:123456789012:event-bus/ops", "us-east-1"),
        ),
        ({STATUS_TAGS_SETTING: "on"}, STATUS_TAGS_SETTING),
        ({EVENT_BUS_SETTING: "ops bus"}, EVENT_BUS_SETTING),
        ({EVENT_BUS_SETTING: "arn:aws:sns:eu-west-1:123456789012:ops"}, EVENT_BUS_SETTING),
        ({EVENT_BUS_SETTING: "arn:aws:events:eu-west-1:1234:event-bus/ops"}, EVENT_BUS_SETTING),
    ],
    ids=["off", "status-tags", "bus-name", "bus-arn", "bad-bool", "bad-name", "not-a-bus", "bad-account"],
)
def test_the_settings(environment: dict[str, str], expected: tuple[Any, ...] | str) -> None:
    environ = {"AWS_REGION": REGION, **environment}
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            Settings.from_env(environ)
    else:
        settings = Settings.from_env(environ)
        assert (settings.status_tags, settings.event_bus, settings.event_bus_region) == expected


# --- plan: what a schedule is worth, and the status tags it finds --------------------------


@pytest.fixture
def planned_fleet(fleet: Fleet) -> list[str]:
    """Two t3.micro and one m5.large on office hours, one of them with status tags from earlier runs."""
    small = fleet.launch(OFFICE_HOURS, count=2, instance_type="t3.micro")
    fleet.launch(OFFICE_HOURS, instance_type="m5.large")
    status = {LAST_ACTION: "stopped 2026-11-20T18:07:00Z schedule", ERROR: "2026-11-20T18:07:00Z stop failed:\tX"}
    fleet.client().create_tags(Resources=[small[0]], Tags=[{"Key": k, "Value": v} for k, v in status.items()])
    return small


def plan(capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    from ec2_powercycle_cli import main

    assert main(["plan", "--at", "2026-11-23T00:00:00Z", "--hours", "24", *flags]) == 0
    return capsys.readouterr().out


def test_plan_json_has_instance_hours_by_type_per_schedule_and_fleet_and_the_status_tags(
    planned_fleet: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(plan(capsys, "--json"))
    [row] = data["timeline"]["schedules"]  # office hours: 10 of the day's 24 hourly instants running
    expected = {"m5.large": {"running": 10, "stopped": 14}, "t3.micro": {"running": 20, "stopped": 28}}
    assert row["instance_hours"] == data["timeline"]["instance_hours"] == expected
    statuses = {entry["instance_id"]: entry["status"] for entry in data["instances"]}
    assert statuses[planned_fleet[0]] == {
        "last_action": "stopped 2026-11-20T18:07:00Z schedule",
        "error": "2026-11-20T18:07:00Z stop failed:\tX",
    }
    assert statuses[planned_fleet[1]] == {"last_action": None, "error": None}


def test_plan_text_prints_instance_hours_and_the_status_tags(
    planned_fleet: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [line.strip() for line in plan(capsys).splitlines()]
    assert "last action: stopped 2026-11-20T18:07:00Z schedule" in lines
    assert "last error: 2026-11-20T18:07:00Z stop failed:?X" in lines  # no control character reaches the terminal
    assert "instance-hours: m5.large 10 running, 14 stopped; t3.micro 20 running, 28 stopped; in all 30 running, " \
        "42 stopped" in lines
    assert lines[-1] == "Fleet, instance-hours over 24 h: m5.large 10 running, 14 stopped; t3.micro 20 running, " \
        "28 stopped; in all 30 running, 42 stopped"


def test_plan_shows_a_groups_status_tags(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    status = {LAST_ACTION: "stopped 2026-11-20T18:07:00Z schedule", ERROR: "2026-11-21T08:07:00Z start failed: X"}
    fleet.launch_group("web", OFFICE_HOURS, sizes=(0, 4, 0), tags=status)
    fleet.launch_group("api", OFFICE_HOURS)
    groups = {group["group"]: group["status"] for group in json.loads(plan(capsys, "--json"))["groups"]}
    assert groups == {
        "web": {"last_action": status[LAST_ACTION], "error": status[ERROR]},
        "api": {"last_action": None, "error": None},
    }
    lines = [line.strip() for line in plan(capsys).splitlines()]
    web = next(index for index, line in enumerate(lines) if line.startswith("web "))
    assert lines[web + 1 : web + 3] == [f"last action: {status[LAST_ACTION]}", f"last error: {status[ERROR]}"]
