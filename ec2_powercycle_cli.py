"""ec2-powercycle's command line: check a tag value, plan what the schedules will do, run once.

Installed as the console script ``ec2-powercycle`` (``pip install .``); also
``python ec2_powercycle_cli.py`` and ``python ec2_powercycle.py``, which hand over
to it. Not shipped in the Lambda zip: the function never loads it::

    ec2-powercycle check VALUE     # validate a tag value, show its next times and skipped days
    ec2-powercycle plan            # what the schedules will do, and a week timeline
    ec2-powercycle run --at TIME   # one handler run (--dry-run, --json)
    ec2-powercycle override ID --running --for 3h   # hold instances in a state, then back to the schedule

The manual page is docs/command-line.md: each command and its options, regions,
credentials and exit codes, and how the timeline is drawn. ``plan`` decides every
instance through the handler's own ``decide_instance``, so it shows exactly what
a run at its time would do.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ec2_powercycle import (
    DEFAULT_TAG,
    OWN_ACCOUNT,
    REGIONS_SETTING,
    SKIP_HORIZON_DAYS,
    TAG_SETTING,
    TAG_VALUE_MAX_CHARS,
    TIMEZONE_SETTING,
    Action,
    ConfigError,
    Decision,
    DiscoveryError,
    Kind,
    MaintenanceWindow,
    Occurrence,
    Outcome,
    Override,
    Resource,
    RunContext,
    RunError,
    RunMemo,
    Schedule,
    ScheduleError,
    ScheduleResolver,
    Settings,
    Target,
    TargetError,
    Verdict,
    __version__,
    _describe_error,
    _iso,
    discover_targets,
    each_target,
    group_schedule_error,
    instance_resource,
    instance_tags,
    is_url,
    logger,
    next_fire,
    next_occurrences,
    occurrences,
    override_key,
    parse_instant,
    parse_override,
    read_maintenance_windows,
    read_target,
    reference_time,
    resolve_windows,
    run,
    running_hours,
    shared_aws,
    status_keys,
    tagged_instances,
    wall_to_instant,
    zone,
)

CLI_EPILOG = """\
the tag: key ec2Powercycle (EC2_POWERCYCLE_TAG), value a JSON schedule such as
    {"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5", "tz": "Europe/London"}
  with "enforce", "hibernate", "skip" days and "maintenance_windows" (kept
  running for SSM's patching), or the https:// URL of one.
  ec2Powercycle:override holds one instance until a time (the override command).

exit codes: 0 fine; 1 invalid schedule, or errors in a plan or run;
  2 usage or set-up problem.

the manual, docs/ in the source (README.md is its front page):
  docs/schedules.md     the tag: cron, zones, enforce, hibernate, skip days, overrides
  docs/command-line.md  these commands, the timeline, regions and credentials
  docs/settings.md      the EC2_POWERCYCLE_* variables, their defaults and bad values
"""
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_SETUP = 2
TIMELINE_HOURS = 7 * 24
TIMELINE_MAX_HOURS = 31 * 24
SKIPPED_LINES = 20  # skipped days `check` lists before it only counts the rest
WINDOW_OCCURRENCES = 2  # next occurrences `plan` shows of each maintenance window an instance's schedule names
_INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


@dataclass(frozen=True)
class PlanEntry:
    """One tagged instance or Auto Scaling group as `plan` shows it: what a run at the plan's time makes of it."""

    instance_id: str  # a group's name for a group
    account: str
    region: str
    name: str
    state: str
    source: str  # "inline" or "url"
    schedule: Schedule | None  # None: the scheduler will not touch it (guarded, bad schedule)
    decision: Decision
    next_start: datetime | None = None
    next_stop: datetime | None = None
    override: Override | None = None  # its override tag, when well-formed (a bad one is the decision's error)
    override_status: str | None = None  # "active", "ending" (this run's window holds `until`) or "ended"
    kind: Kind = Kind.INSTANCE
    size: str = ""  # a group's "min/desired/max" now, and what its size tag saved
    windows: tuple[MaintenanceWindow, ...] = ()  # the maintenance windows its schedule names (when they could be had)
    next_windows: tuple[Occurrence, ...] = ()  # their next occurrences, in time order
    instance_type: str = ""
    last_action: str | None = None  # its status tags (EC2_POWERCYCLE_STATUS_TAGS), when there
    status_error: str | None = None

    @property
    def untouched(self) -> str | None:
        """Why the scheduler will not touch the instance, or None."""
        return self.decision.reason if self.schedule is None else None


@dataclass(frozen=True)
class Style:
    """ANSI colour on a terminal (unless NO_COLOR is set), plain text elsewhere."""

    colour: bool = False
    running: str = "#"
    stopped: str = "."
    patching: str = "+"  # running for a maintenance window

    @classmethod
    def for_stream(cls, stream: Any) -> Style:
        colour = stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        try:
            "█·▒".encode(stream.encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            return cls(colour)
        return cls(colour, "█", "·", "▒")

    def paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.colour and text else text

    def bold(self, text: str) -> str:
        return self.paint(text, "1")

    def good(self, text: str) -> str:
        return self.paint(text, "32")

    def warn(self, text: str) -> str:
        return self.paint(text, "33")

    def bad(self, text: str) -> str:
        return self.paint(text, "31")


def upcoming_times(schedule: Schedule, after: datetime, count: int) -> list[tuple[datetime, Action]]:
    """The next `count` start times and next `count` stop times after `after`, in time order (skip days skipped)."""
    found: list[tuple[datetime, Action]] = []
    for action, expressions in ((Action.START, schedule.start), (Action.STOP, schedule.stop)):
        times: set[datetime] = set()
        for expression in expressions:
            moment: datetime | None = after
            for _ in range(count):
                moment = next_fire(expression, schedule.tz, moment, schedule.skip)  # type: ignore[arg-type]
                if moment is None:
                    break
                times.add(moment)
        found.extend((moment, action) for moment in sorted(times)[:count])
    return sorted(found)


def skipped_days(schedule: Schedule, after: datetime, until: datetime) -> list[tuple[date, str]]:
    """The days the schedule skips on which one of its times would fall in (after, until], each with why.

    Days in the schedule's zone; the why is a holiday's name or the skip entry.
    """
    skip = schedule.skip
    if not skip:
        return []
    tz = zone(schedule.tz)
    day, last = after.astimezone(tz).date(), until.astimezone(tz).date()
    found: list[tuple[date, str]] = []
    while day <= last:
        if skip.skips(day):
            begin = max(after, wall_to_instant(datetime(day.year, day.month, day.day), tz) - timedelta(microseconds=1))
            for expression in (*schedule.start, *schedule.stop):
                moment = next_fire(expression, schedule.tz, begin)
                if moment is not None and moment <= until and moment.astimezone(tz).date() == day:
                    found.append((day, skip.why(day) or "skipped"))
                    break
        day += timedelta(days=1)
    return found


def schedule_document(schedule: Schedule) -> dict[str, Any]:
    """A Schedule as JSON data (lists of expressions, zone, flags, and its skip entries or URL if it has any)."""
    document: dict[str, Any] = {
        "start": list(schedule.start),
        "stop": list(schedule.stop),
        "tz": schedule.tz,
        "enforce": schedule.enforce,
        "hibernate": schedule.hibernate,
    }
    if schedule.skip is not None:
        document["skip"] = schedule.skip.source or list(schedule.skip.entries)
    return document


def describe_cron(expression: str) -> str | None:
    """The expression in plain words ("At 08:00, Monday through Friday"), or None without cron-descriptor."""
    try:
        from cron_descriptor import ExpressionDescriptor, Options
    except ImportError:
        return None
    options = Options()
    options.use_24hour_time_format = True
    options.verbose = False
    try:
        return str(ExpressionDescriptor(expression, options).get_description())
    except Exception:  # its own parser may refuse what croniter accepts: the words are a nicety
        return None


def plan_entry(
    instance: dict[str, Any] | Resource,
    verdict: Verdict,
    target: Target,
    tag: str,
    now: datetime,
    window: timedelta = timedelta(minutes=15),
    windows: tuple[MaintenanceWindow, ...] = (),
) -> PlanEntry:
    """One instance or group, its run decision (`decide_resource`), its schedule's next times, its override and
    the next occurrences of the maintenance windows its schedule names (`windows`)."""
    resource = instance if isinstance(instance, Resource) else instance_resource(instance)
    tags = resource.tags
    schedule = verdict.schedule
    last_action_key, error_key = status_keys(tag)
    override, status = None, None
    if override_key(tag) in tags:
        try:
            override = parse_override(tags[override_key(tag)])
        except ScheduleError:
            pass  # the decision is the error
        else:
            status = "active" if now < override.until else "ending" if now - window < override.until else "ended"
    return PlanEntry(
        instance_id=str(resource.resource_id),
        account=target.account,
        region=target.region,
        name=tags.get("Name", ""),
        state=resource.state,
        source="url" if is_url(tags.get(tag, "")) else "inline",
        schedule=schedule,
        decision=verdict.decision,
        next_start=None if schedule is None else _next(schedule.start, schedule, now),
        next_stop=None if schedule is None else _next(schedule.stop, schedule, now),
        override=override,
        override_status=status,
        windows=windows,
        next_windows=upcoming_windows(windows, now, WINDOW_OCCURRENCES),
        kind=resource.kind,
        size=_group_size_words(resource),
        instance_type=str(resource.described.get("InstanceType") or "unknown")
        if resource.kind is Kind.INSTANCE
        else "",
        last_action=tags.get(last_action_key),
        status_error=tags.get(error_key),
    )


def upcoming_windows(windows: tuple[MaintenanceWindow, ...], after: datetime, count: int) -> tuple[Occurrence, ...]:
    """The next `count` occurrences of each window after `after`, in time order (none for one that cannot
    be evaluated: the decision reports it)."""
    found: list[Occurrence] = []
    for window in windows:
        try:
            found += next_occurrences(window, after, count)
        except (ScheduleError, ValueError):
            continue
    return tuple(sorted(found, key=lambda occurrence: (occurrence.start, occurrence.window.name)))


def _group_size_words(resource: Resource) -> str:
    """ "0/0/4 (saved 1/2/4)": a group's min/desired/max, and the sizes a start would restore."""
    if resource.size is None:
        return ""
    now = f"{resource.size.min}/{resource.size.desired}/{resource.size.max}"
    saved = resource.saved
    return now if saved is None else f"{now} (saved {saved.min}/{saved.desired}/{saved.max})"


def _next(expressions: tuple[str, ...], schedule: Schedule, now: datetime) -> datetime | None:
    times = (next_fire(expression, schedule.tz, now, schedule.skip) for expression in expressions)
    return min((moment for moment in times if moment is not None), default=None)


def timeline_start(now: datetime, tz_name: str) -> datetime:
    """The start of the hour containing `now` on the clocks of zone tz_name."""
    local = now.astimezone(zone(tz_name))
    return now - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)


def plan_timeline(
    entries: list[PlanEntry], start: datetime, hours: int, tz_name: str, lead: timedelta = timedelta(minutes=20)
) -> dict[str, Any]:
    """One row per distinct schedule (with the override still held in the span, and the maintenance windows
    it names) of the instances it will act on.

    Each row: running hours, stopped share, and the days its schedule skips in the span.
    An override holds its state in the hours before its `until`; the schedule's state follows. A
    maintenance window holds its instances running in the hours that meet its lead time to its end
    (`maintenance`), except where an override holds them.
    """
    users: dict[tuple[Schedule, Override | None, tuple[MaintenanceWindow, ...]], list[PlanEntry]] = {}
    for entry in entries:
        if entry.schedule is not None:
            held = entry.override if entry.override is not None and entry.override.until > start else None
            users.setdefault((entry.schedule, held, entry.windows), []).append(entry)
    types = {entry.instance_id: entry.instance_type for entry in entries if entry.kind is Kind.INSTANCE}
    rows = []
    fleet: dict[str, dict[str, int]] = {}
    ranked = sorted(users.items(), key=lambda item: -len(item[1]))  # stable: ties keep first-seen order
    end = start + timedelta(hours=hours)
    for number, ((schedule, held, windows), users_of_row) in enumerate(ranked, 1):
        instance_ids = [entry.instance_id for entry in users_of_row if entry.kind is Kind.INSTANCE]
        group_names = [entry.instance_id for entry in users_of_row if entry.kind is Kind.GROUP]
        running = running_hours(schedule, start, hours)
        patching = window_hours(windows, start, hours, lead)
        if held is not None:
            patching = [value and start + timedelta(hours=index) >= held.until for index, value in enumerate(patching)]
            running = [
                held.state == "running" if start + timedelta(hours=index) < held.until else value
                for index, value in enumerate(running)
            ]
        running = [value or patched for value, patched in zip(running, patching, strict=True)]
        stopped = running.count(False)
        by_type = instance_hours([types[i] for i in instance_ids], hours - stopped, stopped)
        for instance_type, figures in by_type.items():
            totals = fleet.setdefault(instance_type, {"running": 0, "stopped": 0})
            totals["running"] += figures["running"]
            totals["stopped"] += figures["stopped"]
        rows.append(
            {
                "id": f"S{number}",
                "schedule": schedule_document(schedule),
                "override": None if held is None else {"state": held.state, "until": _iso(held.until)},
                "maintenance_windows": [{"name": window.name, "id": window.window_id} for window in windows],
                "maintenance": patching,
                "instances": len(instance_ids),
                "instance_ids": instance_ids,
                "groups": len(group_names),
                "group_names": group_names,
                "running": running,
                "stopped_hours": stopped,
                "stopped_share": round(stopped / hours, 4),
                "instance_hours": by_type,
                "skipped": [
                    {"date": day.isoformat(), "reason": why} for day, why in skipped_days(schedule, start, end)
                ],
            }
        )
    fleet = dict(sorted(fleet.items()))
    return {"start": _iso(start), "hours": hours, "zone": tz_name, "schedules": rows, "instance_hours": fleet}


def instance_hours(instance_types: list[str], running: int, stopped: int) -> dict[str, dict[str, int]]:
    """Instance-hours running and stopped by instance type, for instances that share one row's hours."""
    counts: dict[str, int] = {}
    for instance_type in instance_types:
        counts[instance_type] = counts.get(instance_type, 0) + 1
    return {t: {"running": n * running, "stopped": n * stopped} for t, n in sorted(counts.items())}


def window_hours(
    windows: tuple[MaintenanceWindow, ...], start: datetime, hours: int, lead: timedelta
) -> list[bool]:
    """For each of `hours` hours from `start`: whether a window holds its instances running during part of it."""
    held = [False] * hours
    end = start + timedelta(hours=hours)
    for window in windows:
        try:
            found = occurrences(window, start - window.duration, end + lead)
        except (ScheduleError, ValueError):
            continue  # the decision reports it
        for occurrence in found:
            first = max(0, int((occurrence.start - lead - start) // timedelta(hours=1)))
            last = min(hours, -int(-(occurrence.end - start) // timedelta(hours=1)))  # the hour it ends in, included
            for index in range(first, last):
                held[index] = True
    return held


def plan_data(
    entries: list[PlanEntry], settings: Settings, now: datetime, timeline: dict[str, Any], problems: list[str]
) -> dict[str, Any]:
    """The plan as JSON data (`plan --json`)."""
    return {
        "time": _iso(now),
        "tag": settings.tag,
        "regions": list(settings.regions),
        "accounts": list(dict.fromkeys(entry.account for entry in entries)),
        "instances": [
            {
                "instance_id": entry.instance_id,
                **_plan_entry_data(entry),
                "instance_type": entry.instance_type,
                "status": {"last_action": entry.last_action, "error": entry.status_error},
            }
            for entry in entries
            if entry.kind is Kind.INSTANCE
        ],
        "groups": [
            {
                "group": entry.instance_id,
                **_plan_entry_data(entry),
                "size": entry.size,
                "status": {"last_action": entry.last_action, "error": entry.status_error},
            }
            for entry in entries
            if entry.kind is Kind.GROUP
        ],
        "timeline": timeline,
        "errors": problems,
    }


def _plan_entry_data(entry: PlanEntry) -> dict[str, Any]:
    return {
        "account": entry.account,
        "region": entry.region,
        "name": entry.name,
        "state": entry.state,
        "source": entry.source,
        "schedule": None if entry.schedule is None else schedule_document(entry.schedule),
        "touched": entry.untouched is None,
        "reason": entry.untouched,
        "next_start": _iso(entry.next_start) or None,
        "next_stop": _iso(entry.next_stop) or None,
        "override": _override_data(entry),
        "maintenance_windows": [
            {
                "name": window.name,
                "id": window.window_id,
                "next": [
                    {"start": _iso(occurrence.start), "end": _iso(occurrence.end)}
                    for occurrence in entry.next_windows
                    if occurrence.window == window
                ],
            }
            for window in entry.windows
        ],
        "now": {
            "outcome": entry.decision.outcome.value,
            "action": None if entry.decision.action is None else entry.decision.action.value,
            "reason": entry.decision.reason,
        },
    }


def _override_data(entry: PlanEntry) -> dict[str, str] | None:
    if entry.override is None:
        return None
    return {"state": entry.override.state, "until": _iso(entry.override.until), "status": entry.override_status or ""}


# Text output (pure: data in, lines out).


def _when(moment: datetime, tz_name: str) -> str:
    return moment.astimezone(zone(tz_name)).strftime("%a %Y-%m-%d %H:%M %Z")


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _until(moment: datetime, now: datetime) -> str:
    minutes = int((moment - now).total_seconds() // 60)
    if minutes < 1:
        return "in <1m"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"in {days}d {hours}h" if hours else f"in {days}d"
    if hours:
        return f"in {hours}h {minutes}m" if minutes else f"in {hours}h"
    return f"in {minutes}m"


def _table(rows: list[list[str]], paint: list[Callable[[str], str]] | None = None) -> list[str]:
    """Left-aligned columns two spaces apart; paint[i] colours column i after padding."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        if paint:
            cells = [colour(cell) for colour, cell in zip(paint, cells, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _schedule_words(document: dict[str, Any]) -> str:
    """A schedule_document in one line: "start 0 8 * * 1-5, stop 0 18 * * 1-5 (Europe/London, skip 12-25)"."""
    parts = [f"{key} {' or '.join(document[key])}" for key in ("start", "stop") if document[key]]
    flags = [flag for flag in ("enforce", "hibernate") if document.get(flag)]
    notes = [document["tz"], *flags, *_skip_words(document)]
    return ", ".join(parts) + f" ({', '.join(notes)})"


def _skip_words(document: dict[str, Any]) -> list[str]:
    skip = document.get("skip")
    if skip is None:
        return []
    return [f"skip {skip if isinstance(skip, str) else ', '.join(skip) or 'nothing'}"]


def _day(day: date) -> str:
    return day.strftime("%a %Y-%m-%d")


def _skipped_lines(days: list[tuple[date, str]]) -> list[tuple[date, str]]:
    """Skipped days as (first day, line), days in a row skipped for one reason in one line.

    "Mon 2026-12-28 Boxing Day (observed): skipped";
    "Tue 2026-12-29 to Thu 2026-12-31 2026-12-29..2026-12-31: skipped (3 days)".
    """
    runs: list[tuple[date, date, str, int]] = []
    for day, why in days:
        if runs and runs[-1][2] == why:
            first, _, _, count = runs[-1]
            runs[-1] = (first, day, why, count + 1)
        else:
            runs.append((day, day, why, 1))
    return [
        (first, f"{_day(first)} {why}: skipped")
        if count == 1
        else (first, f"{_day(first)} to {_day(last)} {why}: skipped ({count} days)")
        for first, last, why, count in runs
    ]


def format_check(
    schedule: Schedule, value: str, now: datetime, count: int, style: Style, tag: str = DEFAULT_TAG
) -> str:
    """A valid schedule: zone, enforce, what it does to a group, each expression in words, the next times."""
    source = "a URL" if is_url(value) else "inline JSON"
    lines = [f"{style.good('valid')} schedule ({source})", f"  zone     {schedule.tz}"]
    if schedule.enforce:
        lines.append("  enforce  true: the latest start or stop is held every run; manual changes are undone")
    else:
        lines.append("  enforce  false: each start and stop acts once; manual changes are respected")
    if schedule.hibernate:
        lines.append("  hibernate true: stops hibernate instances configured for it, others stop normally")
    group_error = group_schedule_error(schedule, tag)
    if group_error:
        lines.append("  groups   " + style.warn(f"refused for an Auto Scaling group: {group_error}"))
    else:
        lines.append(f"  groups   a tagged Auto Scaling group scales to zero at a stop ({tag}:size saves its sizes)")
    width = max(len(expression) for expression in (*schedule.start, *schedule.stop))
    for key, expressions in (("start", schedule.start), ("stop", schedule.stop)):
        if not expressions:
            lines.append(f"  {key:<7}  none")
        for expression in expressions:
            words = describe_cron(expression)
            lines.append(f"  {key:<7}  {expression:<{width}}  {words or ''}".rstrip())
    if schedule.skip is not None:
        lines.extend(f"  {line}" for line in _skip_summary(schedule))
    lines.append("")
    lines.append(f"next times after {_utc(now)}:")
    times = upcoming_times(schedule, now, count)
    rows = [[action.value, _when(moment, schedule.tz), _utc(moment), _until(moment, now)] for moment, action in times]
    # A skipped day has no time of its own: its line goes between the times around it (a day sorts before its times).
    tz = zone(schedule.tz)
    table = _table(rows) if rows else []
    merged = [((moment.astimezone(tz).date(), 1), line) for (moment, _), line in zip(times, table, strict=True)]
    skipped = _skipped_lines(skipped_days(schedule, now, _skip_listing_end(times, now)))
    merged += [((day, 0), style.warn(line)) for day, line in skipped[:SKIPPED_LINES]]
    lines.extend("  " + line for _, line in sorted(merged, key=lambda item: item[0]))
    if len(skipped) > SKIPPED_LINES:
        lines.append(f"  ... and {len(skipped) - SKIPPED_LINES} more lines of skipped days")
    if not times:
        lines.append(f"  no start or stop within {SKIP_HORIZON_DAYS} days")
    return "\n".join(lines)


def _skip_listing_end(times: list[tuple[datetime, Action]], now: datetime) -> datetime:
    """Skipped days are listed up to the last time shown, or for a year when there is none."""
    return times[-1][0] if times else now + timedelta(days=SKIP_HORIZON_DAYS)


def _skip_summary(schedule: Schedule) -> list[str]:
    skip = schedule.skip
    assert skip is not None
    if skip.source:
        return [f"skip     {skip.source} ({len(skip.entries)} entries)"]
    return [f"skip     {', '.join(skip.entries) or 'nothing'}"]


def format_plan(
    entries: list[PlanEntry], settings: Settings, now: datetime, timeline: dict[str, Any], style: Style
) -> str:
    """The instance table and the group table (with why each is left alone), then the timeline."""
    regions = ", ".join(settings.regions)
    instances = [entry for entry in entries if entry.kind is Kind.INSTANCE]
    groups = [entry for entry in entries if entry.kind is Kind.GROUP]
    lines = [style.bold(f"Plan at {_utc(now)}: {len(instances)} instances tagged {settings.tag} in {regions}")]
    many = (len(settings.regions) > 1, len({entry.account for entry in entries}) > 1)
    lines += _plan_table(instances, ["NAME", "INSTANCE"], now, many, style)
    if groups:
        lines += ["", style.bold(f"{len(groups)} Auto Scaling groups tagged {settings.tag}")]
        lines += _plan_table(groups, ["GROUP"], now, many, style)
    lines.append("")
    lines.extend(format_timeline(timeline, style))
    return "\n".join(lines)


def _plan_table(
    entries: list[PlanEntry], first: list[str], now: datetime, many: tuple[bool, bool], style: Style
) -> list[str]:
    """One table of plan entries (instances, or groups with their sizes), each followed by its notes."""
    many_regions, many_accounts = many
    is_group = first == ["GROUP"]
    header = [*first, *(["ACCOUNT"] if many_accounts else []), *(["REGION"] if many_regions else [])]
    header += [
        "STATE",
        *(["SIZE (MIN/DESIRED/MAX)"] if is_group else []),
        "SCHEDULE",
        "ZONE",
        "NEXT START",
        "NEXT STOP",
    ]
    rows = [header]
    for entry in entries:
        schedule = entry.schedule
        times = [
            "-"
            if schedule is None
            else "none"
            if moment is None
            else f"{_when(moment, schedule.tz)} ({_until(moment, now)})"
            for moment in (entry.next_start, entry.next_stop)
        ]
        zone_name = "-" if schedule is None else schedule.tz
        where = [*([entry.account] if many_accounts else []), *([entry.region] if many_regions else [])]
        names = [entry.instance_id] if is_group else [entry.name or "-", entry.instance_id]
        sizes = [entry.size] if is_group else []
        rows.append([*names, *where, entry.state, *sizes, entry.source, zone_name, *times])
    table = _table(rows) if entries else []
    lines = ["", style.bold(table[0])] if table else []
    for entry, line in zip(entries, table[1:], strict=True):
        lines.append(line)
        if entry.override is not None:
            lines.append("    " + style.warn(_override_words(entry, now)))
        if entry.schedule is not None:
            lines.extend("    " + line for line in _window_lines(entry, now))


        if entry.last_action is not None:
            lines.append(f"    last action: {_printable(entry.last_action)}")
        if entry.status_error is not None:
            lines.append("    " + style.bad(f"last error: {_printable(entry.status_error)}"))
        if entry.untouched:
            lines.append("    " + style.warn(f"not touched: {entry.untouched}"))
        elif entry.decision.outcome is not Outcome.IDLE:
            mark = {Outcome.ACT: style.good, Outcome.SKIP: style.warn, Outcome.LEFT: style.warn}.get(
                entry.decision.outcome, style.bad
            )
            lines.append("    " + mark(f"a run now: {entry.decision.reason}"))
    return lines


def _window_lines(entry: PlanEntry, now: datetime) -> list[str]:
    """ "maintenance window 'patch-tuesday' (mw-...): Tue 2026-12-08 02:00 UTC to 04:00 (in 1d 2h), ..." """
    assert entry.schedule is not None
    lines = []
    for window in entry.windows:
        times = [
            f"{_when(occurrence.start, entry.schedule.tz)} to "
            f"{occurrence.end.astimezone(zone(entry.schedule.tz)):%H:%M} ({_until(occurrence.start, now)})"
            for occurrence in entry.next_windows
            if occurrence.window == window
        ]
        lines.append(f"maintenance window {window}: {', '.join(times) or 'no occurrence within a year'}")
    return lines


def _printable(text: str) -> str:
    """A tag's value for a terminal: control characters (escape sequences) shown as '?'."""
    return "".join(character if character.isprintable() else "?" for character in text)


def _override_words(entry: PlanEntry, now: datetime) -> str:
    """ "override: running until Tue 2026-11-24 02:00 UTC (active, ends in 19h)", or how it ended."""
    override = entry.override
    assert override is not None
    words = f"override: {override.state} until {_utc(override.until)}"
    if entry.override_status == "active":
        return f"{words} (active, ends {_until(override.until, now)})"
    if entry.override_status == "ending":
        return f"{words} (ended in this run's window: a run now applies the schedule's state at that time)"
    return f"{words} (ended: ignored)"


def format_timeline(timeline: dict[str, Any], style: Style) -> list[str]:
    """A day ruler, one shaded row per schedule with its stopped share, then what each row's schedule is."""
    rows = timeline["schedules"]
    if not rows:
        return ["No schedule to show: no instance the scheduler will act on."]
    start = datetime.fromisoformat(timeline["start"].replace("Z", "+00:00"))
    tz = zone(timeline["zone"])
    hours = timeline["hours"]
    lines = [
        style.bold(
            f"Timeline from {_when(start, timeline['zone'])}, one column per hour "
            f"({style.running} running, {style.stopped} stopped"
            + (f", {style.patching} running for a maintenance window)" if any(_patched(row) for row in rows) else ")")
        )
    ]
    labels = [
        f"{row['id']}  {row['instances']} instance{'s' if row['instances'] != 1 else ''}"
        + (f", {row['groups']} group{'s' if row['groups'] != 1 else ''}" if row.get("groups") else "")
        for row in rows
    ]
    margin = max(len(label) for label in labels) + 2
    ruler = [" "] * hours
    free = 0
    for index in range(hours):
        local = (start + timedelta(hours=index)).astimezone(tz)
        if (index == 0 or local.hour == 0) and index >= free:
            text = local.strftime("%a %d")
            ruler[index : index + len(text)] = text
            free = index + len(text) + 1
    lines.append(" " * margin + "".join(ruler[:hours]).rstrip())
    for label, row in zip(labels, rows, strict=True):
        patched = row.get("maintenance") or [False] * len(row["running"])
        shading = "".join(
            style.warn(style.patching) if patching else style.good(style.running) if running else style.stopped
            for running, patching in zip(row["running"], patched, strict=True)
        )
        share = f"{row['stopped_share']:.0%} stopped ({row['stopped_hours']} of {hours} h)"
        lines.append(f"{label.ljust(margin)}{shading}  {share}")
    lines.append("")
    for row in rows:
        override = row.get("override")
        held = "" if override is None else f"; override {override['state']} until {override['until']}"
        named = [f"'{window['name']}' ({window['id']})" for window in row.get("maintenance_windows", ())]
        patching = f"; maintenance windows {', '.join(named)}" if named else ""
        lines.append(f"{row['id']}  {_schedule_words(row['schedule'])}{held}{patching}")
        skipped = _skipped_lines([(date.fromisoformat(day["date"]), day["reason"]) for day in row.get("skipped", ())])
        lines.extend(f"{' ' * (len(row['id']) + 2)}{style.warn(line)}" for _, line in skipped)
        lines.append(f"{' ' * (len(row['id']) + 2)}instance-hours: {_hours_words(row['instance_hours'])}")
    lines += ["", f"Fleet, instance-hours over {hours} h: {_hours_words(timeline['instance_hours'])}"]
    return lines


def _patched(row: dict[str, Any]) -> bool:
    return any(row.get("maintenance") or ())


def _hours_words(by_type: Mapping[str, Mapping[str, int]]) -> str:
    """ "t3.micro 100 running, 236 stopped; m5.large 50 running, 118 stopped" (and the total, for several types)."""
    words = [f"{t} {h['running']} running, {h['stopped']} stopped" for t, h in by_type.items()]
    if len(by_type) > 1:
        running = sum(h["running"] for h in by_type.values())
        stopped = sum(h["stopped"] for h in by_type.values())
        words.append(f"in all {running} running, {stopped} stopped")
    return "; ".join(words)


def format_run(summary: dict[str, Any], labels: Mapping[str, tuple[str, str]], style: Style) -> str:
    """The run summary as a table; labels maps instance IDs to (Name tag, region) where known."""
    start = datetime.fromisoformat(summary["window_start"].replace("Z", "+00:00"))
    now = datetime.fromisoformat(summary["time"].replace("Z", "+00:00"))
    dry = " (dry run: nothing changed)" if summary["dry_run"] else ""
    lines = [
        style.bold(
            f"Run at {_utc(now)}, window {start:%H:%M} to {now:%H:%M} UTC, {', '.join(summary['regions'])}: "
            f"{summary['instances']} tagged instances"
            + (f", {summary['groups']} tagged groups" if summary.get("groups") else "")
            + dry
        )
    ]
    many_regions = len(summary["regions"]) > 1
    rows: list[list[str]] = []
    paint: list[Callable[[str], str]] = []

    def add(what: str, colour: Callable[[str], str], instance_id: str | None, region: str, note: str) -> None:
        name, known_region = labels.get(instance_id or "", ("", ""))
        row = [what, name or "-", instance_id or "-"]
        rows.append([*row, *([region or known_region or "-"] if many_regions else []), note])
        paint.append(colour)

    unchanged = "dry run: left as it is" if summary["dry_run"] else ""
    for instance_id in summary["started"]:
        add("started", style.good, instance_id, "", unchanged)
    for instance_id in summary["stopped"]:
        add("stopped", style.good, instance_id, "", unchanged)
    for what, key, note in (
        ("started", "groups_started", "group restored to its saved sizes"),
        ("stopped", "groups_stopped", "group scaled to zero"),
    ):
        for entry in summary.get(key, ()):
            add(what, style.good, _group_label(entry), entry["region"], unchanged or note)
    for entry in summary["skipped"]:
        add("skipped", style.warn, _group_label(entry) or entry["instance_id"], entry["region"], entry["reason"])
    for entry in summary["errors"]:
        add("failed", style.bad, _group_label(entry) or entry["instance_id"], entry["region"], entry["error"])
    if rows:
        header = ["WHAT", "NAME", "INSTANCE", *(["REGION"] if many_regions else []), "NOTE"]
        table = _table([header, *rows])
        lines.append(style.bold(table[0]))
        lines.extend(colour(line) for colour, line in zip(paint, table[1:], strict=True))
    else:
        lines.append("nothing due")
    counts = [(len(summary["started"]), "started"), (len(summary["stopped"]), "stopped")]
    counts += [(len(summary["skipped"]), "skipped"), (len(summary["errors"]), "failed")]
    lines.append(", ".join(f"{number} {word}" for number, word in counts))
    if summary.get("groups"):
        started, stopped = len(summary["groups_started"]), len(summary["groups_stopped"])
        lines.append(f"groups: {started} started, {stopped} stopped of {summary['groups']} tagged")
    return "\n".join(lines)


def _group_label(entry: Mapping[str, Any]) -> str | None:
    """ "group web" for an entry about an Auto Scaling group, else None."""
    return f"group {entry['group']}" if entry.get("group") else None


# Edges of the command line: settings, AWS set-up, commands.


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _cli_time(text: str | None) -> datetime:
    try:
        return reference_time({"time": text})
    except ConfigError as err:
        raise ConfigError(f"--at: {err}") from err


def _cli_settings(args: Any, *, aws: bool) -> Settings:
    """Settings.from_env with the command's flags on top; for AWS commands, checked regions and credentials."""
    settings = Settings.from_env(require_regions=False)
    changes: dict[str, Any] = {}
    if getattr(args, "tag", None) is not None:
        tag = args.tag.strip()
        if not tag or len(tag) > 128:
            raise ConfigError(f"--tag must be a tag key of 1 to 128 characters, got {args.tag!r}")
        changes["tag"] = tag
    if getattr(args, "dry_run", False):
        changes["dry_run"] = True
    if aws:
        if args.endpoint_url:
            parts = urlsplit(args.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(f"--endpoint-url must be an http(s) URL, got {args.endpoint_url!r}")
            os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url  # read by every client made from here on
        session = boto3.session.Session()
        changes["regions"] = _cli_regions(args.region or list(settings.regions), session)
        if args.region:
            changes["all_regions"] = False  # the regions asked for, not every enabled one
        if session.get_credentials() is None:
            raise ConfigError(
                "no AWS credentials: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "or run where a role provides them"
            )
    return replace(settings, **changes)


def _cli_regions(requested: list[str], session: Any) -> tuple[str, ...]:
    regions = [name.strip() for item in requested for name in item.split(",") if name.strip()]
    if not regions and session.region_name:
        regions = [session.region_name]  # the profile's region in ~/.aws/config
    if not regions:
        raise ConfigError(f"no region: pass --region, or set {REGIONS_SETTING}, AWS_REGION or AWS_DEFAULT_REGION")
    known = {
        name
        for partition in session.get_available_partitions()
        for name in session.get_available_regions("ec2", partition)
    }
    for name in regions:
        if name not in known:
            raise ConfigError(f"unknown region {name!r}; expected an EC2 region name such as 'eu-west-1'")
    return tuple(dict.fromkeys(regions))


def _check_command(args: Any, style: Style) -> int:
    settings = _cli_settings(args, aws=False)
    now = _cli_time(args.at)
    value = sys.stdin.read() if args.value == "-" else args.value
    schedule = ScheduleResolver(settings).resolve(value)
    if isinstance(schedule, ScheduleError):
        if args.json:
            _print_json({"valid": False, "error": str(schedule)})
        else:
            print(f"{style.bad('invalid')}: {schedule}", file=sys.stderr)
        return EXIT_PROBLEMS
    warnings = []
    if not is_url(value) and len(value.strip()) > TAG_VALUE_MAX_CHARS:
        warnings.append(
            f"the value is {len(value.strip())} characters and EC2 tag values hold at most {TAG_VALUE_MAX_CHARS}: "
            "put the schedule behind a URL, or its skip list behind a 'skip' URL"
        )
    patching = check_windows(schedule, args, settings) if schedule.maintenance_windows else None
    if args.json:
        expressions = [*schedule.start, *schedule.stop]
        times = upcoming_times(schedule, now, args.count)
        _print_json(
            {
                "valid": True,
                "source": "url" if is_url(value) else "inline",
                "schedule": schedule_document(schedule),
                "words": {expression: describe_cron(expression) for expression in expressions},
                "after": _iso(now),
                "next": [
                    {
                        "action": action.value,
                        "time": _iso(moment),
                        "local": moment.astimezone(zone(schedule.tz)).isoformat(),
                    }
                    for moment, action in times
                ],
                "skipped": [
                    {"date": day.isoformat(), "reason": why}
                    for day, why in skipped_days(schedule, now, _skip_listing_end(times, now))
                ],
                "warnings": warnings,
                "groups": {
                    "valid": group_schedule_error(schedule, settings.tag) is None,
                    "error": group_schedule_error(schedule, settings.tag),
                },
                **({} if patching is None else {"maintenance_windows": _windows_data(patching, now, args.count)}),
            }
        )
    elif not args.quiet:
        print(format_check(schedule, value, now, args.count, style, settings.tag))
        if patching is not None:
            print(f"\n{format_check_windows(patching, schedule, now, args.count, style)}")
    for warning in [] if args.json else warnings:
        print(f"{style.warn('warning')}: {warning}", file=sys.stderr)
    if patching is not None and patching.error:
        print(f"{style.bad('invalid')}: {patching.error}", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


@dataclass(frozen=True)
class CheckedWindows:
    """What `check` learned of the maintenance windows a schedule names."""

    region: str | None
    windows: tuple[MaintenanceWindow, ...] = ()
    unread: str | None = None  # why they were not read (no AWS access): the value may still be right
    error: str | None = None  # they were read, and the schedule's names do not work (the instances' error)


def check_windows(schedule: Schedule, args: Any, settings: Settings) -> CheckedWindows:
    """Read the windows the schedule names in --region (else the settings' or the profile's region) as a run
    reads them, or say why they could not be read."""
    session = boto3.session.Session()
    regions = [name.strip() for name in args.region or () if name.strip()] or list(settings.regions)
    region = regions[0] if regions else session.region_name
    if not region:
        return CheckedWindows(None, unread=f"no region (pass --region, or set {REGIONS_SETTING} or AWS_REGION)")
    if session.get_credentials() is None:
        return CheckedWindows(region, unread="no AWS credentials")
    try:
        records = read_maintenance_windows(session.client("ssm", region_name=region))
    except (ClientError, BotoCoreError) as err:
        return CheckedWindows(region, unread=_describe_error(err))
    try:
        return CheckedWindows(region, resolve_windows(schedule.maintenance_windows, records))
    except ScheduleError as err:
        return CheckedWindows(region, error=f"maintenance_windows in {region}: {err}")


def _check_window_times(checked: CheckedWindows, now: datetime, count: int) -> list[tuple[MaintenanceWindow, Any]]:
    """Each window with its next occurrences, or the ScheduleError saying why they cannot be known."""
    found: list[tuple[MaintenanceWindow, Any]] = []
    for window in checked.windows:
        try:
            found.append((window, next_occurrences(window, now, count)))
        except (ScheduleError, ValueError) as err:
            found.append((window, err))
    return found


def format_check_windows(checked: CheckedWindows, schedule: Schedule, now: datetime, count: int, style: Style) -> str:
    """The maintenance windows a schedule names: each window's next occurrences (the lead time before each)."""
    names = ", ".join(schedule.maintenance_windows)
    if checked.unread is not None:
        where = f" in {checked.region}" if checked.region else ""
        return style.warn(f"maintenance windows {names}: not read{where} ({checked.unread}); a run reads them")
    if checked.error is not None:
        return style.bad(f"maintenance windows {names}: {checked.error}")
    lines = [f"maintenance windows (read in {checked.region}; instances run from the lead time before each):"]
    for window, times in _check_window_times(checked, now, count):
        enabled = "" if window.enabled else ", disabled: keeps nothing running"
        lines.append(f"  {window}  {window.schedule} ({window.tz}, {_hours(window.duration)}{enabled})")
        if isinstance(times, Exception):
            lines.append("    " + style.bad(str(times)))
            continue
        rows = [
            [
                "window",
                _when(occurrence.start, schedule.tz),
                _utc(occurrence.start),
                _until(occurrence.start, now),
                f"to {occurrence.end.astimezone(zone(schedule.tz)):%H:%M}",
            ]
            for occurrence in times
        ]
        lines.extend(f"    {line}" for line in (_table(rows) if rows else ["no occurrence within a year"]))
    return "\n".join(lines)


def _hours(duration: timedelta) -> str:
    hours = int(duration.total_seconds() // 3600)
    return f"{hours} hour{'s' if hours != 1 else ''}"


def _windows_data(checked: CheckedWindows, now: datetime, count: int) -> dict[str, Any]:
    return {
        "region": checked.region,
        "read": checked.unread is None,
        "note": checked.unread,
        "error": checked.error,
        "windows": [
            {
                "name": window.name,
                "id": window.window_id,
                "schedule": window.schedule,
                "tz": window.tz,
                "enabled": window.enabled,
                "next": []
                if isinstance(times, Exception)
                else [{"start": _iso(occurrence.start), "end": _iso(occurrence.end)} for occurrence in times],
                **({"error": str(times)} if isinstance(times, Exception) else {}),
            }
            for window, times in _check_window_times(checked, now, count)
        ],
    }


def _read_region(region: str, ec2: Any, settings: Settings) -> list[dict[str, Any]] | str:
    """The tagged instances of a region (the handler's paging and filters), or why they cannot be read."""
    try:
        return list(tagged_instances(ec2, settings.tag))
    except (ClientError, BotoCoreError) as err:
        return f"cannot read instances in {region}: {err}"


def survey(target: Target, context: RunContext) -> tuple[list[PlanEntry], str | None]:
    """A target's plan entries, decided as a run at the context's time would, or why it cannot be read."""
    entries: list[PlanEntry] = []
    tag, now, window = context.settings.tag, context.now, context.settings.window

    def visit(resource: Resource, verdict: Verdict) -> None:
        schedule = verdict.schedule
        named = schedule.maintenance_windows if schedule else ()
        windows = context.named_windows(target, named) if named else ()  # read while deciding: no second call
        usable = () if isinstance(windows, str) else windows
        entries.append(plan_entry(resource, verdict, target, tag, now, window, usable))

    try:
        reading = read_target(target, context, visit)
    except TargetError as err:
        return entries, f"{target}: {err}"
    return entries, f"{target}: {reading.groups_problem}" if reading.groups_problem else None


def _plan_command(args: Any, style: Style) -> int:
    settings = _cli_settings(args, aws=True)
    now = _cli_time(args.at)
    tz_name = args.tz or settings.timezone
    try:
        zone(tz_name)
    except ScheduleError as err:
        raise ConfigError(f"--tz: {err}") from err
    context = RunContext(settings, now, shared_aws())  # the run's targets, clients and decision path
    try:
        discovery = discover_targets(settings, OWN_ACCOUNT, context.aws, context.memo)
        surveyed = each_target(discovery.targets, lambda target: survey(target, context), settings.max_workers)
    finally:
        context.close()  # the threads of its URL fetching, as a run's
    surveyed += [([], error["error"]) for failure in discovery.failures for error in failure.error_entries()]
    problems = [problem for _, problem in surveyed if problem]
    entries = sorted(
        (entry for target_entries, _ in surveyed for entry in target_entries),
        key=lambda entry: (entry.account, entry.region, entry.name, entry.instance_id),
    )
    timeline = plan_timeline(entries, timeline_start(now, tz_name), args.hours, tz_name, settings.maintenance_lead)
    if args.json:
        _print_json(plan_data(entries, settings, now, timeline, problems))
    elif len(problems) < len(surveyed):
        print(format_plan(entries, settings, now, timeline, style))
    for problem in problems:
        print(f"ec2-powercycle: error: {problem}", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


def _instance_labels(regions: list[str], settings: Settings) -> dict[str, tuple[str, str]]:
    """Instance ID -> (Name tag, region) of the tagged instances, for the run table; best effort."""
    labels: dict[str, tuple[str, str]] = {}
    aws, memo = shared_aws(), RunMemo()  # the clients the run has just used: no new session
    for region in regions:
        instances = _read_region(region, aws.ec2(Target(OWN_ACCOUNT, region), settings, memo), settings)
        for instance in instances if isinstance(instances, list) else ():
            labels[instance["InstanceId"]] = (instance_tags(instance).get("Name", ""), region)
    return labels


def _run_command(args: Any, style: Style) -> int:
    settings = _cli_settings(args, aws=True)
    now = _cli_time(args.at)
    failure = None
    try:
        summary = run(settings, now)
    except RunError as err:
        if err.summary is None:
            raise
        summary, failure = err.summary, str(err)
    if args.json:
        _print_json(summary)
    else:
        failed_regions = {entry["region"] for entry in summary["errors"] if entry["instance_id"] is None}
        readable = [region for region in summary["regions"] if region not in failed_regions]
        print(format_run(summary, _instance_labels(readable, settings), style))
    if failure:
        print(f"ec2-powercycle: error: {failure}", file=sys.stderr)
    return EXIT_PROBLEMS if summary["errors"] else EXIT_OK


def override_value(state: str, until: datetime) -> str:
    """The override tag's value, as the scheduler reads it: {"state": ..., "until": "...Z"}."""
    value = json.dumps({"state": state, "until": _iso(until)})
    parse_override(value)  # what is written is what the scheduler accepts
    return value


def parse_duration(text: str) -> timedelta:
    """'90m', '3h', '1d12h', '2h30m': a positive duration in days, hours and minutes."""
    found = _DURATION.match(text.strip().lower())
    if not text.strip() or not found:
        raise ConfigError(f"--for must be a duration such as 90m, 3h, 1d or 1d12h, got {text!r}")
    days, hours, minutes = (int(part or 0) for part in found.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes)
    if duration <= timedelta(0):
        raise ConfigError(f"--for must be longer than zero, got {text!r}")
    return duration


def _override_until(args: Any, now: datetime) -> datetime:
    if args.until is not None:
        try:
            until = parse_instant(args.until, "--until")
        except ScheduleError as err:
            raise ConfigError(str(err)) from err
    else:
        until = now.replace(microsecond=0) + parse_duration(args.duration)
    if until <= now:
        raise ConfigError(f"--until {_iso(until)} is not after now ({_iso(now)}): the override would be over already")
    return until


def _override_command(args: Any, style: Style) -> int:
    """Write (or with --clear remove) the override tag on instances that carry the schedule tag."""
    if args.clear and (args.state or args.until or args.duration):
        raise ConfigError("--clear takes no --running, --stopped, --until or --for")
    if not args.clear and not (args.state and (args.until or args.duration)):
        raise ConfigError("override needs --running or --stopped, and --until TIME or --for DURATION (or --clear)")
    bad_ids = [instance_id for instance_id in args.instance_ids if not _INSTANCE_ID.match(instance_id)]
    if bad_ids:
        raise ConfigError(f"not an instance ID: {bad_ids[0]!r}; expected such as i-0123456789abcdef0")
    settings = _cli_settings(args, aws=True)
    if len(settings.regions) != 1:
        regions = ", ".join(settings.regions)
        raise ConfigError(f"override works in one region at a time; pass one --region (got {regions})")
    key = override_key(settings.tag)
    if len(key) > 128:
        raise ConfigError(f"the override tag key {key!r} is longer than EC2's 128 characters: use a shorter --tag")
    now = _cli_time(args.at)
    value = None if args.clear else override_value(args.state, _override_until(args, now))
    region = settings.regions[0]
    context = RunContext(settings, now, shared_aws())  # the session, endpoint and clients of plan and run
    ids = list(dict.fromkeys(args.instance_ids))
    written: list[str] = []
    problems: list[str] = []
    found: dict[str, dict[str, str]] = {}
    try:
        ec2 = context.aws.ec2(Target(OWN_ACCOUNT, region), settings, context.memo)
        found = {
            instance["InstanceId"]: instance_tags(instance)
            for page in ec2.get_paginator("describe_instances").paginate(
                Filters=[{"Name": "instance-id", "Values": ids}]
            )
            for reservation in page.get("Reservations", ())
            for instance in reservation.get("Instances", ())
        }
        for instance_id in ids:
            if instance_id not in found:
                problems.append(f"{instance_id}: no such instance in {region}")
            elif settings.tag not in found[instance_id]:
                problems.append(f"{instance_id}: not scheduled (no {settings.tag} tag): an override would mean nothing")
            else:
                written.append(instance_id)
        if written and value is None:
            ec2.delete_tags(Resources=written, Tags=[{"Key": key}])
        elif written:
            ec2.create_tags(Resources=written, Tags=[{"Key": key, "Value": value}])
    except (ClientError, BotoCoreError) as err:
        problems.append(f"cannot {'remove' if value is None else 'write'} tag {key}: {_describe_error(err)}")
        written = []
    if args.json:
        _print_json({"tag": key, "value": value, "region": region, "instances": written, "errors": problems})
    else:
        print(format_override(key, value, written, found, now, style))
    for problem in problems:
        print(f"ec2-powercycle: error: {problem}", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


def format_override(
    key: str, value: str | None, written: list[str], tags: Mapping[str, Mapping[str, str]], now: datetime, style: Style
) -> str:
    """What `override` did: the tag and the instances it is on (or was removed from)."""
    if not written:
        return "nothing written"
    plural = "s" if len(written) != 1 else ""
    if value is None:
        lines = [style.bold(f"override removed from {len(written)} instance{plural} (tag {key}); the schedule decides")]
    else:
        override = parse_override(value)
        lines = [
            style.bold(f"override written to {len(written)} instance{plural}: {key} = {value}"),
            f"held {override.state} until {_utc(override.until)} ({_until(override.until, now)}), "
            "then the schedule's state at that time is applied once",
        ]
    rows = [[instance_id, tags.get(instance_id, {}).get("Name", "") or "-"] for instance_id in written]
    lines.extend("  " + line for line in _table(rows))
    return "\n".join(lines)


def _cli_parser() -> Any:

    def hours(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= TIMELINE_MAX_HOURS:
            raise argparse.ArgumentTypeError(f"expected a whole number of hours from 1 to {TIMELINE_MAX_HOURS}")
        return int(text)

    def count(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= 100:
            raise argparse.ArgumentTypeError("expected a whole number from 1 to 100")
        return int(text)

    formatter = argparse.RawDescriptionHelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON data instead of text")
    common.add_argument("-v", "--verbose", action="store_true", help="log what the scheduler does to stderr")
    at = argparse.ArgumentParser(add_help=False)
    at.add_argument("--at", metavar="TIME", help="the reference time, ISO 8601 such as 2026-11-23T08:00:00Z (now)")
    aws = argparse.ArgumentParser(add_help=False)
    aws.add_argument(
        "--region",
        action="append",
        metavar="R",
        help=f"a region to read (repeatable; default {REGIONS_SETTING}, AWS_REGION or the profile's region)",
    )
    aws.add_argument("--endpoint-url", metavar="URL", help="another EC2 endpoint, such as a local emulator")
    aws.add_argument("--tag", metavar="KEY", help=f"the tag key (default {TAG_SETTING}, else {DEFAULT_TAG})")

    parser = argparse.ArgumentParser(
        prog="ec2-powercycle",
        description="Start and stop EC2 instances on cron schedules in a tag: "
        "check a tag value, plan what the schedules will do, run the scheduler once.",
        epilog=CLI_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, parents: list[Any], summary: str, description: str) -> Any:
        sub = commands.add_parser(
            name, parents=parents, help=summary, description=description, epilog=CLI_EPILOG, formatter_class=formatter
        )
        return sub

    check = command(
        "check",
        [common, at],
        "validate a tag value and show its next start and stop times",
        "Validate a tag value exactly as the scheduler does (same errors); when valid, show each "
        "cron expression in words and the next start and stop times in the schedule's zone and UTC.",
    )
    check.add_argument("value", metavar="VALUE", help="the tag value: inline JSON or a URL; - reads standard input")
    check.add_argument("--count", type=count, default=3, help="how many next start and stop times to show (3)")
    check.add_argument("-q", "--quiet", action="store_true", help="print nothing when valid: the exit code tells")
    check.add_argument(
        "--region",
        action="append",
        metavar="R",
        help="where to read the maintenance windows the value names (default "
        f"{REGIONS_SETTING}, AWS_REGION or the profile's region); read only when it names some",
    )
    check.set_defaults(command=_check_command)

    plan = command(
        "plan",
        [common, at, aws],
        "show what the schedules will do to the tagged instances and groups, and a week timeline",
        "Read the tagged instances and Auto Scaling groups as a run does and show, per instance and per "
        "group (with its sizes), its schedule, the next start and stop, and why it will not be touched; "
        "then a timeline, one row per distinct schedule, "
        "shaded where the schedule keeps instances running (the state set by the latest start or stop "
        "at or before each hour).",
    )
    plan.add_argument("--hours", type=hours, default=TIMELINE_HOURS, help="timeline length in hours (168, a week)")
    plan.add_argument("--tz", metavar="ZONE", help=f"time zone of the timeline (default {TIMEZONE_SETTING}, else UTC)")
    plan.set_defaults(command=_plan_command)

    run_parser = command(
        "run",
        [common, at, aws],
        "run the scheduler once, as the Lambda function does",
        "One scheduling run at TIME through the handler's code: starts and stops what is due and "
        "prints what was started, stopped, skipped and failed, instances and groups (--json: the summary the "
        "handler returns).",
    )
    run_parser.add_argument("--dry-run", action="store_true", help="decide and report, change nothing")
    run_parser.set_defaults(command=_run_command)

    override = command(
        "override",
        [common, at, aws],
        "hold instances running or stopped until a time, then hand them back to their schedule",
        "Write the override tag (the schedule tag's key plus ':override') on scheduled instances: each run "
        "before TIME starts or stops them into the state and skips their scheduled actions; the run whose "
        "window holds TIME applies the schedule's state at TIME once. --clear removes the tag: the schedule "
        "decides again from its next time. Uses your credentials (see iam/override-policy.json), one region.",
    )
    override.add_argument("instance_ids", nargs="+", metavar="INSTANCE_ID", help="instances carrying the schedule tag")
    held = override.add_mutually_exclusive_group()
    held.add_argument("--running", dest="state", action="store_const", const="running", help="hold them running")
    held.add_argument("--stopped", dest="state", action="store_const", const="stopped", help="hold them stopped")
    held.add_argument("--clear", action="store_true", help="remove the override tag")
    until = override.add_mutually_exclusive_group()
    until.add_argument("--until", metavar="TIME", help="until this ISO-8601 time with Z or an offset")
    until.add_argument("--for", dest="duration", metavar="DURATION", help="for 90m, 3h, 1d12h ... from now (--at)")
    override.set_defaults(command=_override_command)
    return parser


def _cli_logging(verbose: bool) -> None:
    if verbose:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.CRITICAL)  # the command prints what matters


def main(argv: list[str] | None = None) -> int:
    """The command line: `check`, `plan` and `run` (see `--help`). Returns the exit code."""
    args = _cli_parser().parse_args(argv)
    level = logger.level
    _cli_logging(args.verbose)
    try:
        return args.command(args, Style.for_stream(sys.stdout))
    except (ConfigError, DiscoveryError, BotoCoreError) as err:
        print(f"ec2-powercycle: error: {err}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        return 130
    finally:
        logger.setLevel(level)  # a caller that runs commands in its own process keeps its logging


if __name__ == "__main__":
    raise SystemExit(main())
