"""A small, fast EC2 Query-API endpoint for benchmarks and fault tests, on 127.0.0.1 only.

moto cannot serve a fleet of 10,000+ tagged instances (its tag-filtered
DescribeInstances is quadratic), so the benchmarks run against this instead. It
speaks only what ec2-powercycle uses, the way EC2 does:

* ``DescribeInstances``: filters ``tag-key``, ``tag:KEY``, ``tag-value``,
  ``instance-state-name``, ``instance-id`` and ``instance-type`` (values may
  use EC2's ``*`` and ``?`` wildcards; any other filter name is
  ``InvalidParameterValue``); ``InstanceId.N``; paging by *instances* with
  ``MaxResults`` 5..1000 (outside that range ``InvalidParameterValue``, with
  ``InstanceId.N`` ``InvalidParameterCombination``) and an opaque
  ``NextToken``; without ``MaxResults`` everything in one response. Instances
  are grouped in their reservations, and each instance carries the fields of a
  real EC2 response (network interface, block device, placement, metadata
  options, ...), so that boto3 parses as much XML per instance as it would
  from AWS.
* ``StartInstances`` / ``StopInstances``: the whole call is checked before
  anything changes, as EC2 does: ``InvalidInstanceID.Malformed``,
  ``InvalidInstanceID.NotFound``, ``IncorrectInstanceState`` (starting a
  stopping, shutting-down or terminated instance; stopping a shutting-down or
  terminated one) and ``OperationNotPermitted`` (stopping an instance whose
  ``disableApiStop`` attribute is set) fail the whole batch with nothing
  changed. Transitions settle at once: the response says ``pending`` or
  ``stopping``, the next DescribeInstances says ``running`` or ``stopped``.
* ``CreateTags`` / ``DeleteTags`` on instances (``ResourceId.N``, ``Tag.N.Key``/``Value``; a
  DeleteTags tag without a value removes the key): an unknown ID fails the whole call
  (``InvalidInstanceID.NotFound``), at most 1,000 IDs a call; the tags show in the next
  DescribeInstances.
* EventBridge ``PutEvents`` (JSON, ``X-Amz-Target: AWSEvents.PutEvents``): at most 10 entries
  and 256 KB a call, each entry accepted and counted, nothing delivered.
* Auto Scaling groups (the same endpoint, told apart by the API ``Version`` 2011-01-01):
  ``DescribeAutoScalingGroups`` (filters ``tag-key``, ``tag:KEY`` and
  ``tag-value``; ``MaxRecords`` 1..100, default 50; an opaque ``NextToken``),
  ``UpdateAutoScalingGroup`` (sizes checked as Auto Scaling does:
  min <= desired <= max), ``CreateOrUpdateTags``, ``DeleteTags`` and
  ``DescribeScalingActivities`` (one activity per group, at its seeded
  ``activity`` time, if it has one). An unknown group is ``ValidationError``.
* Errors are EC2's error XML (``<Response><Errors><Error>...``) with HTTP 400.
  Requests are not signature-checked.

An organization (``POST /_bench/organization``, for ``bench/org.py``): many
accounts and regions, with a latency per request standing in for AWS's. Each
request is routed by its signature's credential scope (service, region) and
access key (the account): every account and region has its own copy of the
seeded fleet (same IDs, own states). It also answers, as AWS does, STS
``AssumeRole`` (credentials whose key names the role's account) and
``GetCallerIdentity``, EC2 ``DescribeRegions`` (the organization's regions),
Organizations ``ListAccounts`` (20 a page, the management account first) and
Lambda ``Invoke`` (recorded, answered 202, not run).

It counts the calls it serves. Its own admin paths (JSON):

* ``POST /_bench/seed`` ``{"instances": [{"name", "tags": {}, "state",
  "instance_type", "disable_api_stop", "reservation"}], "groups": [{"name",
  "tags": {}, "min", "max", "desired", "activity"}], "xml": "full"}``: replace
  the fleet (instances with the same ``reservation`` label in a row share a
  reservation; ``groups`` is optional); answers ``{"ids": [...]}`` in the
  same order. IDs are derived from the position, so the same fleet always
  gets the same IDs. ``"xml": "lean"`` answers DescribeInstances with only the
  fields the scheduler reads (ID, state, type, launch time, state reason,
  tags) instead of a real response's (about 4 KB an instance), so that a
  benchmark sees the scheduler's own work rather than botocore's parsing.
* ``GET /_bench/groups``: ``{name: {"min", "max", "desired", "tags"}}``.
* ``POST /_bench/reset``: put every instance back in its seeded state and zero
  the counts.
* ``GET /_bench/counts``: ``{"calls": {"DescribeInstances": n, ...},
  "instance_ids": {"StartInstances": n, ...}}``.
* ``GET /_bench/states``: ``{instance_id: state}``.
* ``POST /_bench/organization`` ``{"accounts": N, "regions": [...], "latency":
  seconds, "instances": [...]}``: serve N member accounts (IDs 100000000001 on)
  besides the own one, each region with a copy of these instances; ``POST
  /_bench/reset`` drops it. ``GET /_bench/invocations`` hands over (and forgets)
  the payloads of the Invoke calls received so far.

Run it as its own process, from the repository root::

    python -m tests.support.ec2_endpoint --port 0 [--fleet fleet.json]

It prints ``READY http://127.0.0.1:PORT`` on stdout once it listens, and stops
on SIGTERM or SIGINT. ``serve_in_thread()`` runs it inside a test instead.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import ipaddress
import json
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
OWNER_ID = "123456789012"
REGION = "eu-west-1"
STATE_CODES = {
    "pending": 0,
    "running": 16,
    "shutting-down": 32,
    "terminated": 48,
    "stopping": 64,
    "stopped": 80,
}
MIN_RESULTS, MAX_RESULTS = 5, 1000
LAUNCH_TIME = "2026-01-05T09:00:00.000Z"
KNOWN_FILTERS = ("tag-key", "tag-value", "instance-state-name", "instance-id", "instance-type")
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8}([0-9a-f]{9})?$")
_MAX_TOKENS = 10_000


class EC2Error(Exception):
    """An EC2 API error: code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Instance:
    instance_id: str
    reservation_id: str
    tags: dict[str, str]
    instance_type: str
    state: str
    seeded_state: str
    disable_api_stop: bool
    head: bytes  # XML before <instanceState>
    tail: bytes  # XML after </instanceState>
    seeded_tail: bytes = b""  # its tags as seeded: reset puts them back

    def retag(self, tags: dict[str, str]) -> None:
        """New tags, in the instance's XML too."""
        self.tags = tags
        before, rest = self.tail.split(b"<tagSet>", 1)
        after = rest.split(b"</tagSet>", 1)[1]
        self.tail = before + b"<tagSet>" + _tag_items(tags) + b"</tagSet>" + after


def _tag_items(tags: dict[str, str]) -> bytes:
    return "".join(
        f"<item><key>{escape(key)}</key><value>{escape(value)}</value></item>" for key, value in tags.items()
    ).encode()


@dataclass
class Group:
    """An Auto Scaling group: its sizes and tags now, and as seeded."""

    name: str
    tags: dict[str, str]
    sizes: tuple[int, int, int]  # (min, max, desired)
    seeded_tags: dict[str, str]
    seeded_sizes: tuple[int, int, int]
    activity: str | None = None  # when its latest scaling activity started (ISO 8601), if any


AUTOSCALING_VERSION = "2011-01-01"
AUTOSCALING_NAMESPACE = f"http://autoscaling.amazonaws.com/doc/{AUTOSCALING_VERSION}/"
GROUP_OPERATIONS = (
    "DescribeAutoScalingGroups",
    "UpdateAutoScalingGroup",
    "CreateOrUpdateTags",
    "DeleteTags",
    "DescribeScalingActivities",
)
GROUP_FILTERS = ("tag-key", "tag-value")
MAX_GROUP_RECORDS = 100


def _hex(text: str, length: int) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:length]


_STATE_XML = {
    name: f"<instanceState><code>{code}</code><name>{name}</name></instanceState>".encode()
    for name, code in STATE_CODES.items()
}


XML_SIZES = ("full", "lean")


def _render_lean(instance_id: str, spec: dict[str, Any], instance_type: str) -> tuple[bytes, bytes]:
    """An instance's XML around its state with only what the scheduler reads (``"xml": "lean"``)."""
    tags = "".join(
        f"<item><key>{escape(key)}</key><value>{escape(value)}</value></item>" for key, value in spec["tags"].items()
    )
    head = f"<item><instanceId>{instance_id}</instanceId>"
    tail = (
        f"<reason/><instanceType>{escape(instance_type)}</instanceType><launchTime>{LAUNCH_TIME}</launchTime>"
        f"<tagSet>{tags}</tagSet></item>"
    )
    return head.encode(), tail.encode()


def _render(position: int, instance_id: str, spec: dict[str, Any], instance_type: str) -> tuple[bytes, bytes]:
    """An instance's XML around its state, modelled field by field on a real EC2 response."""
    ip = ipaddress.IPv4Address(0x0A000000 + 256 + position)
    private_dns = f"ip-{str(ip).replace('.', '-')}.{REGION}.compute.internal"
    zone = f"{REGION}{'abc'[position % 3]}"
    subnet, vpc = f"subnet-{_hex(zone, 17)}", f"vpc-{_hex(REGION, 17)}"
    eni, volume = f"eni-{_hex(instance_id + 'eni', 17)}", f"vol-{_hex(instance_id + 'vol', 17)}"
    mac = ":".join(["02"] + [_hex(instance_id + "mac", 10)[i : i + 2] for i in range(0, 10, 2)])
    group = f"<groupSet><item><groupId>sg-{_hex(vpc, 17)}</groupId><groupName>default</groupName></item></groupSet>"
    tags = "".join(
        f"<item><key>{escape(key)}</key><value>{escape(value)}</value></item>" for key, value in spec["tags"].items()
    )
    head = f"<item><instanceId>{instance_id}</instanceId><imageId>ami-{_hex('image', 17)}</imageId>"
    tail = (
        f"<privateDnsName>{private_dns}</privateDnsName><dnsName/><reason/><keyName>bench</keyName>"
        f"<amiLaunchIndex>0</amiLaunchIndex><productCodes/><instanceType>{escape(instance_type)}</instanceType>"
        f"<launchTime>{LAUNCH_TIME}</launchTime>"
        f"<placement><availabilityZone>{zone}</availabilityZone><groupName/><tenancy>default</tenancy></placement>"
        f"<monitoring><state>disabled</state></monitoring><subnetId>{subnet}</subnetId><vpcId>{vpc}</vpcId>"
        f"<privateIpAddress>{ip}</privateIpAddress><sourceDestCheck>true</sourceDestCheck>{group}"
        f"<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>"
        f"<rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping><item><deviceName>/dev/xvda</deviceName>"
        f"<ebs><volumeId>{volume}</volumeId><status>attached</status><attachTime>{LAUNCH_TIME}</attachTime>"
        f"<deleteOnTermination>true</deleteOnTermination></ebs></item></blockDeviceMapping>"
        f"<virtualizationType>hvm</virtualizationType><clientToken>{_hex(instance_id + 'token', 32)}</clientToken>"
        f"<tagSet>{tags}</tagSet><hypervisor>xen</hypervisor>"
        f"<networkInterfaceSet><item><networkInterfaceId>{eni}</networkInterfaceId><subnetId>{subnet}</subnetId>"
        f"<vpcId>{vpc}</vpcId><description/><ownerId>{OWNER_ID}</ownerId><status>in-use</status>"
        f"<macAddress>{mac}</macAddress><privateIpAddress>{ip}</privateIpAddress>"
        f"<privateDnsName>{private_dns}</privateDnsName><sourceDestCheck>true</sourceDestCheck>{group}"
        f"<attachment><attachmentId>eni-attach-{_hex(eni, 17)}</attachmentId><deviceIndex>0</deviceIndex>"
        f"<status>attached</status><attachTime>{LAUNCH_TIME}</attachTime>"
        f"<deleteOnTermination>true</deleteOnTermination><networkCardIndex>0</networkCardIndex></attachment>"
        f"<privateIpAddressesSet><item><privateIpAddress>{ip}</privateIpAddress>"
        f"<privateDnsName>{private_dns}</privateDnsName><primary>true</primary></item></privateIpAddressesSet>"
        f"<ipv6AddressesSet/><interfaceType>interface</interfaceType></item></networkInterfaceSet>"
        f"<ebsOptimized>false</ebsOptimized><enaSupport>true</enaSupport>"
        f"<cpuOptions><coreCount>1</coreCount><threadsPerCore>2</threadsPerCore></cpuOptions>"
        f"<capacityReservationSpecification><capacityReservationPreference>open</capacityReservationPreference>"
        f"</capacityReservationSpecification><hibernationOptions><configured>false</configured></hibernationOptions>"
        f"<metadataOptions><state>applied</state><httpTokens>required</httpTokens>"
        f"<httpPutResponseHopLimit>2</httpPutResponseHopLimit><httpEndpoint>enabled</httpEndpoint>"
        f"<httpProtocolIpv6>disabled</httpProtocolIpv6><instanceMetadataTags>disabled</instanceMetadataTags>"
        f"</metadataOptions><enclaveOptions><enabled>false</enabled></enclaveOptions><bootMode>uefi-preferred</bootMode>"
        f"<platformDetails>Linux/UNIX</platformDetails><usageOperation>RunInstances</usageOperation>"
        f"<usageOperationUpdateTime>{LAUNCH_TIME}</usageOperationUpdateTime>"
        f"<privateDnsNameOptions><hostnameType>ip-name</hostnameType><enableResourceNameDnsARecord>false"
        f"</enableResourceNameDnsARecord><enableResourceNameDnsAAAARecord>false</enableResourceNameDnsAAAARecord>"
        f"</privateDnsNameOptions><maintenanceOptions><autoRecovery>default</autoRecovery></maintenanceOptions>"
        f"<currentInstanceBootMode>uefi</currentInstanceBootMode></item>"
    )
    return head.encode(), tail.encode()


def _matcher(values: list[str]) -> Any:
    """A predicate for one filter's values, with EC2's * and ? wildcards."""
    exact = frozenset(v for v in values if "*" not in v and "?" not in v)
    patterns = [re.compile(fnmatch.translate(v)) for v in values if v not in exact]
    return lambda text: text is not None and (text in exact or any(p.match(text) for p in patterns))


class Fleet:
    """The instances, their states, call counts, and the EC2 operations on them (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.instances: list[Instance] = []
        self.by_id: dict[str, Instance] = {}
        self.calls: Counter[str] = Counter()
        self.instance_ids: Counter[str] = Counter()
        self._filter_cache: dict[tuple[Any, ...], list[Instance]] = {}
        self._tokens: dict[str, tuple[list[Instance], int]] = {}
        self.groups: dict[str, Group] = {}
        self._group_tokens: dict[str, tuple[list[Group], int]] = {}

    # --- admin ---

    def seed(
        self, specs: list[dict[str, Any]], group_specs: list[dict[str, Any]] | None = None, xml: str = "full"
    ) -> list[str]:
        if xml not in XML_SIZES:
            raise ValueError(f"unknown xml {xml!r}; expected one of {', '.join(XML_SIZES)}")
        groups = {}
        for spec in group_specs or ():
            sizes = (int(spec.get("min", 1)), int(spec.get("max", 4)), int(spec.get("desired", 2)))
            tags = {str(k): str(v) for k, v in spec.get("tags", {}).items()}
            name = str(spec["name"])
            groups[name] = Group(name, dict(tags), sizes, tags, sizes, spec.get("activity"))
        instances: list[Instance] = []
        reservation_id = ""
        previous_label: object = object()
        for position, spec in enumerate(specs):
            state = spec.get("state", "running")
            if state not in STATE_CODES:
                raise ValueError(f"unknown state {state!r}")
            instance_id = f"i-{_hex(f'instance-{position}', 17)}"
            label = spec.get("reservation")
            if label is None or label != previous_label:
                reservation_id = f"r-{_hex(f'reservation-{position}', 17)}"
            previous_label = label
            instance_type = spec.get("instance_type", "t3.micro")
            tags = {str(k): str(v) for k, v in spec.get("tags", {}).items()}
            if "name" in spec:
                tags = {"Name": str(spec["name"]), **tags}
            if xml == "lean":
                head, tail = _render_lean(instance_id, {"tags": tags}, instance_type)
            else:
                head, tail = _render(position, instance_id, {"tags": tags}, instance_type)
            instances.append(
                Instance(
                    instance_id,
                    reservation_id,
                    tags,
                    instance_type,
                    state,
                    state,
                    bool(spec.get("disable_api_stop", False)),
                    head,
                    tail,
                    tail,
                )
            )
        with self._lock:
            self.instances = instances
            self.by_id = {instance.instance_id: instance for instance in instances}
            self.groups = groups
            self._changed()
            self.calls.clear()
            self.instance_ids.clear()
        return [instance.instance_id for instance in instances]

    def reset(self) -> None:
        with self._lock:
            for instance in self.instances:
                instance.state = instance.seeded_state
                if instance.tail != instance.seeded_tail:
                    instance.tail = instance.seeded_tail
                    instance.tags = _tags_of(instance.seeded_tail)
            for group in self.groups.values():
                group.tags, group.sizes = dict(group.seeded_tags), group.seeded_sizes
            self._changed()
            self.calls.clear()
            self.instance_ids.clear()

    def counts(self) -> dict[str, Any]:
        with self._lock:
            return {"calls": dict(self.calls), "instance_ids": dict(self.instance_ids)}

    def states(self) -> dict[str, str]:
        with self._lock:
            return {instance.instance_id: instance.state for instance in self.instances}

    def group_sizes(self) -> dict[str, Any]:
        with self._lock:
            return {
                group.name: dict(zip(("min", "max", "desired"), group.sizes, strict=True), tags=dict(group.tags))
                for group in self.groups.values()
            }

    def _changed(self) -> None:
        self._filter_cache.clear()
        self._tokens.clear()
        self._group_tokens.clear()

    def clone(self) -> Fleet:
        """The same instances (their XML shared), in their seeded states, with their own counts."""
        copy = Fleet()
        copy.instances = [replace(instance, state=instance.seeded_state) for instance in self.instances]
        copy.by_id = {instance.instance_id: instance for instance in copy.instances}
        copy.groups = {
            name: replace(group, tags=dict(group.seeded_tags), sizes=group.seeded_sizes)
            for name, group in self.groups.items()
        }
        return copy

    # --- EC2 operations ---

    def call(self, action: str, params: dict[str, list[str]]) -> bytes:
        # Auto Scaling's calls come to the same endpoint: its API version tells them apart (both have DeleteTags).
        group_operations = {
            "DescribeAutoScalingGroups": self.describe_groups,
            "UpdateAutoScalingGroup": self.update_group,
            "CreateOrUpdateTags": self.tag_groups,
            "DeleteTags": self.tag_groups,
            "DescribeScalingActivities": self.describe_activities,
        }
        for_groups = _first(params, "Version") == AUTOSCALING_VERSION
        operation = group_operations.get(action) if for_groups else None
        operation = operation or {
            "DescribeInstances": self.describe_instances,
            "StartInstances": self.start_instances,
            "StopInstances": self.stop_instances,
            "CreateTags": self.create_tags,
            "DeleteTags": self.delete_tags,
        }.get(action)
        if operation is None:
            raise EC2Error("InvalidAction", f"The action {action} is not valid for this web service.")
        with self._lock:
            self.calls[action] += 1
            if for_groups:
                pass  # instance_ids counts instances only
            elif action in ("CreateTags", "DeleteTags"):
                self.instance_ids[action] += len(_numbered(params, "ResourceId"))
            elif action in ("StartInstances", "StopInstances"):
                self.instance_ids[action] += len(_numbered(params, "InstanceId"))
            if _first(params, "DryRun") == "true":
                raise EC2Error("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)
            return operation(params)

    def describe_instances(self, params: dict[str, list[str]]) -> bytes:
        ids = _numbered(params, "InstanceId")
        raw_max = _first(params, "MaxResults")
        if ids and raw_max is not None:
            raise EC2Error(
                "InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults"
            )
        token = _first(params, "NextToken")
        if token is not None:
            try:
                matching, offset = self._tokens.pop(token)
            except KeyError:
                raise EC2Error("InvalidPaginationToken", f"Invalid pagination token: {token}") from None
        else:
            matching, offset = self._select(_filters(params), ids), 0
        if raw_max is None:
            page_size = len(matching)
        else:
            if not raw_max.isdigit() or not MIN_RESULTS <= int(raw_max) <= MAX_RESULTS:
                raise EC2Error(
                    "InvalidParameterValue",
                    f"Value ( {raw_max} ) for parameter maxResults is invalid. "
                    f"Expecting a value between {MIN_RESULTS} and {MAX_RESULTS}.",
                )
            page_size = int(raw_max)
        page = matching[offset : offset + page_size]
        parts = [
            f'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstancesResponse xmlns="{NAMESPACE}">'
            f"<requestId>{uuid.uuid4()}</requestId><reservationSet>".encode()
        ]
        current = None
        for instance in page:
            if instance.reservation_id != current:
                if current is not None:
                    parts.append(b"</instancesSet></item>")
                current = instance.reservation_id
                parts.append(
                    f"<item><reservationId>{current}</reservationId><ownerId>{OWNER_ID}</ownerId>"
                    f"<groupSet/><instancesSet>".encode()
                )
            parts += (instance.head, _STATE_XML[instance.state], instance.tail)
        if current is not None:
            parts.append(b"</instancesSet></item>")
        parts.append(b"</reservationSet>")
        if offset + page_size < len(matching):
            next_token = uuid.uuid4().hex + uuid.uuid4().hex
            if len(self._tokens) >= _MAX_TOKENS:
                self._tokens.pop(next(iter(self._tokens)))
            self._tokens[next_token] = (matching, offset + page_size)
            parts.append(f"<nextToken>{next_token}</nextToken>".encode())
        parts.append(b"</DescribeInstancesResponse>")
        return b"".join(parts)

    def _select(self, filters: list[tuple[str, list[str]]], ids: list[str]) -> list[Instance]:
        key = (tuple((name, tuple(values)) for name, values in filters), tuple(ids))
        cached = self._filter_cache.get(key)
        if cached is not None:
            return cached
        if ids:
            self._find(ids)
            wanted = frozenset(ids)
            candidates = [instance for instance in self.instances if instance.instance_id in wanted]
        else:
            candidates = self.instances
        tests = [_filter_test(name, values) for name, values in filters]
        matching = [instance for instance in candidates if all(test(instance) for test in tests)]
        self._filter_cache[key] = matching
        return matching

    def _find(self, ids: list[str]) -> list[Instance]:
        malformed = [i for i in ids if not _INSTANCE_ID.match(i)]
        if malformed:
            raise EC2Error("InvalidInstanceID.Malformed", f'Invalid id: "{malformed[0]}"')
        missing = list(dict.fromkeys(i for i in ids if i not in self.by_id))
        if len(missing) == 1:
            raise EC2Error("InvalidInstanceID.NotFound", f"The instance ID '{missing[0]}' does not exist")
        if missing:
            raise EC2Error("InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(missing)}' do not exist")
        return [self.by_id[i] for i in dict.fromkeys(ids)]

    def start_instances(self, params: dict[str, list[str]]) -> bytes:
        instances = self._batch(params)
        for instance in instances:
            if instance.state in ("stopping", "shutting-down", "terminated"):
                raise EC2Error(
                    "IncorrectInstanceState",
                    f"The instance '{instance.instance_id}' is not in a state from which it can be started.",
                )
        return self._transition("StartInstances", instances, {"stopped": ("pending", "running")})

    def stop_instances(self, params: dict[str, list[str]]) -> bytes:
        instances = self._batch(params)
        for instance in instances:
            if instance.state in ("shutting-down", "terminated"):
                raise EC2Error(
                    "IncorrectInstanceState",
                    f"The instance '{instance.instance_id}' is not in a state from which it can be stopped.",
                )
        for instance in instances:
            if instance.disable_api_stop:
                raise EC2Error(
                    "OperationNotPermitted",
                    f"The instance '{instance.instance_id}' may not be stopped. "
                    "Modify its 'disableApiStop' instance attribute and try again.",
                )
        return self._transition(
            "StopInstances", instances, {"running": ("stopping", "stopped"), "pending": ("stopping", "stopped")}
        )

    # --- Auto Scaling operations ---

    def describe_groups(self, params: dict[str, list[str]]) -> bytes:
        token = _first(params, "NextToken")
        if token is not None:
            try:
                matching, offset = self._group_tokens.pop(token)
            except KeyError:
                raise EC2Error("InvalidNextToken", "The token is invalid.") from None
        else:
            tests = [_filter_test(name, values) for name, values in _group_filters(params)]
            matching, offset = [group for group in self.groups.values() if all(test(group) for test in tests)], 0
        raw_max = _first(params, "MaxRecords") or "50"
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_GROUP_RECORDS:
            raise EC2Error("ValidationError", f"MaxRecords must be from 1 to {MAX_GROUP_RECORDS}, got {raw_max}")
        page_size = int(raw_max)
        members = "".join(_group_xml(group) for group in matching[offset : offset + page_size])
        next_token = ""
        if offset + page_size < len(matching):
            token = uuid.uuid4().hex
            self._group_tokens[token] = (matching, offset + page_size)
            next_token = f"<NextToken>{token}</NextToken>"
        return _autoscaling_xml(
            "DescribeAutoScalingGroups", f"<AutoScalingGroups>{members}</AutoScalingGroups>{next_token}"
        )

    def update_group(self, params: dict[str, list[str]]) -> bytes:
        group = self._group(_first(params, "AutoScalingGroupName"))
        low, high, desired = group.sizes
        low = int(_first(params, "MinSize") or low)
        high = int(_first(params, "MaxSize") or high)
        desired = int(_first(params, "DesiredCapacity") or desired)
        if not low <= desired <= high:
            raise EC2Error("ValidationError", f"Desired capacity:{desired} must be between {low} and {high}")
        group.sizes = (low, high, desired)
        self._changed()
        return _autoscaling_xml("UpdateAutoScalingGroup", None)

    def tag_groups(self, params: dict[str, list[str]]) -> bytes:
        deleting = _first(params, "Action") == "DeleteTags"
        tags = _members(params, "Tags")
        groups = [self._group(tag.get("ResourceId")) for tag in tags]
        for group, tag in zip(groups, tags, strict=True):
            if deleting:
                group.tags.pop(tag.get("Key", ""), None)
            else:
                group.tags[tag.get("Key", "")] = tag.get("Value", "")
        self._changed()
        return _autoscaling_xml("DeleteTags" if deleting else "CreateOrUpdateTags", None)

    def describe_activities(self, params: dict[str, list[str]]) -> bytes:
        group = self._group(_first(params, "AutoScalingGroupName"))
        activity = (
            f"<member><ActivityId>{_hex(group.name, 32)}</ActivityId><AutoScalingGroupName>{escape(group.name)}"
            f"</AutoScalingGroupName><Cause>At {group.activity} a user request update of AutoScalingGroup "
            f"constraints changed the desired capacity.</Cause><StartTime>{group.activity}</StartTime>"
            f"<EndTime>{group.activity}</EndTime><StatusCode>Successful</StatusCode><Progress>100</Progress></member>"
            if group.activity
            else ""
        )
        return _autoscaling_xml("DescribeScalingActivities", f"<Activities>{activity}</Activities>")

    def _group(self, name: str | None) -> Group:
        group = self.groups.get(name or "")
        if group is None:
            raise EC2Error("ValidationError", f"AutoScalingGroup name not found - {name}")
        return group

    def create_tags(self, params: dict[str, list[str]]) -> bytes:
        instances, tags = self._tagging(params)
        for instance in instances:
            instance.retag({**instance.tags, **{key: value or "" for key, value in tags}})
        return self._tagged("CreateTags")

    def delete_tags(self, params: dict[str, list[str]]) -> bytes:
        instances, tags = self._tagging(params)
        for instance in instances:
            kept = {
                key: value
                for key, value in instance.tags.items()
                if not any(key == k and (v is None or v == value) for k, v in tags)
            }
            instance.retag(kept)
        return self._tagged("DeleteTags")

    def _tagging(self, params: dict[str, list[str]]) -> tuple[list[Instance], list[tuple[str, str | None]]]:
        ids = _numbered(params, "ResourceId")
        if not ids:
            raise EC2Error("MissingParameter", "The request must contain the parameter resourceIdSet")
        if len(ids) > 1000:
            raise EC2Error("InvalidParameterValue", "Tagging is limited to 1000 resources per call")
        numbers = sorted({int(key.split(".")[1]) for key in params if key.startswith("Tag.")})
        tags = [(_first(params, f"Tag.{n}.Key") or "", _first(params, f"Tag.{n}.Value")) for n in numbers]
        return self._find(ids), tags

    def _tagged(self, action: str) -> bytes:
        self._changed()
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{NAMESPACE}">'
            f"<requestId>{uuid.uuid4()}</requestId><return>true</return></{action}Response>"
        ).encode()

    def put_events(self, request: dict[str, Any]) -> dict[str, Any]:
        """EventBridge PutEvents: entries accepted (and counted), none delivered anywhere."""
        entries = request.get("Entries") or []
        size = sum(14 + sum(len(str(v).encode()) for v in entry.values()) for entry in entries)
        if not 1 <= len(entries) <= 10 or size > 256 * 1024:
            raise EC2Error("ValidationException", f"{len(entries)} entries of {size} bytes: 1 to 10, 256 KB at most")
        with self._lock:
            self.calls["PutEvents"] += 1
            self.instance_ids["PutEvents"] += len(entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(uuid.uuid4())} for _ in entries]}

    def _batch(self, params: dict[str, list[str]]) -> list[Instance]:
        ids = _numbered(params, "InstanceId")
        if not ids:
            raise EC2Error("MissingParameter", "The request must contain the parameter InstanceId")
        return self._find(ids)

    def _transition(self, action: str, instances: list[Instance], moves: dict[str, tuple[str, str]]) -> bytes:
        """Move each instance (reported state, settled state); unmoved ones report their state."""
        items = []
        changed = False
        for instance in instances:
            previous = instance.state
            reported, settled = moves.get(previous, (previous, previous))
            if settled != previous:
                instance.state = settled
                changed = True
            items.append(
                f"<item><instanceId>{instance.instance_id}</instanceId>"
                f"<currentState><code>{STATE_CODES[reported]}</code><name>{reported}</name></currentState>"
                f"<previousState><code>{STATE_CODES[previous]}</code><name>{previous}</name></previousState></item>"
            )
        if changed:
            self._changed()
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{NAMESPACE}">'
            f"<requestId>{uuid.uuid4()}</requestId><instancesSet>{''.join(items)}</instancesSet></{action}Response>"
        ).encode()


def _tags_of(tail: bytes) -> dict[str, str]:
    """The tags in an instance's XML (as seeded)."""
    from xml.sax.saxutils import unescape

    section = tail.split(b"<tagSet>", 1)[1].split(b"</tagSet>", 1)[0].decode()
    pairs = re.findall(r"<item><key>(.*?)</key><value>(.*?)</value></item>", section)
    return {unescape(key): unescape(value) for key, value in pairs}


def _first(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _numbered(params: dict[str, list[str]], prefix: str) -> list[str]:
    values = []
    n = 1
    while f"{prefix}.{n}" in params:
        values.append(params[f"{prefix}.{n}"][0])
        n += 1
    return values


def _filters(params: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    filters = []
    n = 1
    while f"Filter.{n}.Name" in params:
        name = params[f"Filter.{n}.Name"][0]
        if name not in KNOWN_FILTERS and not name.startswith("tag:"):
            raise EC2Error("InvalidParameterValue", f"The filter '{name}' is invalid")
        filters.append((name, _numbered(params, f"Filter.{n}.Value")))
        n += 1
    return filters


def _members(params: dict[str, list[str]], prefix: str) -> list[dict[str, str]]:
    """The structures of a Query-API list (`Tags.member.N.Key`, ...), in order."""
    found: dict[int, dict[str, str]] = {}
    for key, values in params.items():
        parts = key.split(".")
        if len(parts) == 4 and parts[0] == prefix and parts[1] == "member" and parts[2].isdigit():
            found.setdefault(int(parts[2]), {})[parts[3]] = values[0]
    return [found[n] for n in sorted(found)]


def _group_filters(params: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    filters = []
    n = 1
    while f"Filters.member.{n}.Name" in params:
        name = params[f"Filters.member.{n}.Name"][0]
        if name not in GROUP_FILTERS and not name.startswith("tag:"):
            raise EC2Error("ValidationError", f"Filter name {name} is not valid")
        filters.append((name, _numbered(params, f"Filters.member.{n}.Values.member")))
        n += 1
    return filters


def _group_xml(group: Group) -> str:
    name = escape(group.name)
    low, high, desired = group.sizes
    tags = "".join(
        f"<member><ResourceId>{name}</ResourceId><ResourceType>auto-scaling-group</ResourceType>"
        f"<Key>{escape(key)}</Key><Value>{escape(value)}</Value><PropagateAtLaunch>false</PropagateAtLaunch></member>"
        for key, value in group.tags.items()
    )
    return (
        f"<member><AutoScalingGroupName>{name}</AutoScalingGroupName>"
        f"<AutoScalingGroupARN>arn:aws:autoscaling:{REGION}:{OWNER_ID}:autoScalingGroup:"
        f"{_hex(group.name, 8)}-{_hex(group.name + '1', 4)}-{_hex(group.name + '2', 4)}-{_hex(group.name + '3', 4)}-"
        f"{_hex(group.name + '4', 12)}:autoScalingGroupName/{name}</AutoScalingGroupARN>"
        f"<LaunchTemplate><LaunchTemplateId>lt-{_hex(group.name, 17)}</LaunchTemplateId>"
        f"<LaunchTemplateName>{name}</LaunchTemplateName><Version>$Default</Version></LaunchTemplate>"
        f"<MinSize>{low}</MinSize><MaxSize>{high}</MaxSize><DesiredCapacity>{desired}</DesiredCapacity>"
        f"<DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>{REGION}a</member>"
        f"<member>{REGION}b</member></AvailabilityZones><LoadBalancerNames/><TargetGroupARNs/>"
        f"<HealthCheckType>EC2</HealthCheckType><HealthCheckGracePeriod>300</HealthCheckGracePeriod><Instances/>"
        f"<CreatedTime>{LAUNCH_TIME}</CreatedTime><SuspendedProcesses/>"
        f"<VPCZoneIdentifier>subnet-{_hex('a', 17)},subnet-{_hex('b', 17)}</VPCZoneIdentifier><EnabledMetrics/>"
        f"<Tags>{tags}</Tags><TerminationPolicies><member>Default</member></TerminationPolicies>"
        f"<NewInstancesProtectedFromScaleIn>false</NewInstancesProtectedFromScaleIn>"
        f"<ServiceLinkedRoleARN>arn:aws:iam::{OWNER_ID}:role/aws-service-role/autoscaling.amazonaws.com/"
        f"AWSServiceRoleForAutoScaling</ServiceLinkedRoleARN><CapacityRebalance>false</CapacityRebalance></member>"
    )


def _autoscaling_xml(action: str, result: str | None) -> bytes:
    """An Auto Scaling Query-API answer: its result element (none for calls that return nothing)."""
    body = "" if result is None else f"<{action}Result>{result}</{action}Result>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{AUTOSCALING_NAMESPACE}">{body}'
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>"
    ).encode()


def _filter_test(name: str, values: list[str]) -> Any:
    match = _matcher(values)
    if name == "tag-key":
        return lambda instance: any(match(key) for key in instance.tags)
    if name == "tag-value":
        return lambda instance: any(match(value) for value in instance.tags.values())
    if name.startswith("tag:"):
        key = name[4:]
        return lambda instance: match(instance.tags.get(key))
    attribute = {"instance-state-name": "state", "instance-id": "instance_id", "instance-type": "instance_type"}[name]
    return lambda instance: match(getattr(instance, attribute))


ACCOUNTS_PAGE = 20  # ListAccounts' largest page
_SCOPE = re.compile(r"Credential=([^/,\s]+)/[0-9]{8}/([^/]+)/([^/]+)/aws4_request")
_ROLE_ACCOUNT = re.compile(r"^arn:aws[a-z-]*:iam::([0-9]{12}):role/")


class Organization:
    """Accounts x regions, each with its own copy of a fleet; STS, Organizations and Lambda as far as used."""

    def __init__(self, members: int, regions: list[str], latency: float, template: Fleet) -> None:
        self.accounts = [OWNER_ID] + [f"{100_000_000_000 + n:012d}" for n in range(1, members + 1)]
        self.regions = regions
        self.latency = latency
        self._template = template
        self._lock = threading.Lock()
        self._fleets: dict[tuple[str, str], Fleet] = {}
        self.calls: Counter[str] = Counter()
        self.invocations: list[Any] = []

    def fleet(self, account: str, region: str) -> Fleet:
        with self._lock:
            if (account, region) not in self._fleets:
                self._fleets[(account, region)] = self._template.clone()
            return self._fleets[(account, region)]

    def counts(self) -> dict[str, Any]:
        calls: Counter[str] = Counter(self.calls)
        instance_ids: Counter[str] = Counter()
        with self._lock:
            fleets = list(self._fleets.values())
        for fleet in fleets:
            counted = fleet.counts()
            calls.update(counted["calls"])
            instance_ids.update(counted["instance_ids"])
        return {"calls": dict(calls), "instance_ids": dict(instance_ids), "targets": len(fleets)}

    def take_invocations(self) -> list[Any]:
        with self._lock:
            taken, self.invocations = self.invocations, []
        return taken

    def count(self, action: str) -> None:
        with self._lock:
            self.calls[action] += 1

    def account_of(self, access_key: str) -> str:
        """The account a key belongs to: AssumeRole's keys carry it (ASIA + account ID); any other is the own."""
        return access_key[4:16] if access_key.startswith("ASIA") and access_key[4:16].isdigit() else OWNER_ID

    def ec2(self, account: str, region: str, params: dict[str, list[str]]) -> bytes:
        action = _first(params, "Action") or ""
        if action != "DescribeRegions":
            return self.fleet(account, region).call(action, params)
        self.count(action)
        items = "".join(
            f"<item><regionName>{name}</regionName><regionEndpoint>ec2.{name}.amazonaws.com</regionEndpoint>"
            f"<optInStatus>opt-in-not-required</optInStatus></item>"
            for name in self.regions
        )
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<DescribeRegionsResponse xmlns="{NAMESPACE}">'
            f"<requestId>{uuid.uuid4()}</requestId><regionInfo>{items}</regionInfo></DescribeRegionsResponse>"
        ).encode()

    def sts(self, account: str, params: dict[str, list[str]]) -> bytes:
        action = _first(params, "Action") or ""
        self.count(action)
        namespace = "https://sts.amazonaws.com/doc/2011-06-15/"
        if action == "GetCallerIdentity":
            result = f"<Account>{account}</Account><Arn>arn:aws:iam::{account}:user/bench</Arn><UserId>bench</UserId>"
        elif action == "AssumeRole":
            match = _ROLE_ACCOUNT.match(_first(params, "RoleArn") or "")
            if match is None:
                raise EC2Error("ValidationError", "RoleArn is not a role ARN")
            role_account = match.group(1)
            result = (
                f"<Credentials><AccessKeyId>ASIA{role_account}BNCH</AccessKeyId><SecretAccessKey>bench"
                f"</SecretAccessKey><SessionToken>bench</SessionToken><Expiration>2099-01-01T00:00:00Z</Expiration>"
                f"</Credentials><AssumedRoleUser><AssumedRoleId>AROABENCH:bench</AssumedRoleId>"
                f"<Arn>arn:aws:sts::{role_account}:assumed-role/bench/bench</Arn></AssumedRoleUser>"
            )
        else:
            raise EC2Error("InvalidAction", f"The action {action} is not valid for this web service.")
        return (
            f'<{action}Response xmlns="{namespace}"><{action}Result>{result}</{action}Result>'
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>"
        ).encode()

    def list_accounts(self, request: dict[str, Any]) -> dict[str, Any]:
        self.count("ListAccounts")
        offset = int(request.get("NextToken") or 0)
        page = self.accounts[offset : offset + ACCOUNTS_PAGE]
        answer: dict[str, Any] = {
            "Accounts": [
                {
                    "Id": account,
                    "Arn": f"arn:aws:organizations::{OWNER_ID}:account/o-bench/{account}",
                    "Email": f"{account}@example.com",
                    "Name": account,
                    "Status": "ACTIVE",
                    "State": "ACTIVE",
                    "JoinedMethod": "CREATED",
                    "JoinedTimestamp": 1767225600.0,
                }
                for account in page
            ]
        }
        if offset + ACCOUNTS_PAGE < len(self.accounts):
            answer["NextToken"] = str(offset + ACCOUNTS_PAGE)
        return answer

    def invoke(self, payload: bytes) -> None:
        self.count("Invoke")
        with self._lock:
            self.invocations.append(json.loads(payload or b"{}"))


def error_xml(code: str, message: str) -> bytes:
    """EC2's Query-API error body; also what tests.support.faults answers injected errors with."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK stalls
    fleet: Fleet
    organization: list[Organization]  # none, or the one being served (shared by the handler's threads)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def do_GET(self) -> None:
        organization = self.organization[0] if self.organization else None
        if self.path == "/_bench/counts":
            self._json(200, organization.counts() if organization else self.fleet.counts())
        elif self.path == "/_bench/invocations" and organization:
            self._json(200, organization.take_invocations())
        elif self.path == "/_bench/states":
            self._json(200, self.fleet.states())
        elif self.path == "/_bench/groups":
            self._json(200, self.fleet.group_sizes())
        elif self.path == "/_bench/ping":
            self._json(200, {"instances": len(self.fleet.instances)})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/_bench/seed":
            try:
                seed = json.loads(body)
                ids = self.fleet.seed(seed["instances"], seed.get("groups"), seed.get("xml", "full"))
            except (ValueError, KeyError, TypeError) as err:
                self._json(400, {"error": str(err)})
                return
            self._json(200, {"ids": ids})
        elif self.path == "/_bench/reset":
            self.fleet.reset()
            self.organization.clear()
            self._json(200, {})
        elif self.path == "/_bench/organization":
            try:
                config = json.loads(body)
                template = Fleet()
                template.seed(config["instances"], config.get("groups"))
                organization = Organization(
                    int(config["accounts"]), list(config["regions"]), float(config.get("latency", 0)), template
                )
            except (ValueError, KeyError, TypeError) as err:
                self._json(400, {"error": str(err)})
                return
            self.organization[:] = [organization]
            self._json(200, {"accounts": organization.accounts})
        elif self.organization:
            self._organization_call(self.organization[0], body)
        elif self.headers.get("X-Amz-Target", "").startswith("AWSEvents."):
            if not self.headers["X-Amz-Target"].endswith(".PutEvents"):
                self._json(400, {"__type": "UnknownOperationException", "message": "only PutEvents is served here"})
                return
            try:
                answer = self.fleet.put_events(json.loads(body or b"{}"))
            except EC2Error as err:
                self._json(err.status, {"__type": err.code, "message": err.message})
                return
            self._send(200, json.dumps(answer).encode(), "application/x-amz-json-1.1")
        else:
            params = parse_qs(body.decode(), keep_blank_values=True)
            try:
                answer = self.fleet.call(_first(params, "Action") or "", params)
            except EC2Error as err:
                self._send(err.status, error_xml(err.code, err.message), "text/xml;charset=UTF-8")
                return
            self._send(200, answer, "text/xml;charset=UTF-8")

    def _organization_call(self, organization: Organization, body: bytes) -> None:
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        access_key, region, service = scope.groups() if scope else ("", REGION, "ec2")
        account = organization.account_of(access_key)
        time.sleep(organization.latency)  # AWS's round trip and work, standing in
        if service == "lambda":
            organization.invoke(body)
            self._send(202, b"", "application/json")
            return
        if service == "organizations":
            if not self.headers.get("X-Amz-Target", "").endswith(".ListAccounts"):
                self._json(400, {"__type": "InvalidInputException", "Message": "only ListAccounts is served here"})
                return
            self._json(200, organization.list_accounts(json.loads(body or b"{}")))
            return
        params = parse_qs(body.decode(), keep_blank_values=True)
        try:
            if service == "sts":
                answer = organization.sts(account, params)
            else:  # EC2, and Auto Scaling: the fleet tells them apart by Action
                answer = organization.ec2(account, region, params)
        except EC2Error as err:
            self._send(err.status, error_xml(err.code, err.message), "text/xml;charset=UTF-8")
            return
        self._send(200, answer, "text/xml;charset=UTF-8")

    def log_message(self, *args: Any) -> None:
        pass


def make_server(port: int = 0, fleet: Fleet | None = None, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server bound to a loopback address (anything else is refused)."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"refusing to listen on non-loopback address {host}")
    handler = type("Handler", (_Handler,), {"fleet": fleet or Fleet(), "organization": []})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


@contextlib.contextmanager
def serve_in_thread(fleet: Fleet | None = None) -> Iterator[tuple[str, Fleet]]:
    """Run the endpoint in a thread of this process; yield (URL, fleet); stop it on exit."""
    server = make_server(0, fleet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.RequestHandlerClass.fleet
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--host", default="127.0.0.1", help="a loopback address")
    parser.add_argument("--fleet", help="JSON file of the form POST /_bench/seed takes, seeded at start")
    args = parser.parse_args(argv)
    fleet = Fleet()
    if args.fleet:
        with open(args.fleet, encoding="utf-8") as file:
            seed = json.load(file)
            fleet.seed(seed["instances"], seed.get("groups"))
    server = make_server(args.port, fleet, args.host)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"READY http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
