"""ec2-powercycle: start and stop EC2 instances on schedules written in a tag.

An AWS Lambda function (``ec2_powercycle.handler``), run by an EventBridge rule
every 15 minutes. It also runs locally::

    python -c "from ec2_powercycle import *; handler()"

The tag
=======
An instance opts in with a tag (key ``ec2Powercycle`` unless
``EC2_POWERCYCLE_TAG`` says otherwise) whose value is a JSON schedule::

    {"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5", "tz": "Europe/London"}

or the ``https://`` URL of a JSON document of the same shape, so that one
document can drive a fleet. Keys:

``start`` / ``stop``
    A standard 5-field cron expression (minute hour day-of-month month
    day-of-week; names such as ``MON-FRI`` and ``JAN`` allowed), or a list of
    them. Either may be absent (start-only and stop-only schedules), not both.
``tz``
    An IANA time zone such as ``Europe/London``; the cron times are wall-clock
    times there. Default ``EC2_POWERCYCLE_TIMEZONE``, itself default ``UTC``.
``enforce``
    ``true`` or ``false`` (default). See below.

Any other key (a typo such as ``stat``) is an error, as is anything that is
not a JSON object of that shape. A bad tag is reported for that instance,
which is left alone; every other instance is still handled.

When it acts
============
Each run has a reference time ``t``: the ``time`` of the EventBridge event,
else the current UTC time (so a late or retried invocation acts exactly as the
on-time one would), and a window ``(t - W, t]`` with ``W`` =
``EC2_POWERCYCLE_WINDOW_MINUTES`` (15). A scheduled time exactly at ``t``
belongs to this run, one exactly at ``t - W`` to the previous one: runs W
minutes apart see every scheduled time exactly once.

* The latest start time and the latest stop time inside the window are found;
  the later of the two decides. Equal times are a schedule conflict: reported
  as an error, nothing done.
* With ``"enforce": true`` there is no lower bound: the most recent start or
  stop time at or before ``t`` decides, every run. This undoes manual changes
  and heals missed runs; the default respects manual changes.
* Only changes are made: ``start`` acts on ``stopped`` instances, ``stop`` on
  ``running`` and ``pending`` ones. Any other state is left alone and noted.
* Daylight saving: a time that falls in the hour skipped when clocks go
  forward fires at the moment they go forward; a time in the hour repeated
  when clocks go back fires once, at its first occurrence.

Never touched (listed as skipped with the reason): instances whose
``environment`` tag (key in any case) equals, ignoring case, one of
``EC2_POWERCYCLE_PROTECTED_ENVIRONMENTS``; instances in an Auto Scaling group
(tag ``aws:autoscaling:groupName``), which the group would replace.

Schedules behind a URL
======================
Tag values are written by anyone allowed to tag an instance, so URLs are
untrusted. Each distinct URL is fetched once per run: ``https`` only, to a host
whose every address is public (no loopback, private, link-local or metadata
address), no redirects, 5 s timeouts and a 10 s deadline, at most 64 KiB.
``EC2_POWERCYCLE_URL_ALLOW`` lists URL prefixes allowed beyond that (an
internal schedule server, for example). Response bodies are never logged, and
URLs are logged without their query string or credentials.

Settings (environment variables, checked once at start-up)
==========================================================
==========================================  =========================================
``EC2_POWERCYCLE_TAG``                      tag key (``ec2Powercycle``)
``EC2_POWERCYCLE_WINDOW_MINUTES``           window W in whole minutes (``15``)
``EC2_POWERCYCLE_TIMEZONE``                 default ``tz`` of schedules (``UTC``)
``EC2_POWERCYCLE_PROTECTED_ENVIRONMENTS``   comma-separated ``environment`` values
                                            never touched (``p``)
``EC2_POWERCYCLE_REGIONS``                  comma-separated regions (the function's
                                            own: ``AWS_REGION``, ``AWS_DEFAULT_REGION``)
``EC2_POWERCYCLE_DRY_RUN``                  ``true``/``1``/``yes`` or ``false``/``0``/``no``
                                            (``false``); a dry run changes nothing
``EC2_POWERCYCLE_URL_ALLOW``                comma-separated URL prefixes allowed beyond
                                            the public-https rule (none)
==========================================  =========================================

``AWS_ENDPOINT_URL`` (read by boto3 itself) points the function at another EC2
endpoint, such as a local emulator.

What a run returns
==================
A summary, also logged as one JSON line::

    {"time": ..., "window_start": ..., "window_end": ..., "dry_run": false,
     "started": ["i-..."], "stopped": ["i-..."],
     "skipped": [{"instance_id", "region", "reason"}],
     "errors": [{"instance_id", "region", "error"}]}

Per-instance problems (a bad tag, a dead URL, an instance that refuses to
stop) are listed in ``errors`` and the run returns normally. A region that
could not be read at all is listed with ``instance_id`` null, and the run
raises ``RunError`` once every other region is done, so Lambda's Errors
metric sees it.
"""

from __future__ import annotations

import os
import sys

# The deployment zip carries its dependencies in lib/ beside this file.
_LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
if os.path.isdir(_LIB) and _LIB not in sys.path:
    sys.path.insert(0, _LIB)

import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from croniter import CroniterError, croniter

__all__ = ["handler"]

logger = logging.getLogger("ec2_powercycle")

# --- Settings: names and defaults ------------------------------------------------

TAG_SETTING = "EC2_POWERCYCLE_TAG"
WINDOW_SETTING = "EC2_POWERCYCLE_WINDOW_MINUTES"
TIMEZONE_SETTING = "EC2_POWERCYCLE_TIMEZONE"
PROTECTED_SETTING = "EC2_POWERCYCLE_PROTECTED_ENVIRONMENTS"
REGIONS_SETTING = "EC2_POWERCYCLE_REGIONS"
DRY_RUN_SETTING = "EC2_POWERCYCLE_DRY_RUN"
URL_ALLOW_SETTING = "EC2_POWERCYCLE_URL_ALLOW"

DEFAULT_TAG = "ec2Powercycle"
DEFAULT_WINDOW_MINUTES = 15
DEFAULT_TIMEZONE = "UTC"
DEFAULT_PROTECTED_ENVIRONMENTS = "p"

ENVIRONMENT_TAG = "environment"
AUTOSCALING_TAG = "aws:autoscaling:groupName"

# --- Limits ---------------------------------------------------------------------

DESCRIBE_PAGE_SIZE = 1000
ACTION_BATCH_SIZE = 100
EC2_MAX_ATTEMPTS = 8
URL_TIMEOUT_SECONDS = 5.0
URL_DEADLINE_SECONDS = 10.0
URL_MAX_BYTES = 64 * 1024
SUMMARY_LOG_MAX_CHARS = 200_000  # CloudWatch Logs cuts events at 256 KiB

SCHEDULE_KEYS = ("start", "stop", "tz", "enforce")
CRON_FIELDS = "minute hour day-of-month month day-of-week"
SCHEDULE_EXAMPLE = '{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5"}'
# States the DescribeInstances filter keeps; shutting-down/terminated are never ours.
READ_STATES = ("pending", "running", "stopping", "stopped")
STARTABLE_STATES = frozenset({"stopped"})
STOPPABLE_STATES = frozenset({"running", "pending"})
SETTLED_STARTED = frozenset({"running", "pending"})
SETTLED_STOPPED = frozenset({"stopped", "stopping"})
# Batch failures that say nothing about any one instance: bisecting would only
# repeat them (botocore has already retried the retryable ones).
BATCH_WIDE_ERRORS = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
        "AuthFailure",
        "RequestExpired",
    }
)
_REGION_PATTERN = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_TRUE_WORDS = frozenset({"true", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "0", "no", ""})


# --- Exceptions -----------------------------------------------------------------


class PowercycleError(Exception):
    """Base of this module's errors."""


class ConfigError(PowercycleError):
    """A setting or the event is wrong: the run fails before touching anything."""


class ScheduleError(PowercycleError):
    """One instance's schedule is wrong: that instance is reported and left alone."""


class RunError(PowercycleError):
    """A region could not be handled; raised after every other region finished."""


# --- Data types -----------------------------------------------------------------


class Action(StrEnum):
    START = "start"
    STOP = "stop"


class Outcome(StrEnum):
    ACT = "act"  # call StartInstances/StopInstances
    SKIP = "skip"  # a time was due but the instance is left alone: noted
    ERROR = "error"  # the schedule cannot be followed: reported
    IDLE = "idle"  # nothing due


@dataclass(frozen=True)
class Schedule:
    """A validated schedule: cron expressions in a time zone."""

    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    tz: str = DEFAULT_TIMEZONE
    enforce: bool = False


@dataclass(frozen=True)
class Due:
    """What a schedule asks for at a time: the deciding action and when it fell."""

    action: Action | None
    at: datetime | None = None
    conflict: bool = False
    enforced: bool = False


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    action: Action | None
    reason: str


@dataclass(frozen=True)
class Settings:
    tag: str = DEFAULT_TAG
    window: timedelta = timedelta(minutes=DEFAULT_WINDOW_MINUTES)
    timezone: str = DEFAULT_TIMEZONE
    protected_environments: frozenset[str] = frozenset({DEFAULT_PROTECTED_ENVIRONMENTS})
    regions: tuple[str, ...] = ()
    dry_run: bool = False
    url_allow: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every setting once; a bad one raises ConfigError naming it."""
        env = os.environ if environ is None else environ
        tag = env.get(TAG_SETTING, DEFAULT_TAG).strip()
        if not tag or len(tag) > 128:
            raise ConfigError(f"{TAG_SETTING} must be a tag key of 1 to 128 characters, got {tag!r}")
        default_tz = env.get(TIMEZONE_SETTING, "").strip() or DEFAULT_TIMEZONE
        try:
            zone(default_tz)
        except ScheduleError as err:
            raise ConfigError(f"{TIMEZONE_SETTING}: {err}") from err
        return cls(
            tag=tag,
            window=timedelta(minutes=_parse_window(env.get(WINDOW_SETTING))),
            timezone=default_tz,
            protected_environments=frozenset(
                value.lower()
                for value in _split_list(env.get(PROTECTED_SETTING, DEFAULT_PROTECTED_ENVIRONMENTS))
            ),
            regions=_parse_regions(env),
            dry_run=parse_bool(env.get(DRY_RUN_SETTING, ""), DRY_RUN_SETTING),
            url_allow=tuple(_parse_allow_prefix(p) for p in _split_list(env.get(URL_ALLOW_SETTING, ""))),
        )


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_bool(value: str, name: str) -> bool:
    """Strict: true/1/yes or false/0/no (any case); anything else is an error, never False."""
    word = value.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ConfigError(f"{name} must be true/1/yes or false/0/no, got {value!r}")


def _parse_window(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_WINDOW_MINUTES
    text = value.strip()
    if not text.isdigit() or int(text) <= 0:
        raise ConfigError(f"{WINDOW_SETTING} must be a positive whole number of minutes, got {value!r}")
    return int(text)


def _parse_regions(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get(REGIONS_SETTING, "")
    if raw.strip():
        items = [item.strip() for item in raw.split(",")]
        bad = [item for item in items if not _REGION_PATTERN.match(item)]
        if bad:
            raise ConfigError(
                f"{REGIONS_SETTING} must be comma-separated region names such as "
                f"'eu-west-1,us-east-1', got {raw!r}"
            )
        return tuple(dict.fromkeys(items))
    own = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not own:
        raise ConfigError(f"no region: set {REGIONS_SETTING}, AWS_REGION or AWS_DEFAULT_REGION")
    if not _REGION_PATTERN.match(own):
        raise ConfigError(f"AWS_REGION/AWS_DEFAULT_REGION is not a region name: {own!r}")
    return (own,)


def _parse_allow_prefix(prefix: str) -> str:
    parts = urlsplit(prefix)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{URL_ALLOW_SETTING} entries must be http(s) URL prefixes, got {prefix!r}")
    return prefix


# --- Schedule parsing (pure) ----------------------------------------------------


def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name, or ScheduleError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as err:
        raise ScheduleError(f"unknown time zone {name!r}; expected an IANA name such as 'Europe/London'") from err


def is_url(value: str) -> bool:
    return value.strip().lower().startswith(("http://", "https://"))


def parse_schedule_json(text: str, default_tz: str) -> Schedule:
    """Parse a JSON schedule document (an inline tag value or a URL's body)."""
    text = text.strip()
    if not text:
        raise ScheduleError(f"empty schedule; expected JSON such as {SCHEDULE_EXAMPLE} or an https:// URL")
    try:
        document = json.loads(text)
    except ValueError as err:
        raise ScheduleError(f"not valid JSON ({err}); expected JSON such as {SCHEDULE_EXAMPLE}") from err
    return parse_schedule_document(document, default_tz)


def parse_schedule_document(document: object, default_tz: str) -> Schedule:
    """Check a decoded JSON schedule's shape and every cron expression and zone in it."""
    if not isinstance(document, dict):
        raise ScheduleError(f"schedule must be a JSON object such as {SCHEDULE_EXAMPLE}, got {_json_type(document)}")
    unknown = [key for key in document if key not in SCHEDULE_KEYS]
    if unknown:
        raise ScheduleError(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(SCHEDULE_KEYS)}")
    if "start" not in document and "stop" not in document:
        raise ScheduleError(f"schedule needs a 'start' or 'stop' key, such as {SCHEDULE_EXAMPLE}")
    tz = document.get("tz", default_tz)
    if not isinstance(tz, str):
        raise ScheduleError(f"'tz' must be a string such as 'Europe/London', got {_json_type(tz)}")
    zone(tz)
    enforce = document.get("enforce", False)
    if not isinstance(enforce, bool):
        raise ScheduleError(f"'enforce' must be true or false, got {_json_type(enforce)}")
    return Schedule(
        start=_parse_cron_list(document, "start"),
        stop=_parse_cron_list(document, "stop"),
        tz=tz,
        enforce=enforce,
    )


def _parse_cron_list(document: dict[str, Any], key: str) -> tuple[str, ...]:
    if key not in document:
        return ()
    value = document[key]
    expressions = [value] if isinstance(value, str) else value
    if not isinstance(expressions, list) or not expressions:
        raise ScheduleError(f"{key!r} must be a cron string or a non-empty list of them, got {_json_type(value)}")
    for expression in expressions:
        if not isinstance(expression, str):
            raise ScheduleError(f"{key!r} must hold cron strings, got {_json_type(expression)}")
    return tuple(dict.fromkeys(parse_cron(expression, key) for expression in expressions))


def parse_cron(expression: str, key: str = "cron") -> str:
    """Check one 5-field cron expression; return it with its spacing normalised."""
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"invalid cron {expression!r} in {key!r}: {len(fields)} fields, expected 5 ({CRON_FIELDS})"
        )
    normalised = " ".join(fields)
    try:
        # A fixed base keeps this pure; an expression that can never fire fails here.
        croniter(normalised, datetime(2000, 1, 1)).get_prev(datetime)
    except CroniterError as err:
        raise ScheduleError(f"invalid cron {expression!r} in {key!r}: {err}") from err
    return normalised


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# --- Decision (pure) ------------------------------------------------------------


def latest_fire(expression: str, tz_name: str, before: datetime) -> datetime:
    """The latest instant at or before `before` at which the expression fires in zone tz_name.

    Cron times are wall-clock times. croniter walks wall-clock times (naive, so
    it never sees daylight saving); each is then mapped to an instant with
    `wall_to_instant`, which is monotonic, so the first one at or before
    `before` is the latest.
    """
    tz = zone(tz_name)
    local = before.astimezone(tz)
    wall = local.replace(tzinfo=None, second=0, microsecond=0)
    if local.fold:
        # In the repeated hour's second pass, later wall times of the first pass are earlier instants.
        wall += local.replace(fold=0).utcoffset() - local.utcoffset()
    # get_prev never returns its base itself: start one minute on to include `wall`.
    walker = croniter(expression, wall + timedelta(minutes=1))
    while True:
        instant = wall_to_instant(walker.get_prev(datetime), tz)
        if instant <= before:
            return instant


def wall_to_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a naive wall-clock time in tz.

    A repeated wall time (clocks going back) is its first occurrence; a skipped
    one (clocks going forward) is the moment the clocks jump.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # Skipped: the jump lies between the two readings of the wall time.
    low = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    after_offset = high.astimezone(tz).utcoffset()
    while high - low > timedelta(minutes=1):
        middle = low + (high - low) // 2
        middle -= timedelta(seconds=middle.second, microseconds=middle.microsecond)
        if middle <= low:
            break
        if middle.astimezone(tz).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return high


def due_action(schedule: Schedule, now: datetime, window: timedelta) -> Due:
    """What the schedule asks for at `now`: the later of its latest start and stop.

    Without enforce only times inside (now - window, now] count; with enforce,
    any time at or before now.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    floor = None if schedule.enforce else now - window
    latest: dict[Action, datetime | None] = {}
    for action, expressions in ((Action.START, schedule.start), (Action.STOP, schedule.stop)):
        times = [latest_fire(expression, schedule.tz, now) for expression in expressions]
        best = max(times, default=None)
        latest[action] = best if best is not None and (floor is None or best > floor) else None
    start, stop = latest[Action.START], latest[Action.STOP]
    enforced = schedule.enforce
    if start is None and stop is None:
        return Due(None, enforced=enforced)
    if start is not None and stop is not None and start == stop:
        return Due(None, start, conflict=True, enforced=enforced)
    if stop is None or (start is not None and start > stop):
        return Due(Action.START, start, enforced=enforced)
    return Due(Action.STOP, stop, enforced=enforced)


def decide(due: Due, state: str) -> Decision:
    """Turn what is due into what to do with an instance in `state`."""
    if due.conflict:
        return Decision(Outcome.ERROR, None, f"schedule conflict: start and stop both due at {_iso(due.at)}")
    if due.action is None:
        return Decision(Outcome.IDLE, None, "nothing due")
    actionable, settled = (
        (STARTABLE_STATES, SETTLED_STARTED) if due.action is Action.START else (STOPPABLE_STATES, SETTLED_STOPPED)
    )
    if state in actionable:
        return Decision(Outcome.ACT, due.action, f"{due.action.value} due at {_iso(due.at)}")
    if due.enforced and state in settled:
        # Enforcing holds a state every run: being in it already is the steady case, not news.
        return Decision(Outcome.IDLE, None, f"already {state}")
    return Decision(Outcome.SKIP, None, f"{due.action.value} due at {_iso(due.at)} but instance is {state}")


def guard_reason(tags: Mapping[str, str], protected_environments: frozenset[str]) -> str | None:
    """Why an instance must never be touched, or None."""
    for key, value in tags.items():
        if key.lower() == ENVIRONMENT_TAG and value.strip().lower() in protected_environments:
            return f"protected environment {value!r}"
    if AUTOSCALING_TAG in tags:
        return f"in Auto Scaling group {tags[AUTOSCALING_TAG]!r}"
    return None


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Schedules behind URLs (edge: network) --------------------------------------


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe to log."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def url_is_allowed(url: str, allow_prefixes: Iterable[str]) -> bool:
    """True when url starts with an operator-allowed prefix (same scheme and host, path prefix)."""
    target = urlsplit(url)
    for prefix in allow_prefixes:
        allowed = urlsplit(prefix)
        if (
            target.scheme.lower() == allowed.scheme.lower()
            and target.netloc.lower() == allowed.netloc.lower()
            and target.path.startswith(allowed.path)
        ):
            return True
    return False


def check_url(url: str, allow_prefixes: Iterable[str], resolve: Callable[[str], list[str]]) -> None:
    """Refuse a URL that is not https to public addresses (unless allowed): ScheduleError."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as err:
        raise ScheduleError(f"malformed schedule URL {redact_url(url)}") from err
    if not host:
        raise ScheduleError(f"schedule URL {redact_url(url)} has no host")
    if url_is_allowed(url, allow_prefixes):
        return
    if parts.scheme.lower() != "https":
        raise ScheduleError(f"refused schedule URL {redact_url(url)}: only https is allowed (see {URL_ALLOW_SETTING})")
    try:
        addresses = resolve(host)
    except OSError as err:
        raise ScheduleError(f"cannot resolve host of schedule URL {redact_url(url)}: {err}") from err
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (mapped or ip).is_global:
            raise ScheduleError(
                f"refused schedule URL {redact_url(url)}: {host} resolves to non-public address {address} "
                f"(see {URL_ALLOW_SETTING})"
            )


def resolve_host(host: str) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})


def fetch_schedule_text(url: str) -> str:
    """GET a schedule document: timeouts, a total deadline, a size cap while reading, no redirects."""
    import requests  # only runs that use URL schedules pay for importing requests

    deadline = time.monotonic() + URL_DEADLINE_SECONDS
    shown = redact_url(url)
    with requests.Session() as session:
        session.trust_env = False  # no proxies or .netrc credentials from the environment
        try:
            with session.get(
                url,
                timeout=(URL_TIMEOUT_SECONDS, URL_TIMEOUT_SECONDS),
                stream=True,
                allow_redirects=False,
                headers={"Accept": "application/json"},
            ) as response:
                if response.status_code != 200:
                    raise ScheduleError(f"schedule URL {shown} answered HTTP {response.status_code}, expected 200")
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > URL_MAX_BYTES:
                    raise ScheduleError(f"schedule at {shown} is larger than {URL_MAX_BYTES} bytes")
                body = bytearray()
                for chunk in response.iter_content(chunk_size=8192):
                    body += chunk
                    if len(body) > URL_MAX_BYTES:
                        raise ScheduleError(f"schedule at {shown} is larger than {URL_MAX_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise ScheduleError(f"schedule URL {shown} took longer than {URL_DEADLINE_SECONDS:g} s")
        except requests.RequestException as err:
            raise ScheduleError(f"cannot fetch schedule URL {shown}: {type(err).__name__}") from err
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ScheduleError(f"schedule at {shown} is not UTF-8 text") from err


class ScheduleResolver:
    """Turns tag values into Schedules, each distinct value and URL once per run (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        fetch: Callable[[str], str] = fetch_schedule_text,
        resolve: Callable[[str], list[str]] = resolve_host,
    ) -> None:
        self._settings = settings
        self._fetch = fetch
        self._resolve = resolve
        self._results: dict[str, Schedule | ScheduleError] = {}
        self._url_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def resolve(self, value: str) -> Schedule | ScheduleError:
        """The Schedule of a tag value, or the ScheduleError saying why there is none.

        Errors are returned, not raised: one cached error serves many instances.
        """
        result = self._results.get(value)
        if result is None:
            result = self._from_url(value.strip()) if is_url(value) else self._parse(value)
            self._results[value] = result
        return result

    def _parse(self, text: str) -> Schedule | ScheduleError:
        try:
            return parse_schedule_json(text, self._settings.timezone)
        except ScheduleError as err:
            return err

    def _from_url(self, url: str) -> Schedule | ScheduleError:
        with self._lock:
            url_lock = self._url_locks.setdefault(url, threading.Lock())
        with url_lock:  # one fetch per URL even when regions ask at once
            result = self._results.get(url)
            if result is None:
                result = self._results[url] = self._fetch_and_parse(url)
        return result

    def _fetch_and_parse(self, url: str) -> Schedule | ScheduleError:
        shown = redact_url(url)
        try:
            check_url(url, self._settings.url_allow, self._resolve)
            text = self._fetch(url)
            try:
                return parse_schedule_json(text, self._settings.timezone)
            except ScheduleError as err:
                raise ScheduleError(f"schedule at {shown}: {err}") from err
        except ScheduleError as err:
            logger.warning("schedule URL %s unusable: %s", shown, err)
            return err


# --- EC2 (edge: AWS) ------------------------------------------------------------


@dataclass
class RegionResult:
    region: str
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    instances: int = 0
    failed: bool = False

    def skip(self, instance_id: str, reason: str) -> None:
        self.skipped.append({"instance_id": instance_id, "region": self.region, "reason": reason})

    def error(self, instance_id: str | None, error: str) -> None:
        self.errors.append({"instance_id": instance_id, "region": self.region, "error": error})


def ec2_client(region: str) -> Any:
    """An EC2 client with botocore's standard retry mode (throttling included)."""
    config = Config(
        region_name=region,
        retries={"mode": "standard", "max_attempts": EC2_MAX_ATTEMPTS},
        connect_timeout=10,
        read_timeout=60,
    )
    # A session per client: boto3's default session is not safe to share between threads.
    return boto3.session.Session().client("ec2", config=config)


def tagged_instances(ec2: Any, tag: str) -> Iterator[dict[str, Any]]:
    """Every instance carrying the tag in a readable state, page by page (streamed)."""
    paginator = ec2.get_paginator("describe_instances")
    pages = paginator.paginate(
        Filters=[
            {"Name": "tag-key", "Values": [tag]},
            {"Name": "instance-state-name", "Values": list(READ_STATES)},
        ],
        PaginationConfig={"PageSize": DESCRIBE_PAGE_SIZE},
    )
    for page in pages:
        for reservation in page.get("Reservations", ()):
            yield from reservation.get("Instances", ())


def plan_region(
    instances: Iterable[dict[str, Any]],
    settings: Settings,
    now: datetime,
    resolver: ScheduleResolver,
    result: RegionResult,
    due_cache: dict[Schedule, Due],
) -> dict[Action, list[str]]:
    """Decide every instance; note skips and errors in result; return the IDs to act on."""
    to_act: dict[Action, list[str]] = {Action.START: [], Action.STOP: []}
    for instance in instances:
        instance_id = instance["InstanceId"]
        result.instances += 1
        tags = {tag["Key"]: tag.get("Value", "") for tag in instance.get("Tags", ())}
        reason = guard_reason(tags, settings.protected_environments)
        if reason:
            result.skip(instance_id, reason)
            continue
        value = tags.get(settings.tag, "")
        schedule = resolver.resolve(value)
        if isinstance(schedule, ScheduleError):
            result.error(instance_id, f"bad schedule in tag {settings.tag!r}: {schedule}")
            continue
        due = due_cache.get(schedule)
        if due is None:
            due = due_cache[schedule] = due_action(schedule, now, settings.window)
        decision = decide(due, instance["State"]["Name"])
        if decision.outcome is Outcome.ACT:
            to_act[decision.action].append(instance_id)
        elif decision.outcome is Outcome.SKIP:
            result.skip(instance_id, decision.reason)
        elif decision.outcome is Outcome.ERROR:
            result.error(instance_id, decision.reason)
    return to_act


def act(ec2: Any, action: Action, instance_ids: list[str], result: RegionResult) -> list[str]:
    """Start or stop the instances in batches; return the IDs the API accepted.

    A failed batch is split in halves until the instances at fault are alone, so
    one bad instance costs about 2*log2(batch) extra calls and the rest still
    change state. Failures that name no instance (throttling after botocore's
    retries, service errors) fail their batch without splitting.
    """
    call = ec2.start_instances if action is Action.START else ec2.stop_instances
    done: list[str] = []

    def attempt(batch: list[str]) -> None:
        try:
            call(InstanceIds=batch)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "Unknown")
            if len(batch) == 1 or code in BATCH_WIDE_ERRORS:
                for instance_id in batch:
                    result.error(instance_id, f"{action.value} failed: {code}: {_aws_message(err)}")
                return
            middle = len(batch) // 2
            attempt(batch[:middle])
            attempt(batch[middle:])
            return
        except BotoCoreError as err:
            for instance_id in batch:
                result.error(instance_id, f"{action.value} failed: {type(err).__name__}: {err}")
            return
        done.extend(batch)

    for offset in range(0, len(instance_ids), ACTION_BATCH_SIZE):
        attempt(instance_ids[offset : offset + ACTION_BATCH_SIZE])
    return done


def _aws_message(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Message", "")).strip()


def run_region(
    region: str,
    settings: Settings,
    now: datetime,
    resolver: ScheduleResolver,
    due_cache: dict[Schedule, Due],
) -> RegionResult:
    """Read, decide and act in one region; never raises."""
    result = RegionResult(region)
    try:
        ec2 = ec2_client(region)
        to_act = plan_region(tagged_instances(ec2, settings.tag), settings, now, resolver, result, due_cache)
    except (ClientError, BotoCoreError) as err:
        result.failed = True
        result.error(None, f"cannot read instances in {region}: {_describe_error(err)}")
        logger.error("region %s: cannot read instances: %s", region, _describe_error(err))
        return result
    for action, ids in to_act.items():
        done = ids if settings.dry_run else act(ec2, action, ids, result)
        (result.started if action is Action.START else result.stopped).extend(done)
    logger.info(
        "region %s: %d tagged instances, %d started, %d stopped, %d skipped, %d errors%s",
        region,
        result.instances,
        len(result.started),
        len(result.stopped),
        len(result.skipped),
        len(result.errors),
        " (dry run)" if settings.dry_run else "",
    )
    return result


def _describe_error(err: Exception) -> str:
    if isinstance(err, ClientError):
        return f"{err.response.get('Error', {}).get('Code', 'Unknown')}: {_aws_message(err)}"
    return f"{type(err).__name__}: {err}"


# --- Handler --------------------------------------------------------------------


def reference_time(event: Any) -> datetime:
    """The event's `time` (so retries act as the original would), else now, in UTC."""
    raw = event.get("time") if isinstance(event, Mapping) else None
    if raw is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError as err:
        raise ConfigError(f"event time {raw!r} is not an ISO-8601 time such as '2026-11-23T08:00:00Z'") from err
    if moment.tzinfo is None:
        raise ConfigError(f"event time {raw!r} has no time zone; expected e.g. '2026-11-23T08:00:00Z'")
    return moment.astimezone(UTC)


def summarise(now: datetime, settings: Settings, results: list[RegionResult]) -> dict[str, Any]:
    return {
        "time": _iso(now),
        "window_start": _iso(now - settings.window),
        "window_end": _iso(now),
        "dry_run": settings.dry_run,
        "regions": [result.region for result in results],
        "instances": sum(result.instances for result in results),
        "started": [i for result in results for i in result.started],
        "stopped": [i for result in results for i in result.stopped],
        "skipped": [entry for result in results for entry in result.skipped],
        "errors": [entry for result in results for entry in result.errors],
    }


def log_summary(summary: dict[str, Any]) -> None:
    """Log the summary as one JSON line, cutting long lists so the line fits in a log event."""
    line = json.dumps(summary, default=str)
    if len(line) > SUMMARY_LOG_MAX_CHARS:
        shortened = dict(summary)
        for key in ("started", "stopped", "skipped", "errors"):
            items = summary[key]
            shortened[key] = items[:100]
            shortened[f"{key}_count"] = len(items)
        shortened["truncated"] = True
        line = json.dumps(shortened, default=str)
    logger.info("%s", line)
    if summary["errors"]:
        logger.warning("%d errors in this run; see the summary's errors", len(summary["errors"]))


def _ensure_logging() -> None:
    # Lambda configures the root logger; a local run would otherwise print nothing.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def handler(event: Any = None, context: Any = None) -> dict[str, Any]:
    """Lambda entry point: one scheduling run at the event's time. Returns the summary."""
    _ensure_logging()
    return run(Settings.from_env(), reference_time(event))


def run(settings: Settings, now: datetime) -> dict[str, Any]:
    """One scheduling run at `now` in every region; raise RunError after the summary if a region failed."""
    resolver = ScheduleResolver(settings)
    due_cache: dict[Schedule, Due] = {}
    with ThreadPoolExecutor(max_workers=len(settings.regions)) as pool:
        results = list(
            pool.map(lambda region: run_region(region, settings, now, resolver, due_cache), settings.regions)
        )
    summary = summarise(now, settings, results)
    log_summary(summary)
    failed = [result.region for result in results if result.failed]
    if failed:
        raise RunError(f"could not read instances in {', '.join(failed)}; see the summary's errors")
    return summary
