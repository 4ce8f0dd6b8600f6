"""ec2-powercycle: start and stop EC2 instances on schedules written in a tag.

The AWS Lambda function (``ec2_powercycle.handler``), run by an EventBridge rule
every 15 minutes; it also runs locally::

    python -c "from ec2_powercycle import *; handler()"

An instance opts in with a tag (``ec2Powercycle``) whose value is a JSON
schedule such as ``{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5"}`` or the
https URL of one. A run finds its accounts and regions (``discover_targets``),
reads each target's tagged instances, decides each one (``decide_instance``) and
starts or stops them in batches; past one invocation's share it sends chunks to
itself (``fan_out``). This module holds only what a run needs, in the order a run
goes: settings, schedule parsing, the decision (pure: no clock, no network, no
boto3), schedules behind URLs, EC2, the run and the handler. The command line
(``check``, ``plan``, ``run``, ``override``) is ``ec2_powercycle_cli`` beside it,
not shipped in the zip.

Auto Scaling groups carrying the same tag follow the same schedules through the
same decision (``decide_resource``): a stop saves a group's sizes in its tag
``ec2Powercycle:size`` and scales it to zero, a start restores them.

After a target's actions a run may also write status tags on its instances
(``<tag>:last-action``, ``<tag>:error``) and, after every target's, put an event
per action and error on an EventBridge bus; every run counts the instance-hours
its schedules keep stopped (``StoppedInstanceHours``, by instance type).

The manual is docs/ (README.md is its front page):

- docs/schedules.md: the tag, cron, zones, ``enforce``, hibernate, skip days, overrides, Auto Scaling
  groups, maintenance windows (``"maintenance_windows"``: running for SSM's patching)
- docs/decisions.md: the window rule, catch-up, starts that did not take, guards, choices
- docs/settings.md: every ``EC2_POWERCYCLE_*`` variable, its default and its bad values
- docs/operations.md: the summary a run returns, metrics, notifications, faults
- docs/organizations.md: many accounts, a whole organization, fan-out
- docs/security.md: IAM policies, who may write the tags, URL rules
- docs/development.md: tests, fixtures, how to add a setting
"""

from __future__ import annotations

import os
import sys

# The deployment zip carries its dependencies in lib/ beside this file.
_LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
if os.path.isdir(_LIB) and _LIB not in sys.path:
    sys.path.insert(0, _LIB)

import contextlib
import functools
import ipaddress
import itertools
import json
import logging
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, PaginationError

__all__ = ["handler"]
__version__ = "1.2.0"  # the one place: pyproject.toml, package.sh (the zip's name) and --version read it; CHANGELOG.md

logger = logging.getLogger("ec2_powercycle")
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")

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
CATCH_UP_SETTING = "EC2_POWERCYCLE_CATCH_UP_MINUTES"
NOTIFY_TOPIC_SETTING = "EC2_POWERCYCLE_NOTIFY_TOPIC_ARN"
ORGANIZATION_ROLE_SETTING = "EC2_POWERCYCLE_ORGANIZATION_ROLE"
ORGANIZATION_UNITS_SETTING = "EC2_POWERCYCLE_ORGANIZATION_UNITS"
EXCLUDE_ACCOUNTS_SETTING = "EC2_POWERCYCLE_EXCLUDE_ACCOUNTS"
TARGETS_PER_INVOCATION_SETTING = "EC2_POWERCYCLE_TARGETS_PER_INVOCATION"
MAINTENANCE_LEAD_SETTING = "EC2_POWERCYCLE_MAINTENANCE_LEAD_MINUTES"
MAX_EVENT_AGE_SETTING = "EC2_POWERCYCLE_MAX_EVENT_AGE_MINUTES"
STATUS_TAGS_SETTING = "EC2_POWERCYCLE_STATUS_TAGS"
EVENT_BUS_SETTING = "EC2_POWERCYCLE_EVENT_BUS"

DEFAULT_TAG = "ec2Powercycle"
DEFAULT_WINDOW_MINUTES = 15
DEFAULT_TIMEZONE = "UTC"
DEFAULT_PROTECTED_ENVIRONMENTS = "p"
DEFAULT_MAX_WORKERS = 32  # I/O-bound targets: 32 threads keep one vCPU busy at 0.3 s a request (bench/org.py)
DEFAULT_CATCH_UP_MINUTES = 60  # or the window, when that is longer
OWN_ACCOUNT = "own"  # the label of the function's own account when its ID is not known
DEFAULT_FUNCTION_NAME = "ec2-powercycle"  # the metrics' FunctionName outside Lambda
ALL_REGIONS = "all"  # EC2_POWERCYCLE_REGIONS=all: the regions enabled in each account
DEFAULT_TARGETS_PER_INVOCATION = 100
DEFAULT_MAINTENANCE_LEAD_MINUTES = 20  # an instance started in the run before a window is ready when it opens
EVENT_AGE_MARGIN_MINUTES = 5  # the default event age is the window plus this
EVENT_CLOCK_SKEW = timedelta(minutes=5)  # how far ahead of the clock an event's time may be

ENVIRONMENT_TAG = "environment"
AUTOSCALING_TAG = "aws:autoscaling:groupName"
EKS_NODEGROUP_TAG = "eks:nodegroup-name"  # on the Auto Scaling groups (and their instances) of EKS node groups

# --- Limits ---------------------------------------------------------------------

DESCRIBE_PAGE_SIZE = 1000
ACTION_BATCH_SIZE = 100
ASSUMED_ROLE_SECONDS = 3600  # the longest a role allows unless its MaxSessionDuration is raised
ROLE_REUSE_MARGIN = timedelta(minutes=15)  # assumed credentials are reused while a whole run fits in what is left
# EC2 clients of assumed roles an execution environment keeps for later runs. Each costs about 1.4 MB and
# 20 ms of CPU to make (botocore builds the client's class anew), so an organization's thousands are not kept.
ROLE_CLIENTS_KEPT = 16
EC2_MAX_ATTEMPTS = 5  # in all, first try included; backoff keeps a throttled run within a Lambda timeout
URL_TIMEOUT_SECONDS = 5.0
URL_DEADLINE_SECONDS = 10.0
URL_MAX_BYTES = 64 * 1024
URL_FETCH_WORKERS = 16  # URLs a run fetches at once: 24 slow URLs cost two deadlines, not 24
# Of the invocation's time left at a run's start, the part kept from URL fetching for the actions, the summary,
# the metrics and the notification: the larger of these, never more than half (url_fetch_deadline).
URL_BUDGET_RESERVE_SECONDS = 60.0
URL_BUDGET_RESERVE_SHARE = 0.2
URL_CUT_GRACE_SECONDS = 1.0  # a fetch cut at its deadline ends at once unless it is in a name look-up
URL_SHOWN_MAX_CHARS = 200  # a URL in a message is cut past this, with its length
URL_DECODE_ROUNDS = 4  # percent-decodings a URL path gets in the search for dot segments (%252e takes two)
SUMMARY_LOG_MAX_CHARS = 200_000  # CloudWatch Logs cuts events at 256 KiB
SNS_MESSAGE_MAX_BYTES = 200_000  # SNS refuses messages over 256 KiB
ERROR_MAX_CHARS = 1000  # an error message, cut where it is made (PowercycleError)
VALUE_SHOWN_CHARS = 60  # how much of an untrusted value a message shows (`quoted`)
JSON_MAX_DEPTH = 16  # nesting a tag's or a URL's JSON may have; checked before parsing (`load_json`)
# Cut in a long log line.
SUMMARY_LISTS = (
    "started",
    "stopped",
    "skipped",
    "errors",
    "caught_up",
    "hibernated",
    "groups_started",
    "groups_stopped",
)
# A chunk event of this many targets is about 110 KB, well within an asynchronous invocation's 256 KB payload.
MAX_TARGETS_PER_INVOCATION = 1000
MEMO_LIMIT = 4096  # entries a run remembers per memo before starting afresh (flat memory, see Memo)
ZONES_KEPT = 1024  # time zones an execution environment keeps loaded (more than the IANA database names)
RUN_TIME_WARNING_SHARE = 0.8  # of the invocation's time: past it the run names the targets still running
NOTIFY_MAX_PROBLEMS = 50  # problems listed in the notification; the rest are counted
NOTIFY_MAX_ATTEMPTS = 3  # publishing the notification, first try included: it must not hold the run
SNS_SUBJECT_MAX_CHARS = 99  # SNS refuses subjects of 100 characters or more
METRICS_NAMESPACE = "ec2-powercycle"
STATUS_TAG_IDS_PER_CALL = 1000  # CreateTags and DeleteTags take at most 1,000 resources a call
# Auto Scaling's CreateOrUpdateTags and DeleteTags take one entry per group and tag; their reference states no
# limit on entries a call, so a call carries at most 50, the most tags the service lets one group have.
GROUP_STATUS_TAGS_PER_CALL = 50
# StoppedInstanceHours' InstanceType for a group whose description names no single instance type (a launch
# template or configuration, whose type DescribeAutoScalingGroups does not carry, or several types).
GROUP_INSTANCE_TYPE = "auto-scaling-group"
EVENT_SOURCE = "ec2-powercycle"
EVENTS_PER_CALL = 10  # PutEvents takes at most 10 entries a call
EVENTS_CALL_MAX_BYTES = 256 * 1024  # and at most 256 KB of entries (sized as EventBridge sizes them)
EVENT_ERROR_MAX_CHARS = 2000  # an error's reason in an event: ten of them stay far within the call's limit
EVENT_SENDERS = 8  # threads putting a run's events; each call is small, so a few keep up with a large fleet

SCHEDULE_KEYS = ("start", "stop", "tz", "enforce", "hibernate", "skip", "maintenance_windows")
MAINTENANCE_KEY = "maintenance_windows"
MAINTENANCE_MAX_WINDOWS = 10
MAINTENANCE_MAX_LEAD_MINUTES = 24 * 60
MAINTENANCE_EXAMPLE = '["patch-tuesday", "mw-0123456789abcdef0"]'
_WINDOW_ID = re.compile(r"mw-[0-9a-f]{17}")
_WINDOW_NAME = re.compile(r"[a-zA-Z0-9_.-]{3,128}")  # AWS's pattern for a maintenance window's name
CRON_FIELDS = "minute hour day-of-month month day-of-week"
SCHEDULE_EXAMPLE = '{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5"}'
SKIP_MAX_ENTRIES = 1000
SKIP_HORIZON_DAYS = 366  # how far past skipped days a search for a schedule's previous or next time goes
SKIP_EXAMPLE = '["holidays:GB-ENG", "2026-12-24..2027-01-01", "12-31"]'
SKIP_FORMS = "'YYYY-MM-DD', 'YYYY-MM-DD..YYYY-MM-DD', 'MM-DD' or 'holidays:CC' / 'holidays:CC-SUB'"
INSTANT_YEARS = (1000, 9000)  # the years an override's `until` may name
HOLIDAY_YEARS_LIMIT = 256  # (country, subdivision, year) calendars remembered by an execution environment
TAG_VALUE_MAX_CHARS = 256  # EC2's limit on a tag value
OVERRIDE_SUFFIX = ":override"  # the override tag's key is the schedule tag's key plus this
LAST_ACTION_SUFFIX = ":last-action"  # status tags (EC2_POWERCYCLE_STATUS_TAGS): the schedule tag's key plus these
ERROR_SUFFIX = ":error"
OVERRIDE_KEYS = ("state", "until")
OVERRIDE_EXAMPLE = '{"state": "running", "until": "2026-11-24T02:00:00Z"}'
SIZE_SUFFIX = ":size"  # a stopped group's saved sizes: the schedule tag's key plus this
SIZE_KEYS = ("min", "max", "desired")
SIZE_EXAMPLE = '{"min": 1, "max": 4, "desired": 2}'
GROUP_PAGE_SIZE = 100  # DescribeAutoScalingGroups' largest MaxRecords
GROUP_SIZE_LIMIT = 1_000_000  # a saved size beyond any group's: refused as untrusted input, not sent on
# States the DescribeInstances filter keeps; shutting-down/terminated are never ours.
READ_STATES = ("pending", "running", "stopping", "stopped")
STARTABLE_STATES = frozenset({"stopped"})
STOPPABLE_STATES = frozenset({"running", "pending"})
SETTLED_STARTED = frozenset({"running", "pending"})
SETTLED_STOPPED = frozenset({"stopped", "stopping"})
# StateReason codes of a start that EC2 accepted and the instance could not carry out
# (AWS's list of state reason codes: the others are stops, shutdowns and Spot events).
FAILED_START_CODES = frozenset(
    {
        "Server.InsufficientInstanceCapacity",
        "Server.InternalError",
        "Client.InternalError",
        "Client.VolumeLimitExceeded",
        "Client.InvalidSnapshot.NotFound",
    }
)
HIBERNATION_REFUSED = "UnsupportedHibernationConfiguration"
FAILED_START_HINTS = {
    "Client.InternalError": "most often a KMS key the instance's encrypted volumes cannot use (kms:CreateGrant)",
}
_STOPPED_AT = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")
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
# A standard topic: CloudWatch alarms cannot notify FIFO topics (.fifo), so neither do we.
_TOPIC_ARN_PATTERN = re.compile(r"^arn:aws[a-z-]*:sns:([a-z]{2}(?:-[a-z]+)+-\d+):\d{12}:[A-Za-z0-9_-]{1,256}$")
_SKIP_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_SKIP_RANGE = re.compile(r"^([0-9]{4}-[0-9]{2}-[0-9]{2})\.\.([0-9]{4}-[0-9]{2}-[0-9]{2})$")
_SKIP_YEARLY = re.compile(r"^([0-9]{2})-([0-9]{2})$")
_SKIP_HOLIDAYS = re.compile(r"^holidays:([^-]*)(?:-(.*))?$", re.IGNORECASE)
# Matched whole (fullmatch), ASCII only: `$` also matches before a final newline, and \d any script's digits.
_ACCOUNT_PATTERN = re.compile(r"[0-9]{12}")
_ROLE_NAME_PATTERN = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_OU_PATTERN = re.compile(r"ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}")
_EVENT_BUS_NAME_PATTERN = re.compile(r"[/.\-_A-Za-z0-9]{1,256}")
_EVENT_BUS_ARN_PATTERN = re.compile(
    r"arn:aws[a-z-]*:events:([a-z]{2}(?:-[a-z]+)+-\d+):\d{12}:event-bus/[/.\-_A-Za-z0-9]{1,256}"
)
_EVENT_TIME_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")  # RFC 3986 2.3
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215
_TRUE_WORDS = frozenset({"true", "1", "yes"})
_FALSE_WORDS = frozenset({"false", "0", "no", ""})


# --- Exceptions -----------------------------------------------------------------


class PowercycleError(Exception):
    """Base of this module's errors: the message is cut to ERROR_MAX_CHARS, however much input it quotes."""

    def __init__(self, message: str = "") -> None:
        if len(message) > ERROR_MAX_CHARS:
            message = f"{message[: ERROR_MAX_CHARS - 40]}... (message cut from {len(message)} characters)"
        super().__init__(message)


class ConfigError(PowercycleError):
    """A setting or the event is wrong: the run fails before touching anything."""


class ScheduleError(PowercycleError):
    """One instance's schedule is wrong: that instance is reported and left alone."""


class RoleError(PowercycleError):
    """A role in another account could not be assumed: its targets fail, the others go on."""


class TargetError(PowercycleError):
    """A target (account and region) could not be read: its run fails, the others go on."""


class DiscoveryError(PowercycleError):
    """The organization's accounts could not be listed: the run fails before touching anything."""


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


class Cause(StrEnum):
    """Why an action is taken, as status tags and events name it."""

    SCHEDULE = "schedule"  # a scheduled time in the run's window
    CATCH_UP = "catch-up"  # a scheduled time a run missed, or a start that did not take, made up for
    OVERRIDE = "override"  # an override tag holds the instance, or hands it back to its schedule
    ENFORCE = "enforce"  # an enforced schedule holds its state after a time before the window
    MAINTENANCE = "maintenance-window"  # a maintenance window wants the instance running, or has ended


class Outcome(StrEnum):
    ACT = "act"  # call StartInstances/StopInstances
    SKIP = "skip"  # a time was due but the instance is left alone: noted
    ERROR = "error"  # the schedule cannot be followed: reported
    IDLE = "idle"  # nothing due
    LEFT = "left"  # changed by a person after the latest scheduled time: left alone, not listed


@dataclass(frozen=True)
class SkipDays:
    """Calendar days, in a schedule's zone, on which its cron times do not exist (its "skip" entries).

    Hashable, so schedules that skip days are still decided once per run.
    `entries` are the entries as written (for `check` and `plan`), `source` the
    URL they were fetched from (without its query), None when inline. Public
    holidays come from the holidays package, loaded only when a calendar is used.
    """

    entries: tuple[str, ...] = ()
    dates: frozenset[date] = frozenset()
    ranges: tuple[tuple[date, date], ...] = ()
    yearly: frozenset[tuple[int, int]] = frozenset()  # (month, day)
    calendars: tuple[tuple[str, str | None], ...] = ()  # (country, subdivision)
    source: str | None = None

    def __bool__(self) -> bool:
        return bool(self.dates or self.ranges or self.yearly or self.calendars)

    def skips(self, day: date) -> bool:
        """Whether the schedule's times on this calendar day do not exist."""
        if day in self.dates or (day.month, day.day) in self.yearly:
            return True
        if any(first <= day <= last for first, last in self.ranges):
            return True
        return any(day in holiday_names(country, subdivision, day.year) for country, subdivision in self.calendars)

    def why(self, day: date) -> str | None:
        """What skips the day: a holiday's name, else the entry; None if it is not skipped."""
        for country, subdivision in self.calendars:
            name = holiday_names(country, subdivision, day.year).get(day)
            if name:
                return name
        if day in self.dates:
            return day.isoformat()
        if (day.month, day.day) in self.yearly:
            return f"{day.month:02d}-{day.day:02d}"
        for first, last in self.ranges:
            if first <= day <= last:
                return f"{first.isoformat()}..{last.isoformat()}"
        return None

    def span(self, day: date) -> tuple[date, date]:
        """The first and last day of a run of skipped days around a skipped day: a range's, else the day's.

        Searches for a schedule's previous or next time jump over it in one step.
        """
        for first, last in self.ranges:
            if first <= day <= last:
                return first, last
        return day, day


@dataclass(frozen=True)
class Schedule:
    """A validated schedule: cron expressions in a time zone, and the days they do not exist."""

    start: tuple[str, ...] = ()
    stop: tuple[str, ...] = ()
    tz: str = DEFAULT_TIMEZONE
    enforce: bool = False
    hibernate: bool = False
    skip: SkipDays | None = None
    maintenance_windows: tuple[str, ...] = ()  # names or IDs of SSM maintenance windows that keep it running

    def __post_init__(self) -> None:
        # Schedules key the run's memos, several look-ups each: hashed once, not at every look-up.
        fields = (self.start, self.stop, self.tz, self.enforce, self.hibernate, self.skip)
        object.__setattr__(self, "_hash", hash(fields))

    def __hash__(self) -> int:
        return self._hash  # type: ignore[attr-defined,no-any-return]


@dataclass(frozen=True)
class Due:
    """What a schedule asks for at a time: the deciding action and when it fell."""

    action: Action | None
    at: datetime | None = None
    conflict: bool = False
    enforced: bool = False
    before_window: bool = False  # `at` fell before the window: only enforce acts on it


@dataclass(frozen=True)
class Override:
    """An instance held running or stopped until a time (its `<tag>:override` tag), then the schedule's again."""

    state: str  # "running" or "stopped"
    until: datetime

    @property
    def action(self) -> Action:
        """The action that brings an instance into the held state."""
        return Action.START if self.state == "running" else Action.STOP

    def __str__(self) -> str:
        return f"{self.state} until {_iso(self.until)}"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    action: Action | None
    reason: str
    caught_up: datetime | None = None  # the missed scheduled time an action makes up for
    problem: str | None = None  # reported in errors even when acting (a start that did not take, retried)
    maintenance_window: str | None = None  # the window ("name (mw-...)") an action is made for
    # What status tags and events say of an action; follows from the fields above, so not compared.
    due: datetime | None = field(default=None, compare=False)  # the scheduled time it answers (None: a hold)
    cause: Cause = field(default=Cause.SCHEDULE, compare=False)


@dataclass(frozen=True)
class InstanceRecord:
    """What an instance's own record says about its last state change (read only when needed)."""

    state: str
    last_change: datetime | None  # LaunchTime when running, the stop time when stopped; None when unknown
    launched: datetime | None  # LaunchTime: EC2 sets it at every start, also one that then fails
    state_reason: tuple[str, str] | None  # StateReason (code, message)


@dataclass(frozen=True)
class Verdict:
    """What a run makes of one instance: its schedule (None when guarded or unusable) and the decision."""

    schedule: Schedule | None
    decision: Decision


class Kind(StrEnum):
    INSTANCE = "instance"
    GROUP = "group"  # an Auto Scaling group: stopped = scaled to zero, started = its saved sizes back


class GroupName(str):
    """An Auto Scaling group's name where a run's results hold instance IDs (skipped, errors, caught_up)."""

    __slots__ = ()


@dataclass(frozen=True)
class GroupSize:
    """An Auto Scaling group's sizes: what a stop saves in the group's `<tag>:size` tag and a start restores."""

    min: int
    max: int
    desired: int

    def tag_value(self) -> str:
        return json.dumps({"min": self.min, "max": self.max, "desired": self.desired})


@dataclass(frozen=True)
class Resource:
    """An instance or an Auto Scaling group, as the one decision path (`decide_resource`) sees it.

    `state` is an instance's own; a group's is "stopped" when its desired capacity
    is 0 and "running" otherwise. `record` reads its last state change, called
    only when the decision needs it (for a group it costs a DescribeScalingActivities
    call). `refusals` say why an action cannot be carried out (a group's start
    with no saved size, a bad size tag): such a decision is the resource's error.
    `described` is what DescribeInstances or DescribeAutoScalingGroups said of it.
    """

    kind: Kind
    resource_id: str
    tags: Mapping[str, str]
    state: str
    described: Mapping[str, Any]
    record: Callable[[], InstanceRecord]
    refusals: Mapping[Action, str] = field(default_factory=dict)
    size: GroupSize | None = None  # a group's sizes now: what a stop saves
    saved: GroupSize | None = None  # a group's saved sizes: what a start restores


_MISSING = object()


class Memo:
    """Values computed once per key, however many threads ask at once: the others wait for it.

    Per-key locks, so one slow key (a schedule URL, an AssumeRole) holds up only
    the threads that need it. With a limit it forgets everything when full: a
    fleet of 100,000 distinct schedules gains nothing from remembering them all,
    and forgetting keeps memory flat.
    """

    def __init__(self, limit: int | None = None) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._values: dict[Any, Any] = {}
        # A lock only for a key being computed: a remembered value costs one dictionary entry, nothing the
        # garbage collector must walk (a fleet of distinct schedules fills the memos with values used once).
        self._computing: dict[Any, threading.Lock] = {}

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        value = self._values.get(key, _MISSING)
        if value is not _MISSING:
            return value
        with self._lock:
            key_lock = self._computing.setdefault(key, threading.Lock())
        try:
            with key_lock:
                value = self._values.get(key, _MISSING)
                if value is _MISSING:
                    value = compute()
                    if self._limit is not None and len(self._values) >= self._limit:
                        self._values.clear()  # two threads may both clear: it is a cache
                    self._values[key] = value
        finally:
            self._computing.pop(key, None)
        return value

    def has(self, key: Any) -> bool:
        """Whether key's value is computed (and not forgotten)."""
        return key in self._values

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class RunMemo:
    """Everything one run remembers: made by `run()` (or a command) and dropped with it.

    Nothing here outlives an invocation, so nothing keyed on the run's time piles
    up in a warm execution environment; every table is safe to share between the
    run's threads.
    """

    def __init__(self) -> None:
        self.schedules = Memo(MEMO_LIMIT)  # inline tag value -> Schedule | ScheduleError
        self.urls = Memo()  # URL -> Schedule | ScheduleError; never forgotten: one fetch per URL per run
        self.skips = Memo()  # "skip" URL -> SkipDays | ScheduleError; never forgotten, as urls
        self.dues = Memo(MEMO_LIMIT)  # Schedule -> (Due over the window, Due over the catch-up horizon)
        self.due = Memo(MEMO_LIMIT)  # Schedule -> Due over the window; (Schedule, until) -> its state then
        self.decisions = Memo(MEMO_LIMIT)  # (tag value, state) -> Verdict
        self.roles = Memo()  # role ARN -> credentials, or why there are none: each role assumed once per run
        self.regions = Memo()  # account -> its enabled regions, or why they cannot be read: once per run
        self.identity = Memo()  # "own" -> the function's own account ID, when the run must ask STS
        self.maintenance = Memo()  # target -> its maintenance windows' records, or why not: read once per run
        self.named_windows = Memo(MEMO_LIMIT)  # (target, names) -> the windows named, or ScheduleError
        self.patching = Memo(MEMO_LIMIT)  # (windows, t) -> Patching, or ScheduleError


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
    catch_up: timedelta = timedelta(minutes=DEFAULT_CATCH_UP_MINUTES)  # H; zero turns catch-up off
    notify_topic_arn: str | None = None
    # With all_regions, `regions` holds only the home region: where the account-wide calls go.
    all_regions: bool = False
    organization_role: str | None = None
    organization_units: tuple[str, ...] = ()
    exclude_accounts: frozenset[str] = frozenset()
    targets_per_invocation: int = DEFAULT_TARGETS_PER_INVOCATION
    # How long before a maintenance window opens its instances are started (and held running until it ends).
    maintenance_lead: timedelta = timedelta(minutes=DEFAULT_MAINTENANCE_LEAD_MINUTES)
    # How old an event's time may be; zero turns the check off.
    max_event_age: timedelta = timedelta(minutes=DEFAULT_WINDOW_MINUTES + EVENT_AGE_MARGIN_MINUTES)
    status_tags: bool = False  # write <tag>:last-action and <tag>:error on the scheduled instances
    event_bus: str | None = None  # EventBridge bus (name or ARN) told of every action and error
    event_bus_region: str | None = None  # the bus's region: its ARN's, else the function's own

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
        window = _parse_window(env.get(WINDOW_SETTING))
        return cls(
            tag=tag,
            window=timedelta(minutes=window),
            catch_up=timedelta(minutes=_parse_catch_up(env.get(CATCH_UP_SETTING), window)),
            max_event_age=timedelta(minutes=_parse_event_age(env.get(MAX_EVENT_AGE_SETTING), window)),
            timezone=default_tz,
            protected_environments=frozenset(
                value.lower() for value in _split_list(env.get(PROTECTED_SETTING, DEFAULT_PROTECTED_ENVIRONMENTS))
            ),
            regions=_parse_regions(env, require_regions) if require_regions or _region_given(env) else (),
            all_regions=_wants_all_regions(env),
            dry_run=parse_bool(env.get(DRY_RUN_SETTING, ""), DRY_RUN_SETTING),
            url_allow=tuple(_parse_allow_prefix(p) for p in _split_list(env.get(URL_ALLOW_SETTING, ""))),
            **_parse_accounts(env),
            notify_topic_arn=_parse_topic_arn(env.get(NOTIFY_TOPIC_SETTING, "")),
            maintenance_lead=timedelta(minutes=_parse_maintenance_lead(env.get(MAINTENANCE_LEAD_SETTING))),
            status_tags=parse_bool(env.get(STATUS_TAGS_SETTING, ""), STATUS_TAGS_SETTING),
            **_parse_event_bus(env),
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


def _parse_catch_up(value: str | None, window: int) -> int:
    return _whole_number(
        value,
        max(DEFAULT_CATCH_UP_MINUTES, window),
        lambda minutes: minutes == 0 or minutes >= window,
        f"{CATCH_UP_SETTING} must be 0 (off) or a whole number of minutes of at least {WINDOW_SETTING} ({window})",
    )


def _parse_maintenance_lead(value: str | None) -> int:
    return _whole_number(
        value,
        DEFAULT_MAINTENANCE_LEAD_MINUTES,
        lambda minutes: minutes <= MAINTENANCE_MAX_LEAD_MINUTES,
        f"{MAINTENANCE_LEAD_SETTING} must be a whole number of minutes from 0 to {MAINTENANCE_MAX_LEAD_MINUTES}",
    )


def _parse_event_age(value: str | None, window: int) -> int:
    return _whole_number(
        value,
        window + EVENT_AGE_MARGIN_MINUTES,
        lambda _: True,
        f"{MAX_EVENT_AGE_SETTING} must be 0 (off) or a whole number of minutes",
    )


def _parse_positive(value: str | None, default: int, name: str, unit: str) -> int:
    return _whole_number(value, default, lambda number: number > 0, f"{name} must be a positive whole number of {unit}")


def _whole_number(value: str | None, default: int, valid: Callable[[int], bool], expected: str) -> int:
    """A setting that is a whole number (ASCII digits: int() reads other scripts' too): `default` when unset or
    blank; ConfigError "<expected>, got <value>" when not a number or not `valid`."""
    if value is None or not value.strip():
        return default
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or not valid(int(text)):
        raise ConfigError(f"{expected}, got {value!r}")
    return int(text)


def _parse_accounts(env: Mapping[str, str]) -> dict[str, Any]:
    role_arns = tuple(dict.fromkeys(_split_list(env.get(ROLE_ARNS_SETTING, ""))))
    for arn in role_arns:
        if not _ROLE_ARN_PATTERN.match(arn):
            raise ConfigError(
                f"{ROLE_ARNS_SETTING} must be comma-separated IAM role ARNs such as "
                f"'arn:aws:iam::123456789012:role/ec2-powercycle', got {arn!r}"
            )
    accounts = [arn.split(":")[4] for arn in role_arns]
    if len(set(accounts)) < len(accounts):
        twice = sorted({account for account in accounts if accounts.count(account) > 1})
        raise ConfigError(f"{ROLE_ARNS_SETTING} lists more than one role in account {', '.join(twice)}")
    organization = _parse_organization(env)
    own_account = parse_bool(env.get(OWN_ACCOUNT_SETTING, "true"), OWN_ACCOUNT_SETTING)
    if not own_account and not role_arns and not organization["organization_role"]:
        raise ConfigError(
            f"{OWN_ACCOUNT_SETTING} is false and {ROLE_ARNS_SETTING} and {ORGANIZATION_ROLE_SETTING} are empty: "
            "no account to schedule"
        )
    return {
        "role_arns": role_arns,
        "external_id": env.get(EXTERNAL_ID_SETTING, "").strip() or None,
        "own_account": own_account,
        "max_workers": _parse_positive(
            env.get(MAX_WORKERS_SETTING), DEFAULT_MAX_WORKERS, MAX_WORKERS_SETTING, "workers"
        ),
        "targets_per_invocation": _parse_targets_per_invocation(env.get(TARGETS_PER_INVOCATION_SETTING)),
        **organization,
    }


def _parse_topic_arn(value: str) -> str | None:
    arn = value.strip()
    if not arn:
        return None
    if not _TOPIC_ARN_PATTERN.match(arn):
        raise ConfigError(
            f"{NOTIFY_TOPIC_SETTING} must be the ARN of a standard SNS topic such as "
            f"'arn:aws:sns:eu-west-1:123456789012:ec2-powercycle', got {value!r}"
        )
    return arn


def _parse_event_bus(env: Mapping[str, str]) -> dict[str, str | None]:
    """The event bus (EC2_POWERCYCLE_EVENT_BUS) and its region: an ARN's own, else the function's region."""
    bus = env.get(EVENT_BUS_SETTING, "").strip()
    if not bus:
        return {"event_bus": None, "event_bus_region": None}
    arn = _EVENT_BUS_ARN_PATTERN.fullmatch(bus)
    if arn:
        return {"event_bus": bus, "event_bus_region": arn.group(1)}
    if bus.startswith("arn:") or not _EVENT_BUS_NAME_PATTERN.fullmatch(bus):
        raise ConfigError(
            f"{EVENT_BUS_SETTING} must be an EventBridge bus name such as 'default' or the ARN of one such as "
            f"'arn:aws:events:eu-west-1:123456789012:event-bus/ops', got {bus!r}"
        )
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or ""
    if not _REGION_PATTERN.match(region):
        raise ConfigError(f"{EVENT_BUS_SETTING} names a bus ({bus!r}) but its region, AWS_REGION, is not set")
    return {"event_bus": bus, "event_bus_region": region}


def _parse_organization(env: Mapping[str, str]) -> dict[str, Any]:
    role = env.get(ORGANIZATION_ROLE_SETTING, "").strip()
    if role and not _ROLE_NAME_PATTERN.fullmatch(role):
        raise ConfigError(
            f"{ORGANIZATION_ROLE_SETTING} must be an IAM role name (no path, no ARN) such as "
            f"'ec2-powercycle-spoke', got {role!r}"
        )
    units = tuple(dict.fromkeys(_split_list(env.get(ORGANIZATION_UNITS_SETTING, ""))))
    bad_units = [unit for unit in units if not _OU_PATTERN.fullmatch(unit)]
    if bad_units:
        raise ConfigError(
            f"{ORGANIZATION_UNITS_SETTING} must be comma-separated organizational unit IDs such as "
            f"'ou-ab12-cd34ef56', got {bad_units[0]!r}"
        )
    if units and not role:
        raise ConfigError(f"{ORGANIZATION_UNITS_SETTING} needs {ORGANIZATION_ROLE_SETTING}: the role to assume in them")
    excluded = _split_list(env.get(EXCLUDE_ACCOUNTS_SETTING, ""))
    bad_accounts = [account for account in excluded if not _ACCOUNT_PATTERN.fullmatch(account)]
    if bad_accounts:
        raise ConfigError(
            f"{EXCLUDE_ACCOUNTS_SETTING} must be comma-separated 12-digit account IDs, got {bad_accounts[0]!r}"
        )
    return {"organization_role": role or None, "organization_units": units, "exclude_accounts": frozenset(excluded)}


def _parse_targets_per_invocation(value: str | None) -> int:
    count = _parse_positive(value, DEFAULT_TARGETS_PER_INVOCATION, TARGETS_PER_INVOCATION_SETTING, "targets")
    if count > MAX_TARGETS_PER_INVOCATION:
        raise ConfigError(
            f"{TARGETS_PER_INVOCATION_SETTING} must be at most {MAX_TARGETS_PER_INVOCATION} "
            f"(the event of a chunk must fit an asynchronous invocation), got {value!r}"
        )
    return count


def _wants_all_regions(env: Mapping[str, str]) -> bool:
    return env.get(REGIONS_SETTING, "").strip().lower() == ALL_REGIONS


def _parse_regions(env: Mapping[str, str], require_home: bool = True) -> tuple[str, ...]:
    raw = env.get(REGIONS_SETTING, "")
    if _wants_all_regions(env):
        # The home region: where DescribeRegions, STS and Organizations are called.
        own = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if not own and not require_home:
            return ()
        if not own or not _REGION_PATTERN.match(own):
            raise ConfigError(
                f"{REGIONS_SETTING}={ALL_REGIONS} needs AWS_REGION or AWS_DEFAULT_REGION (a region name) "
                f"to list each account's regions from, got {own!r}"
            )
        return (own,)
    if raw.strip():
        items = [item.strip() for item in raw.split(",")]
        bad = [item for item in items if not _REGION_PATTERN.match(item)]
        if bad:
            raise ConfigError(
                f"{REGIONS_SETTING} must be comma-separated region names such as 'eu-west-1,us-east-1', got {raw!r}"
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
    if has_dot_segment(parts.path):  # no URL under it could be allowed: URLs with dot segments are refused
        raise ConfigError(f"{URL_ALLOW_SETTING} entries must not hold '.' or '..' path segments, got {prefix!r}")
    return prefix


# --- Schedule parsing (pure) ----------------------------------------------------


def zone(name: str) -> ZoneInfo:
    """The ZoneInfo for an IANA name, or ScheduleError."""
    try:
        return _zone_info(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as err:
        raise ScheduleError(f"unknown time zone {quoted(name)}; expected an IANA name such as 'Europe/London'") from err


# Zones held for the execution environment: ZoneInfo's own cache keeps only the last 8 alive, so a
# fleet in 60 zones would read the zone files again for about every schedule. There are ~600 zones.
@functools.lru_cache(maxsize=ZONES_KEPT)
def _zone_info(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def is_url(value: str) -> bool:
    return value.strip().lower().startswith(("http://", "https://"))


SkipList = Callable[[str], SkipDays]  # a "skip" URL -> its entries (ScheduleResolver fetches them once per run)


def parse_schedule_json(text: str, default_tz: str, skip_list: SkipList | None = None) -> Schedule:
    """Parse a JSON schedule document (an inline tag value or a URL's body)."""
    text = text.strip()
    if not text:
        raise ScheduleError(f"empty schedule; expected JSON such as {SCHEDULE_EXAMPLE} or an https:// URL")
    document = load_json(text, f"JSON such as {SCHEDULE_EXAMPLE}")
    return parse_schedule_document(document, default_tz, skip_list)


def parse_schedule_document(document: object, default_tz: str, skip_list: SkipList | None = None) -> Schedule:
    """Check a decoded JSON schedule's shape and every cron expression, zone and skip entry in it.

    A "skip" URL is handed to `skip_list` (the run's resolver, which fetches it);
    without one such a schedule is refused.
    """
    if not isinstance(document, dict):
        raise ScheduleError(f"schedule must be a JSON object such as {SCHEDULE_EXAMPLE}, got {_got(document)}")
    unknown = [key for key in document if key not in SCHEDULE_KEYS]
    if unknown:
        raise ScheduleError(f"unknown key {quoted(unknown[0])}; allowed keys: {', '.join(SCHEDULE_KEYS)}")
    if "start" not in document and "stop" not in document:
        raise ScheduleError(f"schedule needs a 'start' or 'stop' key, such as {SCHEDULE_EXAMPLE}")
    tz = document.get("tz", default_tz)
    if not isinstance(tz, str):
        raise ScheduleError(f"'tz' must be a string such as 'Europe/London', got {_got(tz)}")
    zone(tz)
    flags = {key: document.get(key, False) for key in ("enforce", "hibernate")}
    for key, flag in flags.items():
        if not isinstance(flag, bool):
            raise ScheduleError(f"{key!r} must be true or false, got {_got(flag)}")
    start, stop = _parse_cron_list(document, "start"), _parse_cron_list(document, "stop")
    skip = _parse_skip(document["skip"], skip_list) if "skip" in document else None
    windows = _parse_maintenance_windows(document[MAINTENANCE_KEY]) if MAINTENANCE_KEY in document else ()
    return Schedule(start=start, stop=stop, tz=tz, skip=skip, maintenance_windows=windows, **flags)


def _parse_maintenance_windows(value: object) -> tuple[str, ...]:
    """The "maintenance_windows" entry: 1 to MAINTENANCE_MAX_WINDOWS window names or IDs (mw- and 17 hex)."""
    expected = f"a list of maintenance window names or IDs such as {MAINTENANCE_EXAMPLE}"
    if not isinstance(value, list) or not value:
        raise ScheduleError(f"{MAINTENANCE_KEY!r} must be {expected}, got {_json_type(value)}")
    if len(value) > MAINTENANCE_MAX_WINDOWS:
        raise ScheduleError(f"{MAINTENANCE_KEY!r} names {len(value)} windows; at most {MAINTENANCE_MAX_WINDOWS}")
    for entry in value:
        if not isinstance(entry, str):
            raise ScheduleError(f"{MAINTENANCE_KEY!r} must hold strings ({expected}), got {_json_type(entry)}")
        if not _WINDOW_NAME.fullmatch(entry):  # an ID (mw- and 17 hex digits) matches it too
            raise ScheduleError(
                f"bad {MAINTENANCE_KEY!r} entry {quoted(entry)}: expected a window ID ('mw-' and 17 hex digits) "
                "or a window name (3 to 128 letters, digits, '_', '-' and '.')"
            )
    return tuple(dict.fromkeys(value))


def _parse_skip(value: object, skip_list: SkipList | None) -> SkipDays | None:
    if isinstance(value, str) and is_url(value):
        if skip_list is None:
            raise ScheduleError("a 'skip' URL is fetched by the scheduler's resolver only")
        return skip_list(value.strip())
    if not isinstance(value, list):
        raise ScheduleError(
            f"'skip' must be a list of entries such as {SKIP_EXAMPLE} or the URL of one, got {_got(value)}"
        )
    return parse_skip_entries(value)


def parse_skip_entries(entries: object, source: str | None = None) -> SkipDays | None:
    """Check a list of skip entries (inline, or a "skip" URL's document); None when it skips nothing.

    Entries: 'YYYY-MM-DD', 'YYYY-MM-DD..YYYY-MM-DD' (inclusive), 'MM-DD' (every
    year) and 'holidays:CC' or 'holidays:CC-SUB' (a country's public holidays,
    ISO 3166-1 alpha-2 and an optional subdivision). Pure: nothing is fetched, and
    the holidays package is loaded only for a holidays entry.
    """
    if not isinstance(entries, list):
        raise ScheduleError(f"'skip' list must be a JSON array such as {SKIP_EXAMPLE}, got {_got(entries)}")
    if len(entries) > SKIP_MAX_ENTRIES:
        raise ScheduleError(f"'skip' holds {len(entries)} entries; at most {SKIP_MAX_ENTRIES}")
    texts: list[str] = []
    dates: set[date] = set()
    ranges: list[tuple[date, date]] = []
    yearly: set[tuple[int, int]] = set()
    calendars: list[tuple[str, str | None]] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ScheduleError(f"'skip' entries must be strings such as '2026-12-24', got {_got(entry)}")
        text = entry.strip()
        if _SKIP_DATE.match(text):
            dates.add(_skip_date(text, entry))
        elif found := _SKIP_RANGE.match(text):
            first, last = _skip_date(found[1], entry), _skip_date(found[2], entry)
            if last < first:
                raise ScheduleError(f"bad 'skip' entry {quoted(entry)}: the range ends before it starts")
            ranges.append((first, last))
        elif found := _SKIP_YEARLY.match(text):
            month, day = int(found[1]), int(found[2])
            if not (1 <= month <= 12 and 1 <= day <= _DAYS_IN_MONTH[month]):
                raise ScheduleError(f"bad 'skip' entry {quoted(entry)}: no such day of the year")
            yearly.add((month, day))
        elif found := _SKIP_HOLIDAYS.match(text):
            calendars.append(holiday_calendar(found[1], found[2], entry))
        else:
            raise ScheduleError(f"bad 'skip' entry {quoted(entry)}; expected {SKIP_FORMS}")
        texts.append(text)
    skip = SkipDays(
        entries=tuple(dict.fromkeys(texts)),
        dates=frozenset(dates),
        ranges=tuple(dict.fromkeys(ranges)),
        yearly=frozenset(yearly),
        calendars=tuple(dict.fromkeys(calendars)),
        source=source,
    )
    return skip if skip or source else None


def _skip_date(text: str, entry: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as err:
        raise ScheduleError(f"bad 'skip' entry {quoted(entry)}: {text} is not a date ({err})") from err


def holiday_calendar(country: str, subdivision: str | None, entry: str) -> tuple[str, str | None]:
    """The (country, subdivision) codes of a holidays entry as the holidays package spells them, or ScheduleError."""
    holidays = _holidays_package(entry)
    code = country.upper()
    if len(code) != 2 or code not in holidays.list_supported_countries(include_aliases=False):
        raise ScheduleError(
            f"bad 'skip' entry {quoted(entry)}: unknown country {quoted(country)}; expected an ISO 3166-1 alpha-2 code "
            "the holidays package knows, such as 'GB' or 'US'"
        )
    if subdivision is None:
        return code, None
    calendar = getattr(holidays, code)
    names = {name.upper(): name for name in calendar.subdivisions}
    names.update({alias.upper(): name for alias, name in getattr(calendar, "subdivisions_aliases", {}).items()})
    known = names.get(subdivision.strip().upper())
    if known is None:
        listed = ", ".join(calendar.subdivisions[:12]) + (", ..." if len(calendar.subdivisions) > 12 else "")
        raise ScheduleError(
            f"bad 'skip' entry {quoted(entry)}: {code} has no subdivision {quoted(subdivision)}"
            + (f"; it has {listed}" if listed else "; it has none")
        )
    return code, known


def _holidays_package(entry: str) -> Any:
    try:
        import holidays  # only schedules with holidays entries load it (about 0.2 s, see docs/schedules.md)
    except ImportError as err:
        raise ScheduleError(f"bad 'skip' entry {quoted(entry)}: the holidays package is not installed") from err
    return holidays


_HOLIDAY_YEARS: dict[tuple[str, str | None, int], Mapping[date, str]] = {}
_HOLIDAY_LOCK = threading.Lock()


def holiday_names(country: str, subdivision: str | None, year: int) -> Mapping[date, str]:
    """A country's (and subdivision's) public holidays in a year, date -> name, from the holidays package.

    Pure given its arguments: the package computes calendars from rules. Kept
    per (country, subdivision, year) in a small table that forgets everything
    when full (HOLIDAY_YEARS_LIMIT), so warm invocations reuse them. Names are in
    English where the calendar has it, else in its own language.
    """
    key = (country, subdivision, year)
    names = _HOLIDAY_YEARS.get(key)
    if names is None:
        holidays = _holidays_package(f"holidays:{country}")
        calendar = getattr(holidays, country)
        default = calendar.default_language
        english = default if default and default.startswith("en") else "en_US"
        language = english if english in calendar.supported_languages else default
        found = holidays.country_holidays(country, subdiv=subdivision, years=year, language=language)
        names = {day: str(name) for day, name in found.items()}
        with _HOLIDAY_LOCK:
            if len(_HOLIDAY_YEARS) >= HOLIDAY_YEARS_LIMIT:
                _HOLIDAY_YEARS.clear()
            _HOLIDAY_YEARS[key] = names
    return names


def parse_override(value: str) -> Override:
    """Check an override tag's value: {"state": "running"|"stopped", "until": ISO-8601 time with Z or an offset}."""
    document = load_json(value, f"JSON such as {OVERRIDE_EXAMPLE}")
    if not isinstance(document, dict):
        raise ScheduleError(f"override must be a JSON object such as {OVERRIDE_EXAMPLE}, got {_got(document)}")
    unknown = [key for key in document if key not in OVERRIDE_KEYS]
    if unknown:
        raise ScheduleError(f"unknown key {quoted(unknown[0])}; allowed keys: {', '.join(OVERRIDE_KEYS)}")
    missing = [key for key in OVERRIDE_KEYS if key not in document]
    if missing:
        raise ScheduleError(f"override needs {missing[0]!r}, such as {OVERRIDE_EXAMPLE}")
    state = document["state"]
    if state not in ("running", "stopped"):
        raise ScheduleError(f"'state' must be 'running' or 'stopped', got {quoted(state, as_json=True)}")
    return Override(state, parse_instant(document["until"], "'until'"))


def parse_group_size(value: str) -> GroupSize:
    """Check a group's saved sizes (its `<tag>:size` tag): {"min": m, "max": M, "desired": d}, 0 <= m <= d <= M, d > 0.

    A start restores them as they are, so anything a start could not restore,
    or would restore to zero, is refused here with the reason.
    """
    document = load_json(value.strip(), f"JSON such as {SIZE_EXAMPLE}")
    shown = quoted(value)
    if not isinstance(document, dict) or sorted(document) != sorted(SIZE_KEYS):
        raise ScheduleError(f"expected exactly the keys min, max and desired, such as {SIZE_EXAMPLE}, got {shown}")
    sizes = [document[key] for key in SIZE_KEYS]
    if not all(type(size) is int and 0 <= size <= GROUP_SIZE_LIMIT for size in sizes):
        raise ScheduleError(f"min, max and desired must be whole numbers from 0 to {GROUP_SIZE_LIMIT}, got {shown}")
    low, high, desired = sizes
    if not low <= desired <= high:
        raise ScheduleError(f"needs min <= desired <= max, got {shown}")
    if desired == 0:
        raise ScheduleError(f"desired is 0: a start would restore nothing, got {shown}")
    return GroupSize(low, high, desired)


def parse_instant(value: object, what: str) -> datetime:
    """An ISO-8601 time with Z or an offset (never a naive one), in UTC; ScheduleError naming `what` otherwise."""
    if not isinstance(value, str):
        raise ScheduleError(f"{what} must be an ISO-8601 time such as '2026-11-24T02:00:00Z', got {_got(value)}")
    expected = f"{what} must be an ISO-8601 time such as '2026-11-24T02:00:00Z'"
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as err:
        raise ScheduleError(f"{expected}, got {quoted(value)}") from err
    if moment.tzinfo is None:
        raise ScheduleError(f"{what} {quoted(value)} has no time zone; add Z or an offset such as +01:00")
    in_range = f"{expected} in the years {INSTANT_YEARS[0]} to {INSTANT_YEARS[1]}, got {quoted(value)}"
    try:
        instant = moment.astimezone(UTC)
    except OverflowError as err:  # 9999-12-31T23:00:00-05:00 is past the last instant datetime holds
        raise ScheduleError(in_range) from err
    if not INSTANT_YEARS[0] <= instant.year <= INSTANT_YEARS[1]:
        raise ScheduleError(in_range)  # room for a decision's arithmetic around it (a window, a day)
    return instant


def _parse_cron_list(document: dict[str, Any], key: str) -> tuple[str, ...]:
    if key not in document:
        return ()
    value = document[key]
    expressions = [value] if isinstance(value, str) else value
    if not isinstance(expressions, list) or not expressions:
        raise ScheduleError(f"{key!r} must be a cron string or a non-empty list of them, got {_got(value)}")
    for expression in expressions:
        if not isinstance(expression, str):
            raise ScheduleError(f"{key!r} must hold cron strings, got {_got(expression)}")
    return tuple(dict.fromkeys(parse_cron(expression, key) for expression in expressions))


def parse_cron(expression: str, key: str = "cron") -> str:
    """Check one 5-field cron expression; return it with its spacing normalised."""
    if not expression.isascii():  # int() and \d read other scripts' digits ('²', '٣'): cron fields are ASCII
        raise ScheduleError(f"invalid cron {quoted(expression)} in {key!r}: only ASCII characters are allowed")
    fields = expression.split()
    if len(fields) != 5:
        raise ScheduleError(
            f"invalid cron {quoted(expression)} in {key!r}: {len(fields)} fields, expected 5 ({CRON_FIELDS})"
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
        raise ScheduleError(f"invalid cron {quoted(expression)} in {key!r}: {err}") from err
    return normalised


@dataclass(frozen=True)
class CronFields:
    """The values a plain cron expression matches, field by field (day of week: 0 is Sunday)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]

    def __post_init__(self) -> None:
        # Derived once, for the walks below: (hours, minutes) in order and reversed, and whether any date exists.
        hours, minutes = tuple(sorted(self.hours)), tuple(sorted(self.minutes))
        object.__setattr__(self, "_ascending", (hours, minutes))
        object.__setattr__(self, "_descending", (hours[::-1], minutes[::-1]))
        fires = any(day <= _DAYS_IN_MONTH[month] for month in self.months for day in self.days)
        object.__setattr__(self, "_fires", fires)

    def can_fire(self) -> bool:
        """False for a date that never exists, such as 30 February."""
        return self._fires  # type: ignore[attr-defined,no-any-return]

    def fires_on(self, day: date) -> bool:
        return day.day in self.days and day.month in self.months and day.isoweekday() % 7 in self.weekdays

    def fires_at(self, wall: datetime) -> bool:
        return wall.minute in self.minutes and wall.hour in self.hours and self.fires_on(wall.date())

    def walls_back(self, start: datetime, first_day: date | None = None) -> Iterator[datetime]:
        """The wall times it fires at, from `start` (naive, whole minutes; included) back, latest first.

        By field arithmetic: a day that matches, then its hours and minutes
        from the latest, so a walk costs a few steps per day, not one per minute.
        It ends before `first_day`; without one the caller ends it.
        """
        hours, minutes = self._descending  # type: ignore[attr-defined]
        day, cap = start.date(), (start.hour, start.minute)
        while first_day is None or day >= first_day:
            if self.fires_on(day):
                for hour in hours:
                    if hour <= cap[0]:
                        for minute in minutes:
                            if hour < cap[0] or minute <= cap[1]:
                                yield datetime(day.year, day.month, day.day, hour, minute)
            day -= _ONE_DAY
            cap = (23, 59)

    def walls_on(self, start: datetime) -> Iterator[datetime]:
        """The wall times it fires at strictly after `start` (naive, whole minutes), earliest first: the mirror."""
        hours, minutes = self._ascending  # type: ignore[attr-defined]
        day, floor = start.date(), (start.hour, start.minute)
        while True:
            if self.fires_on(day):
                for hour in hours:
                    if hour >= floor[0]:
                        for minute in minutes:
                            if hour > floor[0] or minute > floor[1]:
                                yield datetime(day.year, day.month, day.day, hour, minute)
            day += _ONE_DAY
            floor = (0, -1)


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
_ONE_DAY = timedelta(days=1)
_ONE_MINUTE = timedelta(minutes=1)
_PLAIN_CRON_PART = re.compile(r"^(\*|(\w+)(?:-(\w+))?)(?:/(\d+))?$", re.ASCII)


# A cache of a pure parse, keyed on the expression's text alone (nothing of a run's): the few
# expressions of a fleet are parsed once per execution environment.
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


# Also a pure parse's cache: the many expressions of a fleet share their field sets (``*`` above all),
# which keeps 100,000 distinct schedules within the memory budget.
@functools.lru_cache(maxsize=MEMO_LIMIT)
def _cron_field_values(text: str, position: int) -> frozenset[int] | None:
    """The values of one field of a plain expression, or None."""
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
    if text.isascii() and text.isdigit():
        return int(text)
    return names.get(text)


def load_json(text: str, expected: str) -> Any:
    """Decode an untrusted JSON text, its nesting bounded by JSON_MAX_DEPTH before the decoder sees it.

    ScheduleError says what is wrong and what was `expected` (never RecursionError:
    the decoder recurses once per level, and `[[[[...` can hold 60,000 of them).
    """
    openers = text.count("[") + text.count("{")
    if openers > JSON_MAX_DEPTH and _json_depth(text) > JSON_MAX_DEPTH:
        raise ScheduleError(f"JSON nested deeper than {JSON_MAX_DEPTH} levels; expected {expected}")
    try:
        return json.loads(text)
    except ValueError as err:
        raise ScheduleError(f"not valid JSON ({err}); expected {expected}") from err


def _json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in a JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    for token in _JSON_STRUCTURE.findall(text):
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


_JSON_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # strings (skipped whole) and brackets


def quoted(value: object, limit: int = VALUE_SHOWN_CHARS, *, as_json: bool = False) -> str:
    """An untrusted value for a message: repr of a string (JSON with as_json), JSON of anything else, cut to
    `limit` with its length.

    Messages quote what was wrong, and a tag or a URL's document can hold 64 KB in one value.
    """
    if isinstance(value, str) and not as_json:
        text = repr(value)
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError, RecursionError):
            text = type(value).__name__
    if len(text) <= limit:
        return text
    length = f"{len(value)} characters" if isinstance(value, str) else f"{len(text)} characters of JSON"
    return f"{text[:limit]}... ({length})"


def _got(value: object) -> str:
    """What a message says it got instead: the JSON type and the value, cut (`quoted`), such as 'number 42'."""
    return f"{_json_type(value)} {quoted(value, VALUE_SHOWN_CHARS // 2)}"


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


# --- Decision (pure) ------------------------------------------------------------


def _croniter(expression: str, start: datetime) -> Any:
    """croniter, imported on first use: runs whose expressions are all plain never load it."""
    from croniter import croniter

    return croniter(expression, start)


def latest_fire(
    expression: str, tz_name: str, before: datetime, skip: SkipDays | None = None, after: datetime | None = None
) -> datetime | None:
    """The latest instant at or before `before` at which the expression fires in zone tz_name.

    With `after`, only an instant later than it counts (else None), and the
    search goes no further back. Cron times are wall-clock times: the walk goes
    over them, latest first (`_walls_back`: naive, so it never sees daylight
    saving), and each is mapped to an instant with `wall_to_instant`, which is
    monotonic, so the first one at or before `before` is the latest, and once a
    wall time is no later than the wall clock at `after`, every one before it
    fired at or before `after`. Times on days `skip` skips do not exist: the
    walk jumps back over them (a range in one step), but not to more than
    SKIP_HORIZON_DAYS before `before`: then there is no such time (None).
    """
    return _latest_in(expression, _span(tz_name, before, after), skip)


class _Span(NamedTuple):
    """The instants (after, before] in zone tz, and the wall times that bound a search for what fires in them."""

    tz: ZoneInfo
    before: datetime
    after: datetime | None  # None: no lower bound
    highest: datetime  # the latest wall time that can fire at or before `before`
    lowest: datetime | None  # this wall time and every earlier one fired at or before `after`


def _span(tz_name: str, before: datetime, after: datetime | None) -> _Span:
    tz = zone(tz_name)
    local = before.astimezone(tz)
    highest = local.replace(tzinfo=None, second=0, microsecond=0)
    if local.fold:
        # In the repeated hour's second pass, later wall times of the first pass are earlier instants.
        highest += local.replace(fold=0).utcoffset() - local.utcoffset()
    lowest = None if after is None else after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    return _Span(tz, before, after, highest, lowest)


def _latest_in(expression: str, span: _Span, skip: SkipDays | None) -> datetime | None:
    """`latest_fire` over a span: the walk back over wall times, jumping skipped days."""
    walls = _walls_back(expression, span.highest, span.lowest)
    while True:
        fire = next(walls, None)
        if fire is None or (span.lowest is not None and fire <= span.lowest):
            return None
        if skip and skip.skips(fire.date()):
            first, _ = skip.span(fire.date())
            if (span.highest.date() - first).days > SKIP_HORIZON_DAYS:
                return None
            walls = _walls_back(expression, datetime(first.year, first.month, first.day) - _ONE_MINUTE, span.lowest)
            continue
        instant = wall_to_instant(fire, span.tz)
        if instant <= span.before:
            return instant if span.after is None or instant > span.after else None


def next_fire(expression: str, tz_name: str, after: datetime, skip: SkipDays | None = None) -> datetime | None:
    """The earliest instant strictly after `after` at which the expression fires in zone tz_name.

    The mirror of `latest_fire` (so latest_fire(e, z, t) <= t < next_fire(e, z, t)):
    the walk goes over wall-clock times forward (`_walls_on`) and each is mapped
    to an instant with `wall_to_instant`, the same daylight-saving rule, so the
    first one after `after` is the next. In the second pass of a repeated hour
    the walk skips the wall times whose first occurrence has already gone by.
    Days `skip` skips are jumped over, but not to more than SKIP_HORIZON_DAYS
    after `after` (then None).
    """
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    tz = zone(tz_name)
    wall = after.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    walls = _walls_on(expression, wall)
    while True:
        fire = next(walls)
        if skip and skip.skips(fire.date()):
            _, last = skip.span(fire.date())
            if (last - wall.date()).days > SKIP_HORIZON_DAYS:
                return None
            walls = _walls_on(expression, datetime(last.year, last.month, last.day, 23, 59))  # the next day, or later
            continue
        instant = wall_to_instant(fire, tz)
        if instant > after:
            return instant


def _walls_back(expression: str, start: datetime, lowest: datetime | None) -> Iterator[datetime]:
    """The wall times the expression fires at, from `start` (included) back: by field arithmetic if plain.

    A plain walk ends with the day of `lowest` (nothing before it can count); croniter's goes on, and
    the caller stops at its first wall time at or before `lowest`.
    """
    fields = cron_fields(expression)
    if fields is not None and fields.can_fire():
        return fields.walls_back(start, lowest and lowest.date())
    walker = _croniter(expression, start + _ONE_MINUTE)  # get_prev never returns its base itself
    return iter(lambda: walker.get_prev(datetime), None)


def _walls_on(expression: str, start: datetime) -> Iterator[datetime]:
    """The wall times the expression fires at strictly after `start`, earliest first: by field arithmetic if plain."""
    fields = cron_fields(expression)
    if fields is not None and fields.can_fire():
        return fields.walls_on(start)
    walker = _croniter(expression, start)
    return iter(lambda: walker.get_next(datetime), None)


def walls_at(instant: datetime, tz: ZoneInfo) -> list[datetime]:
    """The wall-clock times (naive) that fire at a whole-minute instant in tz, earliest first.

    Its own wall time, except in the second pass of a repeated hour (a time fires
    at its first occurrence); at the moment clocks go forward, also the skipped
    wall times before it (they fire then).
    """
    minute = timedelta(minutes=1)
    local = instant.astimezone(tz)
    wall = local.replace(tzinfo=None)
    skipped = local.utcoffset() - (instant - minute).astimezone(tz).utcoffset()
    earlier = [wall - skipped + minute * k for k in range(int(skipped / minute))]
    return earlier if local.fold else [*earlier, wall]


def latest_in_window(
    expression: str, tz_name: str, now: datetime, window: timedelta, skip: SkipDays | None = None
) -> datetime | None:
    """The latest instant in (now - window, now] at which the expression fires, or None.

    `latest_fire` searching no further back than the window; the tests hold
    both to a brute-force oracle. A time on a day `skip` skips does not exist.
    """
    return latest_fire(expression, tz_name, now, skip, after=now - window)


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
    any time at or before now. Times on the schedule's skip days do not exist.
    """
    return due_of(schedule, *latest_start_and_stop(schedule, now, window), since=now - window)


def latest_start_and_stop(
    schedule: Schedule, now: datetime, window: timedelta
) -> tuple[datetime | None, datetime | None]:
    """The schedule's latest start and latest stop in (now - window, now] (with enforce, at or before now)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    span = _span(schedule.tz, now, None if schedule.enforce else now - window)

    def latest(expressions: tuple[str, ...]) -> datetime | None:
        moments = [moment for expression in expressions if (moment := _latest_in(expression, span, schedule.skip))]
        return max(moments) if moments else None

    return latest(schedule.start), latest(schedule.stop)


def due_of(schedule: Schedule, start: datetime | None, stop: datetime | None, *, since: datetime) -> Due:
    """What the schedule asks for, given its latest start and stop: the later one; both at once is a conflict.

    Unless they meet only because clocks going forward moved one of them (`_later_by_wall_clock`).
    `since` is where the window (or the span searched) begins: an enforced time at or before it
    fell before the window.
    """
    enforced = schedule.enforce
    if start is None and stop is None:
        return Due(None, enforced=enforced)
    if start is not None and stop is not None and start == stop:
        later = _later_by_wall_clock(schedule, start)
        if later is None:
            return Due(None, start, conflict=True, enforced=enforced)
        return Due(later, start, enforced=enforced, before_window=enforced and start <= since)
    action, at = (Action.START, start) if stop is None or (start is not None and start > stop) else (Action.STOP, stop)
    assert at is not None
    return Due(action, at, enforced=enforced, before_window=enforced and at <= since)


def _later_by_wall_clock(schedule: Schedule, at: datetime) -> Action | None:
    """Of a start and a stop that fire at the same instant, the one written for the later wall time.

    They meet only when clocks going forward moved one of them (a 02:00 start and
    a 03:00 stop both fire at 03:00 on a spring-forward day): the 03:00 one is what
    the schedule says for after the jump. None for a real conflict (the same wall time).
    """
    walls = walls_at(at, zone(schedule.tz))

    def latest_wall(expressions: tuple[str, ...]) -> datetime | None:
        return max((wall for wall in walls for e in expressions if _fires_at_wall(e, wall)), default=None)

    start, stop = latest_wall(schedule.start), latest_wall(schedule.stop)
    if start is None or stop is None or start == stop:
        return None
    return Action.START if start > stop else Action.STOP


def _fires_at_wall(expression: str, wall: datetime) -> bool:
    fields = cron_fields(expression)
    if fields is not None:
        return fields.fires_at(wall)
    from croniter import croniter

    return bool(croniter.match(expression, wall))


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
        cause = Cause.ENFORCE if due.before_window else Cause.SCHEDULE
        return Decision(Outcome.ACT, due.action, f"{due.action.value} due at {_iso(due.at)}", due=due.at, cause=cause)
    if due.enforced and state in settled:
        # Enforcing holds a state every run: being in it already is the steady case, not news.
        return Decision(Outcome.IDLE, None, f"already {state}")
    return Decision(Outcome.SKIP, None, f"{due.action.value} due at {_iso(due.at)} but instance is {state}")


def follow_up(
    decision: Decision, schedule: Schedule, recent: Due, record: InstanceRecord, now: datetime, horizon: timedelta
) -> Decision:
    """What the instance's own record adds to the window's decision: a start that did not take, a missed run.

    `recent` is what the schedule asks for over the catch-up horizon (now - horizon,
    now] (with enforce, at or before now). A stopped instance whose start at or
    after the recent start failed (its StateReason code, LaunchTime) is an error;
    Server.* failures are retried, Client.* ones will not fix themselves. Without
    enforce, when the window holds no time, the recent time's action is made up
    for if the instance is in the opposite state and its last change came before
    that time (nothing has changed it since); a later change was a person's, and
    an unknown one is never guessed at.
    """
    if recent.action is Action.START and record.state == "stopped":
        failed = start_failure(record, recent.at)  # type: ignore[arg-type]
        if failed is not None:
            return failed
    if decision.outcome is not Outcome.IDLE or schedule.enforce or recent.action is None or recent.conflict:
        return decision
    actionable = STARTABLE_STATES if recent.action is Action.START else STOPPABLE_STATES
    if record.state not in actionable or record.last_change is None or recent.at is None:
        return decision
    action, due = recent.action.value, _iso(recent.at)
    if record.last_change < recent.at:
        return Decision(
            Outcome.ACT,
            recent.action,
            f"{action} due at {due} was missed: caught up now (catch-up until {_iso(recent.at + horizon)})",
            caught_up=recent.at,
            due=recent.at,
            cause=Cause.CATCH_UP,
        )
    by_hand = "started" if record.state == "running" else "stopped"
    return Decision(
        Outcome.LEFT,
        None,
        f"{by_hand} by hand at {_iso(record.last_change)} after the {action} at {due}: left alone until the next "
        f"{'stop' if by_hand == 'started' else 'start'}",
    )


def start_failure(record: InstanceRecord, start_at: datetime) -> Decision | None:
    """The decision for a start at or after start_at that EC2 accepted and the instance could not carry out."""
    if record.state_reason is None or record.launched is None or record.launched < start_at:
        return None
    code, message = record.state_reason
    if code not in FAILED_START_CODES:
        return None
    said = message if message.startswith(code) else f"{code}: {message}"  # EC2's messages begin with the code
    hint = FAILED_START_HINTS.get(code)
    problem = f"start due at {_iso(start_at)} did not take: {said}" + (f" (hint: {hint})" if hint else "")
    if code.startswith("Server."):
        return Decision(
            Outcome.ACT,
            Action.START,
            f"{problem}; started again",
            caught_up=start_at,
            problem=problem,
            due=start_at,
            cause=Cause.CATCH_UP,
        )
    return Decision(Outcome.ERROR, None, problem)


def instance_record(instance: Mapping[str, Any]) -> InstanceRecord:
    """The state-change facts of a DescribeInstances entry (timestamps as text or datetimes)."""
    state = instance["State"]["Name"]
    launched = _instant(instance.get("LaunchTime"))
    last_change = None
    if state == "running":
        last_change = launched  # EC2 sets LaunchTime at every start
    elif state == "stopped":
        found = _STOPPED_AT.search(str(instance.get("StateTransitionReason") or ""))
        if found:
            last_change = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    reason = instance.get("StateReason") or {}
    code = reason.get("Code")
    return InstanceRecord(state, last_change, launched, (code, str(reason.get("Message", ""))) if code else None)


def _instant(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment.astimezone(UTC) if moment.tzinfo else None


def guard_reason(tags: Mapping[str, str], protected_environments: frozenset[str]) -> str | None:
    """Why an instance or group must never be touched, or None."""
    for key, value in tags.items():
        if key.lower() == ENVIRONMENT_TAG and value.strip().lower() in protected_environments:
            return f"protected environment {value!r}"
    if AUTOSCALING_TAG in tags:
        return f"in Auto Scaling group {tags[AUTOSCALING_TAG]!r}"
    if EKS_NODEGROUP_TAG in tags:
        # EKS keeps a node group's sizes: scaling its group behind EKS's back is undone, or fights EKS.
        return f"managed by EKS (node group {quoted(tags[EKS_NODEGROUP_TAG])}): scale the node group with EKS"
    return None


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    # isoformat, not strftime: %Y does not pad years before 1000 on every platform.
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- Maintenance windows (pure): AWS's schedule expressions, their occurrences, what they ask of a run ----------
#
# A schedule's "maintenance_windows" name SSM maintenance windows of the instance's own account and
# region. From the lead time (EC2_POWERCYCLE_MAINTENANCE_LEAD_MINUTES) before an occurrence opens until
# it closes, the instance is wanted running: the run whose window holds the lead time starts it, no
# scheduled stop acts while it lasts, and the run whose window holds its end applies the schedule's
# state then, once. Skip days do not cancel a window; an override and the guards win over it. The
# windows are read at the edge (`read_maintenance_windows`); everything here takes them as values.

_AWS_MONTHS = {name: number for number, name in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN"), 1)} | {
    name: number for number, name in enumerate(("JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 7)
}
_AWS_WEEKDAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), 1)}
_AWS_CRON = re.compile(r"cron\((.*)\)", re.IGNORECASE | re.DOTALL)
_AWS_RATE = re.compile(r"rate\(\s*([0-9]{1,6})\s+(minutes?|hours?|days?)\s*\)", re.IGNORECASE)
_AWS_AT = re.compile(r"at\(\s*([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2})?)\s*\)", re.IGNORECASE)
_AWS_PLAIN_PART = re.compile(r"(\*|[0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?(?:/([0-9]+))?")
_RATE_UNITS = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
AWS_CRON_FIELDS = "minutes hours day-of-month month day-of-week year"


@dataclass(frozen=True)
class WindowRule:
    """A maintenance window's schedule expression, made evaluable.

    cron: `cron` is a 5-field expression croniter evaluates (day of week 0-6 from Sunday), `seconds` the
    seconds field's value, `years` the years allowed (None: every year). rate: `every`. at: `at`, a wall time.
    """

    kind: str  # "cron", "rate" or "at"
    cron: str = ""
    seconds: int = 0
    years: frozenset[int] | None = None
    every: timedelta | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class MaintenanceWindow:
    """An SSM maintenance window as DescribeMaintenanceWindows gives it (checked by `maintenance_window`)."""

    window_id: str
    name: str
    schedule: str  # cron(...), rate(...) or at(...), as AWS holds it
    duration: timedelta
    tz: str = DEFAULT_TIMEZONE
    offset_days: int = 0
    enabled: bool = True
    start_date: datetime | None = None
    end_date: datetime | None = None
    next_execution: datetime | None = None  # AWS's NextExecutionTime, when given: where a rate counts from

    def __str__(self) -> str:
        return f"{self.name!r} ({self.window_id})"


@dataclass(frozen=True)
class Occurrence:
    """One time a maintenance window is open: [start, end)."""

    window: MaintenanceWindow
    start: datetime
    end: datetime

    def words(self) -> str:
        return f"maintenance window {self.window} {_iso(self.start)} to {_iso(self.end)}"


@dataclass(frozen=True)
class Patching:
    """What a schedule's maintenance windows ask of a run at `now` (`patching_at`).

    `held`: the occurrence whose lead time to end holds `now` (the one ending last), or None;
    `ended`: with none held, an occurrence that ended in the run's window (now - W, now];
    `missed`: with neither, the latest that ended before that window but within the catch-up horizon.
    """

    held: Occurrence | None = None
    lead_at: datetime | None = None  # held.start - lead: when the instance is wanted running
    ended: Occurrence | None = None
    missed: Occurrence | None = None


def parse_window_rule(expression: str) -> WindowRule:
    """An AWS schedule expression (cron, rate or at) made evaluable; ScheduleError naming it if it cannot be."""
    text = expression.strip()
    if found := _AWS_CRON.fullmatch(text):
        return aws_cron_rule(found[1])
    if found := _AWS_RATE.fullmatch(text):
        count, unit = int(found[1]), found[2].lower().rstrip("s")
        if count == 0:
            raise ScheduleError(f"cannot evaluate {quoted(expression, 120)}: a rate of 0 {unit}s")
        return WindowRule("rate", every=_RATE_UNITS[unit] * count)
    if found := _AWS_AT.fullmatch(text):
        try:
            return WindowRule("at", at=datetime.fromisoformat(found[1]))
        except ValueError as err:
            raise ScheduleError(f"cannot evaluate {quoted(expression, 120)}: {err}") from err
    raise ScheduleError(
        f"cannot evaluate {quoted(expression, 120)}: expected cron({AWS_CRON_FIELDS}), rate(N minutes|hours|days) "
        "or at(YYYY-MM-DDThh:mm:ss)"
    )


@functools.lru_cache(maxsize=256)  # a pure parse's cache: a fleet names few windows
def aws_cron_rule(fields_text: str) -> WindowRule:
    """AWS's cron fields translated into what croniter evaluates, or ScheduleError saying what cannot be.

    AWS: minutes hours day-of-month month day-of-week year (a leading seconds field is allowed),
    day of week 1-7 from Sunday, `?` for "any", `L`, `W` and `#`, `a/s` from a to the end in steps of s,
    ranges that wrap (`20-2`). Minutes, hours, months and plain day fields are expanded into lists (so
    croniter's own reading of steps never matters); `L` (last day of the month), `nW` (the weekday
    nearest day n, n at most 28), `nL` (the last weekday n of the month) and `n#k` (its k-th) go to
    croniter's forms; the year is kept apart (croniter's sixth field is seconds). Refused: `LW`, `L-n`,
    `nW` past the 28th (croniter moves it into shorter months, where AWS would not fire), and a day of
    the month and a day of the week both given (AWS requires `?` in one of them).
    """
    fields = fields_text.split()
    seconds = 0
    if len(fields) == 7:
        if not (fields[0].isascii() and fields[0].isdigit() and int(fields[0]) <= 59):
            raise ScheduleError(f"cannot evaluate cron({fields_text[:200]}): a seconds field must be one number 0-59")
        seconds, fields = int(fields[0]), fields[1:]
    if len(fields) != 6:
        raise ScheduleError(
            f"cannot evaluate cron({fields_text[:200]}): {len(fields)} fields, expected 6 ({AWS_CRON_FIELDS})"
        )
    minute, hour, day, month, weekday, year = (field.upper() for field in fields)
    where = f"cron({' '.join(fields)})"
    if day not in ("*", "?") and weekday not in ("*", "?"):
        raise ScheduleError(f"cannot evaluate {where}: day-of-month and day-of-week are both given; one must be '?'")
    try:
        cron = " ".join(
            (
                _aws_list(minute, 0, 59),
                _aws_list(hour, 0, 23),
                _aws_day_of_month(day),
                _aws_list(month, 1, 12, _AWS_MONTHS),
                _aws_day_of_week(weekday),
            )
        )
        years = None if year in ("*", "?") else frozenset(map(int, _aws_list(year, 1970, 2199).split(",")))
    except ValueError as err:
        raise ScheduleError(f"cannot evaluate {where}: {err}") from err
    from croniter import CroniterError

    try:
        _croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
    except (CroniterError, ValueError) as err:
        raise ScheduleError(f"cannot evaluate {where}: {err}") from err
    return WindowRule("cron", cron=cron, seconds=seconds, years=years)


def _aws_list(text: str, low: int, high: int, names: Mapping[str, int] | None = None) -> str:
    """A plain AWS cron field as a comma-separated list of its values (ValueError if it is not plain)."""
    if text in ("*", "?"):
        return "*"
    values: set[int] = set()
    for part in text.split(","):
        found = _AWS_PLAIN_PART.fullmatch(part)
        if not found:
            raise ValueError(f"{part!r} is not a value, range or step of {low}-{high}")
        first, last, step = found.groups()
        begin = low if first == "*" else _aws_value(first, low, high, names)
        end = (high if first == "*" or step else begin) if last is None else _aws_value(last, low, high, names)
        span = list(range(begin, end + 1)) if begin <= end else [*range(begin, high + 1), *range(low, end + 1)]
        if step is not None and int(step) == 0:
            raise ValueError(f"{part!r} has a step of 0")
        values.update(span[:: int(step or 1)])
    return ",".join(str(value) for value in sorted(values))


def _aws_value(text: str, low: int, high: int, names: Mapping[str, int] | None) -> int:
    value = int(text) if text.isascii() and text.isdigit() else (names or {}).get(text)
    if value is None or not low <= value <= high:
        raise ValueError(f"{text!r} is not in {low}-{high}")
    return value


def _aws_day_of_month(text: str) -> str:
    if text in ("L", "*", "?"):
        return "*" if text != "L" else "L"
    if text.endswith("W") and text[:-1].isascii() and text[:-1].isdigit():
        day = int(text[:-1])
        if not 1 <= day <= 28:
            raise ValueError(f"{text!r}: the weekday nearest a day past the 28th is not evaluated")
        return text
    if "L" in text or "W" in text:
        raise ValueError(f"{text!r} in day-of-month is not evaluated (L and nW are)")
    return _aws_list(text, 1, 31)


def _aws_day_of_week(text: str) -> str:
    """AWS's day of week (1-7 from Sunday) in croniter's (0-6 from Sunday), `nL` as `L(n-1)`, `n#k` as `(n-1)#k`."""
    if text in ("*", "?"):
        return "*"
    if text == "L":
        return "6"  # the last day of the week: Saturday
    items = []
    for part in text.split(","):
        if part.endswith("L"):
            items.append(f"L{_aws_value(part[:-1], 1, 7, _AWS_WEEKDAYS) - 1}")
        elif "#" in part:
            day, _, nth = part.partition("#")
            if not (nth.isascii() and nth.isdigit() and 1 <= int(nth) <= 5):
                raise ValueError(f"{part!r}: '#' takes the week of the month, 1 to 5")
            items.append(f"{_aws_value(day, 1, 7, _AWS_WEEKDAYS) - 1}#{nth}")
        else:
            items.extend(str(int(value) - 1) for value in _aws_list(part, 1, 7, _AWS_WEEKDAYS).split(","))
    return ",".join(items)


def maintenance_window(record: Mapping[str, Any]) -> MaintenanceWindow:
    """A DescribeMaintenanceWindows entry as a MaintenanceWindow; ScheduleError naming it if a field is unusable."""
    window_id, name = str(record.get("WindowId", ""))[:40], str(record.get("Name", ""))[:128]
    shown = f"maintenance window {name!r} ({window_id})"
    tz = str(record.get("ScheduleTimezone") or DEFAULT_TIMEZONE)
    try:
        zone(tz)
    except ScheduleError as err:
        raise ScheduleError(f"{shown}: {err}") from err
    duration, offset = record.get("Duration"), record.get("ScheduleOffset") or 0
    if not isinstance(duration, int) or isinstance(duration, bool) or not 1 <= duration <= 24:
        raise ScheduleError(f"{shown}: Duration must be 1 to 24 hours, got {str(duration)[:40]!r}")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= 6:
        raise ScheduleError(f"{shown}: ScheduleOffset must be 0 to 6 days, got {str(offset)[:40]!r}")
    return MaintenanceWindow(
        window_id=window_id,
        name=name,
        schedule=str(record.get("Schedule", ""))[:256],
        duration=timedelta(hours=duration),
        tz=tz,
        offset_days=offset,
        enabled=record.get("Enabled", True) is not False,
        start_date=_window_instant(record.get("StartDate"), tz, shown, "StartDate"),
        end_date=_window_instant(record.get("EndDate"), tz, shown, "EndDate"),
        next_execution=_next_execution(record.get("NextExecutionTime"), tz, shown),
    )


def _next_execution(value: object, tz: str, shown: str) -> datetime | None:
    """AWS's NextExecutionTime, or None if it cannot be read: only a rate needs it, and it has StartDate too."""
    try:
        return _window_instant(value, tz, shown, "NextExecutionTime")
    except ScheduleError:
        return None


def _window_instant(value: object, tz: str, shown: str, what: str) -> datetime | None:
    """An ISO-8601 time of a window's record; one without an offset is in the window's zone."""
    if value is None or value == "":
        return None
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError as err:
        raise ScheduleError(f"{shown}: {what} {str(value)[:60]!r} is not an ISO-8601 time") from err
    try:
        instant = (moment if moment.tzinfo else wall_to_instant(moment, zone(tz))).astimezone(UTC)
    except OverflowError as err:  # 9999-12-31T23:30:00 behind UTC is past the last instant datetime holds
        raise ScheduleError(f"{shown}: {what} {str(value)[:60]!r} is out of range") from err
    if not INSTANT_YEARS[0] <= instant.year <= INSTANT_YEARS[1]:
        raise ScheduleError(f"{shown}: {what} {str(value)[:60]!r} is out of range")
    return instant


def window_starts(window: MaintenanceWindow, after: datetime, until: datetime) -> Iterator[datetime]:
    """The instants the window opens, in order, after `after` and at or before `until` (its dates and
    Enabled applied). ScheduleError naming the window and its expression if it cannot be evaluated."""
    if not window.enabled:
        return
    try:
        rule = parse_window_rule(window.schedule)
    except ScheduleError as err:
        raise ScheduleError(f"maintenance window {window}: {err}") from err
    if rule.kind != "cron" and window.offset_days:
        raise ScheduleError(f"maintenance window {window}: ScheduleOffset is for cron expressions only")
    low = max(after, (window.start_date or after) - timedelta(microseconds=1))
    high = min(until, window.end_date or until)
    if high <= low:
        return
    if rule.kind == "at":
        moment = wall_to_instant(rule.at, zone(window.tz))  # type: ignore[arg-type]
        if low < moment <= high:
            yield moment
    elif rule.kind == "rate":
        anchor = window.next_execution or window.start_date
        if anchor is None:
            raise ScheduleError(
                f"maintenance window {window}: cannot evaluate {window.schedule!r}: a rate counts from the window's "
                "StartDate (or AWS's NextExecutionTime), and it has neither"
            )
        every: timedelta = rule.every  # type: ignore[assignment]
        moment = anchor + every * ((low - anchor) // every + 1)
        while moment <= high:
            yield moment
            moment += every
    else:
        yield from _cron_starts(window, rule, low, high)


def _cron_starts(window: MaintenanceWindow, rule: WindowRule, low: datetime, high: datetime) -> Iterator[datetime]:
    tz = zone(window.tz)
    offset, seconds = timedelta(days=window.offset_days), timedelta(seconds=rule.seconds)
    # A day early: the offset is added to wall times, and daylight saving moves instants by an hour or two.
    wall = (low - offset - timedelta(days=1)).astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)
    years = rule.years
    if years is not None:
        later = [year for year in years if year >= wall.year]
        if not later:
            return
        if min(later) > wall.year:
            wall = datetime(min(later), 1, 1) - timedelta(minutes=1)
    walker = _croniter(rule.cron, wall)
    while True:
        fire = walker.get_next(datetime)
        if years is not None and fire.year not in years:
            later = [year for year in years if year > fire.year]
            if not later:
                return
            walker = _croniter(rule.cron, datetime(min(later), 1, 1) - timedelta(minutes=1))
            continue
        moment = wall_to_instant(fire + offset, tz) + seconds
        if moment > high:
            return
        if moment > low:
            yield moment


def occurrences(window: MaintenanceWindow, after: datetime, until: datetime) -> list[Occurrence]:
    """The window's occurrences that open in (after, until]."""
    return [Occurrence(window, start, start + window.duration) for start in window_starts(window, after, until)]


def next_occurrences(window: MaintenanceWindow, after: datetime, count: int) -> list[Occurrence]:
    """The window's next `count` occurrences that open after `after`, within SKIP_HORIZON_DAYS."""
    starts = window_starts(window, after, after + timedelta(days=SKIP_HORIZON_DAYS))
    return [Occurrence(window, start, start + window.duration) for start in itertools.islice(starts, count)]


def patching_at(
    windows: Sequence[MaintenanceWindow],
    now: datetime,
    window: timedelta,
    lead: timedelta,
    horizon: timedelta = timedelta(0),
) -> Patching:
    """What the windows ask of a run at `now` with run window W = `window`, lead time `lead` and catch-up
    horizon H = `horizon`.

    An occurrence holds `now` from start - lead until its end; with several holding, the one ending
    last is kept. With none holding, the latest that ended in (now - W, now] is `ended`, and with none
    either, the latest that ended in (now - H, now - W] is `missed` (its end's run did not come).
    """
    held: Occurrence | None = None
    ended: Occurrence | None = None
    missed: Occurrence | None = None
    for each in windows:
        for occurrence in occurrences(each, now - max(window, horizon) - each.duration, now + lead):
            if occurrence.start - lead <= now < occurrence.end:
                if held is None or occurrence.end > held.end:
                    held = occurrence
            elif now - window < occurrence.end <= now and (ended is None or occurrence.end > ended.end):
                ended = occurrence
            elif now - horizon < occurrence.end <= now and (missed is None or occurrence.end > missed.end):
                missed = occurrence
    if held is not None:
        return Patching(held=held, lead_at=held.start - lead)
    return Patching(ended=ended) if ended is not None else Patching(missed=missed)


def maintenance_decision(
    schedule: Schedule, due: Due, patching: Patching, state: str, now: datetime, window: timedelta
) -> Decision | None:
    """What the run does because of a maintenance window, or None when no window has a say this run.

    `due` is what the schedule asks for over the run's window. While an occurrence holds the run
    (lead time to end): the run whose window holds the lead time starts a stopped instance (with
    enforce every run does), a scheduled stop is skipped naming the window, and nothing else is done.
    The run whose window holds an occurrence's end applies the schedule's state at that end once,
    unless a start or stop of the schedule after the end decides. An instance already in the state
    wanted is left quietly (no skip is noted).
    """
    held = patching.held
    if held is not None:
        lead_at: datetime = patching.lead_at  # type: ignore[assignment]
        if state in SETTLED_STARTED:
            if due.action is Action.STOP and due.at is not None and due.at > now - window:
                return Decision(Outcome.SKIP, None, f"stop due at {_iso(due.at)} skipped: {held.words()}")
            return Decision(Outcome.IDLE, None, f"running for {held.words()}")
        if due.action is Action.START and not due.enforced:
            return None  # the schedule's own start: acted on as any
        if schedule.enforce or lead_at > now - window:
            decision = decide(Due(Action.START, lead_at, enforced=schedule.enforce), state)
            return replace(decision, reason=f"{decision.reason} for {held.words()}", cause=Cause.MAINTENANCE)
        return Decision(Outcome.IDLE, None, f"held running for {held.words()}")  # a missed start: `follow_up`
    ended = patching.ended
    if ended is None or (due.at is not None and due.at > ended.end):
        return None
    then = due_action(replace(schedule, enforce=True), ended.end, timedelta(0))
    if then.conflict or then.action is None:
        return None
    settled = SETTLED_STARTED if then.action is Action.START else SETTLED_STOPPED
    if state in settled:
        return Decision(Outcome.IDLE, None, f"{ended.words()} ended: already {state}")
    decision = decide(Due(then.action, ended.end, enforced=schedule.enforce), state)
    return replace(decision, reason=f"{ended.words()} ended: {decision.reason}", cause=Cause.MAINTENANCE)


def resolve_windows(names: Sequence[str], records: Sequence[Mapping[str, Any]]) -> tuple[MaintenanceWindow, ...]:
    """The windows a schedule names (IDs or names) among a target's; ScheduleError for none, several or a bad one."""
    found: list[MaintenanceWindow] = []
    for name in names:
        key = "WindowId" if _WINDOW_ID.fullmatch(name) else "Name"
        matches = [record for record in records if record.get(key) == name]
        if not matches and key == "WindowId":  # a name may look like an ID
            matches = [record for record in records if record.get("Name") == name]
        if not matches:
            raise ScheduleError(f"no maintenance window {name!r} in this account and region")
        if len(matches) > 1:
            ids = ", ".join(sorted(str(record.get("WindowId")) for record in matches)[:5])
            raise ScheduleError(f"{len(matches)} maintenance windows are named {name!r} ({ids}): name one by its ID")
        found.append(maintenance_window(matches[0]))
    return tuple(dict.fromkeys(found))


# --- Schedules behind URLs (edge: network) --------------------------------------


def redact_url(url: str) -> str:
    """The URL without credentials, query or fragment, cut to URL_SHOWN_MAX_CHARS: safe to log, bounded."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    shown = f"{parts.scheme}://{host}{port}{parts.path}"
    if len(shown) > URL_SHOWN_MAX_CHARS:
        return f"{shown[:URL_SHOWN_MAX_CHARS]}... ({len(url.strip())} characters)"
    return shown


def has_dot_segment(path: str) -> bool:
    """Whether a URL path holds a `.` or `..` segment in any encoding a server might decode.

    Percent-encoded (`%2e%2e`, `%2E.`), encoded twice or more (`%252e`), behind a
    backslash (`\\..\\`, `%5c`) or a path parameter (`..;x`). A path still
    changing after URL_DECODE_ROUNDS decodings counts as one: refused rather than guessed.
    """
    text = path
    for _ in range(URL_DECODE_ROUNDS):
        if any(segment.split(";", 1)[0] in (".", "..") for segment in re.split(r"[/\\]", text)):
            return True
        decoded = unquote(text)
        if decoded == text:
            return False
        text = decoded
    return True


def _normalised_path(path: str) -> str:
    """The path as RFC 3986 (6.2.2) compares it: escapes of unreserved characters decoded, the rest in upper case."""

    def unescape(found: re.Match[str]) -> str:
        char = chr(int(found[1], 16))
        return char if char in _UNRESERVED else f"%{found[1].upper()}"

    return _PERCENT_ESCAPE.sub(unescape, path) or "/"


def url_is_allowed(url: str, allow_prefixes: Iterable[str]) -> bool:
    """True when url starts with an operator-allowed prefix: same scheme and host, and a path under the prefix's.

    Paths are compared normalised (`_normalised_path`); a path with dot
    segments is never allowed (check_url refuses it whatever the prefixes).
    """
    target = urlsplit(url)
    if has_dot_segment(target.path):
        return False
    path = _normalised_path(target.path)
    for prefix in allow_prefixes:
        allowed = urlsplit(prefix)
        if (
            target.scheme.lower() == allowed.scheme.lower()
            and target.netloc.lower() == allowed.netloc.lower()
            and path.startswith(_normalised_path(allowed.path))
        ):
            return True
    return False


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, which a connection to it reaches: none for a plain one.

    IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`
    and the local-use `64:ff9b:1::/48` (RFC 6052 positions: bits 48-63 and 72-87),
    6to4 `2002::/16`, and Teredo `2001::/32` (its server and its client).
    """
    if ip.version == 4:
        return []
    value = int(ip)
    low32 = ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip.ipv4_mapped:
        return [ip.ipv4_mapped]
    if ip in _IPV4_COMPATIBLE or ip in _NAT64_WELL_KNOWN:
        return [low32]
    if ip in _NAT64_LOCAL:
        return [ipaddress.IPv4Address(((value >> 64) & 0xFFFF) << 16 | ((value >> 40) & 0xFFFF))]
    if ip.sixtofour:
        return [ip.sixtofour]
    if ip.teredo:
        return list(ip.teredo)
    return []


def is_public_address(address: str) -> bool:
    """Whether a resolved address is one a schedule URL may reach unallowed: global, as is any IPv4 it carries."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    carried = embedded_ipv4(ip)
    return all(v4.is_global for v4 in carried) if carried else ip.is_global


def check_url(url: str, allow_prefixes: Iterable[str], resolve: Callable[[str], list[str]]) -> list[str]:
    """The addresses to fetch url from: its host resolved once, every address public unless allowed.

    Refuses (ScheduleError) a URL that `validate_url` refuses, or whose addresses
    are not public while it is not allowed. The fetch connects only to these
    addresses, so a DNS answer that changes after the check (DNS rebinding) cannot steer the request.
    """
    host, allowed = validate_url(url, allow_prefixes)
    shown = redact_url(url)
    try:
        addresses = resolve(host)
    except OSError as err:
        raise ScheduleError(f"cannot resolve host of schedule URL {shown}: {err}") from err
    if not addresses:
        raise ScheduleError(f"host of schedule URL {shown} resolves to no address")
    if allowed:
        return addresses
    for address in addresses:
        if not is_public_address(address):
            raise ScheduleError(
                f"refused schedule URL {shown}: {host} resolves to non-public address {address} "
                f"(see {URL_ALLOW_SETTING})"
            )
    return addresses


def validate_url(url: str, allow_prefixes: Iterable[str]) -> tuple[str, bool]:
    """The URL's host and whether an allow-list prefix covers it; ScheduleError for a URL refused before resolving.

    Refused: a malformed URL, no host, a host name IDNA cannot encode (an empty
    label, a label over 63 characters, a name over 253), a path with dot
    segments (`has_dot_segment`, allowed or not), and anything but https unless allowed.
    """
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as err:
        raise ScheduleError(f"malformed schedule URL {shown}") from err
    if not host:
        raise ScheduleError(f"schedule URL {shown} has no host")
    try:
        encoded = host.encode("idna")
    except UnicodeError as err:
        raise ScheduleError(
            f"schedule URL {shown} has a host name IDNA cannot encode (an empty label, or one over 63 characters)"
        ) from err
    if len(encoded.rstrip(b".")) > 253:
        raise ScheduleError(f"schedule URL {shown} has a host name over 253 characters")
    if has_dot_segment(parts.path):
        raise ScheduleError(f"refused schedule URL {shown}: its path holds a '.' or '..' segment")
    allowed = url_is_allowed(url, allow_prefixes)
    if not allowed and parts.scheme.lower() != "https":
        raise ScheduleError(f"refused schedule URL {shown}: only https is allowed (see {URL_ALLOW_SETTING})")
    return host, allowed


def resolve_host(host: str) -> list[str]:
    """The host's addresses, once each, in the resolver's order of preference."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(info[4][0] for info in infos))


def url_fetch_deadline(started: float, deadline: float | None) -> float | None:
    """When a run's URL fetching must end (time.monotonic() seconds), given when the invocation ends; None: never.

    The last max(URL_BUDGET_RESERVE_SECONDS, URL_BUDGET_RESERVE_SHARE of the time
    left at the run's start), but never more than half of it, is kept for the
    actions, the summary, the metrics and the notification: 240 s of fetching
    in a 300 s invocation, 720 s in 900 s, 15 s in 30 s.
    """
    if deadline is None:
        return None
    left = max(deadline - started, 0.0)
    return deadline - min(max(URL_BUDGET_RESERVE_SECONDS, URL_BUDGET_RESERVE_SHARE * left), left / 2)


class FetchSockets:
    """The sockets one fetch opens (duplicates of their descriptors), so that its deadline can cut them.

    shutdown() on a duplicate ends the connection itself (TLS on top of it
    included): a read blocked in the fetch's thread fails at once, and the thread ends.
    A socket opened after the cut is cut as it opens.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.cut = False

    def add(self, sock: socket.socket) -> None:
        duplicate = sock.dup()
        with self._lock:
            self._sockets.append(duplicate)
            if self.cut:
                self._shut(duplicate)

    def cut_all(self) -> None:
        with self._lock:
            self.cut = True
            for sock in self._sockets:
                self._shut(sock)

    def close(self) -> None:
        with self._lock:  # never while cut_all shuts them: a closed descriptor's number may be reused
            for sock in self._sockets:
                sock.close()
            self._sockets = []

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed by the other end
            sock.shutdown(socket.SHUT_RDWR)


def fetch_schedule_text(url: str, addresses: Sequence[str], until: float | None = None) -> str:
    """GET a schedule document from one of the addresses by `until` (default: URL_DEADLINE_SECONDS from now)."""
    until = time.monotonic() + URL_DEADLINE_SECONDS if until is None else until
    return fetch_in_time(url, lambda sockets: _get_schedule_text(url, addresses, sockets, until), until)


def fetch_in_time(
    url: str,
    work: Callable[[FetchSockets], str],
    until: float,
    late: str | None = None,
    lingering: list[threading.Thread] | None = None,
) -> str:
    """work(sockets) in a thread of its own ("schedule-fetch"), given up on at `until`, whatever the server does.

    Timeouts only bound each read, so a server sending its headers a byte at a
    time could hold a run for hours: at `until` the fetch's sockets are cut,
    its blocked read fails at once and its thread is joined. What cannot be cut
    is the name look-up (getaddrinfo, bounded by the system resolver's own
    timeout and attempts): a thread still in it is appended to `lingering`
    for the run to join at its end (without `lingering`, joined here). `late`
    is the message when `until` passes (default: took longer than URL_DEADLINE_SECONDS).
    """
    outcome: list[str | BaseException] = []
    sockets = FetchSockets()

    def fetch() -> None:
        try:
            outcome.append(work(sockets))
        except BaseException as err:  # handed to the caller below
            outcome.append(err)
        finally:
            sockets.close()

    worker = threading.Thread(target=fetch, name="schedule-fetch", daemon=True)
    worker.start()
    worker.join(max(until - time.monotonic(), 0.0))
    if worker.is_alive():
        sockets.cut_all()
        worker.join(URL_CUT_GRACE_SECONDS)  # a cut read fails at once; a name look-up does not
        if worker.is_alive() and lingering is not None:
            lingering.append(worker)
        else:
            worker.join()
        raise ScheduleError(late or f"schedule URL {redact_url(url)} took longer than {URL_DEADLINE_SECONDS:g} s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def _get_schedule_text(url: str, addresses: Sequence[str], sockets: FetchSockets, until: float) -> str:
    """GET from the first of the addresses that can be reached; any failure is this URL's ScheduleError."""
    import requests  # only runs that use URL schedules pay for importing requests

    # urllib3 logs each request line, query string included, at DEBUG: a presigned URL's signature.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)
    shown = redact_url(url)
    try:
        for address in addresses[:-1]:
            try:
                body = _get_capped_body(url, address, sockets, until)
                break
            except requests.ConnectionError:  # no connection (IPv6 without a route, say): the next, as any client
                continue
        else:
            body = _get_capped_body(url, addresses[-1], sockets, until)
    except ScheduleError:
        raise
    except Exception as err:  # requests', urllib3's and the socket's errors alike: that URL's problem
        raise ScheduleError(f"cannot fetch schedule URL {shown}: {type(err).__name__}") from err
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ScheduleError(f"schedule at {shown} is not UTF-8 text") from err


def _get_capped_body(url: str, address: str, sockets: FetchSockets, until: float) -> bytearray:
    """GET url from address with timeouts, a size cap while reading, no redirects; nothing once `until` has passed."""
    import requests

    shown = redact_url(url)
    left = until - time.monotonic()
    if sockets.cut or left <= 0:  # given up on (while resolving, say): no connection
        raise ScheduleError(f"schedule URL {shown} took longer than {URL_DEADLINE_SECONDS:g} s")
    with requests.Session() as session:
        session.trust_env = False  # no proxies or .netrc credentials from the environment
        pinned = _pinned_adapter(address, sockets)
        session.mount("https://", pinned)
        session.mount("http://", pinned)
        with session.get(
            url,
            # The connect timeout ends by `until`: a connection being made has no socket to cut yet.
            timeout=(min(URL_TIMEOUT_SECONDS, left), URL_TIMEOUT_SECONDS),
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
            # read1 returns whatever has arrived; a server trickling bytes is cut at the deadline (fetch_in_time).
            while chunk := response.raw.read1(8192, decode_content=True):
                body += chunk
                if len(body) > URL_MAX_BYTES:
                    raise ScheduleError(f"schedule at {shown} is larger than {URL_MAX_BYTES} bytes")
    return body


def _pinned_adapter(address: str, sockets: FetchSockets) -> Any:
    """A requests transport adapter that connects to address, whatever the URL's host; its sockets go to `sockets`.

    TLS still names the URL's host (SNI, and the certificate is checked against
    it), and so does the Host header: the server sees an ordinary request.
    """
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class TrackedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            sockets.add(sock)
            return sock

    class TrackedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            sockets.add(sock)  # before the TLS handshake, which the cut ends as well
            return sock

    class TrackedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = TrackedHTTPConnection

    class TrackedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = TrackedHTTPSConnection

    class PinnedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": TrackedHTTPConnectionPool,
                "https": TrackedHTTPSConnectionPool,
            }

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
    """Turns tag values into Schedules, each distinct value, URL and "skip" URL once per run (thread-safe).

    `memo` is the run's; `resolve` is the name look-up (tests pass their own).
    `fetch_until` (time.monotonic() seconds, `url_fetch_deadline`) is when the
    run's URL fetching must end: each fetch ends by the earlier of it and its
    own URL_DEADLINE_SECONDS, and once it has passed a URL fails without a
    connection. `prefetch` fetches a page's URLs at once, URL_FETCH_WORKERS at
    a time; `close` ends every thread the resolver started (the run calls it).
    """

    def __init__(
        self,
        settings: Settings,
        memo: RunMemo | None = None,
        resolve: Callable[[str], list[str]] = resolve_host,
        fetch_until: float | None = None,
    ) -> None:
        self._settings = settings
        self._memo = memo or RunMemo()
        self._resolve = resolve
        self._fetch_until = fetch_until
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._lingering: list[threading.Thread] = []  # fetch threads given up on while looking a name up

    def resolve(self, value: str) -> Schedule | ScheduleError:
        """The Schedule of a tag value, or the ScheduleError saying why there is none.

        Errors are returned, not raised: one remembered error serves many instances.
        """
        if is_url(value):
            url = value.strip()
            return self._memo.urls.get(url, lambda: self._fetch_and_parse(url))  # type: ignore[no-any-return]
        return self._memo.schedules.get(value, lambda: self._parse(value))  # type: ignore[no-any-return]

    def prefetch(self, values: Iterable[str | None]) -> None:
        """Resolve at once, URL_FETCH_WORKERS at a time, the distinct values not yet resolved that need the network.

        URLs, and inline values that may name a "skip" URL; a schedule URL's own
        "skip" URL is fetched in the same worker, after it. What goes wrong is
        left for `resolve` to report, where each instance is decided.
        """
        wanted: dict[str, None] = {}
        seen: set[str] = set()
        for value in values:
            if not value or value in seen:
                continue
            seen.add(value)
            if is_url(value):
                if not self._memo.urls.has(value.strip()):
                    wanted[value] = None
            elif "http" in value.lower() and not self._memo.schedules.has(value):
                wanted[value] = None
        if len(wanted) < 2:
            return  # nothing to do at once: the one is fetched where it is decided
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(URL_FETCH_WORKERS, thread_name_prefix="schedule-urls")
            pool = self._pool
        wait([pool.submit(self.resolve, value) for value in wanted])

    def close(self, until: float | None = None) -> None:
        """End the resolver's threads: its pool's, and fetch threads still in a name look-up (joined by `until`)."""
        with self._lock:
            pool, self._pool = self._pool, None
            lingering, self._lingering = self._lingering, []
        if pool is not None:
            pool.shutdown(wait=True)
        for thread in lingering:
            thread.join(None if until is None else max(until - time.monotonic(), 0.0))
        alive = [thread for thread in lingering if thread.is_alive()]
        if alive:
            logger.warning("%d schedule-fetch threads still wait on the system's name look-up", len(alive))

    def _fetch_text(self, url: str) -> str:
        """The body at url, checked (`check_url`, its name look-up included) and fetched within the fetch's time."""
        shown = redact_url(url)
        validate_url(url, self._settings.url_allow)  # refused before any thread, look-up or connection
        now = time.monotonic()
        until = now + URL_DEADLINE_SECONDS
        late = None
        if self._fetch_until is not None and self._fetch_until < until:
            if self._fetch_until <= now:
                raise ScheduleError(f"not fetched: {shown}: the run's time for fetching URLs is spent")
            until = self._fetch_until
            late = f"not fetched: {shown}: the run's time for fetching URLs ran out"

        def work(sockets: FetchSockets) -> str:
            addresses = check_url(url, self._settings.url_allow, self._resolve)
            return _get_schedule_text(url, addresses, sockets, until)

        with self._lock:
            lingering = self._lingering
        return fetch_in_time(url, work, until, late, lingering)

    def _parse(self, text: str) -> Schedule | ScheduleError:
        try:
            return parse_schedule_json(text, self._settings.timezone, self.skip_days)
        except ScheduleError as err:
            return err

    def _fetch_and_parse(self, url: str) -> Schedule | ScheduleError:
        shown = redact_url(url)
        try:
            text = self._fetch_text(url)
            try:
                document = load_json(text, f"JSON such as {SCHEDULE_EXAMPLE}")
                if not isinstance(document, dict):  # a body is never shown whole: its type only
                    raise ScheduleError(
                        f"schedule must be a JSON object such as {SCHEDULE_EXAMPLE}, got {_json_type(document)}"
                    )
                return parse_schedule_document(document, self._settings.timezone, self.skip_days)
            except ScheduleError as err:
                raise ScheduleError(f"schedule at {shown}: {err}") from err
        except ScheduleError as err:
            logger.warning("schedule URL %s unusable: %s", shown, err)
            return err

    def skip_days(self, url: str) -> SkipDays:
        """The entries of a "skip" URL, fetched and checked once per run however many schedules name it.

        Under the rules of schedule URLs; raises ScheduleError saying why the list is unusable.
        """
        found = self._memo.skips.get(url, lambda: self._fetch_skip_days(url))
        if isinstance(found, ScheduleError):
            raise found
        return found  # type: ignore[no-any-return]

    def _fetch_skip_days(self, url: str) -> SkipDays | ScheduleError:
        shown = redact_url(url)
        try:
            text = self._fetch_text(url)
            document = load_json(text, f"a list such as {SKIP_EXAMPLE}")
            if not isinstance(document, list):  # a body is never shown whole: its type only
                got = _json_type(document)
                raise ScheduleError(f"'skip' list must be a JSON array such as {SKIP_EXAMPLE}, got {got}")
            skip = parse_skip_entries(document, source=shown)
            return skip if skip is not None else SkipDays(source=shown)
        except ScheduleError as err:
            logger.warning("skip URL %s unusable: %s", shown, err)
            return ScheduleError(f"'skip' list at {shown}: {err}")


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
    # (instance ID, action, due, the maintenance window it is for or None)
    caught_up: list[tuple[str, Action, datetime, str | None]] = field(default_factory=list)
    hibernated: list[str] = field(default_factory=list)
    groups_started: list[str] = field(default_factory=list)
    groups_stopped: list[str] = field(default_factory=list)
    instances: int = 0
    groups: int = 0  # tagged Auto Scaling groups read
    failed: bool = False
    # Name tags of instances in `errors` only (summary, notification): memory stays flat however large the fleet.
    names: dict[str, str] = field(default_factory=dict)
    # For the outlets after the actions (`Outlets`): each acting instance's decision and type (shared pairs,
    # so a dictionary slot an instance), the scheduled instances stopped once the actions are made, by type,
    # and the status tags read on the instances whose tags may change: those acting or carrying an error.
    acting: dict[str, tuple[Decision, str]] = field(default_factory=dict)
    group_decisions: dict[str, Decision] = field(default_factory=dict)  # each acting group's, for the events
    stopped_types: dict[str, int] = field(default_factory=dict)
    status_seen: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # (last action, error)
    group_status_seen: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # the groups'
    status_tag_errors: int = 0

    def skip(self, instance_id: str, reason: str) -> None:
        self.skipped.append((instance_id, reason))

    def error(self, instance_id: str | None, error: str) -> None:
        self.errors.append((instance_id, error))

    def skipped_entries(self) -> Iterator[dict[str, Any]]:
        for instance_id, reason in self.skipped:
            yield {**_which(instance_id), **self._where(), "reason": reason}

    def error_entries(self) -> Iterator[dict[str, Any]]:
        for instance_id, error in self.errors:
            name = self.names.get(instance_id) if instance_id else None
            yield {**_which(instance_id), **({"name": name} if name else {}), **self._where(), "error": error}

    def remember_name(self, instance: Mapping[str, Any]) -> None:
        """Keep the instance's Name tag, if it has one: call it for instances in `errors` only."""
        name = next((tag.get("Value", "") for tag in instance.get("Tags", ()) if tag["Key"] == "Name"), "")
        if name and "InstanceId" in instance:  # a group is named by its name already
            self.names[instance["InstanceId"]] = name

    def caught_up_entries(self) -> Iterator[dict[str, Any]]:
        for instance_id, action, due, window in self.caught_up:
            entry = {**_which(instance_id), **self._where(), "action": action.value, "due": _iso(due)}
            yield entry if window is None else {**entry, "maintenance_window": window}

    def group_entries(self, names: list[str]) -> Iterator[dict[str, Any]]:
        """`groups_started` and `groups_stopped` entries."""
        for name in names:
            yield {"group": str(name), **self._where()}

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
            "groups": self.groups,
            "groups_started": self.groups_started,
            "groups_stopped": self.groups_stopped,
        }

    def actions_made(self, kind: Kind = Kind.INSTANCE) -> Iterator[tuple[str, str, Decision]]:
        """(instance ID, "started", "stopped" or "hibernated", its decision) for each instance acted on;
        (group name, "started" or "stopped", its decision) for each group, with `kind` GROUP."""
        if kind is Kind.GROUP:
            for name in self.groups_started:
                yield name, "started", self.group_decisions[name]
            for name in self.groups_stopped:
                yield name, "stopped", self.group_decisions[name]
            return
        hibernated = frozenset(self.hibernated)
        for instance_id in self.started:
            yield instance_id, "started", self.acting[instance_id][0]
        for instance_id in self.stopped:
            done = "hibernated" if instance_id in hibernated else "stopped"
            yield instance_id, done, self.acting[instance_id][0]


def _which(resource_id: str | None) -> dict[str, str | None]:
    """An entry's subject: {"instance_id": ID}, or a group's {"instance_id": None, "group": name}."""
    if isinstance(resource_id, GroupName):
        return {"instance_id": None, "group": str(resource_id)}
    return {"instance_id": resource_id}


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
    return _target_service_client("ec2", region, session, credentials)


def ssm_client(region: str, session: Any, credentials: Mapping[str, str] | None = None) -> Any:
    """An SSM client of a target (its maintenance windows), made as `ec2_client`."""
    return _target_service_client("ssm", region, session, credentials)


def _target_service_client(
    service: str, region: str, session: Any, credentials: Mapping[str, str] | None = None
) -> Any:
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
    return session.client(service, config=config, **keys)


def autoscaling_client(region: str, session: Any, credentials: Mapping[str, str] | None = None) -> Any:
    """An Auto Scaling client, made as `ec2_client` makes EC2's (same retries, same credentials)."""
    return _target_service_client("autoscaling", region, session, credentials)


def sns_client(session: Any, region: str) -> Any:
    """The SNS client the run's notification is published with."""
    return _outlet_client("sns", session, region)


def events_client(session: Any, region: str) -> Any:
    """The EventBridge client a run's events are put with."""
    return _outlet_client("events", session, region)


def _outlet_client(service: str, session: Any, region: str) -> Any:
    """A client for what a run reports after its actions: few retries, short timeouts (it must not hold the run)."""
    return session.client(
        service,
        region_name=region,
        config=Config(
            retries={"mode": "standard", "total_max_attempts": NOTIFY_MAX_ATTEMPTS}, connect_timeout=5, read_timeout=10
        ),
    )


def sts_client(session: Any, region: str) -> Any:
    return _account_client("sts", session, region)


def organizations_client(session: Any, region: str) -> Any:
    return _account_client("organizations", session, region)


def lambda_client(session: Any, region: str) -> Any:
    return _account_client("lambda", session, region)


def _account_client(service: str, session: Any, region: str) -> Any:
    """A client of the function's own account for a service other than EC2, with EC2's retry mode."""
    return session.client(
        service,
        region_name=region,
        config=Config(retries={"mode": "standard", "total_max_attempts": EC2_MAX_ATTEMPTS}),
    )


def assume_role(sts: Any, role_arn: str, settings: Settings) -> dict[str, Any]:
    """Temporary credentials for a role in another account (STS AssumeRole)."""
    name = re.sub(r"[^\w+=,.@-]", "-", os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "ec2-powercycle"))[:64]
    extra = {"ExternalId": settings.external_id} if settings.external_id else {}
    reply = sts.assume_role(RoleArn=role_arn, RoleSessionName=name, DurationSeconds=ASSUMED_ROLE_SECONDS, **extra)
    return reply["Credentials"]  # type: ignore[no-any-return]


def _expires_in(credentials: Mapping[str, Any], now: datetime) -> timedelta:
    """How long assumed credentials stay valid (zero when their expiry cannot be read)."""
    try:
        expiry = datetime.fromisoformat(str(credentials["Expiration"]).replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return timedelta(0)
    if expiry.tzinfo is None:
        return timedelta(0)
    return expiry - now


_WINDOW_FIELDS = (
    "WindowId",
    "Name",
    "Enabled",
    "Schedule",
    "ScheduleTimezone",
    "ScheduleOffset",
    "Duration",
    "StartDate",
    "EndDate",
    "NextExecutionTime",
)


def read_maintenance_windows(ssm: Any) -> list[dict[str, Any]]:
    """Every SSM maintenance window of the client's account and region (DescribeMaintenanceWindows, paged),
    each with only the fields a run reads."""
    return [
        {key: window[key] for key in _WINDOW_FIELDS if key in window}
        for page in ssm.get_paginator("describe_maintenance_windows").paginate()
        for window in page.get("WindowIdentities", ())
    ]


def tagged_instances(
    ec2: Any, tag: str, each_page: Callable[[list[dict[str, Any]]], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Every instance carrying the tag in a readable state, page by page (streamed); each page to `each_page` first.

    Paged by hand rather than with botocore's paginator: the paginator keeps the
    previous page (about 12 MiB for 1,000 instances) alive while it reads and
    parses the next one, so a run would hold two pages at its peak instead of one.
    """
    filters = [
        {"Name": "tag-key", "Values": [tag]},
        {"Name": "instance-state-name", "Values": list(READ_STATES)},
    ]
    token = ""
    while True:
        # DESCRIBE_PAGE_SIZE is read at call time: tests shrink it.
        page = ec2.describe_instances(
            Filters=filters, MaxResults=DESCRIBE_PAGE_SIZE, **({"NextToken": token} if token else {})
        )
        next_token = page.get("NextToken") or ""
        instances = [
            instance for reservation in page.get("Reservations", ()) for instance in reservation.get("Instances", ())
        ]
        page = None  # let go of the page before the next one is read and parsed
        if each_page is not None:
            each_page(instances)
        yield from instances
        instances = []
        if not next_token:
            return
        if next_token == token:
            raise PaginationError(message=f"DescribeInstances returned the same NextToken twice: {token[:40]}")
        token = next_token


def act(ec2: Any, action: Action, instance_ids: list[str], result: TargetResult) -> list[str]:
    """Start or stop the instances in batches; return the IDs the API accepted.

    A failed batch is split in halves until the instances at fault are alone, so
    one bad instance costs about 2*log2(batch) extra calls and the rest still
    change state. Failures that name no instance (throttling after botocore's
    retries, service errors) fail their batch without splitting.
    """
    call = ec2.start_instances if action is Action.START else ec2.stop_instances
    done, _ = _in_batches(call, action, instance_ids, result)
    return done


def hibernate(ec2: Any, instance_ids: list[str], result: TargetResult) -> tuple[list[str], list[str]]:
    """Stop the instances with hibernation; return (hibernated, stopped normally).

    An instance that refuses hibernation (UnsupportedHibernationConfiguration: not
    ready yet after launch, say) is stopped normally in the same run.
    """
    hibernated, refused = _in_batches(
        functools.partial(ec2.stop_instances, Hibernate=True), Action.STOP, instance_ids, result, HIBERNATION_REFUSED
    )
    if refused:
        logger.info("%s: %d instances refused hibernation; stopping them normally", result.target, len(refused))
    return hibernated, act(ec2, Action.STOP, refused, result)


def _in_batches(
    call: Callable[..., Any], action: Action, instance_ids: list[str], result: TargetResult, refusal: str = ""
) -> tuple[list[str], list[str]]:
    """call(InstanceIds=batch) in batches, bisecting failures; return (accepted, refused with `refusal`)."""
    done: list[str] = []
    refused: list[str] = []

    def attempt(batch: list[str]) -> None:
        try:
            call(InstanceIds=batch)
        except (ClientError, BotoCoreError) as err:
            code = err.response.get("Error", {}).get("Code") if isinstance(err, ClientError) else None
            if code is not None and code not in BATCH_WIDE_ERRORS and len(batch) > 1:
                middle = len(batch) // 2
                attempt(batch[:middle])
                attempt(batch[middle:])
            elif refusal and code == refusal:
                refused.extend(batch)
            else:
                for instance_id in batch:
                    result.error(instance_id, f"{action.value} failed: {_describe_error(err)}")
            return
        done.extend(batch)

    for offset in range(0, len(instance_ids), ACTION_BATCH_SIZE):
        attempt(instance_ids[offset : offset + ACTION_BATCH_SIZE])
    return done, refused


def tagged_groups(autoscaling: Any, tag: str) -> Iterator[dict[str, Any]]:
    """Every Auto Scaling group carrying the tag, GROUP_PAGE_SIZE a page, filtered by the service on the tag key.

    A region without such groups costs this one call.
    """
    filters = [{"Name": "tag-key", "Values": [tag]}]
    token = ""
    while True:
        page = autoscaling.describe_auto_scaling_groups(
            Filters=filters, MaxRecords=GROUP_PAGE_SIZE, **({"NextToken": token} if token else {})
        )
        yield from page.get("AutoScalingGroups", ())
        next_token = page.get("NextToken") or ""
        if not next_token:
            return
        if next_token == token:
            raise PaginationError(message=f"DescribeAutoScalingGroups returned the same NextToken twice: {token[:40]}")
        token = next_token


def group_record(autoscaling: Any, name: str, state: str) -> InstanceRecord:
    """A group's last change: when its latest scaling activity started (one DescribeScalingActivities record).

    None when it has none or they cannot be read (logged): a missed run is then never guessed at.
    """
    try:
        page = autoscaling.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=1)
    except (ClientError, BotoCoreError) as err:
        logger.warning("cannot read the scaling activities of group %s: %s", name, _describe_error(err))
        return InstanceRecord(state, None, None, None)
    latest = next(iter(page.get("Activities", ())), None)
    return InstanceRecord(state, _instant(latest.get("StartTime")) if latest else None, None, None)


def scale_groups(
    autoscaling: Any, size_tag: str, action: Action, groups: list[Resource], result: TargetResult
) -> list[str]:
    """Stop (scale to zero) or start (restore) each group, one call or two each; return the names done.

    A stop saves the sizes in the size tag first and changes nothing if it cannot;
    a start restores the saved sizes, then removes the tag. Each group's failure
    is its own error; the others go on.
    """
    done: list[str] = []
    scale = _stop_group if action is Action.STOP else _start_group
    for group in groups:
        changed, problem = scale(autoscaling, size_tag, group)
        if changed:
            done.append(group.resource_id)
        if problem is not None:
            result.error(group.resource_id, problem)
    return done


def _stop_group(autoscaling: Any, size_tag: str, group: Resource) -> tuple[bool, str | None]:
    name, size = group.resource_id, group.size
    if size is None or size.desired == 0:  # never save a zero size over the one a start must restore
        return False, "stop refused: the group is already at zero; nothing changed"
    tag = {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": size_tag, "PropagateAtLaunch": False}
    # A saved size still there means no scheduled start has run since the last stop: the group was scaled
    # up by hand in between (from min 0), and the sizes saved then are still the ones to restore.
    if group.saved is None:
        try:
            autoscaling.create_or_update_tags(Tags=[{**tag, "Value": size.tag_value()}])
        except (ClientError, BotoCoreError) as err:
            problem = f"cannot save its sizes in tag {size_tag!r}: {_describe_error(err)}; nothing changed"
            return False, f"stop failed: {problem}"
    try:
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, DesiredCapacity=0)
    except (ClientError, BotoCoreError) as err:
        return False, f"stop failed: {_describe_error(err)} (its sizes are saved in tag {size_tag!r})"
    return True, None


def _start_group(autoscaling: Any, size_tag: str, group: Resource) -> tuple[bool, str | None]:
    name, saved = group.resource_id, group.saved
    if saved is None:  # the decision has refused it already: never restore what was not saved
        return False, f"start refused: no saved size in tag {size_tag!r}; nothing changed"
    try:
        autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=saved.min, MaxSize=saved.max, DesiredCapacity=saved.desired
        )
    except (ClientError, BotoCoreError) as err:
        return False, f"start failed: {_describe_error(err)}; nothing changed"
    try:
        autoscaling.delete_tags(Tags=[{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": size_tag}])
    except (ClientError, BotoCoreError) as err:
        return True, f"started, but its size tag {size_tag!r} could not be removed: {_describe_error(err)}"
    return True, None


def _describe_error(err: Exception) -> str:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', 'Unknown')}: {str(error.get('Message', '')).strip()}"
    return f"{type(err).__name__}: {err}"


class Aws:
    """The boto3 session, EC2 and SNS clients and assumed-role credentials of an execution environment.

    Made once and reused by every invocation in the environment, as AWS's Lambda
    guidance recommends: a new session loads the EC2 service model again, about
    0.2 s of CPU. Clients are made under a lock (a boto3 session is not
    thread-safe). An assumed role's credentials are reused while they have more
    than ROLE_REUSE_MARGIN left; within a run each role is assumed at most once
    (the run's memo), and a role that could not be assumed is tried again by
    the next run.
    """

    def __init__(self, session: Any = None) -> None:
        self._session = session or aws_session()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, str | None], tuple[str | None, Any]] = {}  # (service, region, role)
        self._services: dict[tuple[str, str], Any] = {}  # (service, region) -> the own account's client
        self._credentials: dict[str, dict[str, Any]] = {}  # role ARN -> the latest credentials

    def ec2(self, target: Target, settings: Settings, memo: RunMemo) -> Any:
        """The EC2 client of a target (its role assumed when the run first needs it); RoleError if it cannot be."""
        return self._target_client("ec2", ec2_client, target, settings, memo)

    def ssm(self, target: Target, settings: Settings, memo: RunMemo) -> Any:
        """The SSM client of a target (maintenance windows), as `ec2`."""
        return self._target_client("ssm", ssm_client, target, settings, memo)

    def autoscaling(self, target: Target, settings: Settings, memo: RunMemo) -> Any:
        """The Auto Scaling client of a target, with the credentials of its EC2 client; RoleError as `ec2`."""
        return self._target_client("autoscaling", autoscaling_client, target, settings, memo)

    def _target_client(
        self, service: str, factory: Callable[..., Any], target: Target, settings: Settings, memo: RunMemo
    ) -> Any:
        credentials = self._role_credentials(target.role_arn, settings, memo) if target.role_arn else None
        key_id = credentials["AccessKeyId"] if credentials else None
        key = (service, target.region, target.role_arn)
        with self._lock:
            made_with, client = self._clients.get(key, (None, None))
            if client is None or made_with != key_id:
                client = factory(target.region, self._session, credentials)
                self._clients.pop(key, None)
                self._clients[key] = (key_id, client)
                self._forget_oldest_role_clients()
            return client

    def sns(self, region: str) -> Any:
        """The SNS client of a region (the notification topic's), made once per execution environment."""
        return self._service(sns_client, "sns", region)

    def events(self, region: str) -> Any:
        """The EventBridge client of a region (the event bus's), made once per execution environment."""
        return self._service(events_client, "events", region)

    def _forget_oldest_role_clients(self) -> None:
        made_for_roles = [key for key in self._clients if key[2] is not None]
        for key in made_for_roles[: max(0, len(made_for_roles) - ROLE_CLIENTS_KEPT)]:
            del self._clients[key]

    def organizations(self, settings: Settings) -> Any:
        return self._service(organizations_client, "organizations", settings.regions[0])

    def lambda_client(self, region: str) -> Any:
        return self._service(lambda_client, "lambda", region)

    def partition(self, region: str) -> str:
        return str(self._session.get_partition_for_region(region))

    def caller_account(self, settings: Settings, memo: RunMemo) -> str:
        """The account of the function's own credentials (STS GetCallerIdentity, once per run)."""

        def ask() -> str:
            sts = self._service(sts_client, "sts", settings.regions[0])
            return str(sts.get_caller_identity()["Account"])

        return memo.identity.get("own", ask)  # type: ignore[no-any-return]

    def forget(self) -> None:
        """Drop the clients and credentials, keeping the session (tests: each makes its own clients)."""
        with self._lock:
            self._clients.clear()
            self._services.clear()
            self._credentials.clear()

    def _service(self, factory: Callable[[Any, str], Any], service: str, region: str) -> Any:
        with self._lock:
            if (service, region) not in self._services:
                self._services[(service, region)] = factory(self._session, region)
            return self._services[(service, region)]

    def _role_credentials(self, role_arn: str, settings: Settings, memo: RunMemo) -> dict[str, Any]:
        credentials = memo.roles.get(role_arn, lambda: self._credentials_for(role_arn, settings))
        if isinstance(credentials, str):
            raise RoleError(credentials)
        return credentials  # type: ignore[no-any-return]

    def _credentials_for(self, role_arn: str, settings: Settings) -> dict[str, Any] | str:
        known = self._credentials.get(role_arn)
        if known is not None and _expires_in(known, datetime.now(UTC)) > ROLE_REUSE_MARGIN:
            return known
        try:
            credentials = assume_role(self._service(sts_client, "sts", settings.regions[0]), role_arn, settings)
        except (ClientError, BotoCoreError) as err:
            return f"cannot assume role {role_arn}: {_describe_error(err)}"
        self._credentials[role_arn] = credentials
        return credentials


_SESSION_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
_shared: tuple[tuple[tuple[str, str], ...], Aws] | None = None
_shared_lock = threading.Lock()


def shared_aws() -> Aws:
    """The execution environment's Aws, made on first use.

    Made again only if the variables that choose the endpoint or the profile
    change (tests, the command line's --endpoint-url), which they never do in a
    Lambda execution environment.
    """
    global _shared
    key = tuple(sorted((name, value) for name, value in os.environ.items() if name.startswith(_SESSION_VARIABLES)))
    with _shared_lock:
        if _shared is None or _shared[0] != key:
            _shared = (key, Aws())
        return _shared[1]


# --- Where people look: status tags, hours stopped, events (after the actions) -------------
#
# Three outlets read what a target's run decided and did, after its actions, the way the metrics and the
# notification read the summary: `note_instance` and `note_group` keep, while the resources are read, only
# what they need (a dictionary slot per acting instance, a count per instance type, the status tags of
# instances and groups whose tags may change); the rest is derived from the TargetResult. None of them can
# fail an instance, a group or the run.


def status_keys(tag: str) -> tuple[str, str]:
    """The status tags' keys for schedule tag `tag`: (<tag>:last-action, <tag>:error)."""
    return tag + LAST_ACTION_SUFFIX, tag + ERROR_SUFFIX


@dataclass(frozen=True)
class StatusTags:
    """The status tags a run writes: their keys, and its time as the tags say it."""

    last_action_key: str
    error_key: str
    stamp: str

    @classmethod
    def of(cls, tag: str, now: datetime) -> StatusTags:
        return cls(*status_keys(tag), _iso(now))


def note_instance(
    result: TargetResult,
    instance: Mapping[str, Any],
    verdict: Verdict,
    types: dict[str, str],
    pairs: dict[tuple[Decision, str], tuple[Decision, str]],
    status: StatusTags | None,
) -> None:
    """Keep what the outlets will need of one instance just decided.

    `types` and `pairs` make one string per instance type and one (decision, type) pair per distinct
    pair, shared by the target's instances; `status` is given when status tags are written (`note_status`).
    """
    decision = verdict.decision
    instance_type = str(instance.get("InstanceType") or "unknown")
    instance_type = types.setdefault(instance_type, instance_type)
    instance_id = instance["InstanceId"]
    acting = decision.outcome is Outcome.ACT
    if acting:
        pair = (decision, instance_type)
        result.acting[instance_id] = pairs.setdefault(pair, pair)
    elif verdict.schedule is not None and instance["State"]["Name"] in SETTLED_STOPPED:
        result.stopped_types[instance_type] = result.stopped_types.get(instance_type, 0) + 1
    if status is not None:
        note_status(result.status_seen, instance_id, instance, verdict, status)


def note_group(result: TargetResult, group: Resource, verdict: Verdict, status: StatusTags | None) -> None:
    """Keep what the outlets will need of one group just decided: its saved desired capacity among the hours
    stopped while it stays at zero (an acting group's is counted once the actions are made: `count_stopped`),
    and its status tags (`note_status`)."""
    acting = verdict.decision.outcome is Outcome.ACT
    if not acting and verdict.schedule is not None and group.state == "stopped" and group.saved is not None:
        group_type = group_instance_type(group.described)
        result.stopped_types[group_type] = result.stopped_types.get(group_type, 0) + group.saved.desired
    if status is not None:
        note_status(result.group_status_seen, group.resource_id, group.described, verdict, status)


def note_status(
    seen: dict[str, tuple[str | None, str | None]],
    resource_id: str,
    described: Mapping[str, Any],
    verdict: Verdict,
    status: StatusTags,
) -> None:
    """Keep in `seen` the status tags of an instance or group (as described) whose tags this run may change.

    Guarded resources are never touched, not even their tags. Of the others, the error tag is kept
    (few resources carry one), and the last-action tag only when the resource acts and the tag names
    this run's time (a run made again): any other cannot equal what this run would write.
    """
    decision = verdict.decision
    if verdict.schedule is None and decision.outcome is not Outcome.ERROR:
        return
    last_action = error = None
    for tag in described.get("Tags", ()):
        if tag["Key"] == status.last_action_key:
            last_action = str(tag.get("Value", ""))
        elif tag["Key"] == status.error_key:
            error = str(tag.get("Value", ""))
    acting = decision.outcome is Outcome.ACT
    if not acting or (last_action is not None and not last_action.partition(" ")[2].startswith(status.stamp)):
        last_action = None
    if last_action is not None or error is not None:
        seen[resource_id] = (last_action, error)


def group_instance_type(group: Mapping[str, Any]) -> str:
    """A group's instance type for StoppedInstanceHours: the one type its mixed instances policy's overrides
    name, when DescribeAutoScalingGroups carries exactly one; else GROUP_INSTANCE_TYPE (no call to find it)."""
    overrides = group.get("MixedInstancesPolicy", {}).get("LaunchTemplate", {}).get("Overrides", ())
    types = {str(override["InstanceType"]) for override in overrides if override.get("InstanceType")}
    return types.pop() if len(types) == 1 else GROUP_INSTANCE_TYPE


def count_stopped(result: TargetResult, starts: list[str], groups: Mapping[Action, list[Resource]]) -> None:
    """Add to result.stopped_types what the actions left stopped: the instances and groups stopped, and those
    whose start failed (a group counts its saved desired capacity)."""
    counts = result.stopped_types
    for instance_id in result.stopped:
        instance_type = result.acting[instance_id][1]
        counts[instance_type] = counts.get(instance_type, 0) + 1
    if len(result.started) < len(starts):
        started = set(result.started)
        for instance_id in starts:
            if instance_id not in started:
                instance_type = result.acting[instance_id][1]
                counts[instance_type] = counts.get(instance_type, 0) + 1
    stopped, started = set(result.groups_stopped), set(result.groups_started)
    for group in groups.get(Action.STOP, ()):
        if group.resource_id in stopped and group.size is not None:
            group_type = group_instance_type(group.described)
            counts[group_type] = counts.get(group_type, 0) + group.size.desired
    for group in groups.get(Action.START, ()):
        if group.resource_id not in started and group.saved is not None:
            group_type = group_instance_type(group.described)
            counts[group_type] = counts.get(group_type, 0) + group.saved.desired


def error_tag_value(now: datetime, reason: str, current: str | None) -> str:
    """`<ISO time> <reason>` cut to a tag value; the current value when it already says this reason."""
    stamp = _iso(now)
    reason = reason[: TAG_VALUE_MAX_CHARS - len(stamp) - 1]
    if current is not None and current.partition(" ")[2] == reason:
        return current  # the time stays the run's that first found it
    return f"{stamp} {reason}"


def status_tag_changes(
    result: TargetResult, now: datetime, status: StatusTags, kind: Kind = Kind.INSTANCE
) -> tuple[dict[tuple[str, str], list[str]], list[str]]:
    """The status tags to write on the instances (or the groups), {(key, value): their IDs (names)}, and those
    whose error tag goes.

    Only values that differ from what the run read: an unchanged instance or group costs nothing.
    """
    seen = result.status_seen if kind is Kind.INSTANCE else result.group_status_seen
    writes: dict[tuple[str, str], list[str]] = {}
    for resource_id, done, decision in result.actions_made(kind):
        value = f"{done} {status.stamp} {decision.cause.value}"
        if seen.get(resource_id, (None, None))[0] != value:
            writes.setdefault((status.last_action_key, value), []).append(resource_id)
    reasons: dict[str, list[str]] = {}
    for resource_id, error in result.errors:  # a group's errors name it by GroupName, an instance's by its ID
        if resource_id is not None and isinstance(resource_id, GroupName) is (kind is Kind.GROUP):
            reasons.setdefault(resource_id, []).append(error)
    for resource_id, errors in reasons.items():
        current = seen.get(resource_id, (None, None))[1]
        value = error_tag_value(now, "; ".join(dict.fromkeys(errors)), current)
        if value != current:
            writes.setdefault((status.error_key, value), []).append(resource_id)
    cleared = [i for i, (_, error) in seen.items() if error is not None and i not in reasons]
    return writes, cleared


def write_status_tags(ec2: Any, autoscaling: Any, result: TargetResult, now: datetime, status: StatusTags) -> None:
    """Write the target's changed status tags, on its instances and its groups; failures counted, not raised.

    Instances given the same value share a CreateTags call (1,000 a call); the groups' entries share
    CreateOrUpdateTags calls whatever their values (GROUP_STATUS_TAGS_PER_CALL a call). Each entry a failed
    call carried counts one StatusTagErrors.
    """
    calls = [
        *_instance_tag_calls(ec2, *status_tag_changes(result, now, status), status),
        *_group_tag_calls(autoscaling, *status_tag_changes(result, now, status, Kind.GROUP), status),
    ]
    for call, params, count, what, keys in calls:
        try:
            call(**params)
        except (ClientError, BotoCoreError) as err:
            result.status_tag_errors += count
            logger.warning(
                "%s: could not write the status tag %s on %s: %s", result.target, keys, what, _describe_error(err)
            )
    result.status_seen, result.group_status_seen = {}, {}


# One tagging call: (the client's method, its parameters, the tags it writes (one a resource and key), what it
# writes them on for a log line, the keys).
_TagCall = tuple[Callable[..., Any], dict[str, Any], int, str, str]


def _instance_tag_calls(
    ec2: Any, writes: dict[tuple[str, str], list[str]], cleared: list[str], status: StatusTags
) -> Iterator[_TagCall]:
    batches: list[tuple[Callable[..., Any], list[dict[str, str]], list[str]]] = [
        (ec2.create_tags, [{"Key": key, "Value": value}], ids) for (key, value), ids in writes.items()
    ]
    if cleared:
        batches.append((ec2.delete_tags, [{"Key": status.error_key}], cleared))
    for call, tags, ids in batches:
        for offset in range(0, len(ids), STATUS_TAG_IDS_PER_CALL):
            chunk = ids[offset : offset + STATUS_TAG_IDS_PER_CALL]
            what = f"{_counted(len(chunk), 'instance')} ({chunk[0]}...)"
            yield call, {"Resources": chunk, "Tags": tags}, len(chunk), what, tags[0]["Key"]


def _group_tag_calls(
    autoscaling: Any, writes: dict[tuple[str, str], list[str]], cleared: list[str], status: StatusTags
) -> Iterator[_TagCall]:
    group = {"ResourceType": "auto-scaling-group"}
    entries = [
        {"ResourceId": str(name), **group, "Key": key, "Value": value, "PropagateAtLaunch": False}
        for (key, value), names in writes.items()
        for name in names
    ]
    deletions = [{"ResourceId": str(name), **group, "Key": status.error_key} for name in cleared]
    for call, tags in ((autoscaling.create_or_update_tags, entries), (autoscaling.delete_tags, deletions)):
        for offset in range(0, len(tags), GROUP_STATUS_TAGS_PER_CALL):
            chunk = tags[offset : offset + GROUP_STATUS_TAGS_PER_CALL]
            names = list(dict.fromkeys(tag["ResourceId"] for tag in chunk))
            what = f"{_counted(len(names), 'group')} ({names[0]}...)"
            yield call, {"Tags": chunk}, len(chunk), what, ", ".join(dict.fromkeys(tag["Key"] for tag in chunk))


def instance_events(result: TargetResult, now: datetime, bus: str) -> Iterator[dict[str, str]]:
    """The PutEvents entries of a target's run: one per action made (an instance's or a group's), one per error."""
    where = {"account": result.target.account, "region": result.target.region, "time": _iso(now)}
    for instance_id, done, decision in result.actions_made():
        detail = {
            "instance_id": instance_id,
            **where,
            "action": "hibernate" if done == "hibernated" else decision.action.value,  # type: ignore[union-attr]
            "due": _iso(decision.due) or None,
            "reason": decision.cause.value,
        }
        yield _event_entry("Instance Started" if done == "started" else "Instance Stopped", detail, bus)
    for name, done, decision in result.actions_made(Kind.GROUP):
        detail = {
            "group": str(name),
            **where,
            "action": decision.action.value,  # type: ignore[union-attr]
            "due": _iso(decision.due) or None,
            "reason": decision.cause.value,
        }
        yield _event_entry("Group Started" if done == "started" else "Group Stopped", detail, bus)
    for instance_id, error in result.errors:
        if instance_id is not None:  # a group's error names the group: {"instance_id": null, "group": name}
            detail = {**_which(instance_id), **where, "error": error[:EVENT_ERROR_MAX_CHARS]}
            yield _event_entry("Scheduling Error", detail, bus)


def _event_entry(detail_type: str, detail: Mapping[str, Any], bus: str) -> dict[str, str]:
    return {"Source": EVENT_SOURCE, "DetailType": detail_type, "Detail": json.dumps(detail), "EventBusName": bus}


def event_size(entry: Mapping[str, str]) -> int:
    """An entry's size as EventBridge counts it (UTF-8 bytes of its fields, 14 for the time), plus the bus name."""
    return 14 + sum(len(value.encode()) for value in entry.values())


def event_batches(entries: Iterable[dict[str, str]]) -> Iterator[list[dict[str, str]]]:
    """The entries in PutEvents calls: at most EVENTS_PER_CALL each, within EVENTS_CALL_MAX_BYTES."""
    batch: list[dict[str, str]] = []
    size = 0
    for entry in entries:
        entry_size = event_size(entry)
        if batch and (len(batch) == EVENTS_PER_CALL or size + entry_size > EVENTS_CALL_MAX_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry_size
    if batch:
        yield batch


def put_events(events: Any, batch: list[dict[str, str]]) -> tuple[int, str]:
    """One PutEvents call, its failed entries tried once more; (entries not put, why the first one was not)."""
    pending, why = batch, ""
    for _ in range(2):
        try:
            reply = events.put_events(Entries=pending)
        except (ClientError, BotoCoreError) as err:
            why = _describe_error(err)
            continue
        failed = [
            (entry, answer)
            for entry, answer in zip(pending, reply.get("Entries", ()), strict=False)
            if answer.get("ErrorCode")
        ]
        if not failed:
            return 0, ""
        pending = [entry for entry, _ in failed]
        why = f"{failed[0][1]['ErrorCode']}: {failed[0][1].get('ErrorMessage', '')}".strip()
    return len(pending), why


def publish_events(results: Sequence[TargetResult], settings: Settings, now: datetime, aws: Aws) -> int | None:
    """The run's events, when it has a bus: how many could not be put (None: no bus). Never raises."""
    if not settings.event_bus:
        return None
    if settings.dry_run:
        return 0
    try:
        return send_events(results, settings, now, aws)
    except Exception:  # a bug in an outlet must not cost the run its summary
        logger.exception("could not put the run's events on %s", settings.event_bus)
        return sum(
            len(r.started) + len(r.stopped) + len(r.groups_started) + len(r.groups_stopped) + len(r.errors)
            for r in results
        )
    finally:
        for result in results:
            result.acting, result.group_decisions = {}, {}


def send_events(results: Sequence[TargetResult], settings: Settings, now: datetime, aws: Aws) -> int:
    """Put every target's events on settings.event_bus after the run's actions; return how many could not be.

    The batches are made as they are sent (memory stays flat) by EVENT_SENDERS threads at once.
    """
    bus, region = settings.event_bus, settings.event_bus_region
    assert bus is not None and region is not None
    client = aws.events(region)
    batches = event_batches(entry for result in results for entry in instance_events(result, now, bus))
    lock = threading.Lock()

    def drain(_: int) -> tuple[int, str]:
        lost, first_why = 0, ""
        while True:
            with lock:
                batch = next(batches, None)
            if batch is None:
                return lost, first_why
            failed, why = put_events(client, batch)
            lost, first_why = lost + failed, first_why or why

    outcomes = each_target(list(range(EVENT_SENDERS)), drain, EVENT_SENDERS)
    lost = sum(failed for failed, _ in outcomes)
    if lost:
        why = next(why for _, why in outcomes if why)
        logger.error("%d events could not be put on the event bus %s: %s", lost, bus, why)
    return lost


# --- A run: one instance, one target, every target --------------------------------


@dataclass(frozen=True)
class RunContext:
    """What every decision of one run shares: settings, the time, AWS access and the run's memo."""

    settings: Settings
    now: datetime
    aws: Aws
    memo: RunMemo = field(default_factory=RunMemo)
    fetch_until: float | None = None  # when URL fetching must end (url_fetch_deadline); None: each URL's deadline
    resolver: ScheduleResolver = field(init=False)
    override_key: str = field(init=False)  # the override tag's key: the schedule tag's plus ":override"
    size_key: str = field(init=False)  # a stopped group's saved sizes: the schedule tag's key plus ":size"

    def __post_init__(self) -> None:
        resolver = ScheduleResolver(self.settings, self.memo, fetch_until=self.fetch_until)
        object.__setattr__(self, "resolver", resolver)
        object.__setattr__(self, "override_key", override_key(self.settings.tag))
        object.__setattr__(self, "size_key", size_key(self.settings.tag))

    def close(self, until: float | None = None) -> None:
        """End the threads the run's URL fetching started (the name look-ups still running: waited on until `until`)."""
        self.resolver.close(until)

    def named_windows(self, target: Target | None, names: tuple[str, ...]) -> tuple[MaintenanceWindow, ...] | str:
        """The maintenance windows `names` name in the target, or why they cannot be had.

        The target's windows are read once per run (DescribeMaintenanceWindows), and only when a
        schedule in it names one; a name matching none or several is an error of the instances naming it.
        """

        def resolve() -> tuple[MaintenanceWindow, ...] | str:
            if target is None:
                return "maintenance windows are read in a target (account and region) only"
            records = self.memo.maintenance.get(target, lambda: self._read_windows(target))
            if isinstance(records, str):
                return records
            try:
                return resolve_windows(names, records)
            except ScheduleError as err:
                return str(err)

        return self.memo.named_windows.get((target, names), resolve)  # type: ignore[no-any-return]

    def _read_windows(self, target: Target) -> list[dict[str, Any]] | str:
        try:
            return read_maintenance_windows(self.aws.ssm(target, self.settings, self.memo))
        except RoleError as err:
            return f"cannot read the maintenance windows: {err}"
        except (ClientError, BotoCoreError) as err:
            return f"cannot read the maintenance windows of {target}: {_describe_error(err)}"

    def patching(self, windows: tuple[MaintenanceWindow, ...]) -> Patching | ScheduleError:
        """`patching_at` the run's time, once per set of windows in a run; ScheduleError if one cannot be evaluated."""

        def compute() -> Patching | ScheduleError:
            settings = self.settings
            try:
                return patching_at(windows, self.now, settings.window, settings.maintenance_lead, settings.catch_up)
            except ScheduleError as err:
                return err
            except (ValueError, OverflowError) as err:  # croniter's own errors are ValueErrors
                return ScheduleError(f"cannot evaluate a maintenance window: {err}")

        return self.memo.patching.get((windows, self.now), compute)  # type: ignore[no-any-return]


def instance_tags(instance: Mapping[str, Any]) -> dict[str, str]:
    """The tags of an instance or group as DescribeInstances or DescribeAutoScalingGroups lists them."""
    return {tag["Key"]: tag.get("Value", "") for tag in instance.get("Tags", ())}


def instance_resource(instance: Mapping[str, Any]) -> Resource:
    """An instance as the decision sees it; its record is read from the description itself."""
    return Resource(
        Kind.INSTANCE,
        instance["InstanceId"],
        instance_tags(instance),
        instance["State"]["Name"],
        instance,
        functools.partial(instance_record, instance),
    )


def group_resource(group: Mapping[str, Any], size_key: str, autoscaling: Any) -> Resource:
    """An Auto Scaling group as the decision sees it: "stopped" at desired capacity 0, else "running".

    Its size tag (`size_key`) is checked here: a start needs a good one (else
    "nothing to restore"), and a bad one refuses both actions until a person
    corrects or deletes it. Its record is its latest scaling activity, read only
    if the decision asks (`group_record`).
    """
    name = GroupName(group["AutoScalingGroupName"])
    tags = instance_tags(group)
    size = GroupSize(int(group["MinSize"]), int(group["MaxSize"]), int(group["DesiredCapacity"]))
    state = "stopped" if size.desired == 0 else "running"
    refusals: dict[Action, str] = {}
    saved = None
    value = tags.get(size_key)
    if value is not None:
        try:
            saved = parse_group_size(value)
        except ScheduleError as err:
            problem = f"bad saved size in tag {size_key!r}: {err}; nothing changed (correct the tag, or delete it)"
            refusals = {Action.START: problem, Action.STOP: problem}
    elif state == "stopped":
        refusals[Action.START] = (
            f"nothing to restore: the group is at zero and has no saved size in tag {size_key!r}; nothing changed "
            f"(set its sizes by hand, or write the tag, such as {SIZE_EXAMPLE})"
        )
    record = functools.partial(group_record, autoscaling, name, state)
    return Resource(Kind.GROUP, name, tags, state, group, record, refusals, size, saved)


def size_key(tag: str) -> str:
    """The key of the tag a stopped group's sizes are saved in (ec2Powercycle:size by default)."""
    return tag + SIZE_SUFFIX


def override_key(tag: str) -> str:
    """The key of the override tag that goes with schedule tag `tag` (ec2Powercycle:override by default)."""
    return tag + OVERRIDE_SUFFIX


def decide_instance(instance: Mapping[str, Any], context: RunContext, target: Target | None = None) -> Verdict:
    """`decide_resource` for an instance as DescribeInstances describes it."""
    return decide_resource(instance_resource(instance), context, target)


def decide_resource(resource: Resource, context: RunContext, target: Target | None = None) -> Verdict:
    """The one decision path: what a run does with an instance or group (tags, state, record, the run's time).

    The handler's runs and the command line's `plan` both decide through here.
    The schedule's decision is made once per distinct (tag value, state) pair, so
    a resource that shares its schedule with others costs a dictionary look-up.
    Then its own tags and record: its override tag, while it counts, decides
    instead (`override_verdict`); then the maintenance windows its schedule names
    in `target`, while one has a say (`maintenance_verdict`); otherwise its record
    (`follow_up`) may add a catch-up or a start that did not take, read only when its state is not what
    the schedule asked for recently. An action the resource refuses (a group's
    start with nothing to restore) is its error, and nothing is done.
    """
    verdict = _scheduled_verdict(resource, context, target)
    decision = verdict.decision
    refusal = resource.refusals.get(decision.action) if decision.outcome is Outcome.ACT else None  # type: ignore[arg-type]
    return Verdict(verdict.schedule, Decision(Outcome.ERROR, None, refusal)) if refusal else verdict


def _scheduled_verdict(resource: Resource, context: RunContext, target: Target | None) -> Verdict:
    tags, state, settings = resource.tags, resource.state, context.settings
    reason = guard_reason(tags, settings.protected_environments)
    if reason:
        return Verdict(None, Decision(Outcome.SKIP, None, reason))
    value = tags.get(settings.tag, "")
    verdict: Verdict = context.memo.decisions.get((value, state), lambda: _decide_value(value, state, context))
    refused = group_schedule_error(verdict.schedule, settings.tag) if resource.kind is Kind.GROUP else None
    if refused:
        return Verdict(None, Decision(Outcome.ERROR, None, refused))
    override = tags.get(context.override_key)
    if override is not None:  # one resource's: decided apart from the decision its schedule's others share
        overridden = override_verdict(override, verdict, state, context)
        if overridden is not verdict:  # held, ended this run, or malformed: the override decides, not catch-up
            ended = _override_ended_in_window(override, overridden, resource, context, target)
            return ended or _held_start_failure(overridden, resource, context)
    schedule = verdict.schedule
    if schedule is not None and schedule.maintenance_windows and verdict.decision.outcome is not Outcome.ERROR:
        patched = maintenance_verdict(resource, verdict, context, target)
        if patched is not None:
            return patched
    if schedule is None or not settings.catch_up or verdict.decision.outcome is Outcome.ERROR:
        return verdict
    recent = _recent(schedule, context)
    if recent is None or recent.action is None:
        return verdict
    if state not in (STARTABLE_STATES if recent.action is Action.START else STOPPABLE_STATES):
        return verdict  # in the state the schedule asked for recently: its record would change nothing
    if resource.kind is Kind.GROUP and (verdict.decision.outcome is not Outcome.IDLE or schedule.enforce):
        return verdict  # a group's record tells only of a missed run, made up only by an idle run without enforce
    decision = follow_up(verdict.decision, schedule, recent, resource.record(), context.now, settings.catch_up)
    return verdict if decision is verdict.decision else Verdict(schedule, decision)


def maintenance_verdict(
    resource: Resource, verdict: Verdict, context: RunContext, target: Target | None
) -> Verdict | None:
    """What the schedule's maintenance windows make of the instance this run, or None when they have no say.

    A window that cannot be had (unknown, ambiguous, unreadable, not evaluable) is the instance's
    error, reported while the schedule alone decides. While a window holds it, a missed lead-time start
    is caught up like any start (`follow_up`), and no stop is.
    """
    schedule = verdict.schedule
    assert schedule is not None
    windows = context.named_windows(target, schedule.maintenance_windows)
    patching = context.patching(windows) if not isinstance(windows, str) else ScheduleError(windows)
    if isinstance(patching, ScheduleError):
        # Reported every run, and the schedule's own times still act: a renamed or unreadable window
        # must not cost the instance its start and stop as well.
        problem = f"{MAINTENANCE_KEY} in tag {context.settings.tag!r}: {patching}; the schedule alone decides"
        return Verdict(schedule, replace(verdict.decision, problem=problem))
    settings, now = context.settings, context.now
    due = context.memo.due.get(schedule, lambda: _due(schedule, context, settings.window))
    decision = maintenance_decision(schedule, due, patching, resource.state, now, settings.window)
    if decision is None:
        return _missed_window_end(resource, verdict, patching, context)
    occurrence = patching.held or patching.ended
    assert occurrence is not None
    held, lead_at = patching.held, patching.lead_at
    if held is not None and lead_at is not None and settings.catch_up and not schedule.enforce and (
        lead_at > now - settings.catch_up
    ):
        recent = Due(Action.START, lead_at)
        followed = follow_up(decision, schedule, recent, resource.record(), now, settings.catch_up)
        if followed is not decision:
            decision = replace(followed, reason=f"{followed.reason} for {held.words()}")
    if decision.outcome is Outcome.ACT:
        decision = replace(decision, maintenance_window=str(occurrence.window))
    return Verdict(schedule, decision)


def _missed_window_end(resource: Resource, verdict: Verdict, patching: Patching, context: RunContext) -> Verdict | None:
    """The run at a window's end did not come: the schedule's state then is caught up as a missed scheduled
    time is (`follow_up`: only if nothing has changed the instance since, within the horizon), unless a
    time of the schedule's own after the end decides."""
    schedule, missed, settings = verdict.schedule, patching.missed, context.settings
    assert schedule is not None
    if missed is None or schedule.enforce or verdict.decision.outcome is not Outcome.IDLE:
        return None
    recent = _recent(schedule, context)
    if recent is not None and recent.at is not None and recent.at > missed.end:
        return None
    then = due_action(replace(schedule, enforce=True), missed.end, timedelta(0))
    if then.conflict or then.action is None:
        return None
    decision = follow_up(
        verdict.decision, schedule, Due(then.action, missed.end), resource.record(), context.now, settings.catch_up
    )
    if decision.outcome is not Outcome.ACT:
        return None  # in the state wanted, or changed by a person since: the usual path decides
    return Verdict(
        schedule,
        replace(
            decision,
            reason=f"{decision.reason} at the end of {missed.words()}",
            cause=Cause.CATCH_UP,
            maintenance_window=str(missed.window),
        ),
    )


def _override_ended_in_window(
    value: str, overridden: Verdict, resource: Resource, context: RunContext, target: Target | None
) -> Verdict | None:
    """An override that ends this run while a maintenance window holds the instance: the window's say.

    The override won while it held; once it ends, an open window keeps the instance running (it is
    started if the override held it stopped) instead of the schedule's state at `until`.
    """
    schedule = overridden.schedule
    if schedule is None or not schedule.maintenance_windows or overridden.decision.outcome is Outcome.ERROR:
        return None
    if parse_override(value).until > context.now:
        return None  # still holding
    windows = context.named_windows(target, schedule.maintenance_windows)
    patching = context.patching(windows) if not isinstance(windows, str) else None
    if patching is None or isinstance(patching, ScheduleError) or patching.held is None:
        return None
    held = patching.held
    if resource.state in SETTLED_STARTED:
        return Verdict(schedule, Decision(Outcome.IDLE, None, f"override ended: running for {held.words()}"))
    decision = decide(Due(Action.START, context.now), resource.state)
    return Verdict(
        schedule,
        replace(
            decision,
            reason=f"override ended: {decision.reason} for {held.words()}",
            cause=Cause.MAINTENANCE,
            maintenance_window=str(held.window) if decision.outcome is Outcome.ACT else None,
        ),
    )


def group_schedule_error(schedule: Schedule | None, tag: str) -> str | None:
    """Why an Auto Scaling group cannot follow a schedule it can be given, or None (`check` says it too)."""
    if schedule is not None and schedule.maintenance_windows:
        return (
            f"bad schedule in tag {tag!r}: {MAINTENANCE_KEY!r} is for instances: a group's instances are replaced "
            "from its launch template, so patch its image instead; remove it, or give the group a schedule of its own"
        )
    if schedule is not None and schedule.hibernate:
        return (
            f"bad schedule in tag {tag!r}: 'hibernate' is for instances, and an Auto Scaling group cannot hibernate "
            "(its stop scales it to zero): remove 'hibernate', or give the group a schedule of its own"
        )
    return None


def _held_start_failure(verdict: Verdict, resource: Resource, context: RunContext) -> Verdict:
    """An override's start that did not take, reported (and Server.* retried) as a scheduled start's is.

    An override has no start time of its own: a failed start within the catch-up
    horizon (or the window) is the one the override asked for. A group's record
    holds no failed start: it is not read for one.
    """
    if verdict.decision.action is not Action.START or resource.state != "stopped" or resource.kind is Kind.GROUP:
        return verdict
    horizon = max(context.settings.catch_up, context.settings.window)
    failed = start_failure(resource.record(), context.now - horizon)
    if failed is None:
        return verdict
    if failed.outcome is Outcome.ACT:
        failed = replace(failed, reason=f"{verdict.decision.reason}; {failed.reason}", caught_up=None)
    return Verdict(verdict.schedule, failed)


def _decide_value(value: str, state: str, context: RunContext) -> Verdict:
    tag = context.settings.tag
    schedule = context.resolver.resolve(value)
    if isinstance(schedule, ScheduleError):
        return Verdict(None, Decision(Outcome.ERROR, None, f"bad schedule in tag {tag!r}: {schedule}"))
    try:
        due = context.memo.due.get(schedule, lambda: _due(schedule, context, context.settings.window))
    except (ValueError, OverflowError) as err:  # croniter's own errors are ValueErrors
        return Verdict(None, Decision(Outcome.ERROR, None, f"cannot evaluate schedule in tag {tag!r}: {err}"))
    return Verdict(schedule, decide(due, state))


def _due(schedule: Schedule, context: RunContext, window: timedelta) -> Due:
    """`due_action` over the run's window or over its catch-up horizon: both from one evaluation (`_dues`)."""
    settings = context.settings
    horizon = max(settings.window, settings.catch_up)
    if window not in (settings.window, horizon):
        return due_action(schedule, context.now, window)
    try:
        in_window, in_horizon = context.memo.dues.get(schedule, lambda: _dues(schedule, context.now, settings))
    except (ValueError, OverflowError):
        if window == horizon:
            raise
        return due_action(schedule, context.now, window)  # the horizon alone cannot be searched (before year 1)
    return in_window if window == settings.window else in_horizon


def _dues(schedule: Schedule, now: datetime, settings: Settings) -> tuple[Due, Due]:
    """What the schedule asks for over the window and over the catch-up horizon, from one search.

    The horizon holds the window (both end at `now`), so the latest start and
    stop over the horizon say what the window holds too.
    """
    horizon = max(settings.window, settings.catch_up)
    start, stop = latest_start_and_stop(schedule, now, horizon)
    since = now - settings.window
    in_window = (start, stop)
    if not schedule.enforce:  # with enforce both take the latest times, however long ago
        in_window = tuple(None if moment is None or moment <= since else moment for moment in in_window)
    return due_of(schedule, *in_window, since=since), due_of(schedule, start, stop, since=now - horizon)


def _recent(schedule: Schedule, context: RunContext) -> Due | None:
    """What the schedule asks for over the catch-up horizon; None if it cannot be evaluated."""
    try:
        return _due(schedule, context, context.settings.catch_up)
    except (ValueError, OverflowError):  # the window's evaluation has already reported it
        return None


def override_verdict(value: str, verdict: Verdict, state: str, context: RunContext) -> Verdict:
    """What a run does with an instance whose override tag holds `value` (the guards have let it through).

    `verdict` is what its schedule alone decides: returned as it is once the
    override no longer counts, so that the caller can tell. While the run's time
    is before `until` the instance is held in the override's state, and what its
    schedule wants this run is skipped (`hold`). The run whose window holds
    `until` applies the schedule's state at `until` once, as if it were a
    scheduled time; later runs ignore the tag. A malformed override is an error
    for the instance, which is left alone; so is a bad schedule, as without one.
    """
    try:
        override = parse_override(value)
    except ScheduleError as err:
        return Verdict(None, Decision(Outcome.ERROR, None, f"bad override in tag {context.override_key!r}: {err}"))
    if verdict.schedule is None or override.until <= context.now - context.settings.window:
        return verdict
    if context.now < override.until:
        return Verdict(verdict.schedule, hold(override, state, verdict.decision))
    return Verdict(verdict.schedule, _override_ended(override, verdict, state, context))


def hold(override: Override, state: str, scheduled: Decision) -> Decision:
    """An active override's decision: bring the instance into its state, skip whatever the schedule wanted."""
    reason = f"override: {override}"
    if state in (STARTABLE_STATES if override.action is Action.START else STOPPABLE_STATES):
        return Decision(Outcome.ACT, override.action, reason, cause=Cause.OVERRIDE)
    return Decision(Outcome.IDLE if scheduled.outcome is Outcome.IDLE else Outcome.SKIP, None, reason)


def _override_ended(override: Override, verdict: Verdict, state: str, context: RunContext) -> Decision:
    """The run whose window holds `until`: the schedule's state then, unless a scheduled time after it decides."""
    schedule = verdict.schedule
    assert schedule is not None
    try:
        due = context.memo.due.get(schedule, lambda: _due(schedule, context, context.settings.window))
        if due.at is not None and due.at > override.until:
            return verdict.decision  # a start or stop after the override ended: this run acts on it as on any
        then: Due = context.memo.due.get(
            (schedule, override.until),
            lambda: due_action(replace(schedule, enforce=True), override.until, timedelta(0)),
        )
    except (ValueError, OverflowError) as err:
        return Decision(Outcome.ERROR, None, f"cannot evaluate schedule in tag {context.settings.tag!r}: {err}")
    # As if the action were scheduled at `until` (a conflict keeps its own time, for the message).
    at_until = (
        replace(then, enforced=schedule.enforce)
        if then.conflict
        else Due(then.action, override.until, enforced=schedule.enforce)
    )
    decision = decide(at_until, state)
    return replace(decision, reason=f"override ended: {decision.reason}", cause=Cause.OVERRIDE)


def decide_isolated(resource: Resource, context: RunContext, target: Target) -> Verdict:
    """`decide_resource`, whatever the resource's tags hold: anything it raises is this instance's or
    group's error, not its target's.

    Untrusted values are parsed into ScheduleErrors at the edge; this is the net
    under that rule (a value nobody foresaw, a bug), so that one resource's tags
    never cost the other instances and groups of its account and region their run.
    """
    try:
        return decide_resource(resource, context, target)
    except Exception as err:  # the resource's error, reported; its neighbours still run
        problem = PowercycleError(f"cannot decide this {resource.kind.value}: {type(err).__name__}: {err}")
        # The frames, not the message: the message may quote a tag at length (it is cut in `problem`).
        frames = "".join(traceback.format_tb(err.__traceback__))[-4000:]
        logger.error("%s: %s: %s\n%s", target, resource.resource_id, problem, frames)
        return Verdict(None, Decision(Outcome.ERROR, None, str(problem)))


@dataclass(frozen=True)
class TargetReading:
    """What reading a target leaves for acting: its clients, and why its groups could not be read, if so."""

    ec2: Any
    autoscaling: Any
    groups_problem: str | None = None


def read_target(target: Target, context: RunContext, visit: Callable[[Resource, Verdict], None]) -> TargetReading:
    """Read a target's tagged Auto Scaling groups, then its tagged instances, deciding each; hand both to `visit`.

    Raises TargetError saying why the target could not be read. Groups that
    cannot be read are the reading's `groups_problem`: its instances are read,
    decided and acted on all the same.
    """
    try:
        ec2 = context.aws.ec2(target, context.settings, context.memo)
        autoscaling = context.aws.autoscaling(target, context.settings, context.memo)
        groups_problem = _read_groups(autoscaling, target, context, visit)
        for instance in tagged_instances(ec2, context.settings.tag, lambda page: _prefetch(page, context)):
            resource = instance_resource(instance)
            visit(resource, decide_isolated(resource, context, target))
    except RoleError as err:
        raise TargetError(str(err)) from err
    except (ClientError, BotoCoreError) as err:
        raise TargetError(f"cannot read instances: {_describe_error(err)}") from err
    except Exception as err:  # a bug must not cost the other targets their run; it still fails the run
        logger.exception("%s: unexpected error", target)
        raise TargetError(f"unexpected error: {type(err).__name__}: {err}") from err
    return TargetReading(ec2, autoscaling, groups_problem)


def _read_groups(
    autoscaling: Any, target: Target, context: RunContext, visit: Callable[[Resource, Verdict], None]
) -> str | None:
    """Read and decide the target's tagged groups; return why they could not be read, or None."""
    try:
        groups = list(tagged_groups(autoscaling, context.settings.tag))  # a few KB a group: all at once
    except (ClientError, BotoCoreError) as err:
        return f"cannot read Auto Scaling groups: {_describe_error(err)}"
    _prefetch(groups, context)
    for group in groups:
        resource = group_resource(group, context.size_key, autoscaling)
        visit(resource, decide_isolated(resource, context, target))
    return None


def _prefetch(page: list[dict[str, Any]], context: RunContext) -> None:
    """Fetch the URLs a page of instances (or the groups) needs at once (`ScheduleResolver.prefetch`), before they
    are decided."""
    tag = context.settings.tag
    context.resolver.prefetch(
        item.get("Value") for instance in page for item in instance.get("Tags", ()) if item["Key"] == tag
    )


def run_target(target: Target, context: RunContext) -> TargetResult:
    """Read, decide and act in one account and region; never raises."""
    settings = context.settings
    result = TargetResult(target)
    starts: list[str] = []
    stops: dict[bool, list[str]] = {False: [], True: []}  # by whether to hibernate
    groups: dict[Action, list[Resource]] = {Action.START: [], Action.STOP: []}
    caught_up: dict[str, tuple[Action, datetime, str | None]] = {}
    status = StatusTags.of(settings.tag, context.now) if settings.status_tags and not settings.dry_run else None
    types: dict[str, str] = {}
    pairs: dict[tuple[Decision, str], tuple[Decision, str]] = {}
    # Each scheduled group's reasons to be listed in skipped (its own, and its instances carrying the tag):
    # one entry per group, however many of its instances carry the tag.
    group_notes: dict[str, list[str]] = {}
    members: dict[str, int] = {}

    def visit(resource: Resource, verdict: Verdict) -> None:
        resource_id, decision = resource.resource_id, verdict.decision
        if resource.kind is Kind.GROUP:
            result.groups += 1
            group_notes[resource_id] = []
            note_group(result, resource, verdict, status)
        else:
            result.instances += 1
            note_instance(result, resource.described, verdict, types, pairs, status)
            group = resource.tags.get(AUTOSCALING_TAG)
            if group in group_notes and decision.outcome is Outcome.SKIP:
                members[group] = members.get(group, 0) + 1  # never acted on: the group is, as a whole
                return
        if decision.problem:
            result.error(resource_id, decision.problem)
            result.remember_name(resource.described)
        if decision.outcome is Outcome.ACT:
            if resource.kind is Kind.GROUP:
                groups[decision.action].append(resource)  # type: ignore[index]
                result.group_decisions[resource_id] = decision
            elif decision.action is Action.START:
                starts.append(resource_id)
            else:
                stops[_hibernates(resource.described, verdict.schedule)].append(resource_id)
            if decision.caught_up is not None:
                made_up = (decision.action, decision.caught_up, decision.maintenance_window)
                caught_up[resource_id] = made_up  # type: ignore[assignment]
        elif decision.outcome is Outcome.SKIP:
            if resource.kind is Kind.GROUP:
                group_notes[resource_id].append(decision.reason)
            else:
                result.skip(resource_id, decision.reason)
        elif decision.outcome is Outcome.ERROR:
            result.error(resource_id, decision.reason)
            result.remember_name(resource.described)

    try:
        reading = read_target(target, context, visit)
    except TargetError as err:
        return result.fail(str(err))
    if reading.groups_problem:
        result.fail(reading.groups_problem)
    for group, count in members.items():
        group_notes[group].append(
            f"{_counted(count, 'instance')} of the group carry the tag {settings.tag!r} (propagated at launch): "
            "the group is scheduled as a whole, never its instances one by one"
        )
    for group, notes in group_notes.items():
        if notes:
            result.skip(GroupName(group), "; ".join(notes))
    if settings.dry_run:
        result.started, result.stopped, result.hibernated = starts, stops[False] + stops[True], stops[True]
        result.groups_started = [group.resource_id for group in groups[Action.START]]
        result.groups_stopped = [group.resource_id for group in groups[Action.STOP]]
    else:
        decided_errors = len(result.errors)
        result.started = act(reading.ec2, Action.START, starts, result)
        result.stopped = act(reading.ec2, Action.STOP, stops[False], result)
        if stops[True]:
            result.hibernated, stopped_instead = hibernate(reading.ec2, stops[True], result)
            result.stopped += result.hibernated + stopped_instead
        name_failed_instances(reading.ec2, result, result.errors[decided_errors:])
        result.groups_stopped = scale_groups(
            reading.autoscaling, context.size_key, Action.STOP, groups[Action.STOP], result
        )
        result.groups_started = scale_groups(
            reading.autoscaling, context.size_key, Action.START, groups[Action.START], result
        )
        if status is not None:
            try:
                write_status_tags(reading.ec2, reading.autoscaling, result, context.now, status)
            except Exception:  # a bug in an outlet must not cost the target its result
                logger.exception("%s: could not write the status tags", target)
                result.status_tag_errors += 1
    count_stopped(result, starts, groups)
    if not settings.event_bus:
        result.acting, result.group_decisions = {}, {}  # only the events still need them
    result.caught_up = [
        (resource_id, *caught_up[resource_id])
        for resource_id in result.started + result.stopped + result.groups_started + result.groups_stopped
        if resource_id in caught_up
    ]
    logger.info(
        "%s: %d tagged instances, %d started, %d stopped, %d skipped, %d errors%s%s",
        target,
        result.instances,
        len(result.started),
        len(result.stopped),
        len(result.skipped),
        len(result.errors),
        f"; {result.groups} tagged groups, {len(result.groups_started)} started, {len(result.groups_stopped)} stopped"
        if result.groups
        else "",
        " (dry run)" if settings.dry_run else "",
    )
    return result


def name_failed_instances(ec2: Any, result: TargetResult, failures: list[tuple[str | None, str]]) -> None:
    """Read the Name tags of the instances in `failures` (their Start or Stop call failed), into result.names.

    The run saw their tags when it read them but kept no names (at 100,000
    instances that would cost memory), so: one DescribeInstances for the first
    NOTIFY_MAX_PROBLEMS of them, and only when a call failed. Best effort: a
    failed look-up leaves them named by ID.
    """
    unnamed = [i for i, _ in failures if i and not isinstance(i, GroupName) and i not in result.names]
    unnamed = list(dict.fromkeys(unnamed))[:NOTIFY_MAX_PROBLEMS]
    if not unnamed:
        return
    try:
        page = ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": unnamed}])
    except (ClientError, BotoCoreError) as err:
        logger.info("%s: could not read the Name tags of failed instances: %s", result.target, _describe_error(err))
        return
    for reservation in page.get("Reservations", ()):
        for instance in reservation.get("Instances", ()):
            result.remember_name(instance)


def _hibernates(instance: Mapping[str, Any], schedule: Schedule | None) -> bool:
    """Whether a stop should hibernate: the schedule asks for it and the instance is configured for it."""
    return bool(schedule and schedule.hibernate and instance.get("HibernationOptions", {}).get("Configured"))


def accounts_to_schedule(
    settings: Settings, own_account: str, members: Iterable[str] = (), partition: str = "aws"
) -> list[tuple[str, str | None]]:
    """Each account once, with the role to assume in it (None: the function's own credentials).

    The own account first (unless turned off), then each account of ROLE_ARNS, then
    the organization's members (`members`) with the organization role. The own
    account is never reached through a role of the organization, and an explicit
    role ARN wins over the organization role; EXCLUDE_ACCOUNTS removes any account.
    """
    chosen: dict[str, str | None] = {own_account: None} if settings.own_account else {}
    for arn in settings.role_arns:  # checked at start-up: one per account
        chosen.setdefault(arn.split(":")[4], arn)
    for account in sorted(members):
        if account != own_account:
            chosen.setdefault(account, f"arn:{partition}:iam::{account}:role/{settings.organization_role}")
    return [(account, role_arn) for account, role_arn in chosen.items() if account not in settings.exclude_accounts]


def each_target(targets: Sequence[_Item], work: Callable[[_Item], _Result], max_workers: int) -> list[_Result]:
    """work(target) for every target (or chunk of targets), in a pool of max_workers threads; results in order."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(max_workers, len(targets))) as pool:
        return list(pool.map(work, targets))


class RunWatch:
    """The targets a run is working on, and a warning when the run nears the invocation's end.

    Past RUN_TIME_WARNING_SHARE of the time from the run's start to `deadline`
    (time.monotonic() seconds), it logs once which targets are still running, so
    that if Lambda ends the run at its timeout the log says where the time went.
    No deadline, no warning.
    """

    def __init__(self, targets: Sequence[Target], started: float, deadline: float | None) -> None:
        self._lock = threading.Lock()
        self._running: dict[Target, None] = {}  # in the order they started
        self._waiting = len(targets)
        self._timer: threading.Timer | None = None
        if deadline is not None:
            budget = max(deadline - started, 0.0)
            self._timer = threading.Timer(budget * RUN_TIME_WARNING_SHARE, self._warn, args=(budget,))
            self._timer.daemon = True

    def __enter__(self) -> RunWatch:
        if self._timer:
            self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer:
            self._timer.cancel()

    def track(self, work: Callable[[Target], Any]) -> Callable[[Target], Any]:
        """`work`, noting while it runs that its target is running."""

        def tracked(target: Target) -> Any:
            with self._lock:
                self._waiting -= 1
                self._running[target] = None
            try:
                return work(target)
            finally:
                with self._lock:
                    self._running.pop(target, None)

        return tracked

    def _warn(self, budget: float) -> None:
        with self._lock:
            running, waiting = [str(target) for target in self._running], self._waiting
        logger.warning(
            "this run has used %d%% of the %.1f s the invocation had left at its start; still running: %s; "
            "%d targets not started",
            round(RUN_TIME_WARNING_SHARE * 100),
            budget,
            ", ".join(running) or "none",
            waiting,
        )


# --- What a run reports: metrics and one notification (pure, then the edges) ------------

# Metrics that count a summary list: (metric, summary key).
_LIST_METRICS = (
    ("Started", "started"),
    ("Stopped", "stopped"),
    ("Skipped", "skipped"),
    ("Errors", "errors"),
    ("CaughtUp", "caught_up"),
    ("Hibernated", "hibernated"),
    ("GroupsStarted", "groups_started"),
    ("GroupsStopped", "groups_stopped"),
)
# Metrics of the outlets, present when the outlet is on: (metric, summary key holding the count).
_OUTLET_METRICS = (("StatusTagErrors", "status_tag_errors"), ("EventErrors", "event_errors"))


def failed_targets(summary: Mapping[str, Any]) -> int:
    """Targets (account and region) that could not be handled: each is one error without an instance or group."""
    return sum(1 for entry in summary["errors"] if entry["instance_id"] is None and entry.get("group") is None)


def run_metrics(summary: Mapping[str, Any]) -> dict[str, int | float]:
    """The run's metrics, each a number taken from the summary."""
    values: dict[str, int | float] = {"Instances": summary["instances"]}
    values.update({metric: len(summary[key]) for metric, key in _LIST_METRICS if key in summary})
    values["TargetsFailed"] = failed_targets(summary)
    values["RunSeconds"] = summary.get("run_seconds", 0.0)
    if "stopped_instance_hours" in summary:
        values["StoppedInstanceHours"] = round(sum(summary["stopped_instance_hours"].values()), 4)
    values.update({metric: summary[key] for metric, key in _OUTLET_METRICS if key in summary})
    return values


def _unit(metric: str) -> str:
    return {"RunSeconds": "Seconds", "StoppedInstanceHours": "None"}.get(metric, "Count")


def metrics_document(summary: Mapping[str, Any], function_name: str, timestamp_ms: int) -> dict[str, Any]:
    """The run's metrics as a CloudWatch embedded metric format (EMF) document.

    One dimension set, FunctionName alone: per-account or per-region dimensions
    would make a custom metric of each (1,000 accounts, 1,000 metrics); those
    figures stay in the summary.
    """
    values = run_metrics(summary)
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": [{"Name": name, "Unit": _unit(name)} for name in values],
                }
            ],
        },
        "FunctionName": function_name,
        "time": summary["time"],
        "dry_run": summary["dry_run"],
        **values,
    }


def instance_type_documents(summary: Mapping[str, Any], function_name: str, timestamp_ms: int) -> list[dict[str, Any]]:
    """One EMF document per instance type with stopped instance-hours: StoppedInstanceHours by FunctionName and
    InstanceType (a type without any is left out: no data is zero for a sum)."""
    return [
        {
            "_aws": {
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": METRICS_NAMESPACE,
                        "Dimensions": [["FunctionName", "InstanceType"]],
                        "Metrics": [{"Name": "StoppedInstanceHours", "Unit": "None"}],
                    }
                ],
            },
            "FunctionName": function_name,
            "InstanceType": instance_type,
            "time": summary["time"],
            "StoppedInstanceHours": hours,
        }
        for instance_type, hours in summary.get("stopped_instance_hours", {}).items()
        if hours > 0
    ]


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def notification(
    summary: Mapping[str, Any], function_name: str, log_group: str | None = None
) -> tuple[str, str] | None:
    """The run's one notification, (subject, body), or None for a run without errors.

    `summary` is a run's, or a dispatching invocation's (`fan_out`). The subject
    names the counts; the body lists the first NOTIFY_MAX_PROBLEMS problems
    (instance, Name tag when known, account, region, reason) and how many more
    there were.
    """
    errors = summary["errors"]
    if not errors:
        return None
    failed = failed_targets(summary)
    counts = _counted(len(errors), "error") + (f", {_counted(failed, 'target')} failed" if failed else "")
    dry = " (dry run)" if summary["dry_run"] else ""
    if "chunks" in summary:  # a dispatch: what was sent, not what was done
        done = f"{summary['failed_chunks']} of {_counted(summary['chunks'], 'chunk')} not dispatched"
        scope = (
            f"{_counted(summary['chunks'] - summary['failed_chunks'], 'chunk')} sent of {summary['targets']} targets "
            f"in {_counted(summary['accounts'], 'account')} and {_counted(summary['regions'], 'region')}."
        )
    else:
        done = f"{len(summary['started'])} started, {len(summary['stopped'])} stopped"
        groups = summary.get("groups", 0)
        scope = (
            f"{done}, {len(summary['skipped'])} skipped of {summary['instances']} instances"
            + (
                f"; {len(summary['groups_started'])} started, {len(summary['groups_stopped'])} stopped of "
                f"{_counted(groups, 'Auto Scaling group')}"
                if groups
                else ""
            )
            + f" in {_counted(len(summary['accounts']), 'account')} and {_counted(len(summary['regions']), 'region')}"
            + (f", in {summary['run_seconds']:.1f} s." if "run_seconds" in summary else ".")
        )
    tail = f": {counts}; {done}{dry}"
    subject = function_name[: max(SNS_SUBJECT_MAX_CHARS - len(tail), 1)] + tail
    lines = [f"{function_name} run at {summary['time']}{dry}: {counts}.", scope, "", "Problems:"]
    room = SNS_MESSAGE_MAX_BYTES - sum(len(line.encode()) + 1 for line in lines) - 200  # the closing lines
    listed = 0
    for entry in errors[:NOTIFY_MAX_PROBLEMS]:
        where = f"{entry['account']}/{entry['region']}"
        if entry.get("group") is not None:
            line = f"- group {entry['group']} in {where}: {entry['error']}"
        elif entry["instance_id"] is None:
            line = f"- target {where} could not be handled: {entry['error'].removeprefix(where + ': ')}"
        else:
            name = f" ({entry['name']})" if entry.get("name") else ""
            line = f"- {entry['instance_id']}{name} in {where}: {entry['error']}"
        room -= len(line.encode()) + 1
        if room < 0:  # SNS refuses a message over 256 KB: the one that says what went wrong must go out
            break
        lines.append(line)
        listed += 1
    if len(errors) > listed:
        lines.append(f"and {len(errors) - listed} more.")
    where_logged = f" in the log group {log_group}" if log_group else ""
    lines += ["", f"The run's whole summary is the JSON line it logged{where_logged}."]
    return subject, "\n".join(lines)


def function_name_of(context: Any) -> str:
    """The function's name: the Lambda context's, else AWS_LAMBDA_FUNCTION_NAME, else DEFAULT_FUNCTION_NAME."""
    name = getattr(context, "function_name", None)
    return str(name or os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or DEFAULT_FUNCTION_NAME)


def invocation_deadline(context: Any) -> float | None:
    """When Lambda will end this invocation, in time.monotonic() seconds; None outside Lambda."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return time.monotonic() + remaining() / 1000 if callable(remaining) else None


def print_metrics(summary: Mapping[str, Any], function_name: str) -> None:
    """Print the run's EMF document as one line on standard output, then one per instance type with stopped hours.

    Not through logging: Lambda's log handler prefixes each logged line, and
    CloudWatch extracts metrics only from a line that is the bare JSON document.
    """
    timestamp_ms = int(time.time() * 1000)
    documents = [metrics_document(summary, function_name, timestamp_ms)]
    documents += instance_type_documents(summary, function_name, timestamp_ms)
    print("\n".join(json.dumps(document, separators=(",", ":")) for document in documents), flush=True)


def notify(summary: Mapping[str, Any], settings: Settings, function_name: str, aws: Aws) -> None:
    """Publish the run's notification to settings.notify_topic_arn, if there is one to send.

    A failure to publish is logged, never raised: the run and its summary stand.
    """
    topic = settings.notify_topic_arn
    if topic is None:
        return
    message = notification(summary, function_name, os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME"))
    if message is None:
        return
    subject, body = message
    try:
        aws.sns(topic.split(":")[3]).publish(TopicArn=topic, Subject=subject, Message=body)
    except (ClientError, BotoCoreError) as err:
        logger.error("could not publish the run's notification to %s: %s", topic, _describe_error(err))
    except Exception:  # a bug here must not cost the run its summary
        logger.exception("could not publish the run's notification to %s", topic)
    else:
        logger.info("notification of %d errors published to %s", len(summary["errors"]), topic)


def report_run(summary: Mapping[str, Any] | None, settings: Settings, function_name: str) -> None:
    """After a run, failed or not: its metrics on standard output and its notification."""
    if summary is None:
        return
    print_metrics(summary, function_name)
    notify(summary, settings, function_name, shared_aws())


# --- Targets: discovery, and fan-out across invocations ---------------------------


@dataclass
class Discovery:
    """A run's targets, and the failed targets of accounts whose regions could not be listed."""

    targets: list[Target]
    failures: list[TargetResult] = field(default_factory=list)


def discover_targets(settings: Settings, own_account: str, aws: Aws, memo: RunMemo | None = None) -> Discovery:
    """The accounts to schedule (AWS Organizations when set) times their regions (with `all`, each one's enabled).

    Without an organization, exclusions or `all` it makes no AWS call. An account
    whose regions cannot be listed is a failed target in the home region; the
    organization that cannot be listed raises DiscoveryError.
    """
    memo = memo or RunMemo()
    if own_account == OWN_ACCOUNT and (settings.organization_role or settings.exclude_accounts):
        own_account = _caller_account(aws, settings, memo)
    members: list[str] = []
    partition = "aws"
    if settings.organization_role:
        members = organization_accounts(aws.organizations(settings), settings)
        partition = aws.partition(settings.regions[0])
    accounts = accounts_to_schedule(settings, own_account, members, partition)
    if not settings.all_regions:
        return Discovery([Target(account, region, role) for account, role in accounts for region in settings.regions])
    at_home = [Target(account, settings.regions[0], role) for account, role in accounts]
    listed = each_target(at_home, lambda target: enabled_regions(target, settings, aws, memo), settings.max_workers)
    discovery = Discovery([])
    for target, regions in zip(at_home, listed, strict=True):
        if isinstance(regions, str):
            discovery.failures.append(TargetResult(target).fail(regions))
        else:
            discovery.targets += [replace(target, region=region) for region in regions]
    return discovery


def _caller_account(aws: Aws, settings: Settings, memo: RunMemo) -> str:
    try:
        return aws.caller_account(settings, memo)
    except (ClientError, BotoCoreError) as err:
        raise DiscoveryError(f"cannot read the function's own account ID: {_describe_error(err)}") from err


def organization_accounts(organizations: Any, settings: Settings) -> list[str]:
    """The IDs of the ACTIVE accounts of the organization, or of the units of ORGANIZATION_UNITS and theirs below."""

    def active(pages: Iterable[Mapping[str, Any]]) -> set[str]:
        # `State` replaces the deprecated `Status`; either says ACTIVE for an account that can be scheduled.
        return {
            account["Id"]
            for page in pages
            for account in page.get("Accounts", ())
            if account.get("State", account.get("Status")) == "ACTIVE"
        }

    def pages(operation: str, **params: str) -> Iterable[Mapping[str, Any]]:
        return organizations.get_paginator(operation).paginate(**params)  # type: ignore[no-any-return]

    try:
        if not settings.organization_units:
            return sorted(active(pages("list_accounts")))
        accounts: set[str] = set()
        units, seen = list(settings.organization_units), set(settings.organization_units)
        while units:
            unit = units.pop()
            accounts |= active(pages("list_accounts_for_parent", ParentId=unit))
            for page in pages("list_organizational_units_for_parent", ParentId=unit):
                below = [child["Id"] for child in page.get("OrganizationalUnits", ()) if child["Id"] not in seen]
                seen.update(below)
                units += below
        return sorted(accounts)
    except (ClientError, BotoCoreError) as err:
        raise DiscoveryError(
            f"cannot list the organization's accounts ({ORGANIZATION_ROLE_SETTING} is set): {_describe_error(err)}"
        ) from err


def enabled_regions(target: Target, settings: Settings, aws: Aws, memo: RunMemo) -> tuple[str, ...] | str:
    """The regions enabled in the target's account (DescribeRegions from its home region), or why not."""

    def ask() -> tuple[str, ...] | str:
        try:
            reply = aws.ec2(target, settings, memo).describe_regions()
        except RoleError as err:
            return f"cannot list the enabled regions: {err}"
        except (ClientError, BotoCoreError) as err:
            return f"cannot list the enabled regions: {_describe_error(err)}"
        return tuple(sorted(region["RegionName"] for region in reply.get("Regions", ())))

    return memo.regions.get(target.account, ask)  # type: ignore[no-any-return]


def chunk_targets(targets: Sequence[Target], size: int) -> list[list[Target]]:
    """Consecutive chunks of at most `size` targets: an account's regions stay together, so mostly one AssumeRole."""
    return [list(targets[offset : offset + size]) for offset in range(0, len(targets), size)]


def chunk_event(now: datetime, targets: Iterable[Target]) -> dict[str, Any]:
    """The event one chunk invocation gets: the original time and exactly its targets."""
    return {
        "time": _iso(now),
        "targets": [{"account": t.account, "region": t.region, "role_arn": t.role_arn} for t in targets],
    }


def is_chunk_event(event: Any) -> bool:
    return isinstance(event, Mapping) and "targets" in event


def chunk_of_event(event: Mapping[str, Any], settings: Settings, own_account: str) -> tuple[datetime, list[Target]]:
    """The time and targets of a chunk event, checked strictly; ConfigError says what is wrong and nothing runs.

    The event must be what `chunk_event` makes, for targets this function's settings
    could have dispatched: known roles, the own account only with the own
    credentials and when scheduled, no excluded account, no target twice.
    """
    if set(event) != {"time", "targets"}:
        raise ConfigError(f"chunk event: expected exactly the keys 'targets' and 'time', got {sorted(map(str, event))}")
    raw_time, entries = event["time"], event["targets"]
    if not isinstance(raw_time, str) or not _EVENT_TIME_PATTERN.fullmatch(raw_time):
        raise ConfigError(f"chunk event: 'time' must be a UTC time such as '2026-11-23T08:00:00Z', got {raw_time!r}")
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_TARGETS_PER_INVOCATION:
        raise ConfigError(f"chunk event: 'targets' must be a list of 1 to {MAX_TARGETS_PER_INVOCATION} targets")
    targets = [_chunk_target(entry, index, settings, own_account) for index, entry in enumerate(entries)]
    if len({(target.account, target.region) for target in targets}) < len(targets):
        raise ConfigError("chunk event: a target (account and region) is listed twice")
    return reference_time({"time": raw_time}), targets


def _chunk_target(entry: object, index: int, settings: Settings, own_account: str) -> Target:
    where = f"chunk event: targets[{index}]"
    if not isinstance(entry, Mapping) or set(entry) != {"account", "region", "role_arn"}:
        raise ConfigError(f"{where} must be an object with exactly the keys 'account', 'region' and 'role_arn'")
    account, region, role_arn = entry["account"], entry["region"], entry["role_arn"]
    if not isinstance(account, str) or not _ACCOUNT_PATTERN.fullmatch(account):
        raise ConfigError(f"{where}.account must be a 12-digit account ID, got {account!r}")
    if not isinstance(region, str) or not region.isascii() or not _REGION_PATTERN.fullmatch(region):
        raise ConfigError(f"{where}.region must be a region name such as 'eu-west-1', got {region!r}")
    if account in settings.exclude_accounts:
        raise ConfigError(f"{where}: account {account} is excluded by {EXCLUDE_ACCOUNTS_SETTING}")
    if not settings.all_regions and region not in settings.regions:
        raise ConfigError(f"{where}: region {region} is not in {REGIONS_SETTING} ({', '.join(settings.regions)})")
    if role_arn is None:
        if not settings.own_account or own_account not in (OWN_ACCOUNT, account):
            raise ConfigError(f"{where}: role_arn null means the function's own account, which {account} is not")
        return Target(account, region)
    match = _ROLE_ARN_PATTERN.fullmatch(role_arn) if isinstance(role_arn, str) and role_arn.isascii() else None
    if match is None or match.group(1) != account:
        raise ConfigError(f"{where}.role_arn must be null or the ARN of a role in account {account}, got {role_arn!r}")
    if role_arn not in settings.role_arns and role_arn.split(":role/", 1)[1] != settings.organization_role:
        raise ConfigError(
            f"{where}.role_arn {role_arn!r} is neither in {ROLE_ARNS_SETTING} nor the {ORGANIZATION_ROLE_SETTING}"
        )
    return Target(account, region, role_arn)


def fan_out(
    settings: Settings, now: datetime, discovery: Discovery, function_arn: str, function_name: str, aws: Aws
) -> dict[str, Any]:
    """Invoke the function (the same ARN, alias kept) asynchronously once per chunk of targets; return what was sent.

    Each chunk carries the original time, so a retried or duplicated chunk acts as
    the first would. A chunk whose Invoke fails is reported (its targets in
    `errors`) while the others still go; then the dispatch's notification (no
    chunk's run can tell of targets never sent) and RunError, as for failed targets.
    """
    chunks = chunk_targets(discovery.targets, settings.targets_per_invocation)
    client = aws.lambda_client(function_arn.split(":")[3])

    def invoke(chunk: list[Target]) -> str | None:
        payload = json.dumps(chunk_event(now, chunk)).encode()
        try:
            client.invoke(FunctionName=function_arn, InvocationType="Event", Payload=payload)
        except (ClientError, BotoCoreError) as err:
            logger.error("chunk of %d targets from %s not dispatched: %s", len(chunk), chunk[0], _describe_error(err))
            return f"not dispatched: Invoke failed: {_describe_error(err)}"
        return None

    problems = each_target(chunks, invoke, settings.max_workers)
    summary = dispatch_summary(now, settings, chunks, problems, discovery.failures)
    log_dispatch(summary)
    if summary["errors"]:
        notify(summary, settings, function_name, aws)
        raise RunError(
            f"{summary['failed_chunks']} of {len(chunks)} chunks not dispatched, {len(discovery.failures)} accounts "
            "not listed; see the summary's errors",
            summary,
        )
    return summary


def dispatch_summary(
    now: datetime,
    settings: Settings,
    chunks: list[list[Target]],
    problems: list[str | None],
    failures: list[TargetResult],
) -> dict[str, Any]:
    """What a dispatching invocation sent: counts, and the targets that will not run as `errors` entries."""
    targets = [target for chunk in chunks for target in chunk]
    undispatched = [
        {"instance_id": None, "account": target.account, "region": target.region, "error": f"{target}: {problem}"}
        for chunk, problem in zip(chunks, problems, strict=True)
        if problem
        for target in chunk
    ]
    return {
        "time": _iso(now),
        "dry_run": settings.dry_run,
        "chunks": len(chunks),
        "failed_chunks": sum(1 for problem in problems if problem),
        "targets": len(targets),
        "accounts": len({target.account for target in targets}),
        "regions": len({target.region for target in targets}),
        "errors": [entry for failure in failures for entry in failure.error_entries()] + undispatched,
    }


def log_dispatch(summary: dict[str, Any]) -> None:
    """Log the dispatch summary as one JSON line, its errors cut to 100 (a failed chunk lists all its targets)
    and then to what fits in a log event."""
    errors = summary["errors"]
    shown = summary if len(errors) <= 100 else {**summary, "errors": errors[:100], "errors_count": len(errors)}
    line = json.dumps(shown)
    if len(line) > SUMMARY_LOG_MAX_CHARS:
        line = json.dumps(fit_lists(shown, ("errors",), SUMMARY_LOG_MAX_CHARS, totals=summary))
    logger.info("%s", line)


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


def check_event_time(event_time: datetime, clock: datetime, settings: Settings) -> None:
    """Refuse (ConfigError) an event whose time is older than MAX_EVENT_AGE or ahead of the clock.

    An event decides what a run does as if it were then: whoever may invoke the
    function must not make it act as it would have at another time (a missed
    time is caught up by the next run instead). Zero turns the check off.
    """
    age = settings.max_event_age
    if not age:
        return
    if event_time < clock - age:
        raise ConfigError(
            f"event time {_iso(event_time)} is more than {int(age.total_seconds() // 60)} minutes old "
            f"({MAX_EVENT_AGE_SETTING}); nothing was done: the next run catches up what it missed"
        )
    if event_time > clock + EVENT_CLOCK_SKEW:
        raise ConfigError(
            f"event time {_iso(event_time)} is more than {int(EVENT_CLOCK_SKEW.total_seconds() // 60)} minutes "
            f"ahead of the clock ({_iso(clock)}); nothing was done"
        )


def own_account_id(context: Any) -> str:
    """The function's account, from the Lambda context's function ARN; OWN_ACCOUNT when run elsewhere."""
    arn = str(getattr(context, "invoked_function_arn", "") or "")
    parts = arn.split(":")
    return parts[4] if len(parts) > 4 and parts[4].isdigit() else OWN_ACCOUNT


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
        "caught_up": [entry for result in results for entry in result.caught_up_entries()],
        "hibernated": [i for result in results for i in result.hibernated],
        "groups": sum(result.groups for result in results),
        "groups_started": [entry for result in results for entry in result.group_entries(result.groups_started)],
        "groups_stopped": [entry for result in results for entry in result.group_entries(result.groups_stopped)],
        "stopped_instance_hours": stopped_instance_hours(results, settings.window),
        **({"status_tag_errors": sum(r.status_tag_errors for r in results)} if settings.status_tags else {}),
    }


def stopped_instance_hours(results: Iterable[TargetResult], window: timedelta) -> dict[str, float]:
    """Instance-hours the schedules keep stopped this run, by instance type: instances stopped x the window."""
    counts: dict[str, int] = {}
    for result in results:
        for instance_type, count in result.stopped_types.items():
            counts[instance_type] = counts.get(instance_type, 0) + count
    hours = window / timedelta(hours=1)
    return {instance_type: round(count * hours, 4) for instance_type, count in sorted(counts.items())}


_TARGET_LISTS = ("started", "stopped", "groups_started", "groups_stopped")  # a target's lists: counted when cut


def log_summary(summary: dict[str, Any]) -> None:
    """Log the summary as one JSON line, cutting long lists so the line fits in a log event."""
    lists = [key for key in SUMMARY_LISTS if key in summary]
    entries = sum(len(summary[key]) for key in lists)
    # An entry is some 20 characters of JSON or more: past this many, do not build a line only to cut it.
    line = json.dumps(summary, default=str) if entries < SUMMARY_LOG_MAX_CHARS // 20 else ""
    if not line or len(line) > SUMMARY_LOG_MAX_CHARS:
        shortened = dict(summary)
        for key in lists:
            items = summary[key]
            shortened[key] = items[:100]
            shortened[f"{key}_count"] = len(items)
        shortened["targets"] = [
            {**totals, **{key: len(totals[key]) for key in _TARGET_LISTS if key in totals}}
            for totals in summary.get("targets", ())
        ]
        shortened["truncated"] = True
        line = json.dumps(shortened, default=str)
        if len(line) > SUMMARY_LOG_MAX_CHARS:  # long entries (errors quote what was wrong): cut by size too
            line = json.dumps(fit_lists(shortened, (*lists, "targets"), SUMMARY_LOG_MAX_CHARS), default=str)
    logger.info("%s", line)
    if summary["errors"]:
        logger.warning("%d errors in this run; see the summary's errors", len(summary["errors"]))


def fit_lists(
    document: Mapping[str, Any], keys: Sequence[str], budget: int, totals: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The document with the lists under `keys` cut from their ends so that its JSON fits in `budget` characters.

    Lists share the room evenly, and what a short list leaves goes to the longer
    ones. Each cut list keeps its whole length in `<key>_count` (from `totals`,
    the uncut document, where given), and `truncated` is set.
    """
    totals = totals or document
    fitted = {**document, **{key: [] for key in keys}, "truncated": True}
    for key in keys:
        fitted[f"{key}_count"] = totals.get(f"{key}_count", len(totals[key]))
    room = budget - len(json.dumps(fitted, default=str))
    sizes = {key: [len(json.dumps(item, default=str)) + 2 for item in document[key]] for key in keys}
    by_size = sorted(keys, key=lambda key: sum(sizes[key]))
    for done, key in enumerate(by_size):
        share, used, kept = room // (len(by_size) - done), 0, 0
        for size in sizes[key]:
            if used + size > share:
                break
            used, kept = used + size, kept + 1
        fitted[key] = list(document[key][:kept])
        room -= used
    return fitted


def _ensure_logging() -> None:
    # Lambda configures the root logger; a local run would otherwise print nothing.
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def run(
    settings: Settings,
    now: datetime,
    own_account: str = OWN_ACCOUNT,
    session: Any = None,
    discovery: Discovery | None = None,
    *,
    deadline: float | None = None,
) -> dict[str, Any]:
    """One scheduling run at `now` for every account and region (or the targets of `discovery`).

    Targets run concurrently in a pool of settings.max_workers; a failed target
    is reported and the others go on; RunError is raised after the summary.
    `session` (a boto3 Session) is for callers that bring their own; otherwise
    the execution environment's session and clients are reused. `deadline`
    (time.monotonic() seconds: when Lambda will end the invocation) makes the
    run warn, past RUN_TIME_WARNING_SHARE of its time, which targets are still running,
    and bounds its URL fetching (`url_fetch_deadline`). No thread of its URL
    fetching outlives it.
    """
    started = time.monotonic()
    fetch_until = url_fetch_deadline(started, deadline)
    context = RunContext(settings, now, Aws(session) if session else shared_aws(), fetch_until=fetch_until)
    try:
        discovery = discovery or discover_targets(settings, own_account, context.aws, context.memo)
        targets = discovery.targets
        with RunWatch(targets, started, deadline) as watch:
            work = watch.track(lambda target: run_target(target, context))
            results = each_target(targets, work, settings.max_workers)
    finally:
        # Name look-ups still running are waited on, but not into the last half of the time kept for reporting.
        context.close(None if deadline is None or fetch_until is None else (fetch_until + deadline) / 2)
    results += discovery.failures
    event_errors = publish_events(results, settings, now, context.aws)
    summary = summarise(now, settings, results)
    if event_errors is not None:
        summary["event_errors"] = event_errors
    summary["run_seconds"] = round(time.monotonic() - started, 3)
    log_summary(summary)
    failed = [str(result.target) for result in results if result.failed]
    if failed:
        raise RunError(f"could not handle {', '.join(failed)}; see the summary's errors", summary)
    return summary


def handler(event: Any = None, context: Any = None) -> dict[str, Any]:
    """Lambda entry point: one scheduling run at the event's time, or its dispatch in chunks. Returns the summary.

    A chunk event (one this function sent) runs exactly its targets and never fans
    out again; a run with more targets than one invocation takes, inside Lambda,
    sends them to itself in chunks. Whether a run succeeds or raises RunError,
    its metrics are printed and its notification sent first; a dispatch that
    could not send every chunk sends its own notification (its chunks print the metrics).
    """
    _ensure_logging()
    deadline = invocation_deadline(context)
    settings, own_account = Settings.from_env(), own_account_id(context)
    if is_chunk_event(event):
        now, targets = chunk_of_event(event, settings, own_account)
        check_event_time(now, datetime.now(UTC), settings)
        discovery = Discovery(targets)
    else:
        now = reference_time(event)
        check_event_time(now, datetime.now(UTC), settings)
        discovery = discover_targets(settings, own_account, shared_aws())
        function_arn = getattr(context, "invoked_function_arn", None)
        if function_arn and len(discovery.targets) > settings.targets_per_invocation:
            return fan_out(settings, now, discovery, function_arn, function_name_of(context), shared_aws())
    name = function_name_of(context)
    try:
        summary = run(settings, now, own_account, discovery=discovery, deadline=deadline)
    except RunError as err:
        report_run(err.summary, settings, name)
        raise
    report_run(summary, settings, name)
    return summary


if __name__ == "__main__":  # `python ec2_powercycle.py COMMAND`: the command line, kept beside this module
    from ec2_powercycle_cli import main

    raise SystemExit(main())
