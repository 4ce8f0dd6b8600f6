"""Overrides: the `<tag>:override` tag holds one instance in a state until a time, then its schedule decides.

The decision is pure (`decide_instance` at a time passed in, no AWS); one handler run and the
command line's `override` and `plan` run against moto in process.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ec2_powercycle
from ec2_powercycle import (
    DEFAULT_TAG,
    Action,
    Outcome,
    RunContext,
    RunMemo,
    Settings,
    Verdict,
    decide_instance,
    handler,
    override_key,
)
from tests.support.faults import ApiRecorder
from tests.support.fleet import TAG, Fleet

ROOT = Path(__file__).resolve().parent.parent
KEY = override_key(DEFAULT_TAG)
# Office hours in London; 2026-11-23 is a Monday, London is on GMT (UTC).
OFFICE = json.dumps({"start": "0 8 * * MON-FRI", "stop": "0 18 * * MON-FRI", "tz": "Europe/London"})
TONIGHT = json.dumps({"state": "running", "until": "2026-11-24T02:00:00Z"})
HELD = "override: running until 2026-11-24T02:00:00Z"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def instance(state: str, override: str | None = None, schedule: str = OFFICE, **tags: str) -> dict[str, Any]:
    all_tags = {TAG: schedule, **tags, **({KEY: override} if override is not None else {})}
    return {
        "InstanceId": "i-0123456789abcdef0",
        "State": {"Name": state},
        "Tags": [{"Key": key, "Value": value} for key, value in all_tags.items()],
    }


def at(now: str, memo: RunMemo | None = None) -> RunContext:
    """A run's context at `now` (decide_instance makes no AWS calls: no Aws needed)."""
    return RunContext(Settings(), utc(now), aws=None, memo=memo or RunMemo())  # type: ignore[arg-type]


def decided(state: str, override: str | None, now: str, schedule: str = OFFICE, **tags: str) -> tuple[Any, ...]:
    verdict = decide_instance(instance(state, override, schedule, **tags), at(now))
    return verdict.decision.outcome, verdict.decision.action, verdict.decision.reason


# --- While it lasts ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "state", "now", "expected"),
    [
        # Nothing scheduled at 20:07: the override starts (or stops) the instance into its state.
        ("running", "stopped", "2026-11-23T20:07:00", (Outcome.ACT, Action.START)),
        ("stopped", "running", "2026-11-23T10:07:00", (Outcome.ACT, Action.STOP)),
        ("stopped", "pending", "2026-11-23T10:07:00", (Outcome.ACT, Action.STOP)),
        # In its state already, nothing scheduled: held quietly.
        ("running", "running", "2026-11-23T20:07:00", (Outcome.IDLE, None)),
        ("running", "pending", "2026-11-23T20:07:00", (Outcome.IDLE, None)),
        # A scheduled stop (18:00) or start (08:00) against it is skipped.
        ("running", "running", "2026-11-23T18:07:00", (Outcome.SKIP, None)),
        ("stopped", "stopped", "2026-11-23T08:07:00", (Outcome.SKIP, None)),
        # On its way elsewhere: left to finish, the next run brings it back.
        ("running", "stopping", "2026-11-23T20:07:00", (Outcome.IDLE, None)),
    ],
)
def test_an_override_holds_its_state_until_its_time(held: str, state: str, now: str, expected: tuple) -> None:
    value = json.dumps({"state": held, "until": "2026-11-24T02:00:00Z"})
    outcome, action, reason = decided(state, value, now)
    assert (outcome, action) == expected
    assert reason == f"override: {held} until 2026-11-24T02:00:00Z"


def test_an_override_holds_against_an_enforced_schedule() -> None:
    enforced = json.dumps({**json.loads(OFFICE), "enforce": True})
    assert decided("running", TONIGHT, "2026-11-23T21:07:00", enforced)[:2] == (Outcome.SKIP, None)
    assert decided("running", None, "2026-11-23T21:07:00", enforced)[:2] == (Outcome.ACT, Action.STOP)


def test_until_may_carry_an_offset() -> None:
    value = json.dumps({"state": "running", "until": "2026-11-24T03:00:00+01:00"})
    assert decided("stopped", value, "2026-11-23T20:07:00")[2] == HELD


# --- When it ends -------------------------------------------------------------------


def _runs(first: str, last: str, value: str, state: str = "running") -> dict[str, tuple[Any, ...]]:
    """Each run's decision every 15 minutes, the instance left as it is (as in a dry run)."""
    decisions = {}
    moment, end = utc(first), utc(last)
    while moment <= end:
        decision = decide_instance(instance(state, value), at(moment.isoformat())).decision
        decisions[moment.strftime("%H:%M")] = (decision.outcome, decision.action, decision.reason)
        moment += timedelta(minutes=15)
    return decisions


@pytest.mark.parametrize(
    ("until", "applying_run"),
    [
        ("2026-11-24T02:00:00Z", "02:00"),  # at a run's time: that run (its window is (01:45, 02:00])
        ("2026-11-24T02:07:00Z", "02:15"),  # between two runs: the next one
        ("2026-11-24T01:45:00.5Z", "02:00"),
    ],
)
def test_when_it_ends_the_schedules_state_then_is_applied_exactly_once(until: str, applying_run: str) -> None:
    value = json.dumps({"state": "running", "until": until})
    runs = _runs("2026-11-24T01:00:00", "2026-11-24T03:30:00", value)
    acting = {run: decision for run, decision in runs.items() if decision[0] is not Outcome.IDLE}
    # The schedule's state at `until` is stopped (Monday's 18:00 stop), applied as if scheduled at `until`.
    stamp = ec2_powercycle._iso(ec2_powercycle.parse_instant(until, "until"))
    assert acting == {applying_run: (Outcome.ACT, Action.STOP, f"override ended: stop due at {stamp}")}
    assert all(reason == HELD.replace("2026-11-24T02:00:00Z", stamp) for _, _, reason in list(runs.values())[:3])


def test_the_state_at_until_honours_skip_days() -> None:
    # Held stopped until Monday noon: the schedule's state then is running (08:00 start)...
    value = json.dumps({"state": "stopped", "until": "2026-11-23T12:00:00Z"})
    assert decided("stopped", value, "2026-11-23T12:07:00")[:2] == (Outcome.ACT, Action.START)
    # ...unless Monday is skipped: then it is Friday's 18:00 stop, and the instance is already stopped.
    skipping = json.dumps({**json.loads(OFFICE), "skip": ["2026-11-23"]})
    outcome, action, reason = decided("stopped", value, "2026-11-23T12:07:00", skipping)
    assert (outcome, action) == (Outcome.SKIP, None)
    assert reason == "override ended: stop due at 2026-11-23T12:00:00Z but instance is stopped"


def test_a_scheduled_time_after_until_in_the_same_window_decides() -> None:
    # Held stopped until 07:55; the 08:00 start is later in the 08:07 run's window: it acts as in any run.
    value = json.dumps({"state": "stopped", "until": "2026-11-23T07:55:00Z"})
    assert decided("stopped", value, "2026-11-23T08:07:00") == (
        Outcome.ACT,
        Action.START,
        "start due at 2026-11-23T08:00:00Z",
    )


def test_an_override_that_ended_before_the_window_is_ignored() -> None:
    ended = json.dumps({"state": "stopped", "until": "2026-11-20T00:00:00Z"})
    assert decided("stopped", ended, "2026-11-23T08:07:00") == decided("stopped", None, "2026-11-23T08:07:00")


# --- What wins over it, and what it does not change ---------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("keep it up", r"not valid JSON"),
        ("", r"not valid JSON"),
        ('["running"]', r"override must be a JSON object .* got array"),
        ('{"state": "running"}', r"override needs 'until'"),
        ('{"until": "2026-11-24T02:00:00Z"}', r"override needs 'state'"),
        ('{"state": "started", "until": "2026-11-24T02:00:00Z"}', r"'state' must be 'running' or 'stopped', got \""),
        ('{"state": ["running"], "until": "2026-11-24T02:00:00Z"}', r"'state' must be 'running' or 'stopped'"),
        ('{"state": "running", "until": "2026-11-24T02:00:00"}', r"'until' '2026-11-24T02:00:00' has no time zone"),
        ('{"state": "running", "until": "2026-11-24"}', r"'until' '2026-11-24' has no time zone"),
        ('{"state": "running", "until": "tomorrow"}', r"'until' must be an ISO-8601 time .* got 'tomorrow'"),
        ('{"state": "running", "until": 1795000000}', r"'until' must be an ISO-8601 time .* got number"),
        ('{"state": "running", "until": "2026-11-24T02:00:00Z", "why": "demo"}', r"unknown key 'why'; allowed"),
    ],
)
def test_a_malformed_override_is_an_error_and_the_instance_is_left_alone(value: str, message: str) -> None:
    outcome, action, reason = decided("stopped", value, "2026-11-23T08:07:00")  # a start is due, too
    assert (outcome, action) == (Outcome.ERROR, None)
    assert reason.startswith(f"bad override in tag '{KEY}': ")
    assert re.search(message, reason), reason


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"environment": "p"}, "protected environment 'p'"),
        ({"aws:autoscaling:groupName": "web"}, "in Auto Scaling group 'web'"),
    ],
)
def test_guards_win_over_an_override(tags: dict[str, str], reason: str) -> None:
    assert decided("stopped", TONIGHT, "2026-11-23T20:07:00", **tags) == (Outcome.SKIP, None, reason)
    assert decided("stopped", "not even JSON", "2026-11-23T20:07:00", **tags) == (Outcome.SKIP, None, reason)


def test_a_bad_schedule_stays_an_error_under_an_override() -> None:
    outcome, _, reason = decided("stopped", TONIGHT, "2026-11-23T20:07:00", schedule='{"stat": "0 8 * * *"}')
    assert (outcome, reason.split(":")[0]) == (Outcome.ERROR, f"bad schedule in tag '{TAG}'")


def test_the_decision_shared_by_a_schedules_instances_is_not_the_overridden_ones() -> None:
    context = at("2026-11-23T18:07:00")
    held = decide_instance(instance("running", TONIGHT), context)
    plain = decide_instance(instance("running"), context)
    again = decide_instance(instance("running", TONIGHT), context)
    assert (held.decision.outcome, plain.decision.action, again) == (Outcome.SKIP, Action.STOP, held)
    assert held.schedule == plain.schedule


# --- A run against moto ------------------------------------------------------------


def test_a_run_starts_holds_and_reports_overridden_instances(fleet: Fleet, api: ApiRecorder) -> None:
    [plain] = fleet.launch(OFFICE)
    [held] = fleet.launch(OFFICE, tags={KEY: TONIGHT})
    [started] = fleet.launch(OFFICE, state="stopped", tags={KEY: TONIGHT})
    summary = handler({"time": "2026-11-23T18:07:00Z"})
    assert (summary["stopped"], summary["started"]) == ([plain], [started])
    assert [(entry["instance_id"], entry["reason"]) for entry in summary["skipped"]] == [(held, HELD)]
    assert {fleet.state(held), fleet.state(started)} == {"running"}
    assert set(api.operations()) == {"DescribeInstances", "StartInstances", "StopInstances"}  # no tag writes


# --- The command line: override, and plan showing it ---------------------------------


def tags_of(fleet: Fleet, instance_id: str) -> dict[str, str]:
    reply = fleet.client().describe_instances(InstanceIds=[instance_id])
    return {tag["Key"]: tag["Value"] for tag in reply["Reservations"][0]["Instances"][0].get("Tags", ())}


def test_the_override_command_writes_the_tag_then_clears_it(fleet: Fleet, cli: Any) -> None:
    ids = fleet.launch(OFFICE, count=2)
    code, out, err = cli("override", *ids, "--running", "--until", "2099-01-01T02:00:00+01:00")
    assert (code, err) == (0, "")
    assert {tags_of(fleet, i)[KEY] for i in ids} == {'{"state": "running", "until": "2099-01-01T01:00:00Z"}'}
    assert f"override written to 2 instances: {KEY} = " in out
    code, out, _ = cli("override", ids[0], "--clear")
    assert code == 0 and "override removed from 1 instance" in out
    assert KEY not in tags_of(fleet, ids[0]) and KEY in tags_of(fleet, ids[1])


def test_the_override_command_for_a_duration_from_its_time(fleet: Fleet, cli: Any) -> None:
    [instance_id] = fleet.launch(OFFICE)
    code, out, _ = cli("override", instance_id, "--stopped", "--for", "1d2h30m", "--at", "2026-11-23T07:00Z", "--json")
    assert code == 0
    assert json.loads(out) == {
        "tag": KEY,
        "value": '{"state": "stopped", "until": "2026-11-24T09:30:00Z"}',
        "region": "eu-west-1",
        "instances": [instance_id],
        "errors": [],
    }
    assert json.loads(tags_of(fleet, instance_id)[KEY])["until"] == "2026-11-24T09:30:00Z"


def test_the_override_command_writes_only_on_scheduled_instances(fleet: Fleet, cli: Any) -> None:
    [scheduled] = fleet.launch(OFFICE)
    [unscheduled] = fleet.launch(None)
    code, _, err = cli("override", scheduled, unscheduled, "i-0000000000000000f", "--running", "--for", "3h")
    assert code == 1
    assert f"{unscheduled}: not scheduled (no {TAG} tag)" in err
    assert "i-0000000000000000f: no such instance in eu-west-1" in err
    assert KEY in tags_of(fleet, scheduled) and KEY not in tags_of(fleet, unscheduled)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--running"], "override needs --running or --stopped, and --until TIME or --for DURATION"),
        (["--for", "3h"], "override needs --running or --stopped"),
        (["--clear", "--for", "3h"], "--clear takes no --running, --stopped, --until or --for"),
        (["--running", "--until", "2026-11-24T02:00:00"], "--until '2026-11-24T02:00:00' has no time zone"),
        (["--running", "--until", "2020-01-01T00:00:00Z"], "--until 2020-01-01T00:00:00Z is not after now"),
        (["--running", "--for", "3 hours"], "--for must be a duration such as 90m, 3h, 1d or 1d12h, got '3 hours'"),
        (["--running", "--for", "0m"], "--for must be longer than zero"),
        (["--running", "--for", "3h", "--region", "eu-west-1", "--region", "us-east-1"], "one region at a time"),
        (["--running", "--for", "3h", "--tag", "x" * 120], "longer than EC2's 128 characters"),
    ],
)
def test_the_override_command_refuses_what_it_cannot_write(cli: Any, args: list[str], message: str) -> None:
    code, out, err = cli("override", "i-0123456789abcdef0", *args)
    assert (code, out) == (2, "")
    assert message in err


def test_an_instance_id_is_checked_before_anything(cli: Any) -> None:
    assert cli("override", "web-1", "--clear")[0::2] == (2, "ec2-powercycle: error: not an instance ID: 'web-1'; "
                                                          "expected such as i-0123456789abcdef0\n")  # fmt: skip


def test_plan_shows_overrides_and_holds_them_in_the_timeline(fleet: Fleet, cli: Any) -> None:
    [plain] = fleet.launch(OFFICE)
    [active] = fleet.launch(OFFICE, tags={KEY: TONIGHT})
    [ended] = fleet.launch(OFFICE, tags={KEY: json.dumps({"state": "stopped", "until": "2026-11-20T00:00:00Z"})})
    [bad] = fleet.launch(OFFICE, tags={KEY: "tonight"})
    code, out, _ = cli("plan", "--json", "--at", "2026-11-23T20:00:00Z", "--hours", "12")
    data = json.loads(out)
    by_id = {entry["instance_id"]: entry for entry in data["instances"]}
    assert code == 0  # instances' errors are reported per instance; the plan itself is fine
    assert by_id[active]["override"] == {"state": "running", "until": "2026-11-24T02:00:00Z", "status": "active"}
    assert by_id[ended]["override"]["status"] == "ended"
    assert (by_id[plain]["override"], by_id[bad]["override"], by_id[bad]["touched"]) == (None, None, False)
    assert by_id[bad]["reason"].startswith(f"bad override in tag '{KEY}': not valid JSON")
    rows = {frozenset(row["instance_ids"]): row for row in data["timeline"]["schedules"]}
    held_row = rows[frozenset({active})]
    assert held_row["override"] == {"state": "running", "until": "2026-11-24T02:00:00Z"}
    assert held_row["running"] == [True] * 6 + [False] * 6  # 20:00 to 02:00 held, then the schedule's night
    assert rows[frozenset({plain, ended})]["running"] == [False] * 12
    code, text, _ = cli("plan", "--at", "2026-11-23T20:00:00Z", "--hours", "12")
    assert "    override: running until 2026-11-24 02:00 UTC (active, ends in 6h)" in text
    assert "    override: stopped until 2026-11-20 00:00 UTC (ended: ignored)" in text
    assert "; override running until 2026-11-24T02:00:00Z" in text


# --- The IAM policy for people who write overrides ----------------------------------


def test_the_override_policy_allows_only_the_override_tag_on_scheduled_instances_and_groups() -> None:
    policy = json.loads((ROOT / "iam" / "override-policy.json").read_text())
    describe, write, write_groups = policy["Statement"]
    assert (describe["Action"], describe["Effect"]) == ("ec2:DescribeInstances", "Allow")
    # Only on resources carrying the schedule tag, only with tag keys named (DeleteTags without any
    # would delete every tag), and every key named must be the override key.
    only_the_override_key = {
        "Null": {f"aws:ResourceTag/{DEFAULT_TAG}": "false", "aws:TagKeys": "false"},
        "ForAllValues:StringEquals": {"aws:TagKeys": [KEY]},
    }
    assert write["Effect"] == write_groups["Effect"] == "Allow"
    assert sorted(write["Action"]) == ["ec2:CreateTags", "ec2:DeleteTags"]
    assert write["Resource"] == "arn:aws:ec2:*:*:instance/*"
    assert write["Condition"] == only_the_override_key
    assert sorted(write_groups["Action"]) == ["autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"]
    assert write_groups["Resource"] == "arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/*"
    assert write_groups["Condition"] == only_the_override_key
    page = (ROOT / "docs" / "security.md").read_text()
    section = page[page.index("## The override policy") :]
    block = section[section.index("```json") + 7 : section.index("```", section.index("```json") + 7)]
    assert json.loads(block) == policy


def test_the_override_key_follows_the_tag_setting() -> None:
    assert KEY == "ec2Powercycle:override"
    context = RunContext(Settings(tag="officeHours"), utc("2026-11-23T20:07:00"), aws=None)  # type: ignore[arg-type]
    assert context.override_key == "officeHours:override"
    tagged = {"InstanceId": "i-1", "State": {"Name": "stopped"}, "Tags": [
        {"Key": "officeHours", "Value": OFFICE}, {"Key": "officeHours:override", "Value": TONIGHT}]}  # fmt: skip
    assert decide_instance(tagged, context) == Verdict(
        decide_instance(tagged, context).schedule, ec2_powercycle.Decision(Outcome.ACT, Action.START, HELD)
    )

