"""Maintenance windows: a schedule's "maintenance_windows" keep its instances running for SSM's patching.

The AWS cron translation and the occurrences are pure (a table of AWS's own documented examples);
the runs go through the handler against moto's SSM and EC2 in process, at a run time passed in.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from moto.ec2.models import ec2_backends
from moto.ssm.models import FakeMaintenanceWindow

import ec2_powercycle
from ec2_powercycle import (
    MAINTENANCE_KEY,
    ConfigError,
    MaintenanceWindow,
    ScheduleError,
    Settings,
    handler,
    next_occurrences,
    override_key,
    parse_schedule_json,
)
from tests.support.faults import injected_response, on_every_client
from tests.support.fleet import REGION, TAG, Fleet, moto_client

TUESDAY = datetime(2026, 12, 8, tzinfo=UTC)  # the second Tuesday of December 2026
PATCH = "patch-tuesday"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def starts(expression: str, after: str, count: int = 3, **window: Any) -> list[str]:
    fields = {"duration": timedelta(hours=1), **window}
    found = next_occurrences(MaintenanceWindow("mw-0123456789abcdef0", "w", expression, **fields), utc(after), count)
    return [occurrence.start.strftime("%Y-%m-%d %a %H:%M") for occurrence in found]


# --- AWS's expressions, translated ---------------------------------------------------------------

# From AWS's documentation: Systems Manager's "Reference: Cron and rate expressions" (its tables
# and its create-maintenance-window examples) and EventBridge's "Cron expressions reference".
AWS_EXAMPLES = [
    # Run at 10:00 am (UTC) every day
    ("cron(0 10 * * ? *)", ["2026-12-08 Tue 10:00", "2026-12-09 Wed 10:00", "2026-12-10 Thu 10:00"]),
    # Run at 12:15 PM (UTC) every day
    ("cron(15 12 * * ? *)", ["2026-12-08 Tue 12:15", "2026-12-09 Wed 12:15", "2026-12-10 Thu 12:15"]),
    # Run at 6:00 PM (UTC) every Monday through Friday
    ("cron(0 18 ? * MON-FRI *)", ["2026-12-08 Tue 18:00", "2026-12-09 Wed 18:00", "2026-12-10 Thu 18:00"]),
    # Run at 8:00 AM (UTC) every 1st day of the month
    ("cron(0 8 1 * ? *)", ["2027-01-01 Fri 08:00", "2027-02-01 Mon 08:00", "2027-03-01 Mon 08:00"]),
    # Run every 15 minutes
    ("cron(0/15 * * * ? *)", ["2026-12-08 Tue 00:15", "2026-12-08 Tue 00:30", "2026-12-08 Tue 00:45"]),
    # Run every 10 minutes Monday through Friday (from a Saturday)
    ("cron(0/10 * ? * MON-FRI *)", ["2026-12-14 Mon 00:00", "2026-12-14 Mon 00:10", "2026-12-14 Mon 00:20"]),
    # Run every 5 minutes Monday through Friday between 8:00 AM and 5:55 PM (UTC)
    ("cron(0/5 8-17 ? * MON-FRI *)", ["2026-12-08 Tue 08:00", "2026-12-08 Tue 08:05", "2026-12-08 Tue 08:10"]),
    # Run every 30 minutes Monday through Friday between 10:00 PM and 2:00 AM (a range that wraps)
    ("cron(0/30 20-2 ? * MON-FRI *)", ["2026-12-08 Tue 00:30", "2026-12-08 Tue 01:00", "2026-12-08 Tue 01:30"]),
    # 02:00 AM the third Thursday of every month (with the optional seconds field first)
    ("cron(0 0 2 ? 1/1 THU#3 *)", ["2026-12-17 Thu 02:00", "2027-01-21 Thu 02:00", "2027-02-18 Thu 02:00"]),
    # midnight on the 21st of each month
    ("cron(0 0 0 21 1/1 ? *)", ["2026-12-21 Mon 00:00", "2027-01-21 Thu 00:00", "2027-02-21 Sun 00:00"]),
    # 4 PM (16:00) every Tuesday
    ("cron(0 16 ? * TUE *)", ["2026-12-08 Tue 16:00", "2026-12-15 Tue 16:00", "2026-12-22 Tue 16:00"]),
    # The third Tuesday of every month at 11:30 PM, in its seconds-first form
    ("cron(0 30 23 ? * TUE#3 *)", ["2026-12-15 Tue 23:30", "2027-01-19 Tue 23:30", "2027-02-16 Tue 23:30"]),
    # Day of week as numbers 1-7 from Sunday (3 is Tuesday), L as the last day, 6L the last Friday
    ("cron(0 2 ? * 3 *)", ["2026-12-08 Tue 02:00", "2026-12-15 Tue 02:00", "2026-12-22 Tue 02:00"]),
    ("cron(0 2 L * ? *)", ["2026-12-31 Thu 02:00", "2027-01-31 Sun 02:00", "2027-02-28 Sun 02:00"]),
    ("cron(15 10 ? * 6L 2027)", ["2027-01-29 Fri 10:15", "2027-02-26 Fri 10:15", "2027-03-26 Fri 10:15"]),
    ("cron(0 2 15W * ? *)", ["2026-12-15 Tue 02:00", "2027-01-15 Fri 02:00", "2027-02-15 Mon 02:00"]),
    ("cron(0 2 1W * ? *)", ["2027-01-01 Fri 02:00", "2027-02-01 Mon 02:00", "2027-03-01 Mon 02:00"]),
    # Every other day (rate, from the window's StartDate), every 7 days, once (at)
    ("rate(2 days)", ["2026-12-09 Wed 02:00", "2026-12-11 Fri 02:00", "2026-12-13 Sun 02:00"]),
    ("rate(7 days)", ["2026-12-08 Tue 02:00", "2026-12-15 Tue 02:00", "2026-12-22 Tue 02:00"]),
    ("at(2026-12-24T22:00:00)", ["2026-12-24 Thu 22:00"]),
]


@pytest.mark.parametrize(("expression", "expected"), AWS_EXAMPLES)
def test_aws_expressions_fire_as_aws_documents_them(expression: str, expected: list[str]) -> None:
    after = "2026-12-12T00:00:00" if "MON-FRI *)" in expression and "0/10" in expression else "2026-12-08T00:00:00"
    assert starts(expression, after, start_date=utc("2026-12-01T02:00:00")) == expected


@pytest.mark.parametrize(
    ("expression", "refusal"),
    [
        ("cron(0 2 LW * ? *)", "'LW' in day-of-month is not evaluated"),
        ("cron(0 2 L-3 * ? *)", "'L-3' in day-of-month is not evaluated"),
        ("cron(0 2 30W * ? *)", "past the 28th is not evaluated"),
        ("cron(0 2 1 * MON *)", "both given; one must be '?'"),
        ("cron(0 2 * * ?)", "5 fields, expected 6"),
        ("cron(30 0 2 * * ? *)", None),  # seconds are allowed ...
        ("cron(0/5 0 2 * * ? *)", "a seconds field must be one number"),  # ... as one number
        ("cron(0 25 ? * TUE *)", "'25' is not in 0-23"),
        ("cron(0 2 ? * TUE#6 *)", "'#' takes the week of the month, 1 to 5"),
        ("cron(0 2 ? * TUE 1969)", "'1969' is not in 1970-2199"),
        ("rate(0 days)", "a rate of 0 days"),
        ("rate(3 weeks)", "expected cron("),
        ("every tuesday", "expected cron("),
    ],
)
def test_forms_that_cannot_be_evaluated_are_refused_naming_the_window_and_expression(
    expression: str, refusal: str | None
) -> None:
    if refusal is None:
        assert starts(expression, "2026-12-08T00:00:00", 1) == ["2026-12-08 Tue 02:00"]
        return
    with pytest.raises(ScheduleError, match=r"maintenance window 'w' \(mw-0123456789abcdef0\): cannot evaluate") as err:
        starts(expression, "2026-12-08T00:00:00")
    assert refusal in str(err.value)
    assert expression.removeprefix("cron(").split(")")[0].split()[0] in str(err.value)


def test_offset_time_zone_and_dates_shape_the_occurrences() -> None:
    # Patch Tuesday (the second) plus two days: Thursday.
    assert starts("cron(0 2 ? * TUE#2 *)", "2026-12-01T00:00:00", 2, offset_days=2) == [
        "2026-12-10 Thu 02:00",
        "2027-01-14 Thu 02:00",
    ]
    # 03:00 in New York is 08:00 UTC before daylight saving starts (2026-03-08) and 07:00 after.
    assert starts("cron(0 3 ? * SUN *)", "2026-02-28T00:00:00", 2, tz="America/New_York") == [
        "2026-03-01 Sun 08:00",
        "2026-03-08 Sun 07:00",
    ]
    # AWS's example: a Wednesday 09:00 Los Angeles window starting 2021-01-01 first runs on 2021-01-06.
    assert starts(
        "cron(0 09 ? * WED *)",
        "2020-12-01T00:00:00",
        1,
        tz="America/Los_Angeles",
        start_date=datetime.fromisoformat("2021-01-01T00:00:00-08:00"),
    ) == ["2021-01-06 Wed 17:00"]
    assert starts("cron(0 2 ? * TUE *)", "2026-12-01T00:00:00", end_date=utc("2026-12-09T00:00:00")) == [
        "2026-12-01 Tue 02:00",
        "2026-12-08 Tue 02:00",
    ]
    with pytest.raises(ScheduleError, match="ScheduleOffset is for cron expressions only"):
        starts("rate(1 day)", "2026-12-01T00:00:00", offset_days=1, start_date=utc("2026-12-01T00:00:00"))
    with pytest.raises(ScheduleError, match="a rate counts from the window's StartDate"):
        starts("rate(1 day)", "2026-12-01T00:00:00")


RECORD = {"WindowId": "mw-0123456789abcdef0", "Name": PATCH, "Schedule": "rate(1 day)", "Duration": 2}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # A rate counts from AWS's NextExecutionTime when it is given (and readable), else from StartDate.
        ({"NextExecutionTime": "2026-12-08T05:30Z", "StartDate": "2026-01-01T00:00:00Z"}, "2026-12-09 Wed 05:30"),
        ({"NextExecutionTime": "soon", "StartDate": "2026-01-01T00:00:00Z"}, "2026-12-09 Wed 00:00"),
        # A date without an offset is in the window's zone.
        ({"StartDate": "2026-01-01T00:00:00", "ScheduleTimezone": "Asia/Tokyo"}, "2026-12-08 Tue 15:00"),
        ({"ScheduleTimezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ({"Duration": 25}, "Duration must be 1 to 24 hours, got '25'"),
        ({"ScheduleOffset": 9}, "ScheduleOffset must be 0 to 6 days, got '9'"),
        ({"StartDate": "yesterday"}, "StartDate 'yesterday' is not an ISO-8601 time"),
        # Past the last instant a datetime holds once moved to UTC: a bad value, not an OverflowError.
        ({"EndDate": "9999-12-31T23:30:00", "ScheduleTimezone": "America/New_York"}, "is out of range"),
        ({"EndDate": "9999-12-31T23:00:00-05:00"}, "EndDate '9999-12-31T23:00:00-05:00' is out of range"),
    ],
)
def test_a_windows_record(fields: dict[str, Any], expected: str) -> None:
    if not expected[0].isdigit():
        with pytest.raises(ScheduleError, match=f"maintenance window '{PATCH}' \\(mw-0123456789abcdef0\\): "):
            ec2_powercycle.maintenance_window({**RECORD, **fields})
        with pytest.raises(ScheduleError, match=re.escape(expected)):
            ec2_powercycle.maintenance_window({**RECORD, **fields})
        return
    window = ec2_powercycle.maintenance_window({**RECORD, **fields})
    (occurrence,) = next_occurrences(window, utc("2026-12-08T12:00:00"), 1)
    assert occurrence.start.strftime("%Y-%m-%d %a %H:%M") == expected


# --- The schedule key and the setting ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (["patch-tuesday", "mw-0123456789abcdef0"], None),
        ([], "must be a list of maintenance window names or IDs"),
        ("patch-tuesday", "must be a list of maintenance window names or IDs"),
        ([7], "must hold strings"),
        (["no"], "bad 'maintenance_windows' entry 'no'"),
        (["has space"], "bad 'maintenance_windows' entry"),
        ([f"w{n:02d}" for n in range(11)], "names 11 windows; at most 10"),
    ],
)
def test_the_maintenance_windows_key(value: object, error: str | None) -> None:
    text = json.dumps({"stop": "0 18 * * *", "maintenance_windows": value})
    if error is None:
        assert parse_schedule_json(text, "UTC").maintenance_windows == tuple(value)  # type: ignore[arg-type]
    else:
        with pytest.raises(ScheduleError, match=error) as err:
            parse_schedule_json(text, "UTC")
        assert "'maintenance_windows'" in str(err.value)


@pytest.mark.parametrize(("value", "minutes"), [(None, 20), ("", 20), ("0", 0), ("45", 45), ("1440", 1440)])
def test_the_lead_setting(value: str | None, minutes: int) -> None:
    env = {} if value is None else {ec2_powercycle.MAINTENANCE_LEAD_SETTING: value}
    assert Settings.from_env({**env, "AWS_REGION": REGION}).maintenance_lead == timedelta(minutes=minutes)


@pytest.mark.parametrize("value", ["-5", "20.5", "twenty", "1441", "\uff12\uff10"])
def test_a_bad_lead_setting_is_an_error_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match=ec2_powercycle.MAINTENANCE_LEAD_SETTING):
        Settings.from_env({ec2_powercycle.MAINTENANCE_LEAD_SETTING: value, "AWS_REGION": REGION})


# --- The decision (pure) ---------------------------------------------------------------------------

WINDOW = MaintenanceWindow("mw-0123456789abcdef0", PATCH, "cron(0 2 ? * TUE *)", timedelta(hours=2))
SHOWN = f"maintenance window '{PATCH}' (mw-0123456789abcdef0) 2026-12-08T02:00:00Z to 2026-12-08T04:00:00Z"
RUN = timedelta(minutes=15)


def decided(now: str, state: str, **schedule_fields: Any) -> tuple[Any, ...] | None:
    """maintenance_decision at `now` for an office-hours schedule (UTC) with a nightly stop at 03:00."""
    fields = {"start": ("0 8 * * 1-5",), "stop": ("0 18 * * 1-5", "0 3 * * *"), **schedule_fields}
    plan = ec2_powercycle.Schedule(**fields)
    moment = utc(now)
    due = ec2_powercycle.due_action(plan, moment, RUN)
    patching = ec2_powercycle.patching_at([WINDOW], moment, RUN, timedelta(minutes=20))
    decision = ec2_powercycle.maintenance_decision(plan, due, patching, state, moment, RUN)
    return None if decision is None else (decision.outcome.value, decision.action, decision.reason)


@pytest.mark.parametrize(
    ("now", "state", "fields", "expected"),
    [
        # Before the lead time, and after the run that handed back: no say.
        ("2026-12-08T01:30:00", "stopped", {}, None),
        ("2026-12-08T04:15:00", "running", {}, None),
        # The run whose window holds the lead time (01:40) starts a stopped instance, naming the window.
        ("2026-12-08T01:45:00", "stopped", {}, ("act", "start", f"start due at 2026-12-08T01:40:00Z for {SHOWN}")),
        # Already running: held quietly, no skip to note.
        ("2026-12-08T01:45:00", "running", {}, ("idle", None, f"running for {SHOWN}")),
        # A scheduled stop while it holds is skipped, naming the window.
        ("2026-12-08T03:00:00", "running", {}, ("skip", None, f"stop due at 2026-12-08T03:00:00Z skipped: {SHOWN}")),
        # Stopped later by a person: the window's start is not repeated (its catch-up is follow_up's).
        ("2026-12-08T02:30:00", "stopped", {}, ("idle", None, f"held running for {SHOWN}")),
        # With enforce, every run while it holds brings a stopped instance back.
        (
            "2026-12-08T02:30:00",
            "stopped",
            {"enforce": True},
            ("act", "start", f"start due at 2026-12-08T01:40:00Z for {SHOWN}"),
        ),
        # At its end the schedule's state then (stopped since 03:00) applies, once.
        ("2026-12-08T04:00:00", "running", {}, ("act", "stop", f"{SHOWN} ended: stop due at 2026-12-08T04:00:00Z")),
        # ... and nothing is noted when the instance is in that state already.
        ("2026-12-08T04:00:00", "stopped", {}, ("idle", None, f"{SHOWN} ended: already stopped")),
        # Skip days skip the schedule's times, never the window.
        ("2026-12-08T01:45:00", "stopped", {"skip": ec2_powercycle.parse_skip_entries(["2026-12-08"])}, (
            "act",
            "start",
            f"start due at 2026-12-08T01:40:00Z for {SHOWN}",
        )),
    ],
)
def test_what_a_window_decides(now: str, state: str, fields: dict[str, Any], expected: tuple[Any, ...] | None) -> None:
    assert decided(now, state, **fields) == (
        None if expected is None else (expected[0], expected[1] and ec2_powercycle.Action(expected[1]), expected[2])
    )


def test_a_windows_actions_name_it_as_their_cause() -> None:
    plan = ec2_powercycle.Schedule(start=("0 8 * * 1-5",), stop=("0 3 * * *",))
    for now, state in (("2026-12-08T01:45:00", "stopped"), ("2026-12-08T04:00:00", "running")):
        moment = utc(now)
        due = ec2_powercycle.due_action(plan, moment, RUN)
        patching = ec2_powercycle.patching_at([WINDOW], moment, RUN, timedelta(minutes=20))
        decision = ec2_powercycle.maintenance_decision(plan, due, patching, state, moment, RUN)
        assert decision is not None and decision.cause is ec2_powercycle.Cause.MAINTENANCE


# --- Runs against moto ------------------------------------------------------------------------------


def create_window(name: str = PATCH, schedule: str = "cron(0 2 ? * TUE *)", duration: int = 2, **extra: Any) -> str:
    reply = moto_client("ssm").create_maintenance_window(
        Name=name, Schedule=schedule, Duration=duration, Cutoff=0, AllowUnassociatedTargets=True, **extra
    )
    return reply["WindowId"]  # type: ignore[no-any-return]


def schedule(*windows: str, **extra: Any) -> str:
    return json.dumps({"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5", "maintenance_windows": list(windows), **extra})


def run_at(moment: datetime) -> dict[str, Any]:
    return handler({"time": moment.strftime("%Y-%m-%dT%H:%M:%SZ")})


def stopped_at(instance_id: str, moment: datetime) -> None:
    """The instance's record says it was stopped at `moment` (moto stamps stops with the real clock)."""
    instance = ec2_backends["123456789012"][REGION].get_instance(instance_id)
    instance._reason = f"User initiated ({moment:%Y-%m-%d %H:%M:%S} GMT)"


@pytest.fixture
def window_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The regions each DescribeMaintenanceWindows call of the scheduler went to."""
    calls: list[str] = []

    def count(client: Any, region: str, *_: Any) -> None:
        client.meta.events.register(
            "before-call.ssm.DescribeMaintenanceWindows", lambda **_: calls.append(client.meta.region_name)
        )

    on_every_client(monkeypatch, "ssm_client", count)
    return calls


def test_a_weekly_window_starts_at_the_lead_time_holds_through_a_stop_and_hands_back_at_its_end(
    fleet: Fleet, window_reads: list[str]
) -> None:
    window_id = create_window()  # Tuesdays 02:00-04:00 UTC
    nightly = json.dumps({"start": "0 8 * * 1-5", "stop": ["0 18 * * 1-5", "0 3 * * *"], MAINTENANCE_KEY: [PATCH]})
    (instance,) = fleet.launch(nightly, state="stopped")
    assert run_at(TUESDAY.replace(hour=1, minute=30))["started"] == []
    # The lead time, 01:40, falls in this run's window (01:30, 01:45].
    assert run_at(TUESDAY.replace(hour=1, minute=45))["started"] == [instance]
    held = run_at(TUESDAY.replace(hour=3))
    assert held["stopped"] == [] and fleet.state(instance) == "running"
    (skipped,) = held["skipped"]
    assert skipped["reason"] == (
        f"stop due at 2026-12-08T03:00:00Z skipped: maintenance window '{PATCH}' ({window_id}) "
        "2026-12-08T02:00:00Z to 2026-12-08T04:00:00Z"
    )
    assert run_at(TUESDAY.replace(hour=4))["stopped"] == [instance]  # the schedule's state at 04:00: stopped
    assert run_at(TUESDAY.replace(hour=4, minute=15))["stopped"] == []  # once
    assert window_reads == [REGION] * 5  # once per run and target


def test_no_window_read_for_a_target_whose_schedules_name_none(fleet: Fleet, window_reads: list[str]) -> None:
    create_window()
    fleet.launch('{"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5"}')
    fleet.launch('{"stop": "0 3 * * *"}')
    summary = run_at(TUESDAY.replace(hour=3))
    assert len(summary["stopped"]) == 1 and window_reads == []


def test_patch_tuesday_plus_two_days(fleet: Fleet) -> None:
    create_window(schedule="cron(0 2 ? * TUE#2 *)", ScheduleOffset=2)
    (instance,) = fleet.launch(schedule(PATCH), state="stopped")
    assert run_at(TUESDAY.replace(hour=1, minute=45))["started"] == []
    assert run_at(TUESDAY.replace(day=10, hour=1, minute=45))["started"] == [instance]


def test_a_window_in_its_own_zone_across_a_daylight_saving_change(fleet: Fleet) -> None:
    create_window(schedule="cron(0 3 ? * SUN *)", ScheduleTimezone="America/New_York")
    (instance,) = fleet.launch(schedule(PATCH), state="stopped")
    assert run_at(utc("2026-03-08T07:40:00"))["started"] == []  # 03:00 EST would be 08:00 UTC
    assert run_at(utc("2026-03-08T06:45:00"))["started"] == [instance]  # 03:00 EDT is 07:00 UTC


@pytest.mark.parametrize(
    ("expression", "extra", "run"),
    [
        ("rate(7 days)", {"StartDate": "2026-12-01T02:00:00Z"}, "2026-12-08T01:45:00"),
        ("at(2026-12-08T03:00:00)", {"ScheduleTimezone": "Europe/Paris"}, "2026-12-08T01:45:00"),
    ],
)
def test_rate_and_at_windows(fleet: Fleet, expression: str, extra: dict[str, str], run: str) -> None:
    create_window(schedule=expression, **extra)
    (instance,) = fleet.launch(schedule(PATCH), state="stopped")
    assert run_at(utc(run) - timedelta(minutes=15))["started"] == []
    assert run_at(utc(run))["started"] == [instance]


def test_a_disabled_or_expired_window_keeps_nothing_running(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    disabled = create_window("disabled")
    create_window("expired", EndDate="2026-12-01T00:00:00Z")
    real_to_json = FakeMaintenanceWindow.to_json

    def as_disabled(window: FakeMaintenanceWindow) -> dict[str, Any]:  # moto always answers Enabled: true
        return {**real_to_json(window), "Enabled": window.id != disabled}

    monkeypatch.setattr(FakeMaintenanceWindow, "to_json", as_disabled)
    (instance,) = fleet.launch(schedule("disabled", "expired"), state="stopped")
    summary = run_at(TUESDAY.replace(hour=1, minute=45))
    assert (summary["started"], summary["errors"], fleet.state(instance)) == ([], [], "stopped")


def test_an_unknown_or_ambiguous_name_is_an_error_of_the_instances_naming_it(fleet: Fleet) -> None:
    """Reported every run, while the schedule's own times still act (a renamed window costs no start)."""
    create_window("twice")
    create_window("twice")
    (unknown,) = fleet.launch(schedule("nowhere", start="0 1 * * *"), state="stopped")
    (ambiguous,) = fleet.launch(schedule("twice"), state="stopped")
    (plain,) = fleet.launch('{"start": "0 1 * * *"}', state="stopped")
    summary = run_at(TUESDAY.replace(hour=1, minute=5))
    errors = {entry["instance_id"]: entry["error"] for entry in summary["errors"]}
    prefix = f"maintenance_windows in tag {TAG!r}: "
    alone = "; the schedule alone decides"
    assert errors[unknown] == f"{prefix}no maintenance window 'nowhere' in this account and region{alone}"
    assert errors[ambiguous].startswith(f"{prefix}2 maintenance windows are named 'twice' (mw-")
    assert errors[ambiguous].endswith(alone)
    assert sorted(summary["started"]) == sorted([plain, unknown])


def test_a_window_is_kept_on_a_skip_day_and_an_override_wins_over_it(fleet: Fleet) -> None:
    create_window()
    (skipping,) = fleet.launch(schedule(PATCH, skip=["2026-12-08"]), state="stopped")
    held_stopped = json.dumps({"state": "stopped", "until": "2026-12-08T06:00:00Z"})
    (overridden,) = fleet.launch(schedule(PATCH), state="stopped", tags={override_key(TAG): held_stopped})
    summary = run_at(TUESDAY.replace(hour=1, minute=45))
    assert summary["started"] == [skipping]
    assert fleet.state(overridden) == "stopped"


@pytest.mark.parametrize(("held", "state"), [("running", "running"), ("stopped", "stopped")])
def test_an_override_that_ends_while_a_window_is_open_hands_the_instance_to_the_window(
    fleet: Fleet, held: str, state: str
) -> None:
    """The window (02:00-04:00) is open when the override ends at 02:30: it keeps the instance running."""
    create_window()
    until = json.dumps({"state": held, "until": "2026-12-08T02:30:00Z"})
    (instance,) = fleet.launch(schedule(PATCH), state=state, tags={override_key(TAG): until})
    summary = run_at(TUESDAY.replace(hour=2, minute=40))
    assert fleet.state(instance) == "running" and summary["stopped"] == [] and summary["errors"] == []
    assert summary["started"] == ([instance] if state == "stopped" else [])


def test_a_missed_lead_time_run_is_caught_up(fleet: Fleet) -> None:
    window_id = create_window()
    (instance,) = fleet.launch(schedule(PATCH), state="stopped")
    stopped_at(instance, TUESDAY - timedelta(hours=6))
    summary = run_at(TUESDAY.replace(hour=2, minute=15))  # the 01:45 run never came
    assert summary["started"] == [instance]
    assert summary["caught_up"] == [
        {
            "instance_id": instance,
            "account": "own",
            "region": REGION,
            "action": "start",
            "due": "2026-12-08T01:40:00Z",
            "maintenance_window": f"'{PATCH}' ({window_id})",
        }
    ]


@pytest.mark.parametrize(("started_by_hand", "stopped"), [(None, True), ("2026-12-08T04:05:00+00:00", False)])
def test_a_missed_run_at_a_windows_end_is_caught_up_unless_someone_started_it_since(
    fleet: Fleet, started_by_hand: str | None, stopped: bool
) -> None:
    """Window Tue 02:00-04:00, office hours: the 04:00 run never came; the 04:15 run makes up its stop."""
    window_id = create_window()
    (instance,) = fleet.launch(schedule(PATCH))  # running since the window's lead time (its LaunchTime is before)
    if started_by_hand:
        ec2_backends["123456789012"][REGION].get_instance(instance).launch_time = started_by_hand
    summary = run_at(TUESDAY.replace(hour=4, minute=15))
    assert (summary["stopped"] == [instance]) is stopped and (fleet.state(instance) == "stopped") is stopped
    if stopped:
        [entry] = summary["caught_up"]
        assert (entry["action"], entry["due"]) == ("stop", "2026-12-08T04:00:00Z")
        assert entry["maintenance_window"] == f"'{PATCH}' ({window_id})"


# --- The command line: plan and check ------------------------------------------------------------


def test_plan_shows_each_windows_next_occurrences_and_shades_them(fleet: Fleet, cli: Any) -> None:
    window_id = create_window()
    (instance,) = fleet.launch(schedule(PATCH), state="stopped")
    code, out, _ = cli("plan", "--at", "2026-12-07T20:00:00Z", "--hours", "13", "--json")
    (entry,) = json.loads(out)["instances"]
    assert code == 0 and entry["instance_id"] == instance
    assert entry["maintenance_windows"] == [
        {
            "name": PATCH,
            "id": window_id,
            "next": [
                {"start": "2026-12-08T02:00:00Z", "end": "2026-12-08T04:00:00Z"},
                {"start": "2026-12-15T02:00:00Z", "end": "2026-12-15T04:00:00Z"},
            ],
        }
    ]
    (row,) = json.loads(out)["timeline"]["schedules"]
    # From 20:00: the hours from 01:00 (the lead time, 01:40) to 04:00 run for the window.
    assert row["maintenance"] == [False] * 5 + [True] * 3 + [False] * 5
    assert row["running"] == [*row["maintenance"][:12], True]  # 08:00: the schedule's own start
    code, out, _ = cli("plan", "--at", "2026-12-07T20:00:00Z", "--hours", "12")
    assert f"maintenance window '{PATCH}' ({window_id}): Tue 2026-12-08 02:00 UTC to 04:00 (in 6h)" in out
    assert "running for a maintenance window" in out and f"maintenance windows '{PATCH}' ({window_id})" in out


def test_check_reads_the_named_windows_only_when_it_can(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    window_id = create_window(ScheduleTimezone="Europe/Paris")
    code, out, _ = cli("check", schedule(PATCH), "--at", "2026-12-07T20:00:00Z", "--count", "1")
    assert code == 0
    assert f"maintenance windows (read in {REGION};" in out
    assert f"'{PATCH}' ({window_id})  cron(0 2 ? * TUE *) (Europe/Paris, 2 hours)" in out
    assert "window  Tue 2026-12-08 01:00 UTC  2026-12-08 01:00 UTC  in 5h  to 03:00" in out
    code, out, _ = cli("check", schedule(PATCH), "--at", "2026-12-07T20:00:00Z", "--count", "1", "--json")
    assert json.loads(out)["maintenance_windows"] == {
        "region": REGION,
        "read": True,
        "note": None,
        "error": None,
        "windows": [
            {
                "name": PATCH,
                "id": window_id,
                "schedule": "cron(0 2 ? * TUE *)",
                "tz": "Europe/Paris",
                "enabled": True,
                "next": [{"start": "2026-12-08T01:00:00Z", "end": "2026-12-08T03:00:00Z"}],
            }
        ],
    }
    code, _, err = cli("check", schedule("nowhere"), "--at", "2026-12-07T20:00:00Z")
    assert code == 1 and f"maintenance_windows in {REGION}: no maintenance window 'nowhere'" in err
    code, out, _ = cli("check", '{"stop": "0 18 * * *"}', "--json")
    assert code == 0 and "maintenance_windows" not in json.loads(out)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, out, _ = cli("check", schedule(PATCH), "--region", "eu-central-1")
    assert code == 0
    assert f"maintenance windows {PATCH}: not read in eu-central-1 (no AWS credentials); a run reads them" in out


def test_windows_that_cannot_be_read_are_the_errors_of_the_instances_naming_them(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(request: Any, **_: Any) -> Any:
        body = b'{"__type": "AccessDeniedException", "message": "not allowed"}'
        return injected_response(request, 400, body, {"Content-Type": "application/x-amz-json-1.1"})

    on_every_client(
        monkeypatch, "ssm_client", lambda client, *_: client.meta.events.register("before-send.ssm.*", refuse)
    )
    create_window()
    (patched,) = fleet.launch(schedule(PATCH), state="stopped")
    (plain,) = fleet.launch('{"start": "0 1 * * *"}', state="stopped")
    summary = run_at(TUESDAY.replace(hour=1, minute=5))
    assert summary["started"] == [plain]
    (error,) = summary["errors"]
    assert error["instance_id"] == patched
    assert error["error"] == (
        f"maintenance_windows in tag {TAG!r}: cannot read the maintenance windows of own/{REGION}: "
        "AccessDeniedException: not allowed; the schedule alone decides"
    )


def test_the_status_tag_names_a_windows_start(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ec2_powercycle.STATUS_TAGS_SETTING, "true")
    create_window()
    (instance,) = fleet.launch(schedule(PATCH), state="stopped")
    run_at(TUESDAY.replace(hour=1, minute=45))
    reply = fleet.client().describe_instances(InstanceIds=[instance])
    tags = {tag["Key"]: tag["Value"] for tag in reply["Reservations"][0]["Instances"][0]["Tags"]}
    assert tags[f"{TAG}:last-action"] == "started 2026-12-08T01:45:00Z maintenance-window"
