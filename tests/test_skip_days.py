"""Skip days: the schedule's "skip" entries, days in its zone on which its times do not exist.

Parsing and deciding are pure (no AWS, no network): the time is passed in. One handler
run against moto shows a "skip" URL named by many schedules fetched once.
"""

from __future__ import annotations

import bisect
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer

from ec2_powercycle import (
    SKIP_MAX_ENTRIES,
    Action,
    Outcome,
    RunMemo,
    Schedule,
    ScheduleError,
    ScheduleResolver,
    Settings,
    SkipDays,
    cron_fields,
    decide,
    due_action,
    handler,
    latest_fire,
    latest_in_window,
    next_fire,
    parse_schedule_json,
    parse_skip_entries,
    zone,
)
from tests.support.faults import ApiRecorder
from tests.support.fleet import Fleet
from tests.test_decide import ZONES, _fire_times_by_brute_force, _ticks_across_a_clock_change, cron, plain_cron

ROOT = Path(__file__).resolve().parent.parent
WINDOW = timedelta(minutes=15)
LONDON_OFFICE = {"start": "0 8 * * MON-FRI", "stop": "0 18 * * MON-FRI", "tz": "Europe/London"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def schedule(**document: object) -> Schedule:
    return parse_schedule_json(json.dumps(document), "UTC")


def skip(*entries: str) -> SkipDays:
    days = parse_skip_entries(list(entries))
    assert days is not None
    return days


# --- Entries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "day", "skipped"),
    [
        ("2026-12-24", "2026-12-24", True),
        ("2026-12-24", "2026-12-23", False),
        (" 2026-12-24 ", "2026-12-24", True),
        ("2026-12-24..2027-01-01", "2026-12-24", True),
        ("2026-12-24..2027-01-01", "2026-12-30", True),
        ("2026-12-24..2027-01-01", "2027-01-01", True),
        ("2026-12-24..2027-01-01", "2026-12-23", False),
        ("2026-12-24..2027-01-01", "2027-01-02", False),
        ("2026-08-14..2026-08-14", "2026-08-14", True),
        ("12-25", "2026-12-25", True),
        ("12-25", "2031-12-25", True),
        ("12-25", "2026-12-26", False),
        ("02-29", "2028-02-29", True),
        ("02-29", "2027-03-01", False),
        ("holidays:GB-ENG", "2026-12-28", True),  # Boxing Day (observed): the 26th is a Saturday
        ("holidays:GB-ENG", "2026-08-31", True),
        ("holidays:GB-ENG", "2026-03-17", False),  # St Patrick's Day is Northern Ireland's
        ("holidays:GB-NIR", "2026-03-17", True),
        ("holidays:gb-eng", "2026-12-25", True),
        ("holidays:US", "2026-11-26", True),
        ("holidays:US", "2026-11-27", False),
        ("holidays:DE-BY", "2026-01-06", True),  # Epiphany: Bavaria's, not all Germany's
        ("holidays:DE", "2026-01-06", False),
    ],
)
def test_each_entry_form_skips_its_days(entry: str, day: str, skipped: bool) -> None:
    assert skip(entry).skips(date.fromisoformat(day)) is skipped


@pytest.mark.parametrize(
    ("entries", "day", "why"),
    [
        (["holidays:GB-ENG"], "2026-12-28", "Boxing Day (observed)"),
        (["holidays:US", "2026-11-26"], "2026-11-26", "Thanksgiving Day"),  # a holiday's name before its entry
        (["holidays:DE-BY"], "2026-12-26", "Second Day of Christmas"),  # in English where the calendar has it
        (["2026-12-24..2027-01-01"], "2026-12-29", "2026-12-24..2027-01-01"),
        (["12-24"], "2030-12-24", "12-24"),
        (["2026-08-14"], "2026-08-14", "2026-08-14"),
        (["12-24"], "2030-12-23", None),
    ],
)
def test_a_skipped_day_says_why(entries: list[str], day: str, why: str | None) -> None:
    assert skip(*entries).why(date.fromisoformat(day)) == why


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"2026-13-01"', r"bad 'skip' entry '2026-13-01': 2026-13-01 is not a date"),
        ('"2026-02-30"', r"bad 'skip' entry '2026-02-30': 2026-02-30 is not a date"),
        ('"2026-12-24..2026-12-01"', r"bad 'skip' entry '2026-12-24..2026-12-01': the range ends before it starts"),
        ('"2026-12-24..2026-12-32"', r"bad 'skip' entry '2026-12-24..2026-12-32': 2026-12-32 is not a date"),
        ('"13-01"', r"bad 'skip' entry '13-01': no such day of the year"),
        ('"02-30"', r"bad 'skip' entry '02-30': no such day of the year"),
        ('"12/25"', r"bad 'skip' entry '12/25'; expected 'YYYY-MM-DD', 'YYYY-MM-DD..YYYY-MM-DD', 'MM-DD' or"),
        ('"2026-1-5"', r"bad 'skip' entry '2026-1-5'; expected"),
        ('"2026-12-24 .. 2027-01-01"', r"bad 'skip' entry '2026-12-24 .. 2027-01-01'; expected"),
        ('"Christmas"', r"bad 'skip' entry 'Christmas'; expected"),
        ('""', r"bad 'skip' entry ''; expected"),
        ('"holidays:XX"', r"bad 'skip' entry 'holidays:XX': unknown country 'XX'; expected an ISO 3166-1 alpha-2"),
        ('"holidays:GBR"', r"bad 'skip' entry 'holidays:GBR': unknown country 'GBR'"),
        ('"holidays:"', r"bad 'skip' entry 'holidays:': unknown country ''"),
        ('"holidays:GB-XYZ"', r"bad 'skip' entry 'holidays:GB-XYZ': GB has no subdivision 'XYZ'; it has ENG, NIR"),
        ('"holidays:IS-1"', r"bad 'skip' entry 'holidays:IS-1': IS has no subdivision '1'; it has none"),
        ("25", r"'skip' entries must be strings such as '2026-12-24', got number"),
        ("null", r"'skip' entries must be strings such as '2026-12-24', got null"),
    ],
)
def test_a_bad_entry_is_a_schedule_error_naming_it(value: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("..", r"\.\.").replace("(", r"\(")):
        parse_schedule_json(f'{{"start": "0 8 * * *", "skip": ["12-24", {value}]}}', "UTC")


@pytest.mark.parametrize(
    ("skip_value", "message"),
    [
        ('"holidays:GB"', r"'skip' must be a list of entries such as .* or the URL of one, got string"),
        ("{}", r"'skip' must be a list of entries .* got object"),
        ('"https://example.com/skip.json"', r"a 'skip' URL is fetched by the scheduler's resolver only"),
    ],
)
def test_skip_must_be_a_list_or_a_url(skip_value: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule_json(f'{{"start": "0 8 * * *", "skip": {skip_value}}}', "UTC")


def test_at_most_a_thousand_entries() -> None:
    days = [(date(2026, 1, 1) + timedelta(days=n)).isoformat() for n in range(SKIP_MAX_ENTRIES + 1)]
    assert len(skip(*days[:SKIP_MAX_ENTRIES]).dates) == SKIP_MAX_ENTRIES
    with pytest.raises(ScheduleError, match="'skip' holds 1001 entries; at most 1000"):
        parse_skip_entries(days)


def test_a_schedule_with_skip_days_is_hashable_and_an_empty_list_skips_nothing() -> None:
    one = schedule(start="0 8 * * *", skip=["holidays:GB-ENG", "12-24"])
    assert one == schedule(start="0 8 * * *", skip=["holidays:GB-ENG", "12-24"])
    assert len({one, schedule(start="0 8 * * *", skip=["holidays:GB-ENG", "12-24"])}) == 1
    assert schedule(start="0 8 * * *", skip=[]) == Schedule(start=("0 8 * * *",))


def test_the_holidays_package_is_loaded_only_for_a_holidays_entry() -> None:
    probe = (
        "import sys, ec2_powercycle as m\n"
        "for skip in (['12-25', '2026-12-24..2027-01-01'], ['holidays:US']):\n"
        "    m.parse_schedule_document({'start': '0 8 * * *', 'skip': skip}, 'UTC')\n"
        "    print('holidays' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["False", "True"], result.stderr


# --- Deciding: a time on a skipped day does not exist -----------------------------


def test_neither_a_start_nor_a_stop_fires_on_a_skipped_day() -> None:
    office = schedule(**LONDON_OFFICE, skip=["holidays:GB-ENG"])
    assert due_action(office, utc("2026-12-25T08:07:00"), WINDOW).action is None  # Christmas Day, a Friday
    assert due_action(office, utc("2026-12-25T18:07:00"), WINDOW).action is None
    assert due_action(office, utc("2026-12-28T08:07:00"), WINDOW).action is None  # Boxing Day (observed)
    assert due_action(office, utc("2026-12-29T08:07:00"), WINDOW).action is Action.START


def _ticks(first: datetime, last: datetime) -> list[datetime]:
    return [first + WINDOW * k for k in range(int((last - first) / WINDOW) + 1)]


@pytest.mark.parametrize("enforce", [False, True])
def test_office_hours_stay_stopped_through_christmas_whether_or_not_they_enforce(enforce: bool) -> None:
    office = schedule(**LONDON_OFFICE, skip=["holidays:GB-ENG"], enforce=enforce)
    ticks = _ticks(utc("2026-12-24T18:22:00"), utc("2026-12-29T07:52:00"))  # after Christmas Eve's stop
    assert {decide(due_action(office, tick, WINDOW), "stopped").outcome for tick in ticks} <= {Outcome.IDLE}


def test_enforce_looks_back_past_skipped_days_to_the_latest_time_that_exists() -> None:
    office = schedule(**LONDON_OFFICE, skip=["holidays:GB-ENG", "12-24"], enforce=True)
    due = due_action(office, utc("2026-12-28T12:00:00"), WINDOW)  # Mon: Boxing Day (observed)
    assert (due.action, due.at) == (Action.STOP, utc("2026-12-23T18:00:00"))
    assert decide(due, "running").outcome is Outcome.ACT  # someone started it over Christmas: stopped again
    assert due_action(office, utc("2026-12-29T08:07:00"), WINDOW).at == utc("2026-12-29T08:00:00")


def test_a_range_is_jumped_in_one_step_both_ways() -> None:
    pause = skip("2026-01-01..2026-12-30")
    assert latest_fire("0 8 * * *", "UTC", utc("2026-12-30T12:00:00"), pause) == utc("2025-12-31T08:00:00")
    assert next_fire("0 8 * * *", "UTC", utc("2026-01-01T00:00:00"), pause) == utc("2026-12-31T08:00:00")


def test_past_a_year_of_skipped_days_there_is_no_previous_or_next_time() -> None:
    christmas = schedule(start="0 8 25 12 *", skip=["12-25"], enforce=True)  # every time skipped
    assert due_action(christmas, utc("2027-06-30T12:00:00"), WINDOW).action is None
    assert next_fire("0 8 25 12 *", "UTC", utc("2026-12-01T00:00:00"), christmas.skip) is None
    for pause in (skip("2025-06-01..2027-06-30"), skip("2026-01-01..9999-12-31")):  # ranges jumped whole, or not
        assert latest_fire("0 8 * * *", "UTC", utc("2027-06-30T12:00:00"), pause) is None
    assert next_fire("0 8 * * *", "UTC", utc("2027-06-30T12:00:00"), skip("2026-01-01..9999-12-31")) is None


def test_a_skipped_day_across_the_spring_change_in_london() -> None:
    # Clocks go forward on Sunday 2026-03-29 at 01:00 UTC; a range around it, a daily 08:00 start.
    london = schedule(start="0 8 * * *", tz="Europe/London", skip=["2026-03-27..2026-03-30"], enforce=True)
    due = due_action(london, utc("2026-03-30T12:00:00"), WINDOW)
    assert due.at == utc("2026-03-26T08:00:00")  # 08:00 GMT
    assert next_fire("0 8 * * *", london.tz, due.at, london.skip) == utc("2026-03-31T07:00:00")  # 08:00 BST
    # 01:30 does not exist on the change day and fires at the jump, 01:00 UTC: skipping the day skips it too.
    jump = schedule(start="30 1 * * *", tz="Europe/London", skip=["03-29"])
    assert due_action(jump, utc("2026-03-29T01:07:00"), WINDOW).action is None
    assert next_fire("30 1 * * *", jump.tz, utc("2026-03-28T12:00:00"), jump.skip) == utc("2026-03-30T00:30:00")


def test_a_skipped_day_across_the_autumn_change_in_new_york() -> None:
    # 01:30 happens twice on 2026-11-01 in New York: skipped, it fires at neither.
    repeated = schedule(stop="30 1 * * *", tz="America/New_York", skip=["2026-11-01"])
    assert [tick for tick in _ticks(utc("2026-11-01T04:07:00"), utc("2026-11-01T08:07:00"))
            if due_action(repeated, tick, WINDOW).action] == []  # fmt: skip
    assert due_action(repeated, utc("2026-11-02T06:37:00"), WINDOW).at == utc("2026-11-02T06:30:00")


def test_a_holiday_is_a_day_in_the_schedules_zone_not_in_utc() -> None:
    # Waitangi Day, Friday 2026-02-06 in New Zealand (UTC+13): its 08:00 is 19:00 UTC on the 5th.
    auckland = schedule(start="0 8 * * *", tz="Pacific/Auckland", skip=["holidays:NZ"])
    assert due_action(auckland, utc("2026-02-04T19:07:00"), WINDOW).at == utc("2026-02-04T19:00:00")  # the 5th
    assert due_action(auckland, utc("2026-02-05T19:07:00"), WINDOW).action is None  # the 6th: Waitangi Day
    assert due_action(auckland, utc("2026-02-06T19:07:00"), WINDOW).at == utc("2026-02-06T19:00:00")  # the 7th


SKIPPABLE = st.sampled_from([-1, 0, 1, 2])  # days from the clock change's eve


@settings(max_examples=40, deadline=None)
@given(
    expression=st.one_of(plain_cron(), cron()),
    tz=ZONES,
    offset_seconds=st.integers(0, 24 * 3600),
    window_minutes=st.sampled_from([5, 15, 60]),
    autumn=st.booleans(),
    skipped=st.sets(SKIPPABLE, max_size=2),
)
def test_the_window_scan_and_the_walk_agree_with_the_oracle_less_the_skipped_days(
    expression: str, tz: str, offset_seconds: int, window_minutes: int, autumn: bool, skipped: set[int]
) -> None:
    fields = cron_fields(expression)
    assume(fields is None or fields.can_fire())
    window = timedelta(minutes=window_minutes)
    ticks = _ticks_across_a_clock_change(tz, autumn, offset_seconds, window)
    eve = (ticks[0] - timedelta(seconds=offset_seconds)).date()
    days = {eve + timedelta(days=n) for n in skipped}
    skip_days = parse_skip_entries([day.isoformat() for day in days])
    fired = sorted(
        moment
        for moment in _fire_times_by_brute_force(expression, tz, ticks[0], ticks[-1])
        if moment.astimezone(zone(tz)).date() not in days  # a fire's day in the zone (a jump stays in its day)
    )
    for tick in ticks[1:]:
        in_window = fired[bisect.bisect_right(fired, tick - window) : bisect.bisect_right(fired, tick)]
        assert latest_in_window(expression, tz, tick, window, skip=skip_days) == (in_window[-1] if in_window else None)
        before = fired[: bisect.bisect_right(fired, tick)]
        if before:
            assert latest_fire(expression, tz, tick, skip_days) == before[-1]


# --- A "skip" URL ----------------------------------------------------------------


def test_a_skip_url_named_by_many_schedules_is_fetched_once_per_run(
    fleet: Fleet, api: ApiRecorder, allow_server: HTTPServer
) -> None:
    allow_server.expect_request("/schedules/closed.json").respond_with_json(["holidays:GB-ENG", "2026-11-23"])
    url = allow_server.url_for("/schedules/closed.json")
    office = fleet.launch(json.dumps({**LONDON_OFFICE, "skip": url}), state="stopped", count=3)
    early = fleet.launch(json.dumps({"start": "0 8 * * *", "skip": url}), state="stopped")
    berlin = fleet.launch(json.dumps({"start": "0 9 * * *", "tz": "Europe/Berlin", "skip": url}), state="stopped")
    plain = fleet.launch(json.dumps({"start": "0 8 * * *"}), state="stopped")
    summary = handler({"time": "2026-11-23T08:07:00Z"})  # Monday the 23rd is skipped
    assert summary["started"] == plain
    assert summary["errors"] == []
    assert len(allow_server.log) == 1
    assert {fleet.state(i) for i in office + early + berlin} == {"stopped"}


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/schedules/skip.json", '["holidays:XX"]', 200, r"^'skip' list at http://\S+/schedules/skip.json: bad"),
        ("/schedules/skip.json", '{"skip": []}', 200, r"'skip' list must be a JSON array .* got object"),
        ("/schedules/skip.json", '{"SECRET": 1}', 200, r"got object$"),  # a body is named by its type, never shown
        ("/schedules/skip.json", "12-25 SECRET", 200, r"not valid JSON"),
        ("/schedules/skip.json", "[]", 404, r"answered HTTP 404, expected 200"),
        ("/other/skip.json", "[]", 200, r"refused schedule URL http://\S+/other/skip.json: only https is allowed"),
    ],
)
def test_an_unusable_skip_url_is_an_error_of_each_schedule_naming_it(
    httpserver: HTTPServer, path: str, body: str, status: int, message: str
) -> None:
    httpserver.expect_request(path).respond_with_data(body, status=status)
    url = httpserver.url_for(path)
    settings = Settings.from_env({"EC2_POWERCYCLE_URL_ALLOW": httpserver.url_for("/schedules/")}, require_regions=False)
    resolver = ScheduleResolver(settings, RunMemo())
    errors = [resolver.resolve(json.dumps({key: "0 8 * * *", "skip": url})) for key in ("start", "stop")]
    assert all(isinstance(error, ScheduleError) and re.search(message, str(error)) for error in errors), errors
    assert "SECRET" not in str(errors[0])
    assert len(httpserver.log) == (0 if path.startswith("/other/") else 1)  # remembered for the run


# --- Seen before it happens: check ---------------------------------------------------


@pytest.fixture
def check(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """`ec2-powercycle check ...` in this process (it needs no AWS): (exit code, stdout, stderr)."""
    import ec2_powercycle
    import ec2_powercycle_cli

    level = ec2_powercycle.logger.level

    def call(*argv: str) -> tuple[int, str, str]:
        code = ec2_powercycle_cli.main(["check", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    yield call
    ec2_powercycle.logger.setLevel(level)


CHRISTMAS = json.dumps({**LONDON_OFFICE, "skip": ["holidays:GB-ENG", "12-24", "2026-12-29..2026-12-31"]})


def test_check_lists_skipped_days_among_the_next_times_with_the_holidays_names(check: Callable[..., Any]) -> None:
    code, out, err = check(CHRISTMAS, "--at", "2026-12-23T19:00:00Z", "--count", "1")
    assert (code, err) == (0, "")
    listed = out[out.index("next times after") :].splitlines()[1:]
    assert [line.strip() for line in listed] == [
        "Thu 2026-12-24 12-24: skipped",
        "Fri 2026-12-25 Christmas Day: skipped",
        "Mon 2026-12-28 Boxing Day (observed): skipped",
        "Tue 2026-12-29 to Thu 2026-12-31 2026-12-29..2026-12-31: skipped (3 days)",
        "Fri 2027-01-01 New Year's Day: skipped",
        "start  Mon 2027-01-04 08:00 GMT  2027-01-04 08:00 UTC  in 11d 13h",
        "stop   Mon 2027-01-04 18:00 GMT  2027-01-04 18:00 UTC  in 11d 23h",
    ]
    assert "  skip     holidays:GB-ENG, 12-24, 2026-12-29..2026-12-31" in out


def test_check_json_gives_the_skip_entries_and_the_skipped_days(check: Callable[..., Any]) -> None:
    code, out, _ = check(CHRISTMAS, "--at", "2026-12-23T19:00:00Z", "--count", "1", "--json")
    data = json.loads(out)
    assert data["schedule"]["skip"] == ["holidays:GB-ENG", "12-24", "2026-12-29..2026-12-31"]
    assert data["skipped"][:3] == [
        {"date": "2026-12-24", "reason": "12-24"},
        {"date": "2026-12-25", "reason": "Christmas Day"},
        {"date": "2026-12-28", "reason": "Boxing Day (observed)"},
    ]
    assert [entry["time"] for entry in data["next"]] == ["2027-01-04T08:00:00Z", "2027-01-04T18:00:00Z"]
    assert (code, data["warnings"]) == (0, [])


def test_check_warns_when_an_inline_value_is_longer_than_ec2_allows(check: Callable[..., Any]) -> None:
    days = [(date(2026, 1, 5) + timedelta(days=7 * n)).isoformat() for n in range(20)]
    value = json.dumps({"start": "0 8 * * *", "skip": days})
    assert len(value) > 256
    code, _, err = check(value, "--at", "2026-01-01T00:00:00Z")
    assert code == 0
    assert err == (
        f"warning: the value is {len(value)} characters and EC2 tag values hold at most 256: "
        "put the schedule behind a URL, or its skip list behind a 'skip' URL\n"
    )
    assert check(json.dumps({"start": "0 8 * * *", "skip": days[:3]}))[2] == ""


def test_check_says_when_every_time_within_a_year_is_skipped(check: Callable[..., Any]) -> None:
    code, out, _ = check('{"start": "0 8 25 12 *", "skip": ["12-25"]}', "--at", "2026-12-01T00:00:00Z")
    assert code == 0
    assert "  Fri 2026-12-25 12-25: skipped" in out
    assert out.rstrip().endswith("no start or stop within 366 days")
