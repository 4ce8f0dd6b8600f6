"""ec2-powercycle: start and stop EC2 instances on schedules written in a tag.

An AWS Lambda function (``ec2_powercycle.handler``), run by an EventBridge rule
every 15 minutes. It also runs locally::

    python -c "from ec2_powercycle import *; handler()"

and as a command line (``python ec2_powercycle.py COMMAND --help``)::

    python ec2_powercycle.py check VALUE     # validate a tag value, show its next times
    python ec2_powercycle.py plan            # what the schedules will do, and a week timeline
    python ec2_powercycle.py run --at TIME   # one handler run (--dry-run, --json)

``plan`` and ``run`` take ``--region`` (repeatable), ``--endpoint-url`` and
``--tag``; ``check`` needs no credentials. Exit codes: 0 fine, 1 an invalid
schedule or errors in a plan or run, 2 a usage or set-up problem. The
timeline shows, per hour, the state set by the latest start or stop at or
before it (as with ``enforce``; see ``running_hours``).

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
The host is resolved once and the request goes to an address that was checked
(TLS and the ``Host`` header still name the host), so a DNS answer that
changes after the check cannot steer it.
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
``EC2_POWERCYCLE_ROLE_ARNS``                comma-separated IAM roles in other accounts,
                                            assumed through STS (none)
``EC2_POWERCYCLE_EXTERNAL_ID``              external ID for those roles (none)
``EC2_POWERCYCLE_OWN_ACCOUNT``              schedule the function's own account too
                                            (``true``)
``EC2_POWERCYCLE_MAX_WORKERS``              account x region targets run at once (``8``)
==========================================  =========================================

``AWS_ENDPOINT_URL`` (read by boto3 itself) points the function at another EC2
endpoint, such as a local emulator.

What a run returns
==================
A summary, also logged as one JSON line::

    {"time": ..., "window_start": ..., "window_end": ..., "dry_run": false,
     "regions": [...], "accounts": [...], "instances": N,
     "targets": [{"account", "region", "instances", "started", "stopped", "skipped", "errors"}],
     "started": ["i-..."], "stopped": ["i-..."],
     "skipped": [{"instance_id", "account", "region", "reason"}],
     "errors": [{"instance_id", "account", "region", "error"}]}

Per-instance problems (a bad tag, a dead URL, an instance that refuses to
stop) are listed in ``errors`` and the run returns normally. A target (an
account and region) that could not be read at all (a role that cannot be
assumed, a region that is disabled) is listed with ``instance_id`` null, and
the run raises ``RunError`` once every other target is done, so Lambda's
Errors metric sees it. The own account is named by its ID from the Lambda
context, or ``own`` when run elsewhere.
"""

from __future__ import annotations

import os
import sys

# The deployment zip carries its dependencies in lib/ beside this file.
_LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
if os.path.isdir(_LIB) and _LIB not in sys.path:
    sys.path.insert(0, _LIB)

import functools
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["handler"]
__version__ = "1.0.0"  # names the deployment zip: dist/ec2-powercycle-<version>.zip (package.sh)

logger = logging.getLogger("ec2_powercycle")

# --- Settings: names and defaults ------------------------------------------------

TAG_SETTING = "EC2_POWERCYCLE_TAG"
WINDOW_SETTING = "EC2_POWERCYCLE_WINDOW_MINUTES"
TIMEZONE_SETTING = "EC2_POWERCYCLE_TIMEZONE"
PROTECTED_SETTING = "EC2_POWERCYCLE_PROTECTED_ENVIRONMENTS"
REGIONS_SETTING = "EC2_POWERCYCLE_REGIONS"
DRY_RUN_SETTING = "EC2_POWERCYCLE_DRY_RUN"
URL_ALLOW_SETTING = "EC2_POWERCYCLE_URL_ALLOW"
ROLE_ARNS_SETTING = "EC2_POWERCYCLE_ROLE_ARNS"
EXTERNAL_ID_SETTING = "EC2_POWERCYCLE_EXTERNAL_ID"
OWN_ACCOUNT_SETTING = "EC2_POWERCYCLE_OWN_ACCOUNT"
MAX_WORKERS_SETTING = "EC2_POWERCYCLE_MAX_WORKERS"

DEFAULT_TAG = "ec2Powercycle"
DEFAULT_WINDOW_MINUTES = 15
DEFAULT_TIMEZONE = "UTC"
DEFAULT_PROTECTED_ENVIRONMENTS = "p"
DEFAULT_MAX_WORKERS = 8
OWN_ACCOUNT = "own"  # the label of the function's own account when its ID is not known

ENVIRONMENT_TAG = "environment"
AUTOSCALING_TAG = "aws:autoscaling:groupName"

# --- Limits ---------------------------------------------------------------------

DESCRIBE_PAGE_SIZE = 1000
ACTION_BATCH_SIZE = 100
ASSUMED_ROLE_SECONDS = 900  # the shortest STS allows; a run ends within Lambda's 15 minutes
EC2_MAX_ATTEMPTS = 5  # in all, first try included; backoff keeps a throttled run within a Lambda timeout
URL_TIMEOUT_SECONDS = 5.0
URL_DEADLINE_SECONDS = 10.0
URL_MAX_BYTES = 64 * 1024
SUMMARY_LOG_MAX_CHARS = 200_000  # CloudWatch Logs cuts events at 256 KiB
MEMO_LIMIT = 4096  # entries a run remembers per memo before starting afresh (flat memory, see RunCache)

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
_ROLE_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]+$")
_TRUE_WORDS = frozenset({"true", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "0", "no", ""})


# --- Exceptions -----------------------------------------------------------------


class PowercycleError(Exception):
    """Base of this module's errors."""


class ConfigError(PowercycleError):
    """A setting or the event is wrong: the run fails before touching anything."""


class ScheduleError(PowercycleError):
    """One instance's schedule is wrong: that instance is reported and left alone."""


class RoleError(PowercycleError):
    """A role in another account could not be assumed: its targets fail, the others go on."""


class RunError(PowercycleError):
    """A target (account and region) could not be handled; raised after every other target finished.

    `summary` is the run's summary (the command line prints it), or None.
    """

    def __init__(self, message: str, summary: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.summary = summary


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


class RunCache(dict):  # type: ignore[type-arg]
    """A run's memo (tag value -> schedule, schedule -> what is due, ...) that forgets all when full.

    A fleet of a few schedules never fills it; a fleet of 100,000 distinct ones
    gains nothing from remembering them all, and forgetting keeps memory flat.
    """

    def __init__(self, limit: int = MEMO_LIMIT) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Any, value: Any) -> Any:
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


class OncePerKey:
    """Computes a value once per key, however many threads ask at once: the others wait for it.

    A per-key lock, so keys do not wait for each other (one slow schedule URL or
    AssumeRole holds up only the threads that need it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key_locks: dict[Any, threading.Lock] = {}
        self._values: dict[Any, Any] = {}

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._values:
                self._values[key] = compute()
            return self._values[key]


@dataclass(frozen=True)
class Settings:
    tag: str = DEFAULT_TAG
    window: timedelta = timedelta(minutes=DEFAULT_WINDOW_MINUTES)
    timezone: str = DEFAULT_TIMEZONE
    protected_environments: frozenset[str] = frozenset({DEFAULT_PROTECTED_ENVIRONMENTS})
    regions: tuple[str, ...] = ()
    dry_run: bool = False
    url_allow: tuple[str, ...] = ()
    role_arns: tuple[str, ...] = ()
    external_id: str | None = None
    own_account: bool = True
    max_workers: int = DEFAULT_MAX_WORKERS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, require_regions: bool = True) -> Settings:
        """Read and check every setting once; a bad one raises ConfigError naming it.

        With require_regions false (commands that touch no region, such as
        `check`) a missing region gives no regions instead of an error.
        """
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
            regions=_parse_regions(env) if require_regions or _region_given(env) else (),
            dry_run=parse_bool(env.get(DRY_RUN_SETTING, ""), DRY_RUN_SETTING),
            url_allow=tuple(_parse_allow_prefix(p) for p in _split_list(env.get(URL_ALLOW_SETTING, ""))),
            **_parse_accounts(env),
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
    return _parse_positive(value, DEFAULT_WINDOW_MINUTES, WINDOW_SETTING, "minutes")


def _parse_positive(value: str | None, default: int, name: str, unit: str) -> int:
    if value is None or not value.strip():
        return default
    text = value.strip()
    if not text.isdigit() or int(text) <= 0:
        raise ConfigError(f"{name} must be a positive whole number of {unit}, got {value!r}")
    return int(text)


def _parse_accounts(env: Mapping[str, str]) -> dict[str, Any]:
    role_arns = tuple(dict.fromkeys(_split_list(env.get(ROLE_ARNS_SETTING, ""))))
    for arn in role_arns:
        if not _ROLE_ARN_PATTERN.match(arn):
            raise ConfigError(
                f"{ROLE_ARNS_SETTING} must be comma-separated IAM role ARNs such as "
                f"'arn:aws:iam::123456789012:role/ec2-powercycle', got {arn!r}"
            )
    own_account = parse_bool(env.get(OWN_ACCOUNT_SETTING, "true"), OWN_ACCOUNT_SETTING)
    if not own_account and not role_arns:
        raise ConfigError(f"{OWN_ACCOUNT_SETTING} is false and {ROLE_ARNS_SETTING} is empty: no account to schedule")
    return {
        "role_arns": role_arns,
        "external_id": env.get(EXTERNAL_ID_SETTING, "").strip() or None,
        "own_account": own_account,
        "max_workers": _parse_positive(
            env.get(MAX_WORKERS_SETTING), DEFAULT_MAX_WORKERS, MAX_WORKERS_SETTING, "workers"
        ),
    }


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


def _region_given(env: Mapping[str, str]) -> bool:
    return bool(env.get(REGIONS_SETTING, "").strip() or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"))


def _parse_allow_prefix(prefix: str) -> str:
    parts = urlsplit(prefix)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{URL_ALLOW_SETTING} entries must be http(s) URL prefixes, got {prefix!r}")
    return prefix


# --- Schedule parsing (pure) ----------------------------------------------------


@functools.lru_cache(maxsize=1024)
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
    plain = cron_fields(normalised)
    if plain is not None and plain.can_fire():
        return normalised  # plain syntax, checked by cron_fields: croniter would accept it too
    from croniter import CroniterError

    try:
        # A fixed base keeps this pure; an expression that can never fire fails here.
        _croniter(normalised, datetime(2000, 1, 1)).get_prev(datetime)
    except CroniterError as err:
        raise ScheduleError(f"invalid cron {expression!r} in {key!r}: {err}") from err
    return normalised


@dataclass(frozen=True)
class CronFields:
    """The values a plain cron expression matches, field by field (day of week: 0 is Sunday)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    def can_fire(self) -> bool:
        """False for a date that never exists, such as 30 February."""
        return any(day <= _DAYS_IN_MONTH[month] for month in self.months for day in self.days)

    def matches(self, wall: tuple[int, int, int, int, int]) -> bool:
        minute, hour, day, month, weekday = wall
        return (
            minute in self.minutes
            and hour in self.hours
            and day in self.days
            and month in self.months
            and weekday in self.weekdays
        )


_CRON_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {name: number for number, name in enumerate(("jan", "feb", "mar", "apr", "may", "jun"), 1)}
    | {name: number for number, name in enumerate(("jul", "aug", "sep", "oct", "nov", "dec"), 7)},
    {name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))},
)
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_PLAIN_CRON_PART = re.compile(r"^(\*|(\w+)(?:-(\w+))?)(?:/(\d+))?$")


@functools.lru_cache(maxsize=MEMO_LIMIT)
def cron_fields(expression: str) -> CronFields | None:
    """The field sets of a plain 5-field expression, or None where only croniter can say.

    Plain means numbers, names, ranges, steps and lists, with day-of-month or
    day-of-week (or both) left as ``*``. None for anything else (``L``, ``W``,
    ``#``, ``?``, values out of range, both day fields restricted, where cron
    matches either) and for expressions that are not valid at all: croniter
    then judges and evaluates them. Evaluating these sets is what makes a run
    over many distinct schedules cheap.
    """
    texts = expression.split()
    if len(texts) != 5 or (texts[2] != "*" and texts[4] != "*"):
        return None
    sets = [_cron_field_values(text.lower(), position) for position, text in enumerate(texts)]
    if any(values is None for values in sets):
        return None
    return CronFields(*sets)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)
def _cron_field_values(text: str, position: int) -> frozenset[int] | None:
    """The values of one field (cached: the many expressions of a fleet share their sets)."""
    low, high = _CRON_BOUNDS[position]
    names = _CRON_NAMES[position]
    values: set[int] = set()
    for part in text.split(","):
        found = _PLAIN_CRON_PART.match(part)
        if not found:
            return None
        whole, first, last, step = found.groups()
        if whole == "*":
            start, end = low, high
        else:
            start = _cron_value(first, names)
            end = start if last is None else _cron_value(last, names)
            if start is None or end is None or (step is not None and (last is None or start == end)):
                return None  # 'a/s' and 'a-a/s' mean different things to different crons: croniter decides
        if not low <= start <= end <= high or (step is not None and int(step) == 0):
            return None
        values.update(range(start, end + 1, int(step or 1)))
    if high == 7 and 7 in values:  # day of week: 7 is Sunday too
        values = (values - {7}) | {0}
    return frozenset(values)


def _cron_value(text: str, names: dict[str, int]) -> int | None:
    if text.isdigit():
        return int(text)
    return names.get(text)


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# --- Decision (pure) ------------------------------------------------------------


def _croniter(expression: str, start: datetime) -> Any:
    """croniter, imported on first use: runs whose expressions are all plain never load it."""
    from croniter import croniter

    return croniter(expression, start)


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
    walker = _croniter(expression, wall + timedelta(minutes=1))
    while True:
        instant = wall_to_instant(walker.get_prev(datetime), tz)
        if instant <= before:
            return instant


def next_fire(expression: str, tz_name: str, after: datetime) -> datetime:
    """The earliest instant strictly after `after` at which the expression fires in zone tz_name.

    The mirror of `latest_fire` (so latest_fire(e, z, t) <= t < next_fire(e, z, t)):
    croniter walks wall-clock times forward and each is mapped to an instant with
    `wall_to_instant`, the same daylight-saving rule, so the first one after
    `after` is the next. In the second pass of a repeated hour the walk skips the
    wall times whose first occurrence has already gone by.
    """
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    tz = zone(tz_name)
    wall = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    walker = _croniter(expression, wall)
    while True:
        instant = wall_to_instant(walker.get_next(datetime), tz)
        if instant > after:
            return instant


def latest_in_window(expression: str, tz_name: str, now: datetime, window: timedelta) -> datetime | None:
    """The latest instant in (now - window, now] at which the expression fires, or None.

    Plain expressions are matched against the window's minutes in the zone (a
    few set look-ups each); others take croniter's walk. Both follow the same
    daylight-saving rule, and the tests hold them to a brute-force oracle.
    """
    fields = cron_fields(expression)
    if fields is None:
        moment = latest_fire(expression, tz_name, now)
        return moment if moment > now - window else None
    for instant, walls in window_minutes(tz_name, now, window):
        if any(fields.matches(wall) for wall in walls):
            return instant
    return None


@functools.lru_cache(maxsize=1024)
def window_minutes(
    tz_name: str, now: datetime, window: timedelta
) -> tuple[tuple[datetime, tuple[tuple[int, int, int, int, int], ...]], ...]:
    """Each whole minute of (now - window, now], latest first, with the wall times that fire at it.

    A minute's wall time is (minute, hour, day, month, weekday with 0 Sunday).
    It has none in the second pass of a repeated hour (a time fires at its
    first occurrence), and at the moment clocks go forward it also carries the
    skipped wall times (they fire then). Cached: every schedule in a zone shares it.
    """
    tz = zone(tz_name)
    minute = timedelta(minutes=1)
    instant = now.replace(second=0, microsecond=0)
    result = []
    while instant > now - window:
        local = instant.astimezone(tz)
        wall = local.replace(tzinfo=None)
        walls = [] if local.fold else [wall]
        skipped = local.utcoffset() - (instant - minute).astimezone(tz).utcoffset()
        walls += [wall - skipped + minute * k for k in range(int(skipped / minute))]
        result.append(
            (instant, tuple((w.minute, w.hour, w.day, w.month, (w.weekday() + 1) % 7) for w in walls))
        )
        instant -= minute
    return tuple(result)


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
    latest: dict[Action, datetime | None] = {}
    for action, expressions in ((Action.START, schedule.start), (Action.STOP, schedule.stop)):
        if schedule.enforce:
            times = [latest_fire(expression, schedule.tz, now) for expression in expressions]
        else:
            times = [latest_in_window(expression, schedule.tz, now, window) for expression in expressions]
        latest[action] = max((moment for moment in times if moment is not None), default=None)
    start, stop = latest[Action.START], latest[Action.STOP]
    enforced = schedule.enforce
    if start is None and stop is None:
        return Due(None, enforced=enforced)
    if start is not None and stop is not None and start == stop:
        return Due(None, start, conflict=True, enforced=enforced)
    if stop is None or (start is not None and start > stop):
        return Due(Action.START, start, enforced=enforced)
    return Due(Action.STOP, stop, enforced=enforced)


def running_hours(schedule: Schedule, start: datetime, hours: int) -> list[bool]:
    """Whether the schedule keeps instances running at each of `hours` hourly instants from `start`.

    The state at an instant is set by the latest start or stop at or before it,
    however long ago: what `due_action` says with enforce on, whatever the
    schedule's own enforce. So a start-only schedule is running throughout and a
    stop-only one stopped. Where the latest start and stop fall at the same time
    (a conflict: nothing is done) an hour keeps the previous hour's state, and
    when nothing is known yet, the first hour, it counts as stopped.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    enforced = replace(schedule, enforce=True)
    states: list[bool] = []
    running = False
    for index in range(hours):
        due = due_action(enforced, start + timedelta(hours=index), timedelta(0))  # enforce: window unused
        if due.action is not None:
            running = due.action is Action.START
        states.append(running)
    return states


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


def check_url(url: str, allow_prefixes: Iterable[str], resolve: Callable[[str], list[str]]) -> list[str]:
    """The addresses to fetch url from: its host resolved once, every address public unless allowed.

    Refuses (ScheduleError) a URL that is not https to public addresses and not
    allowed. The fetch connects only to these addresses, so a DNS answer that
    changes after the check (DNS rebinding) cannot steer the request.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as err:
        raise ScheduleError(f"malformed schedule URL {redact_url(url)}") from err
    if not host:
        raise ScheduleError(f"schedule URL {redact_url(url)} has no host")
    allowed = url_is_allowed(url, allow_prefixes)
    if not allowed and parts.scheme.lower() != "https":
        raise ScheduleError(f"refused schedule URL {redact_url(url)}: only https is allowed (see {URL_ALLOW_SETTING})")
    try:
        addresses = resolve(host)
    except OSError as err:
        raise ScheduleError(f"cannot resolve host of schedule URL {redact_url(url)}: {err}") from err
    if not addresses:
        raise ScheduleError(f"host of schedule URL {redact_url(url)} resolves to no address")
    if allowed:
        return addresses
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        mapped = getattr(ip, "ipv4_mapped", None)
        if not (mapped or ip).is_global:
            raise ScheduleError(
                f"refused schedule URL {redact_url(url)}: {host} resolves to non-public address {address} "
                f"(see {URL_ALLOW_SETTING})"
            )
    return addresses


def resolve_host(host: str) -> list[str]:
    """The host's addresses, once each, in the resolver's order of preference."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(info[4][0] for info in infos))


def fetch_schedule_text(url: str, addresses: Sequence[str]) -> str:
    """GET a schedule document from one of the addresses within URL_DEADLINE_SECONDS, whatever the server does.

    Timeouts only bound each read, so a server sending its headers a byte at a
    time could hold a run for hours: the exchange runs in a daemon thread that
    is abandoned at the deadline (it ends when its socket does; being a daemon,
    it never holds the process).
    """
    outcome: list[str | BaseException] = []

    def fetch() -> None:
        try:
            outcome.append(_get_schedule_text(url, addresses))
        except BaseException as err:  # handed to the caller below
            outcome.append(err)

    worker = threading.Thread(target=fetch, name="schedule-fetch", daemon=True)
    worker.start()
    worker.join(URL_DEADLINE_SECONDS)
    if not outcome:
        raise ScheduleError(f"schedule URL {redact_url(url)} took longer than {URL_DEADLINE_SECONDS:g} s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _get_schedule_text(url: str, addresses: Sequence[str]) -> str:
    """GET from the first of the addresses that can be reached; any failure is this URL's ScheduleError."""
    import requests  # only runs that use URL schedules pay for importing requests

    # urllib3 logs each request line, query string included, at DEBUG: a presigned URL's signature.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)
    deadline = time.monotonic() + URL_DEADLINE_SECONDS
    shown = redact_url(url)
    try:
        for address in addresses[:-1]:
            try:
                body = _get_capped_body(url, address, deadline)
                break
            except requests.ConnectionError:  # no connection (IPv6 without a route, say): the next, as any client
                continue
        else:
            body = _get_capped_body(url, addresses[-1], deadline)
    except ScheduleError:
        raise
    except Exception as err:  # requests', urllib3's and the socket's errors alike: that URL's problem
        raise ScheduleError(f"cannot fetch schedule URL {shown}: {type(err).__name__}") from err
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ScheduleError(f"schedule at {shown} is not UTF-8 text") from err


def _get_capped_body(url: str, address: str, deadline: float) -> bytearray:
    """GET url from address with timeouts, a size cap while reading, no redirects; the body loop keeps the deadline."""
    import requests

    shown = redact_url(url)
    with requests.Session() as session:
        session.trust_env = False  # no proxies or .netrc credentials from the environment
        pinned = _pinned_adapter(address)
        session.mount("https://", pinned)
        session.mount("http://", pinned)
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
            # read1 returns whatever has arrived, so a server trickling bytes meets the deadline.
            while chunk := response.raw.read1(8192, decode_content=True):
                body += chunk
                if len(body) > URL_MAX_BYTES:
                    raise ScheduleError(f"schedule at {shown} is larger than {URL_MAX_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise ScheduleError(f"schedule URL {shown} took longer than {URL_DEADLINE_SECONDS:g} s")
    return body


def _pinned_adapter(address: str) -> Any:
    """A requests transport adapter that connects to address, whatever the URL's host.

    TLS still names the URL's host (SNI, and the certificate is checked against
    it), and so does the Host header: the server sees an ordinary request.
    """
    from requests.adapters import HTTPAdapter

    class PinnedAdapter(HTTPAdapter):
        def build_connection_pool_key_attributes(
            self, request: Any, verify: Any, cert: Any = None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
            if host_params["scheme"] == "https":
                # SNI, and the name the certificate must match (assert_hostname would only repeat it).
                pool_kwargs["server_hostname"] = host_params["host"]
            host_params["host"] = address
            return host_params, pool_kwargs

        def add_headers(self, request: Any, **kwargs: Any) -> None:
            request.headers["Host"] = _host_header(request.url)

    return PinnedAdapter()


def _host_header(url: str) -> str:
    """The Host header for url: its host (IPv6 bracketed), with the port unless it is the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default_port = 443 if parts.scheme.lower() == "https" else 80
    return host if parts.port in (None, default_port) else f"{host}:{parts.port}"


class ScheduleResolver:
    """Turns tag values into Schedules, each distinct value and URL once per run (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        fetch: Callable[[str, Sequence[str]], str] = fetch_schedule_text,
        resolve: Callable[[str], list[str]] = resolve_host,
    ) -> None:
        self._settings = settings
        self._fetch = fetch
        self._resolve = resolve
        self._inline = RunCache()
        self._by_url = OncePerKey()  # never forgotten: one fetch per URL per run, even when regions ask at once

    def resolve(self, value: str) -> Schedule | ScheduleError:
        """The Schedule of a tag value, or the ScheduleError saying why there is none.

        Errors are returned, not raised: one cached error serves many instances.
        """
        if is_url(value):
            return self._from_url(value.strip())
        result = self._inline.get(value)
        if result is None:
            result = self._inline.put(value, self._parse(value))
        return result

    def _parse(self, text: str) -> Schedule | ScheduleError:
        try:
            return parse_schedule_json(text, self._settings.timezone)
        except ScheduleError as err:
            return err

    def _from_url(self, url: str) -> Schedule | ScheduleError:
        result: Schedule | ScheduleError = self._by_url.get(url, lambda: self._fetch_and_parse(url))
        return result

    def _fetch_and_parse(self, url: str) -> Schedule | ScheduleError:
        shown = redact_url(url)
        try:
            addresses = check_url(url, self._settings.url_allow, self._resolve)
            text = self._fetch(url, addresses)
            try:
                return parse_schedule_json(text, self._settings.timezone)
            except ScheduleError as err:
                raise ScheduleError(f"schedule at {shown}: {err}") from err
        except ScheduleError as err:
            logger.warning("schedule URL %s unusable: %s", shown, err)
            return err


# --- EC2 (edge: AWS) ------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One account and region to schedule; role_arn None is the function's own account."""

    account: str
    region: str
    role_arn: str | None = None

    def __str__(self) -> str:
        return f"{self.account}/{self.region}"


@dataclass
class TargetResult:
    target: Target
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    # (instance ID, reason) pairs: a third of the memory of the summary's dicts, made at the end.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[tuple[str | None, str]] = field(default_factory=list)
    instances: int = 0
    failed: bool = False

    def skip(self, instance_id: str, reason: str) -> None:
        self.skipped.append((instance_id, reason))

    def error(self, instance_id: str | None, error: str) -> None:
        self.errors.append((instance_id, error))

    def skipped_entries(self) -> Iterator[dict[str, Any]]:
        for instance_id, reason in self.skipped:
            yield {"instance_id": instance_id, **self._where(), "reason": reason}

    def error_entries(self) -> Iterator[dict[str, Any]]:
        for instance_id, error in self.errors:
            yield {"instance_id": instance_id, **self._where(), "error": error}

    def fail(self, problem: str) -> TargetResult:
        """The target could not be read: reported with instance_id null; the run will raise."""
        self.failed = True
        self.error(None, f"{self.target}: {problem}")
        logger.error("%s: %s", self.target, problem)
        return self

    def _where(self) -> dict[str, str]:
        return {"account": self.target.account, "region": self.target.region}

    def totals(self) -> dict[str, Any]:
        return {
            **self._where(),
            "instances": self.instances,
            "started": self.started,
            "stopped": self.stopped,
            "skipped": len(self.skipped),
            "errors": len(self.errors),
        }


def aws_session() -> Any:
    """A boto3 session whose responses keep timestamps as text.

    Parsing the four timestamps of every instance (launch and attach times) with
    dateutil is about a third of botocore's CPU on DescribeInstances, and the
    scheduler reads none of them.
    """
    import botocore.session

    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=str)
    return boto3.session.Session(botocore_session=core)


def ec2_client(region: str, session: Any, credentials: Mapping[str, str] | None = None) -> Any:
    """An EC2 client with botocore's standard retry mode (throttling included).

    `credentials` (an assumed role's) make a client for another account from the
    same session, so the service model is loaded once however many accounts.
    """
    config = Config(
        region_name=region,
        retries={"mode": "standard", "total_max_attempts": EC2_MAX_ATTEMPTS},
        connect_timeout=10,
        read_timeout=60,
    )
    keys = (
        {
            "aws_access_key_id": credentials["AccessKeyId"],
            "aws_secret_access_key": credentials["SecretAccessKey"],
            "aws_session_token": credentials["SessionToken"],
        }
        if credentials
        else {}
    )
    return session.client("ec2", config=config, **keys)


def sts_client(session: Any, settings: Settings) -> Any:
    return session.client(
        "sts",
        region_name=settings.regions[0],
        config=Config(retries={"mode": "standard", "total_max_attempts": EC2_MAX_ATTEMPTS}),
    )


def assume_role(sts: Any, role_arn: str, settings: Settings) -> dict[str, str]:
    """Temporary credentials for a role in another account (STS AssumeRole)."""
    name = re.sub(r"[^\w+=,.@-]", "-", os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "ec2-powercycle"))[:64]
    extra = {"ExternalId": settings.external_id} if settings.external_id else {}
    reply = sts.assume_role(RoleArn=role_arn, RoleSessionName=name, DurationSeconds=ASSUMED_ROLE_SECONDS, **extra)
    return reply["Credentials"]


def tagged_instances(ec2: Any, tag: str) -> Iterator[dict[str, Any]]:
    """Every instance carrying the tag in a readable state, page by page (streamed)."""
    paginator = ec2.get_paginator("describe_instances")
    pages = paginator.paginate(
        Filters=[
            {"Name": "tag-key", "Values": [tag]},
            {"Name": "instance-state-name", "Values": list(READ_STATES)},
        ],
        PaginationConfig={"PageSize": DESCRIBE_PAGE_SIZE},  # read at call time: tests shrink it
    )
    page_iterator = iter(pages)
    while (page := next(page_iterator, None)) is not None:
        reservations = page.get("Reservations", ())
        instances = [instance for reservation in reservations for instance in reservation.get("Instances", ())]
        # Let go of this page before the next is read and parsed: one page in memory, not two.
        page = reservations = None
        yield from instances
        instances = []


def plan_region(
    instances: Iterable[dict[str, Any]],
    settings: Settings,
    now: datetime,
    resolver: ScheduleResolver,
    result: TargetResult,
    due_cache: RunCache,
) -> dict[Action, list[str]]:
    """Decide every instance; note skips and errors in result; return the IDs to act on.

    Each distinct (tag value, state) pair is decided once, so an instance that
    shares its schedule with others costs a dictionary look-up.
    """
    to_act: dict[Action, list[str]] = {Action.START: [], Action.STOP: []}
    decisions = RunCache()  # (tag value, state) -> Decision
    for instance in instances:
        instance_id = instance["InstanceId"]
        result.instances += 1
        tags = {tag["Key"]: tag.get("Value", "") for tag in instance.get("Tags", ())}
        reason = guard_reason(tags, settings.protected_environments)
        if reason:
            result.skip(instance_id, reason)
            continue
        key = (tags.get(settings.tag, ""), instance["State"]["Name"])
        decision = decisions.get(key)
        if decision is None:
            decision = decisions.put(key, _decide_value(*key, settings, now, resolver, due_cache))
        if decision.outcome is Outcome.ACT:
            to_act[decision.action].append(instance_id)
        elif decision.outcome is Outcome.SKIP:
            result.skip(instance_id, decision.reason)
        elif decision.outcome is Outcome.ERROR:
            result.error(instance_id, decision.reason)
    return to_act


def _decide_value(
    value: str,
    state: str,
    settings: Settings,
    now: datetime,
    resolver: ScheduleResolver,
    due_cache: RunCache,
) -> Decision:
    schedule = resolver.resolve(value)
    if isinstance(schedule, ScheduleError):
        return Decision(Outcome.ERROR, None, f"bad schedule in tag {settings.tag!r}: {schedule}")
    due = due_cache.get(schedule)
    if due is None:
        try:
            due = due_cache.put(schedule, due_action(schedule, now, settings.window))
        except (ValueError, OverflowError) as err:  # croniter's own errors are ValueErrors
            return Decision(Outcome.ERROR, None, f"cannot evaluate schedule in tag {settings.tag!r}: {err}")
    return decide(due, state)


def act(ec2: Any, action: Action, instance_ids: list[str], result: TargetResult) -> list[str]:
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
        except (ClientError, BotoCoreError) as err:
            names_instances = isinstance(err, ClientError) and err.response.get("Error", {}).get("Code") not in (
                BATCH_WIDE_ERRORS
            )
            if names_instances and len(batch) > 1:
                middle = len(batch) // 2
                attempt(batch[:middle])
                attempt(batch[middle:])
                return
            for instance_id in batch:
                result.error(instance_id, f"{action.value} failed: {_describe_error(err)}")
            return
        done.extend(batch)

    for offset in range(0, len(instance_ids), ACTION_BATCH_SIZE):
        attempt(instance_ids[offset : offset + ACTION_BATCH_SIZE])
    return done


def _aws_message(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Message", "")).strip()


class Clients:
    """EC2 clients for targets: made under a lock (a boto3 session is not thread-safe), each role assumed once."""

    def __init__(self, session: Any, settings: Settings) -> None:
        self._session = session
        self._settings = settings
        self._lock = threading.Lock()  # guards the session; held only while making a client
        self._sts: Any = None
        self._credentials = OncePerKey()  # role ARN -> credentials, or why there are none

    def ec2(self, target: Target) -> Any:
        credentials = self._role_credentials(target.role_arn) if target.role_arn else None
        with self._lock:
            return ec2_client(target.region, self._session, credentials)

    def _role_credentials(self, role_arn: str) -> dict[str, str]:
        """The role's credentials, assumed once per run: its other regions wait, other roles do not."""
        with self._lock:
            if self._sts is None:
                self._sts = sts_client(self._session, self._settings)
        credentials = self._credentials.get(role_arn, lambda: self._assume(role_arn))
        if isinstance(credentials, str):
            raise RoleError(credentials)
        return credentials

    def _assume(self, role_arn: str) -> dict[str, str] | str:
        try:
            return assume_role(self._sts, role_arn, self._settings)
        except (ClientError, BotoCoreError) as err:
            return f"cannot assume role {role_arn}: {_describe_error(err)}"


def targets_of(settings: Settings, own_account: str = OWN_ACCOUNT) -> list[Target]:
    """Every account and region pair to schedule: the own account (unless turned off), then each role's."""
    accounts: list[tuple[str, str | None]] = [(own_account, None)] if settings.own_account else []
    accounts += [(arn.split(":")[4], arn) for arn in settings.role_arns]  # role ARNs were checked at start-up
    return [Target(account, region, role_arn) for account, role_arn in accounts for region in settings.regions]


def run_target(
    target: Target,
    clients: Clients,
    settings: Settings,
    now: datetime,
    resolver: ScheduleResolver,
    due_cache: RunCache,
) -> TargetResult:
    """Read, decide and act in one account and region; never raises."""
    result = TargetResult(target)
    try:
        ec2 = clients.ec2(target)
        to_act = plan_region(tagged_instances(ec2, settings.tag), settings, now, resolver, result, due_cache)
    except (ClientError, BotoCoreError, RoleError) as err:
        problem = str(err) if isinstance(err, RoleError) else f"cannot read instances: {_describe_error(err)}"
        return result.fail(problem)
    except Exception as err:  # a bug must not cost the other targets their run; it still fails the run
        logger.exception("%s: unexpected error", target)
        return result.fail(f"unexpected error: {type(err).__name__}: {err}")
    for action, ids in to_act.items():
        done = ids if settings.dry_run else act(ec2, action, ids, result)
        (result.started if action is Action.START else result.stopped).extend(done)
    logger.info(
        "%s: %d tagged instances, %d started, %d stopped, %d skipped, %d errors%s",
        target,
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


def summarise(now: datetime, settings: Settings, results: list[TargetResult]) -> dict[str, Any]:
    return {
        "time": _iso(now),
        "window_start": _iso(now - settings.window),
        "window_end": _iso(now),
        "dry_run": settings.dry_run,
        "regions": list(dict.fromkeys(result.target.region for result in results)),
        "accounts": list(dict.fromkeys(result.target.account for result in results)),
        "targets": [result.totals() for result in results],
        "instances": sum(result.instances for result in results),
        "started": [i for result in results for i in result.started],
        "stopped": [i for result in results for i in result.stopped],
        "skipped": [entry for result in results for entry in result.skipped_entries()],
        "errors": [entry for result in results for entry in result.error_entries()],
    }


def log_summary(summary: dict[str, Any]) -> None:
    """Log the summary as one JSON line, cutting long lists so the line fits in a log event."""
    entries = sum(len(summary[key]) for key in ("started", "stopped", "skipped", "errors"))
    # An entry is some 20 characters of JSON or more: past this many, do not build a line only to cut it.
    line = json.dumps(summary, default=str) if entries < SUMMARY_LOG_MAX_CHARS // 20 else ""
    if not line or len(line) > SUMMARY_LOG_MAX_CHARS:
        shortened = dict(summary)
        for key in ("started", "stopped", "skipped", "errors"):
            items = summary[key]
            shortened[key] = items[:100]
            shortened[f"{key}_count"] = len(items)
        shortened["targets"] = [
            {**totals, "started": len(totals["started"]), "stopped": len(totals["stopped"])}
            for totals in summary.get("targets", ())
        ]
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
    return run(Settings.from_env(), reference_time(event), own_account_id(context))


def own_account_id(context: Any) -> str:
    """The function's account, from the Lambda context's function ARN; OWN_ACCOUNT when run elsewhere."""
    arn = str(getattr(context, "invoked_function_arn", "") or "")
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4].isdigit() else OWN_ACCOUNT


def run(settings: Settings, now: datetime, own_account: str = OWN_ACCOUNT, session: Any = None) -> dict[str, Any]:
    """One scheduling run at `now` for every account and region.

    Targets run concurrently in a pool of settings.max_workers; a failed target
    is reported and the others go on; RunError is raised after the summary.
    `session` (a boto3 Session) is for callers that bring their own.
    """
    resolver = ScheduleResolver(settings)
    due_cache = RunCache()
    clients = Clients(session or aws_session(), settings)
    targets = targets_of(settings, own_account)
    with ThreadPoolExecutor(max_workers=min(settings.max_workers, len(targets))) as pool:
        results = list(
            pool.map(lambda target: run_target(target, clients, settings, now, resolver, due_cache), targets)
        )
    summary = summarise(now, settings, results)
    log_summary(summary)
    failed = [str(result.target) for result in results if result.failed]
    if failed:
        raise RunError(f"could not handle {', '.join(failed)}; see the summary's errors", summary)
    return summary


# --- Command line ---------------------------------------------------------------
#
# `python ec2_powercycle.py check|plan|run ...`. Only a run as a program uses it:
# argparse and cron-descriptor are imported inside, so the Lambda never loads them.

CLI_EPILOG = """\
the tag:
  key ec2Powercycle (EC2_POWERCYCLE_TAG), value a JSON schedule such as
    {"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5", "tz": "Europe/London"}
  or the https:// URL of such a document. start, stop: a 5-field cron expression
  (minute hour day-of-month month day-of-week) or a list of them; either may be
  absent. tz: an IANA zone (default EC2_POWERCYCLE_TIMEZONE, else UTC).
  enforce: true holds the scheduled state every run (default false: each start
  and stop acts once, manual changes are respected).

exit codes: 0 fine; 1 invalid schedule, or errors in a plan or run;
  2 usage or set-up problem (bad option or setting, no region, unknown region,
  no credentials).
"""
EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_SETUP = 2
TIMELINE_HOURS = 7 * 24
TIMELINE_MAX_HOURS = 31 * 24


@dataclass(frozen=True)
class PlanEntry:
    """One tagged instance as `plan` shows it."""

    instance_id: str
    region: str
    name: str
    state: str
    source: str  # "inline" or "url"
    schedule: Schedule | None
    untouched: str | None  # why the scheduler will not touch it, or None
    next_start: datetime | None = None
    next_stop: datetime | None = None
    now: Decision | None = None  # what a run at the plan's time would do


@dataclass(frozen=True)
class Style:
    """ANSI colour on a terminal (unless NO_COLOR is set), plain text elsewhere."""

    colour: bool = False
    running: str = "#"
    stopped: str = "."

    @classmethod
    def for_stream(cls, stream: Any) -> Style:
        colour = stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        try:
            "█·".encode(stream.encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            return cls(colour)
        return cls(colour, "█", "·")

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
    """The next `count` start times and next `count` stop times after `after`, in time order."""
    found: list[tuple[datetime, Action]] = []
    for action, expressions in ((Action.START, schedule.start), (Action.STOP, schedule.stop)):
        times: set[datetime] = set()
        for expression in expressions:
            moment = after
            for _ in range(count):
                moment = next_fire(expression, schedule.tz, moment)
                times.add(moment)
        found.extend((moment, action) for moment in sorted(times)[:count])
    return sorted(found)


def schedule_document(schedule: Schedule) -> dict[str, Any]:
    """A Schedule as JSON data (lists of expressions, zone, enforce)."""
    return {"start": list(schedule.start), "stop": list(schedule.stop), "tz": schedule.tz, "enforce": schedule.enforce}


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
    instance: dict[str, Any], region: str, settings: Settings, now: datetime, resolver: ScheduleResolver
) -> PlanEntry:
    """What the scheduler makes of one instance: the same guards, resolver and decision as a run."""
    tags = {tag["Key"]: tag.get("Value", "") for tag in instance.get("Tags", ())}
    value = tags.get(settings.tag, "")
    base = {
        "instance_id": instance["InstanceId"],
        "region": region,
        "name": tags.get("Name", ""),
        "state": instance["State"]["Name"],
        "source": "url" if is_url(value) else "inline",
    }
    reason = guard_reason(tags, settings.protected_environments)
    if reason:
        return PlanEntry(**base, schedule=None, untouched=reason)
    schedule = resolver.resolve(value)
    if isinstance(schedule, ScheduleError):
        return PlanEntry(**base, schedule=None, untouched=f"bad schedule in tag {settings.tag!r}: {schedule}")
    return PlanEntry(
        **base,
        schedule=schedule,
        untouched=None,
        next_start=min((next_fire(e, schedule.tz, now) for e in schedule.start), default=None),
        next_stop=min((next_fire(e, schedule.tz, now) for e in schedule.stop), default=None),
        now=decide(due_action(schedule, now, settings.window), base["state"]),
    )


def timeline_start(now: datetime, tz_name: str) -> datetime:
    """The start of the hour containing `now` on the clocks of zone tz_name."""
    local = now.astimezone(zone(tz_name))
    return now - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)


def plan_timeline(entries: list[PlanEntry], start: datetime, hours: int, tz_name: str) -> dict[str, Any]:
    """One row per distinct schedule of the instances it will act on: running hours and stopped share."""
    users: dict[Schedule, list[str]] = {}
    for entry in entries:
        if entry.schedule is not None:
            users.setdefault(entry.schedule, []).append(entry.instance_id)
    rows = []
    ranked = sorted(users.items(), key=lambda item: -len(item[1]))  # stable: ties keep first-seen order
    for number, (schedule, instance_ids) in enumerate(ranked, 1):
        running = running_hours(schedule, start, hours)
        stopped = running.count(False)
        rows.append(
            {
                "id": f"S{number}",
                "schedule": schedule_document(schedule),
                "instances": len(instance_ids),
                "instance_ids": instance_ids,
                "running": running,
                "stopped_hours": stopped,
                "stopped_share": round(stopped / hours, 4),
            }
        )
    return {"start": _iso(start), "hours": hours, "zone": tz_name, "schedules": rows}


def plan_data(
    entries: list[PlanEntry], settings: Settings, now: datetime, timeline: dict[str, Any], problems: list[str]
) -> dict[str, Any]:
    """The plan as JSON data (`plan --json`)."""
    return {
        "time": _iso(now),
        "tag": settings.tag,
        "regions": list(settings.regions),
        "instances": [
            {
                "instance_id": entry.instance_id,
                "region": entry.region,
                "name": entry.name,
                "state": entry.state,
                "source": entry.source,
                "schedule": None if entry.schedule is None else schedule_document(entry.schedule),
                "touched": entry.untouched is None,
                "reason": entry.untouched,
                "next_start": _iso(entry.next_start) or None,
                "next_stop": _iso(entry.next_stop) or None,
                "now": None if entry.now is None else {"outcome": entry.now.outcome.value, "reason": entry.now.reason},
            }
            for entry in entries
        ],
        "timeline": timeline,
        "errors": problems,
    }


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
    """A schedule_document in one line: "start 0 8 * * 1-5, stop 0 18 * * 1-5 (Europe/London)"."""
    parts = [f"{key} {' or '.join(document[key])}" for key in ("start", "stop") if document[key]]
    return ", ".join(parts) + f" ({document['tz']}{', enforce' if document['enforce'] else ''})"


def format_check(schedule: Schedule, value: str, now: datetime, count: int, style: Style) -> str:
    """A valid schedule: zone, enforce, each expression in words, the next times in its zone and UTC."""
    source = "a URL" if is_url(value) else "inline JSON"
    lines = [f"{style.good('valid')} schedule ({source})", f"  zone     {schedule.tz}"]
    if schedule.enforce:
        lines.append("  enforce  true: the latest start or stop is held every run; manual changes are undone")
    else:
        lines.append("  enforce  false: each start and stop acts once; manual changes are respected")
    width = max(len(expression) for expression in (*schedule.start, *schedule.stop))
    for key, expressions in (("start", schedule.start), ("stop", schedule.stop)):
        if not expressions:
            lines.append(f"  {key:<7}  none")
        for expression in expressions:
            words = describe_cron(expression)
            lines.append(f"  {key:<7}  {expression:<{width}}  {words or ''}".rstrip())
    lines.append("")
    lines.append(f"next times after {_utc(now)}:")
    rows = [
        [action.value, _when(moment, schedule.tz), _utc(moment), _until(moment, now)]
        for moment, action in upcoming_times(schedule, now, count)
    ]
    lines.extend("  " + line for line in _table(rows))
    return "\n".join(lines)


def format_plan(
    entries: list[PlanEntry], settings: Settings, now: datetime, timeline: dict[str, Any], style: Style
) -> str:
    """The instance table (with why an instance is left alone) followed by the timeline."""
    regions = ", ".join(settings.regions)
    lines = [style.bold(f"Plan at {_utc(now)}: {len(entries)} instances tagged {settings.tag} in {regions}")]
    many_regions = len(settings.regions) > 1
    header = ["NAME", "INSTANCE", *(["REGION"] if many_regions else []), "STATE", "SCHEDULE", "ZONE"]
    header += ["NEXT START", "NEXT STOP"]
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
        region = [entry.region] if many_regions else []
        rows.append([entry.name or "-", entry.instance_id, *region, entry.state, entry.source, zone_name, *times])
    table = _table(rows) if entries else []
    if table:
        lines.extend(["", style.bold(table[0])])
    for entry, line in zip(entries, table[1:], strict=True):
        lines.append(line)
        if entry.untouched:
            lines.append("    " + style.warn(f"not touched: {entry.untouched}"))
        elif entry.now is not None and entry.now.outcome is not Outcome.IDLE:
            mark = {Outcome.ACT: style.good, Outcome.SKIP: style.warn}.get(entry.now.outcome, style.bad)
            lines.append("    " + mark(f"a run now: {entry.now.reason}"))
    lines.append("")
    lines.extend(format_timeline(timeline, style))
    return "\n".join(lines)


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
            f"({style.running} running, {style.stopped} stopped)"
        )
    ]
    labels = [f"{row['id']}  {row['instances']} instance{'s' if row['instances'] != 1 else ''}" for row in rows]
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
        shading = "".join(
            style.good(style.running) if running else style.stopped for running in row["running"]
        )
        share = f"{row['stopped_share']:.0%} stopped ({row['stopped_hours']} of {hours} h)"
        lines.append(f"{label.ljust(margin)}{shading}  {share}")
    lines.append("")
    lines.extend(f"{row['id']}  {_schedule_words(row['schedule'])}" for row in rows)
    return lines


def format_run(summary: dict[str, Any], labels: Mapping[str, tuple[str, str]], style: Style) -> str:
    """The run summary as a table; labels maps instance IDs to (Name tag, region) where known."""
    start = datetime.fromisoformat(summary["window_start"].replace("Z", "+00:00"))
    now = datetime.fromisoformat(summary["time"].replace("Z", "+00:00"))
    dry = " (dry run: nothing changed)" if summary["dry_run"] else ""
    lines = [
        style.bold(
            f"Run at {_utc(now)}, window {start:%H:%M} to {now:%H:%M} UTC, {', '.join(summary['regions'])}: "
            f"{summary['instances']} tagged instances{dry}"
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
    for entry in summary["skipped"]:
        add("skipped", style.warn, entry["instance_id"], entry["region"], entry["reason"])
    for entry in summary["errors"]:
        add("failed", style.bad, entry["instance_id"], entry["region"], entry["error"])
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
    return "\n".join(lines)


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
    if args.json:
        expressions = [*schedule.start, *schedule.stop]
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
                    for moment, action in upcoming_times(schedule, now, args.count)
                ],
            }
        )
    elif not args.quiet:
        print(format_check(schedule, value, now, args.count, style))
    return EXIT_OK


def _read_region(region: str, ec2: Any, settings: Settings) -> list[dict[str, Any]] | str:
    """The tagged instances of a region (the handler's paging and filters), or why they cannot be read."""
    try:
        return list(tagged_instances(ec2, settings.tag))
    except (ClientError, BotoCoreError) as err:
        return f"cannot read instances in {region}: {_describe_error(err)}"


def _plan_command(args: Any, style: Style) -> int:
    settings = _cli_settings(args, aws=True)
    now = _cli_time(args.at)
    tz_name = args.tz or settings.timezone
    try:
        zone(tz_name)
    except ScheduleError as err:
        raise ConfigError(f"--tz: {err}") from err
    resolver = ScheduleResolver(settings)
    session = aws_session()  # as in run(): one session, a client per region, used by one thread each
    clients = {region: ec2_client(region, session) for region in settings.regions}
    with ThreadPoolExecutor(max_workers=len(settings.regions)) as pool:
        read = list(
            pool.map(lambda region: (region, _read_region(region, clients[region], settings)), settings.regions)
        )
    problems = [instances for _, instances in read if isinstance(instances, str)]
    entries = sorted(
        (
            plan_entry(instance, region, settings, now, resolver)
            for region, instances in read
            if not isinstance(instances, str)
            for instance in instances
        ),
        key=lambda entry: (entry.region, entry.name, entry.instance_id),
    )
    timeline = plan_timeline(entries, timeline_start(now, tz_name), args.hours, tz_name)
    if args.json:
        _print_json(plan_data(entries, settings, now, timeline, problems))
    elif len(problems) < len(read):
        print(format_plan(entries, settings, now, timeline, style))
    for problem in problems:
        print(f"ec2_powercycle: error: {problem}", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


def _instance_labels(regions: list[str], settings: Settings) -> dict[str, tuple[str, str]]:
    """Instance ID -> (Name tag, region) of the tagged instances, for the run table; best effort."""
    labels: dict[str, tuple[str, str]] = {}
    session = aws_session()
    for region in regions:
        instances = _read_region(region, ec2_client(region, session), settings)
        for instance in instances if isinstance(instances, list) else ():
            tags = {tag["Key"]: tag.get("Value", "") for tag in instance.get("Tags", ())}
            labels[instance["InstanceId"]] = (tags.get("Name", ""), region)
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
        print(f"ec2_powercycle: error: {failure}", file=sys.stderr)
    return EXIT_PROBLEMS if summary["errors"] else EXIT_OK


def _cli_parser() -> Any:
    import argparse

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
        prog="ec2_powercycle.py",
        description="Start and stop EC2 instances on cron schedules in a tag: "
        "check a tag value, plan what the schedules will do, run the scheduler once.",
        epilog=CLI_EPILOG,
        formatter_class=formatter,
    )
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
    check.set_defaults(command=_check_command)

    plan = command(
        "plan",
        [common, at, aws],
        "show what the schedules will do to the tagged instances, and a week timeline",
        "Read the tagged instances as a run does and show, per instance, its schedule, the next start "
        "and stop, and why it will not be touched; then a timeline, one row per distinct schedule, "
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
        "prints what was started, stopped, skipped and failed (--json: the summary the handler returns).",
    )
    run_parser.add_argument("--dry-run", action="store_true", help="decide and report, change nothing")
    run_parser.set_defaults(command=_run_command)
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
    _cli_logging(args.verbose)
    try:
        return args.command(args, Style.for_stream(sys.stdout))
    except (ConfigError, BotoCoreError) as err:
        print(f"ec2_powercycle: error: {err}", file=sys.stderr)
        return EXIT_SETUP
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
