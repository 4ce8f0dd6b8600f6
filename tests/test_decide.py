"""Deciding what to do at a time: pure functions, time passed in, no AWS."""

from __future__ import annotations

import bisect
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ec2_powercycle import (
    Action,
    Cause,
    Decision,
    Due,
    Outcome,
    RunContext,
    Schedule,
    ScheduleError,
    Settings,
    cron_fields,
    decide,
    decide_instance,
    due_action,
    follow_up,
    guard_reason,
    instance_record,
    latest_fire,
    latest_in_window,
    next_fire,
    parse_schedule_json,
    wall_to_instant,
    zone,
)

WINDOW = timedelta(minutes=15)
OFFICE = Schedule(start=("0 8 * * 1-5",), stop=("55 17 * * 1-5",), tz="UTC")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# 2026-11-23 is a Monday.
@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-23T08:00:00", Action.START),  # exactly at t: this run
        ("2026-11-23T08:07:00", Action.START),
        ("2026-11-23T08:14:59", Action.START),
        ("2026-11-23T08:15:00", None),  # exactly at t - W: the previous run's
        ("2026-11-23T07:59:59", None),
        ("2026-11-23T18:00:00", Action.STOP),
        ("2026-11-22T08:05:00", None),  # Sunday
        ("2026-11-23T12:00:00", None),
    ],
)
def test_window_is_open_below_and_closed_above(now: str, expected: Action | None) -> None:
    assert due_action(OFFICE, utc(now), WINDOW).action is expected


def test_the_later_of_start_and_stop_in_the_window_wins() -> None:
    schedule = Schedule(start=("0 8 * * *",), stop=("10 8 * * *",))
    due = due_action(schedule, utc("2026-11-23T08:14:00"), WINDOW)
    assert (due.action, due.at) == (Action.STOP, utc("2026-11-23T08:10:00"))
    schedule = Schedule(start=("10 8 * * *",), stop=("0 8 * * *",))
    assert due_action(schedule, utc("2026-11-23T08:14:00"), WINDOW).action is Action.START


def test_equal_start_and_stop_is_a_conflict() -> None:
    schedule = Schedule(start=("0 8 * * *",), stop=("0 8 * * 1-5",))
    due = due_action(schedule, utc("2026-11-23T08:05:00"), WINDOW)
    assert due.conflict and due.action is None
    decision = decide(due, "running")
    assert decision.outcome is Outcome.ERROR
    assert "schedule conflict: start and stop both due at 2026-11-23T08:00:00Z" in decision.reason


def test_the_latest_of_several_expressions_counts() -> None:
    schedule = Schedule(start=("0 8 * * *", "5 8 * * *"), stop=("3 8 * * *",))
    due = due_action(schedule, utc("2026-11-23T08:10:00"), WINDOW)
    assert (due.action, due.at) == (Action.START, utc("2026-11-23T08:05:00"))


def test_enforce_holds_the_state_of_the_most_recent_time_without_lower_bound() -> None:
    schedule = Schedule(start=("0 8 * * 1-5",), stop=("55 17 * * 1-5",), enforce=True)
    assert due_action(schedule, utc("2026-11-23T12:00:00"), WINDOW).action is Action.START
    assert due_action(schedule, utc("2026-11-23T23:00:00"), WINDOW).action is Action.STOP
    # Sunday noon: the last time was Friday's stop.
    due = due_action(schedule, utc("2026-11-22T12:00:00"), WINDOW)
    assert (due.action, due.at) == (Action.STOP, utc("2026-11-20T17:55:00"))


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_action(OFFICE, datetime(2026, 11, 23, 8), WINDOW)


@pytest.mark.parametrize(
    ("action", "state", "outcome", "call"),
    [
        (Action.START, "stopped", Outcome.ACT, Action.START),
        (Action.START, "running", Outcome.SKIP, None),
        (Action.START, "pending", Outcome.SKIP, None),
        (Action.START, "stopping", Outcome.SKIP, None),
        (Action.STOP, "running", Outcome.ACT, Action.STOP),
        (Action.STOP, "pending", Outcome.ACT, Action.STOP),
        (Action.STOP, "stopped", Outcome.SKIP, None),
        (Action.STOP, "stopping", Outcome.SKIP, None),
    ],
)
def test_only_changes_are_made(action: Action, state: str, outcome: Outcome, call: Action | None) -> None:
    decision = decide(Due(action, utc("2026-11-23T08:00:00")), state)
    assert (decision.outcome, decision.action) == (outcome, call)
    if outcome is Outcome.SKIP:
        assert decision.reason == f"{action.value} due at 2026-11-23T08:00:00Z but instance is {state}"


def test_enforced_schedules_do_not_note_instances_already_in_place() -> None:
    assert decide(Due(Action.START, utc("2026-11-23T08:00:00"), enforced=True), "running") == Decision(
        Outcome.IDLE, None, "already running"
    )
    assert decide(Due(Action.STOP, utc("2026-11-23T08:00:00"), enforced=True), "stopped").outcome is Outcome.IDLE
    assert decide(Due(None), "running").outcome is Outcome.IDLE


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"environment": "p"}, "protected environment 'p'"),
        ({"environment": "P"}, "protected environment 'P'"),
        ({"Environment": "p"}, "protected environment 'p'"),
        ({"ENVIRONMENT": " P "}, "protected environment ' P '"),
        ({"environment": "prod"}, None),
        ({"environment": "dev"}, None),
        ({"aws:autoscaling:groupName": "web-asg"}, "in Auto Scaling group 'web-asg'"),
        ({}, None),
    ],
)
def test_guards(tags: dict[str, str], reason: str | None) -> None:
    assert guard_reason(tags, frozenset({"p"})) == reason


# --- Daylight saving -------------------------------------------------------------

LONDON_EIGHT = Schedule(start=("0 8 * * *",), tz="Europe/London")


@pytest.mark.parametrize(
    ("day", "expected_utc"),
    [
        ("2026-03-28", "2026-03-28T08:00:00"),  # Saturday, GMT
        ("2026-03-29", "2026-03-29T07:00:00"),  # clocks went forward at 01:00 UTC
        ("2026-03-30", "2026-03-30T07:00:00"),
        ("2026-10-24", "2026-10-24T07:00:00"),  # BST
        ("2026-10-25", "2026-10-25T08:00:00"),  # clocks went back at 01:00 UTC
        ("2026-10-26", "2026-10-26T08:00:00"),
    ],
)
def test_local_eight_oclock_across_dst_acts_once_per_day(day: str, expected_utc: str) -> None:
    hits = _ticks_that_act(LONDON_EIGHT, utc(f"{day}T00:07:00"), hours=24)
    assert hits == [(utc(expected_utc), Action.START)]


def test_a_time_in_the_skipped_hour_fires_when_the_clocks_jump() -> None:
    schedule = Schedule(start=("30 1 * * *",), tz="Europe/London")
    # 2026-03-29 01:00 UTC: 01:00 GMT becomes 02:00 BST; 01:30 local never happens.
    assert latest_fire("30 1 * * *", "Europe/London", utc("2026-03-29T01:10:00")) == utc("2026-03-29T01:00:00")
    hits = _ticks_that_act(schedule, utc("2026-03-28T12:07:00"), hours=48)
    assert [at for at, _ in hits] == [utc("2026-03-29T01:00:00"), utc("2026-03-30T00:30:00")]


def test_a_time_in_the_repeated_hour_fires_once_at_its_first_occurrence() -> None:
    schedule = Schedule(stop=("30 1 * * *",), tz="Europe/London")
    # 2026-10-25: 01:30 BST (00:30 UTC) and 01:30 GMT (01:30 UTC) both read 01:30.
    hits = _ticks_that_act(schedule, utc("2026-10-24T12:07:00"), hours=48)
    assert [at for at, _ in hits] == [utc("2026-10-25T00:30:00"), utc("2026-10-26T01:30:00")]
    assert latest_fire("30 1 * * *", "Europe/London", utc("2026-10-25T01:45:00")) == utc("2026-10-25T00:30:00")


@pytest.mark.parametrize(
    ("expression", "tz", "after", "expected"),
    [
        ("0 8 * * *", "UTC", "2026-11-23T07:00:00", "2026-11-23T08:00:00"),
        ("0 8 * * *", "UTC", "2026-11-23T07:59:59", "2026-11-23T08:00:00"),
        ("0 8 * * *", "UTC", "2026-11-23T08:00:00", "2026-11-24T08:00:00"),  # strictly after
        ("0 8 * * 1-5", "UTC", "2026-11-27T08:00:00", "2026-11-30T08:00:00"),  # Friday to Monday
        ("0 8 * * *", "Europe/London", "2026-03-29T00:00:00", "2026-03-29T07:00:00"),  # BST from 01:00 UTC
        ("30 1 * * *", "Europe/London", "2026-03-29T00:00:00", "2026-03-29T01:00:00"),  # skipped: at the jump
        ("0 8 * * *", "Europe/London", "2026-10-25T00:00:00", "2026-10-25T08:00:00"),  # GMT from 01:00 UTC
        ("30 1 * * *", "Europe/London", "2026-10-25T00:00:00", "2026-10-25T00:30:00"),  # repeated: the first
        ("30 1 * * *", "Europe/London", "2026-10-25T00:30:00", "2026-10-26T01:30:00"),  # ... and only the first
        ("0 8 L * *", "UTC", "2026-11-23T00:00:00", "2026-11-30T08:00:00"),  # croniter only: last day
        ("0 8 * * 1#1", "UTC", "2026-11-23T00:00:00", "2026-12-07T08:00:00"),  # croniter only: first Monday
        ("0 8 L * *", "Europe/London", "2026-03-01T00:00:00", "2026-03-31T07:00:00"),
    ],
)
def test_next_fire_is_the_first_time_strictly_after(expression: str, tz: str, after: str, expected: str) -> None:
    assert next_fire(expression, tz, utc(after)) == utc(expected)


@pytest.mark.parametrize(
    ("expression", "before", "latest", "after", "following"),
    [
        ("59 23 * * *", "2026-11-23T08:00", "2026-11-22T23:59", "2026-11-22T23:59", "2026-11-23T23:59"),
        ("0 0 * * *", "2026-11-23T08:00", "2026-11-23T00:00", "2026-11-23T08:00", "2026-11-24T00:00"),
        ("*/20 9-17 * * 1-5", "2026-11-23T08:59", "2026-11-20T17:40", "2026-11-20T17:40", "2026-11-23T09:00"),
        ("30 23 31 12 *", "2026-06-01T00:00", "2025-12-31T23:30", "2026-06-01T00:00", "2026-12-31T23:30"),
        ("0 8 29 2 *", "2026-11-23T08:00", "2024-02-29T08:00", "2026-11-23T08:00", "2028-02-29T08:00"),
    ],
)
def test_the_walk_over_wall_times_crosses_days_months_and_years(
    expression: str, before: str, latest: str, after: str, following: str
) -> None:
    """Plain expressions are walked field by field, not minute by minute: the jumps across the calendar."""
    assert latest_fire(expression, "UTC", utc(before)) == utc(latest)
    assert next_fire(expression, "UTC", utc(after)) == utc(following)


def test_next_fire_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire("0 8 * * *", "UTC", datetime(2026, 11, 23, 8))


def test_new_york_spring_gap() -> None:
    tz = zone("America/New_York")
    assert wall_to_instant(datetime(2026, 3, 8, 2, 30), tz) == utc("2026-03-08T07:00:00")
    assert wall_to_instant(datetime(2026, 3, 8, 1, 30), tz) == utc("2026-03-08T06:30:00")
    assert wall_to_instant(datetime(2026, 11, 1, 1, 30), tz) == utc("2026-11-01T05:30:00")


def test_lord_howe_half_hour_shift() -> None:
    # Australia/Lord_Howe moves its clocks by 30 minutes: 02:00 -> 02:30 on 2026-10-04.
    tz = zone("Australia/Lord_Howe")
    jump = wall_to_instant(datetime(2026, 10, 4, 2, 15), tz)
    assert jump == wall_to_instant(datetime(2026, 10, 4, 2, 30), tz)
    assert jump.astimezone(tz).strftime("%H:%M") == "02:30"


# --- Consecutive runs see every time exactly once --------------------------------


def _ticks_that_act(schedule: Schedule, first: datetime, hours: int, window: timedelta = WINDOW) -> list:
    hits = []
    tick = first
    while tick < first + timedelta(hours=hours):
        due = due_action(schedule, tick, window)
        if due.action is not None:
            hits.append((due.at, due.action))
        tick += window
    return hits


def test_a_simulated_week_of_ticks_at_an_odd_offset_acts_once_per_scheduled_time() -> None:
    schedule = parse_schedule_json(
        '{"start": ["0 8 * * MON-FRI", "30 9 * * SAT"], "stop": "55 17 * * 1-5", "tz": "Europe/Berlin"}', "UTC"
    )
    hits = _ticks_that_act(schedule, utc("2026-11-22T23:07:23"), hours=24 * 7)
    starts = [at for at, action in hits if action is Action.START]
    stops = [at for at, action in hits if action is Action.STOP]
    # Berlin is UTC+1 in late November: 08:00 local is 07:00 UTC.
    assert starts == [utc(f"2026-11-{day}T07:00:00") for day in (23, 24, 25, 26, 27)] + [utc("2026-11-28T08:30:00")]
    assert stops == [utc(f"2026-11-{day}T16:55:00") for day in (23, 24, 25, 26, 27)]


CRON_FIELD = st.one_of(
    st.integers(0, 59).map(str),
    st.integers(5, 30).map(lambda step: f"*/{step}"),
    st.lists(st.integers(0, 59), min_size=1, max_size=3, unique=True).map(lambda ms: ",".join(map(str, ms))),
)
HOUR_FIELD = st.one_of(st.just("*"), st.integers(0, 23).map(str), st.integers(1, 12).map(lambda step: f"*/{step}"))
DOW_FIELD = st.sampled_from(["*", "1-5", "MON-FRI", "SAT,SUN", "0", "3"])
ZONES = st.sampled_from(["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"])


@st.composite
def cron(draw: st.DrawFn) -> str:
    return f"{draw(CRON_FIELD)} {draw(HOUR_FIELD)} * * {draw(DOW_FIELD)}"


MINUTE = timedelta(minutes=1)
RUN_UP = timedelta(hours=3)  # longer than any clock change, so a first occurrence before `after` is known


def _fire_times_by_brute_force(expression: str, tz_name: str, after: datetime, until: datetime) -> set[datetime]:
    """An independent oracle: walk every UTC minute of (after, until] and read the zone's wall clock there.

    The rule of docs/decisions.md, from its definitions: a wall time fires at the first instant the clock shows it,
    so a time in the repeated hour fires once, at its first occurrence; a wall time the clock jumps past
    (the skipped hour) fires at the moment of the jump. Which wall times match the expression is
    croniter's word: its walk over naive times, where no zone is involved.
    """
    tz = ZoneInfo(tz_name)
    instant = after.replace(second=0, microsecond=0) - RUN_UP
    walker = croniter(expression, instant.astimezone(tz).replace(tzinfo=None) - RUN_UP)
    last_wall = until.astimezone(tz).replace(tzinfo=None) + RUN_UP
    matching: set[datetime] = set()
    while (wall := walker.get_next(datetime)) <= last_wall:
        matching.add(wall)
    fired: set[datetime] = set()
    shown: set[datetime] = set()  # every wall time the clock has shown so far
    previous: datetime | None = None
    while instant <= until:
        wall = instant.astimezone(tz).replace(tzinfo=None)
        showing = [wall]
        if previous is not None:  # the wall times between two readings a minute apart were jumped past now
            skipped = previous + MINUTE
            while skipped < wall:
                showing.append(skipped)
                skipped += MINUTE
        if instant > after and any(time in matching and time not in shown for time in showing):
            fired.add(instant)
        shown.update(showing)
        previous = wall
        instant += MINUTE
    return fired


# When the clocks change in 2026 (UTC): spring forward, autumn back. Zones without changes use London's.
CLOCK_CHANGES = {
    "Europe/London": ("2026-03-29T01:00:00", "2026-10-25T01:00:00"),
    "America/New_York": ("2026-03-08T07:00:00", "2026-11-01T06:00:00"),
    "Australia/Lord_Howe": ("2026-10-03T15:30:00", "2026-04-04T15:00:00"),  # half an hour
}
SPAN = timedelta(hours=6)


def _ticks_across_a_clock_change(tz: str, autumn: bool, offset_seconds: int, window: timedelta) -> list[datetime]:
    """Runs W apart over 6 hours that contain the zone's clock change of spring (forward) or autumn (back).

    offset_seconds (0 to 6 h) places the change anywhere in the span, at any phase of the runs.
    """
    change = utc(CLOCK_CHANGES.get(tz, CLOCK_CHANGES["Europe/London"])[autumn])
    first = change - SPAN + timedelta(seconds=offset_seconds)
    return [first + window * k for k in range(int(SPAN / window) + 1)]


@settings(max_examples=40, deadline=None)
@given(
    expression=cron(),
    tz=ZONES,
    offset_seconds=st.integers(0, 6 * 3600 - 1),
    window_minutes=st.sampled_from([5, 15, 60]),
    autumn=st.booleans(),
)
def test_consecutive_windows_see_every_scheduled_time_exactly_once(
    expression: str, tz: str, offset_seconds: int, window_minutes: int, autumn: bool
) -> None:
    window = timedelta(minutes=window_minutes)
    ticks = _ticks_across_a_clock_change(tz, autumn, offset_seconds, window)
    seen: list[datetime] = []
    for tick in ticks[1:]:
        moment = latest_fire(expression, tz, tick)
        while moment > tick - window:
            seen.append(moment)
            moment = latest_fire(expression, tz, moment - timedelta(seconds=1))
    assert len(seen) == len(set(seen)), "a scheduled time was seen by two runs"
    assert set(seen) == _fire_times_by_brute_force(expression, tz, ticks[0], ticks[-1])


@settings(max_examples=40, deadline=None)
@given(expression=cron(), tz=ZONES, offset_seconds=st.integers(0, 7 * 24 * 3600))
def test_a_window_acts_on_its_latest_time(expression: str, tz: str, offset_seconds: int) -> None:
    now = utc("2026-03-01T00:00:00") + timedelta(seconds=offset_seconds)
    due = due_action(Schedule(start=(expression,), tz=tz), now, WINDOW)
    latest = latest_fire(expression, tz, now)
    assert latest <= now
    assert (due.action is Action.START) == (latest > now - WINDOW)


# --- The fast path for plain expressions ------------------------------------------

PLAIN_MINUTE = st.one_of(
    st.integers(0, 59).map(str),
    st.integers(1, 30).map(lambda step: f"*/{step}"),
    st.tuples(st.integers(0, 58), st.integers(1, 59), st.integers(1, 20)).map(
        lambda t: f"{t[0]}-{max(t[0] + 1, t[1])}/{t[2]}"
    ),
    st.lists(st.integers(0, 59), min_size=1, max_size=4).map(lambda ms: ",".join(map(str, ms))),
)
PLAIN_HOUR = st.one_of(
    st.just("*"), st.integers(0, 23).map(str), st.sampled_from(["8-17", "*/6", "0,12", "22-23", "9-17/2"])
)
PLAIN_DAY = st.sampled_from(["*", "1", "15", "1-7", "*/10", "29", "31", "28-31", "1,15"])
PLAIN_MONTH = st.sampled_from(["*", "1", "JAN-MAR", "feb", "*/3", "6-8", "DEC", "2"])
PLAIN_WEEKDAY = st.sampled_from(["*", "1-5", "MON-FRI", "sat,sun", "0", "7", "5-7", "*/2", "SUN"])


@st.composite
def plain_cron(draw: st.DrawFn) -> str:
    day, weekday = draw(PLAIN_DAY), draw(PLAIN_WEEKDAY)
    if draw(st.booleans()):
        day = "*"
    else:
        weekday = "*"
    return f"{draw(PLAIN_MINUTE)} {draw(PLAIN_HOUR)} {day} {draw(PLAIN_MONTH)} {weekday}"


@settings(max_examples=300, deadline=None)
@given(expression=plain_cron())
def test_the_plain_parser_reads_expressions_as_croniter_does(expression: str) -> None:
    fields = cron_fields(expression)
    assert fields is not None
    expanded, _ = croniter.expand(expression)
    bounds = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
    as_sets = [
        set(range(low, high + 1)) if values == ["*"] else set(values)
        for values, (low, high) in zip(expanded, bounds, strict=True)
    ]
    as_sets[4] = {0 if day == 7 else day for day in as_sets[4]}  # Sunday is 0 or 7
    assert [fields.minutes, fields.hours, fields.days, fields.months, fields.weekdays] == as_sets


@pytest.mark.parametrize(
    "expression",
    [
        "0 8 L * *",
        "0 8 * * 5#2",
        "0 8 15W * *",
        "0 8 1 * 1",
        "0 8 ? * 1",
        "5/10 * * * *",
        "0 25 * * *",
        "0 8 * * 8",
        "0 8 5-1 * *",
        "*/0 8 * * *",
        "0 8 * * 1-5 2026",
        "H 8 * * *",
    ],
)
def test_anything_else_is_left_to_croniter(expression: str) -> None:
    assert cron_fields(expression) is None


@settings(max_examples=50, deadline=None)
@given(
    expression=st.one_of(plain_cron(), cron()),
    tz=ZONES,
    offset_seconds=st.integers(0, 6 * 3600 - 1),
    window_minutes=st.sampled_from([5, 15, 60]),
    autumn=st.booleans(),
)
def test_the_window_scan_agrees_with_the_brute_force_oracle(
    expression: str, tz: str, offset_seconds: int, window_minutes: int, autumn: bool
) -> None:
    fields = cron_fields(expression)
    assume(fields is None or fields.can_fire())  # one that never fires is refused when parsed
    window = timedelta(minutes=window_minutes)
    ticks = _ticks_across_a_clock_change(tz, autumn, offset_seconds, window)
    fired = sorted(_fire_times_by_brute_force(expression, tz, ticks[0], ticks[-1]))
    for tick in ticks[1:]:
        in_window = fired[bisect.bisect_right(fired, tick - window) : bisect.bisect_right(fired, tick)]
        assert latest_in_window(expression, tz, tick, window) == (in_window[-1] if in_window else None)


def test_a_schedule_that_can_never_fire_is_refused_with_croniters_words() -> None:
    with pytest.raises(ScheduleError, match="invalid cron '0 8 31 4,6 \\*' in 'start': failed to find"):
        parse_schedule_json('{"start": "0 8 31 4,6 *"}', "UTC")
    assert parse_schedule_json('{"start": "0 8 29 2 *"}', "UTC").start == ("0 8 29 2 *",)


@settings(max_examples=40, deadline=None)
@given(
    expression=st.one_of(plain_cron(), cron()),
    tz=ZONES,
    offset_seconds=st.integers(0, 6 * 3600 - 1),
    autumn=st.booleans(),
)
def test_the_next_time_agrees_with_the_brute_force_oracle(
    expression: str, tz: str, offset_seconds: int, autumn: bool
) -> None:
    fields = cron_fields(expression)
    assume(fields is None or fields.can_fire())
    ticks = _ticks_across_a_clock_change(tz, autumn, offset_seconds, WINDOW)
    fired = sorted(_fire_times_by_brute_force(expression, tz, ticks[0], ticks[-1]))
    for tick in ticks[:-1]:
        later = fired[bisect.bisect_right(fired, tick) :]
        moment = next_fire(expression, tz, tick)
        assert moment == later[0] if later else moment > ticks[-1]


@settings(max_examples=40, deadline=None)
@given(
    start=st.one_of(plain_cron(), cron()),
    stop=st.one_of(plain_cron(), cron()),
    tz=ZONES,
    offset_seconds=st.integers(0, 6 * 3600 - 1),
    autumn=st.booleans(),
    state=st.sampled_from(["running", "stopped"]),
    changed_minutes_ago=st.integers(0, 180),
    enforce=st.booleans(),
)
def test_a_run_decides_as_the_window_and_the_catch_up_horizon_each_say(
    start: str,
    stop: str,
    tz: str,
    offset_seconds: int,
    autumn: bool,
    state: str,
    changed_minutes_ago: int,
    enforce: bool,
) -> None:
    """A run reads both from one search over the horizon; each must be what its own span says."""
    for expression in (start, stop):
        fields = cron_fields(expression)
        assume(fields is None or fields.can_fire())
    schedule = Schedule(start=(start,), stop=(stop,), tz=tz, enforce=enforce)
    tag = json.dumps({"start": start, "stop": stop, "tz": tz, "enforce": enforce})
    run_settings = Settings()  # window 15 minutes, catch-up 60
    for now in _ticks_across_a_clock_change(tz, autumn, offset_seconds, timedelta(minutes=40)):
        changed = now - timedelta(minutes=changed_minutes_ago)
        instance = {
            "InstanceId": "i-0123456789abcdef0",
            "State": {"Name": state},
            "LaunchTime": changed.isoformat(),
            "StateTransitionReason": f"User initiated ({changed:%Y-%m-%d %H:%M:%S} GMT)",
            "Tags": [{"Key": run_settings.tag, "Value": tag}],
        }
        context = RunContext(run_settings, now, aws=None)  # type: ignore[arg-type]
        in_window = decide(due_action(schedule, now, run_settings.window), state)
        recent = due_action(schedule, now, run_settings.catch_up)
        expected = in_window
        if recent.action is not None:
            record = instance_record(instance)
            expected = follow_up(in_window, schedule, recent, record, now, run_settings.catch_up)
        decision = decide_instance(instance, context).decision
        assert (decision, decision.due, decision.cause) == (expected, expected.due, expected.cause)


@pytest.mark.parametrize(
    ("start", "cause"),
    [("0 8 * * *", Cause.SCHEDULE), ("30 7 * * *", Cause.ENFORCE), ("0 1 * * *", Cause.ENFORCE)],
)
def test_an_enforced_start_before_the_window_is_enforce_even_within_the_catch_up_horizon(
    start: str, cause: Cause
) -> None:
    tag = json.dumps({"start": start, "stop": "0 20 * * *", "enforce": True})
    instance = {"InstanceId": "i-0", "State": {"Name": "stopped"}, "Tags": [{"Key": "ec2Powercycle", "Value": tag}]}
    now = utc("2026-11-23T08:07:00")  # the window begins at 07:52, the catch-up horizon at 07:07
    decision = decide_instance(instance, RunContext(Settings(), now, aws=None)).decision  # type: ignore[arg-type]
    assert (decision.action, decision.cause) == (Action.START, cause)
