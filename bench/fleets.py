"""The benchmark fleets: N tagged instances in one of four schedule mixes, about half due.

Every mix is built for one event time (``EVENT_TIME``, a Monday morning) and the
default 15-minute window, and knows what the scheduler should do: each
instance's expected action (start, stop or none), so that the minimum number of
API calls can be computed and the handler's summary checked against it.

* ``shared``: one inline schedule on every instance (its start is due); half
  the fleet stopped (to start), half running (already so).
* ``distinct``: every instance its own schedule (distinct cron times) and one
  of ~60 time zones; a quarter have a start due (stopped), a quarter a stop due
  (running), half nothing due.
* ``url``: ten schedule documents behind URLs on a loopback HTTP server, an
  instance each in turn; five documents are due (start or stop), five not.
* ``mixed``: 40% on four shared team schedules, 30% distinct, 20% on the ten
  URLs, 10% guarded or broken (protected environment, Auto Scaling group, bad
  tag); about half due.

Beside the N tagged instances in readable states each fleet also has untagged
instances (one per 20) and terminated tagged ones (one per 100), which the
DescribeInstances filters must drop, and instances share reservations in twos.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

TAG = "ec2Powercycle"
EVENT_TIME = "2026-11-23T08:07:00Z"
WINDOW = timedelta(minutes=15)
MIXES = ("shared", "distinct", "url", "mixed")
URL_COUNT = 10
URL_PREFIX = "/schedules/"
SHARED_SCHEDULE = {"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5", "tz": "Europe/London"}
ZONES = (
    "UTC", "Europe/London", "Europe/Dublin", "Europe/Lisbon", "Europe/Paris", "Europe/Berlin", "Europe/Madrid",
    "Europe/Rome", "Europe/Warsaw", "Europe/Athens", "Europe/Helsinki", "Europe/Istanbul", "Europe/Moscow",
    "Africa/Cairo", "Africa/Johannesburg", "Africa/Lagos", "Africa/Nairobi", "Asia/Dubai", "Asia/Karachi",
    "Asia/Kolkata", "Asia/Kathmandu", "Asia/Dhaka", "Asia/Bangkok", "Asia/Jakarta", "Asia/Singapore",
    "Asia/Shanghai", "Asia/Hong_Kong", "Asia/Manila", "Asia/Seoul", "Asia/Tokyo", "Australia/Perth",
    "Australia/Adelaide", "Australia/Darwin", "Australia/Brisbane", "Australia/Sydney", "Australia/Melbourne",
    "Pacific/Auckland", "Pacific/Fiji", "Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles",
    "America/Vancouver", "America/Denver", "America/Phoenix", "America/Chicago", "America/Mexico_City",
    "America/New_York", "America/Toronto", "America/Bogota", "America/Lima", "America/Caracas",
    "America/Santiago", "America/Sao_Paulo", "America/Argentina/Buenos_Aires", "America/Halifax",
    "America/St_Johns", "Atlantic/Azores", "Atlantic/Reykjavik", "Asia/Tehran", "Asia/Kabul",
)


@dataclass
class Fleet:
    """Instance specs for the benchmark endpoint, the URL documents, and what should happen."""

    mix: str
    size: int
    instances: list[dict[str, Any]] = field(default_factory=list)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)  # URL path -> schedule
    starts: int = 0
    stops: int = 0
    expected: list[str | None] = field(default_factory=list)  # each instance's action, in seeding order

    def add(self, tags: dict[str, str], state: str, expected: str | None) -> None:
        position = len(self.instances)
        name = f"{self.mix}-{position:06d}"
        self.instances.append(
            {
                "name": name,
                "state": state,
                "tags": {
                    **tags,
                    "team": f"team-{position % 37}",
                    "cost-center": f"cc-{position % 11:04d}",
                    "owner": f"user{position % 101}@example.com",
                },
                "instance_type": ("t3.micro", "t3.small", "m6i.large", "c6g.xlarge")[position % 4],
                "reservation": position // 2,
            }
        )
        self.expected.append(expected)
        self.starts += expected == "start"
        self.stops += expected == "stop"

    @property
    def distinct_urls(self) -> int:
        return len(self.documents)


class _Times:
    """Cron times in a zone relative to the event time: inside the window or well away from it."""

    def __init__(self, rng: random.Random, event: datetime) -> None:
        self.rng = rng
        self.event = event

    def local(self, tz: str) -> datetime:
        return self.event.astimezone(ZoneInfo(tz)).replace(tzinfo=None)

    def due(self, tz: str) -> tuple[int, int, str]:
        """(minute, hour, day-of-week) of a wall time inside the window (t - W, t]."""
        wall = self.local(tz) - timedelta(minutes=self.rng.randrange(0, int(WINDOW.total_seconds() // 60) - 1))
        return wall.minute, wall.hour, self._days(wall)

    def away(self, tz: str) -> tuple[int, int]:
        """(minute, hour) of a wall time at least an hour from the window, on any day."""
        now = self.local(tz)
        now_minutes = now.hour * 60 + now.minute
        while True:
            minutes = self.rng.randrange(0, 24 * 60)
            distance = min((minutes - now_minutes) % 1440, (now_minutes - minutes) % 1440)
            if distance >= 60:
                return minutes % 60, minutes // 60

    def _days(self, wall: datetime) -> str:
        cron_day = (wall.weekday() + 1) % 7  # cron: 0 = Sunday
        options = ["*", str(cron_day), "0-6", f"{cron_day}-6" if cron_day < 6 else "5,6"]
        if 1 <= cron_day <= 5:
            options += ["1-5", "MON-FRI"]
        return self.rng.choice(options)

    def schedule(self, tz: str, due: str | None) -> dict[str, Any]:
        """A schedule in zone tz whose start or stop (or neither) is due at the event time."""
        document: dict[str, Any] = {}
        for key in ("start", "stop"):
            if key == due:
                minute, hour, days = self.due(tz)
            else:
                minute, hour = self.away(tz)
                days = self.rng.choice(("*", "1-5", "MON-FRI", "0,6", "1-6"))
            document[key] = f"{minute} {hour} * * {days}"
        document["tz"] = tz
        return document


def build(mix: str, size: int, base_url: str = "http://127.0.0.1:1", seed: int = 5) -> Fleet:
    """The fleet of one mix with `size` tagged instances; URL tags point at base_url + URL_PREFIX."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; expected one of {', '.join(MIXES)}")
    rng = random.Random(f"{mix}-{size}-{seed}")
    event = datetime.fromisoformat(EVENT_TIME.replace("Z", "+00:00")).astimezone(UTC)
    times = _Times(rng, event)
    fleet = Fleet(mix, size)
    used: set[str] = set()

    def distinct(position: int, due: str | None) -> str:
        while True:
            value = json.dumps(times.schedule(ZONES[position % len(ZONES)], due))
            if value not in used:
                used.add(value)
                return value

    urls: list[tuple[str, str | None]] = []
    if mix in ("url", "mixed"):
        for k in range(URL_COUNT):
            due = ("start", "stop")[k % 2] if k < URL_COUNT // 2 else None
            path = f"{URL_PREFIX}fleet-{k}.json"
            fleet.documents[path] = times.schedule(ZONES[(k * 7) % len(ZONES)], due)
            urls.append((base_url + path, due))
    teams = [
        (json.dumps({**SHARED_SCHEDULE}), "start"),
        (json.dumps({"start": "0 9 * * 1-5", "stop": "0 8 * * *", "tz": "Europe/London"}), "stop"),
        (json.dumps({"start": "30 7 * * 1-5", "stop": "0 19 * * 1-5", "tz": "America/New_York"}), None),
        (json.dumps({"stop": "0 20 * * *", "tz": "Asia/Tokyo"}), None),
    ]

    def add(tag_value: str, due: str | None, extra: dict[str, str] | None = None, acts: bool = True) -> None:
        if due == "start":
            state = "stopped"
        elif due == "stop":
            state = "running"
        else:
            state = rng.choice(("running", "stopped"))
        tags = {TAG: tag_value, "environment": rng.choice(("d", "s", "t", "dev")), **(extra or {})}
        fleet.add(tags, state, due if acts else None)

    for position in range(size):
        if position % 20 == 19:
            fleet.add({"environment": "d"}, "running", None)  # untagged: filtered out by the endpoint
        if position % 100 == 99:
            fleet.add({TAG: json.dumps(SHARED_SCHEDULE)}, "terminated", None)  # filtered out by state
        if mix == "shared":
            add(json.dumps(SHARED_SCHEDULE), "start" if position % 2 == 0 else None)
            if position % 2:  # same schedule, already running: start due but nothing to do
                fleet.instances[-1]["state"] = "running"
        elif mix == "distinct":
            due = (("start", "stop", None, None))[position % 4]
            add(distinct(position, due), due)
        elif mix == "url":
            url, due = urls[position % URL_COUNT]
            add(url, due)
        else:
            slot = position % 10
            if slot < 4:
                value, due = teams[slot]
                add(value, due)
            elif slot < 7:
                due = ("start", "stop", None)[slot - 4]
                add(distinct(position, due), due)
            elif slot < 9:
                url, due = urls[(position // 10 * 2 + slot - 7) % URL_COUNT]
                add(url, due)
            else:
                kind = (position // 10) % 3
                if kind == 0:
                    add(json.dumps(SHARED_SCHEDULE), "start", {"Environment": "P"}, acts=False)
                elif kind == 1:
                    add(json.dumps(SHARED_SCHEDULE), "start", {"aws:autoscaling:groupName": "web"}, acts=False)
                else:
                    add('{"stat": "0 8 * * 1-5"}', None)
    return fleet


@dataclass
class Groups:
    """Tagged Auto Scaling groups for the endpoint's seed, and how many a run at EVENT_TIME starts and stops."""

    groups: list[dict[str, Any]] = field(default_factory=list)
    starts: int = 0
    stops: int = 0


def build_groups(size: int) -> Groups:
    """`size` groups in turn: at zero with saved sizes and a start due; running with a stop due; running with a
    start due (nothing to do); running with nothing due."""
    size_tag = TAG + ":size"  # ec2_powercycle.SIZE_SUFFIX: where a stop saves a group's sizes
    kinds = [
        (json.dumps(SHARED_SCHEDULE), (0, 4, 0), {size_tag: json.dumps({"min": 1, "max": 4, "desired": 2})}),
        (json.dumps({"start": "0 9 * * 1-5", "stop": "0 8 * * *", "tz": "Europe/London"}), (1, 4, 2), {}),
        (json.dumps(SHARED_SCHEDULE), (1, 4, 2), {}),
        (json.dumps({"stop": "0 20 * * *", "tz": "Asia/Tokyo"}), (1, 4, 2), {}),
    ]
    result = Groups()
    for position in range(size):
        kind = position % len(kinds)
        value, (low, high, desired), extra = kinds[kind]
        result.groups.append(
            {
                "name": f"bench-group-{position:05d}",
                "tags": {TAG: value, "environment": "d", **extra},
                "min": low,
                "max": high,
                "desired": desired,
            }
        )
        result.starts += kind == 0
        result.stops += kind == 1
    return result
