"""A whole organization: accounts from AWS Organizations, every enabled region, fan-out across invocations.

moto in process serves Organizations, STS, EC2 and Lambda. Lambda runs without
Docker: an asynchronous Invoke is answered, not run, and the tests read what the
function sent from its own Lambda client (botocore events), as conftest's
ApiRecorder does for EC2.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.ec2.models import ec2_backends

import ec2_powercycle
from ec2_powercycle import (
    OWN_ACCOUNT,
    ConfigError,
    DiscoveryError,
    RunError,
    RunMemo,
    Settings,
    Target,
    accounts_to_schedule,
    chunk_event,
    chunk_of_event,
    chunk_targets,
    discover_targets,
    handler,
    shared_aws,
)
from ec2_powercycle_cli import main
from tests.support.faults import injected_response, on_every_client, query_error_response
from tests.support.fleet import REGION, Fleet, moto_client
from tests.support.inbox import Inbox

OWN = "123456789012"  # moto's account, the organization's management account
OTHER_REGION = "us-east-1"
ROLE_NAME = "ec2-powercycle-spoke"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{OWN}:function:ec2-powercycle:live"
TIME = "2026-11-23T08:07:00Z"
STOP_AT_EIGHT = '{"stop": "0 8 * * *"}'


def role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/{ROLE_NAME}"


class LambdaContext:
    invoked_function_arn = FUNCTION_ARN


# --- Fixtures and helpers -------------------------------------------------------------


@dataclass(frozen=True)
class Organization:
    unit: str  # an OU under the root
    accounts: dict[str, str]  # in_unit, nested (in an OU inside the unit), outside (under the root), suspended


@pytest.fixture
def aws_lambda() -> Iterator[None]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield


@pytest.fixture
def organization(aws_lambda: None, monkeypatch: pytest.MonkeyPatch) -> Organization:
    org = moto_client("organizations")
    org.create_organization(FeatureSet="ALL")
    root = org.list_roots()["Roots"][0]["Id"]
    unit = org.create_organizational_unit(ParentId=root, Name="workloads")["OrganizationalUnit"]["Id"]
    nested = org.create_organizational_unit(ParentId=unit, Name="teams")["OrganizationalUnit"]["Id"]

    def account(name: str, parent: str) -> str:
        created = org.create_account(Email=f"{name}@example.com", AccountName=name)["CreateAccountStatus"]
        org.move_account(AccountId=created["AccountId"], SourceParentId=root, DestinationParentId=parent)
        return created["AccountId"]

    accounts = {
        "in_unit": account("in-unit", unit),
        "nested": account("nested", nested),
        "outside": account("outside", root),
        "suspended": account("suspended", nested),
    }
    org.close_account(AccountId=accounts["suspended"])  # moto's accounts start ACTIVE; closing suspends
    monkeypatch.setenv("EC2_POWERCYCLE_ORGANIZATION_ROLE", ROLE_NAME)
    return Organization(unit, accounts)


def fleet_in(account: str) -> Fleet:
    """Instances of an account: the own one, or another through a role assumed in moto."""
    return Fleet(None if account == OWN else role(account))


def launch(account: str, region: str) -> str:
    """One running instance due to stop at 08:00."""
    return fleet_in(account).launch(STOP_AT_EIGHT, region=region)[0]


def state(account: str, region: str, instance_id: str) -> str:
    return fleet_in(account).state(instance_id, region)


def enable_only(account: str, regions: set[str]) -> None:
    """moto lists every region in every account; AWS lists an account's enabled ones (no opt-in ones it has not)."""
    backend = ec2_backends[account][REGION]
    backend.regions = [region for region in backend.regions if region.name in regions]


class Calls:
    """The API calls the function's own clients make (botocore events on them), and errors to answer with."""

    def __init__(self) -> None:
        self.made: list[tuple[str, dict[str, Any]]] = []
        self.fail_invoke: Callable[[dict[str, Any]], bool] = lambda event: False

    def named(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.made if name == operation]

    def events(self) -> list[dict[str, Any]]:
        """The chunk events sent with Invoke."""
        return [json.loads(params["Payload"]) for params in self.named("Invoke")]

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-parameter-build.*.*", self._record)
        client.meta.events.register("before-send.lambda.Invoke", self._answer_invoke)
        return client

    def _record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.made.append((model.name, dict(params)))

    def _answer_invoke(self, request: Any, **_: Any) -> AWSResponse | None:
        if not self.fail_invoke(json.loads(request.body)):
            return None
        body = b'{"Type": "User", "message": "injected"}'
        headers = {"x-amzn-ErrorType": "InvalidRequestContentException", "Content-Type": "application/json"}
        return injected_response(request, 400, body, headers)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorder = Calls()
    for name in ("ec2_client", "sts_client", "organizations_client", "lambda_client"):
        on_every_client(monkeypatch, name, lambda client, *_: recorder.attach(client))
    return recorder


def covered(summary: dict[str, Any]) -> set[tuple[str, str]]:
    return {(target["account"], target["region"]) for target in summary["targets"]}


# --- Settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EC2_POWERCYCLE_ORGANIZATION_ROLE": role("111111111111")}, "ORGANIZATION_ROLE must be an IAM role name"),
        ({"EC2_POWERCYCLE_ORGANIZATION_ROLE": "path/name"}, "ORGANIZATION_ROLE must be an IAM role name"),
        ({"EC2_POWERCYCLE_ORGANIZATION_ROLE": "x" * 65}, "ORGANIZATION_ROLE must be an IAM role name"),
        ({"EC2_POWERCYCLE_ORGANIZATION_UNITS": "ou-ab12-cd34ef56"}, "ORGANIZATION_UNITS needs .*ORGANIZATION_ROLE"),
        (
            {"EC2_POWERCYCLE_ORGANIZATION_ROLE": ROLE_NAME, "EC2_POWERCYCLE_ORGANIZATION_UNITS": "r-ab12"},
            "ORGANIZATION_UNITS must be comma-separated organizational unit IDs",
        ),
        ({"EC2_POWERCYCLE_EXCLUDE_ACCOUNTS": "12345678901"}, "EXCLUDE_ACCOUNTS must be comma-separated 12-digit"),
        ({"EC2_POWERCYCLE_EXCLUDE_ACCOUNTS": "١٢٣٤٥٦٧٨٩٠١٢"}, "EXCLUDE_ACCOUNTS must be comma-separated 12-digit"),
        ({"EC2_POWERCYCLE_TARGETS_PER_INVOCATION": "0"}, "TARGETS_PER_INVOCATION must be a positive whole number"),
        ({"EC2_POWERCYCLE_TARGETS_PER_INVOCATION": "1001"}, "TARGETS_PER_INVOCATION must be at most 1000"),
        ({"EC2_POWERCYCLE_REGIONS": "all,eu-west-1"}, "REGIONS must be comma-separated region names"),
        ({"EC2_POWERCYCLE_REGIONS": "all", "AWS_REGION": ""}, "REGIONS=all needs AWS_REGION"),
        (
            {"EC2_POWERCYCLE_ROLE_ARNS": f"{role('111111111111')},arn:aws:iam::111111111111:role/other"},
            "ROLE_ARNS lists more than one role in account 111111111111",
        ),
        ({"EC2_POWERCYCLE_OWN_ACCOUNT": "false"}, "no account to schedule"),
    ],
)
def test_bad_organization_settings_fail_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"AWS_REGION": REGION, **environ})


def test_organization_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "AWS_REGION": REGION,
            "EC2_POWERCYCLE_REGIONS": "ALL",
            "EC2_POWERCYCLE_ORGANIZATION_ROLE": ROLE_NAME,
            "EC2_POWERCYCLE_ORGANIZATION_UNITS": "ou-ab12-cd34ef56, ou-ab12-0000aaaa",
            "EC2_POWERCYCLE_EXCLUDE_ACCOUNTS": "111111111111",
            "EC2_POWERCYCLE_TARGETS_PER_INVOCATION": "250",
            "EC2_POWERCYCLE_OWN_ACCOUNT": "false",
        }
    )
    assert (settings.all_regions, settings.regions, settings.organization_role) == (True, (REGION,), ROLE_NAME)
    assert settings.organization_units == ("ou-ab12-cd34ef56", "ou-ab12-0000aaaa")
    assert (settings.exclude_accounts, settings.targets_per_invocation) == (frozenset({"111111111111"}), 250)


# --- Which accounts (pure) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "members", "expected"),
    [
        ({}, ["222222222222", OWN], [(OWN, None), ("222222222222", role("222222222222"))]),
        (
            {"EC2_POWERCYCLE_ROLE_ARNS": "arn:aws:iam::222222222222:role/explicit"},
            ["333333333333", "222222222222"],
            [
                (OWN, None),
                ("222222222222", "arn:aws:iam::222222222222:role/explicit"),
                ("333333333333", role("333333333333")),
            ],
        ),
        ({"EC2_POWERCYCLE_EXCLUDE_ACCOUNTS": f"{OWN},222222222222"}, [OWN, "222222222222", "333333333333"], [
            ("333333333333", role("333333333333"))
        ]),
        ({"EC2_POWERCYCLE_OWN_ACCOUNT": "false"}, [OWN, "222222222222"], [("222222222222", role("222222222222"))]),
    ],
    ids=["own-once-with-its-own-credentials", "an-explicit-role-wins", "exclusions-own-included", "own-turned-off"],
)
def test_accounts_to_schedule(environ: dict[str, str], members: list[str], expected: list[Any]) -> None:
    settings = Settings.from_env({"AWS_REGION": REGION, "EC2_POWERCYCLE_ORGANIZATION_ROLE": ROLE_NAME, **environ})
    assert accounts_to_schedule(settings, OWN, members) == expected


# --- Discovery against moto's Organizations -------------------------------------------


@pytest.mark.parametrize("units", [False, True], ids=["whole-organization", "units-nested-included"])
def test_discovery_finds_the_active_accounts_and_the_own_account_once(
    organization: Organization, calls: Calls, monkeypatch: pytest.MonkeyPatch, units: bool
) -> None:
    accounts = organization.accounts
    members = ["in_unit", "nested"] + ([] if units else ["outside"])
    if units:
        monkeypatch.setenv("EC2_POWERCYCLE_ORGANIZATION_UNITS", organization.unit)
    found = discover_targets(Settings.from_env(), OWN_ACCOUNT, shared_aws())  # own ID unknown: asked of STS
    assert found.failures == []
    assert sorted((t.account, t.role_arn) for t in found.targets) == sorted(
        [(OWN, None)] + [(accounts[name], role(accounts[name])) for name in members]
    )
    assert len(calls.named("GetCallerIdentity")) == 1
    listed = {name for name, _ in calls.made if name.startswith("List")}
    assert listed == ({"ListAccountsForParent", "ListOrganizationalUnitsForParent"} if units else {"ListAccounts"})


def test_an_organization_that_cannot_be_listed_fails_the_run_before_anything_is_touched(
    organization: Organization, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = launch(OWN, REGION)
    monkeypatch.setenv("EC2_POWERCYCLE_ORGANIZATION_UNITS", f"{organization.unit},ou-zzzz-zzzzzzzz")  # no such unit
    with pytest.raises(DiscoveryError, match=r"cannot list the organization's accounts .*: ParentNotFoundException"):
        handler({"time": TIME}, LambdaContext())
    assert state(OWN, REGION, instance) == "running"
    assert not calls.named("DescribeInstances")


def test_all_regions_are_each_accounts_enabled_regions_read_once(
    organization: Organization, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_unit, outside = organization.accounts["in_unit"], organization.accounts["outside"]
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", "all")
    monkeypatch.setenv("EC2_POWERCYCLE_EXCLUDE_ACCOUNTS", organization.accounts["nested"])
    enable_only(OWN, {REGION})
    enable_only(in_unit, {REGION, OTHER_REGION})
    enable_only(outside, {OTHER_REGION, REGION, "ap-southeast-2"})
    instance = launch(in_unit, OTHER_REGION)
    summary = handler({"time": TIME}, LambdaContext())
    assert covered(summary) == {
        (OWN, REGION),
        (in_unit, REGION),
        (in_unit, OTHER_REGION),
        (outside, "ap-southeast-2"),
        (outside, REGION),
        (outside, OTHER_REGION),
    }
    assert len(calls.named("DescribeRegions")) == 3
    assert summary["stopped"] == [instance] and state(in_unit, OTHER_REGION, instance) == "stopped"


def test_an_account_whose_regions_cannot_be_listed_is_a_failed_target_only(
    organization: Organization, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_unit, nested = organization.accounts["in_unit"], organization.accounts["nested"]
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", "all")
    monkeypatch.setenv("EC2_POWERCYCLE_ORGANIZATION_UNITS", organization.unit)
    for account in (OWN, in_unit, nested):
        enable_only(account, {REGION})
    instance = launch(in_unit, REGION)

    def deny(request: Any, **_: Any) -> AWSResponse | None:
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        if role(nested).replace(":", "%3A").replace("/", "%2F") not in body:
            return None
        return query_error_response(request, 403, "AccessDenied", "not trusted")

    on_every_client(
        monkeypatch, "sts_client", lambda client, *_: client.meta.events.register("before-send.sts.AssumeRole", deny)
    )
    with pytest.raises(RunError, match=f"could not handle {nested}/{REGION}") as raised:
        handler({"time": TIME}, LambdaContext())
    summary = raised.value.summary
    assert summary["errors"] == [
        {
            "instance_id": None,
            "account": nested,
            "region": REGION,
            "error": f"{nested}/{REGION}: cannot list the enabled regions: cannot assume role {role(nested)}: "
            "AccessDenied: not trusted",
        }
    ]
    assert summary["stopped"] == [instance]
    assert covered(summary) == {(OWN, REGION), (in_unit, REGION), (nested, REGION)}


def test_plan_covers_what_a_run_covers(
    organization: Organization, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", "all")
    monkeypatch.setenv("EC2_POWERCYCLE_ORGANIZATION_UNITS", organization.unit)
    for account in (OWN, *organization.accounts.values()):
        enable_only(account, {REGION, OTHER_REGION})
    nested = organization.accounts["nested"]
    launched = {launch(account, region) for account in (OWN, nested) for region in (REGION, OTHER_REGION)}
    assert main(["plan", "--json", "--at", TIME]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert main(["run", "--dry-run", "--json", "--at", TIME]) == 0
    summary = json.loads(capsys.readouterr().out)
    planned = {entry["instance_id"] for entry in plan["instances"] if entry["now"]["action"] == "stop"}
    assert planned == set(summary["stopped"]) == launched
    accounts = (OWN, organization.accounts["in_unit"], nested)
    assert covered(summary) == {(account, region) for account in accounts for region in (REGION, OTHER_REGION)}


# --- Fan-out ----------------------------------------------------------------------------


@pytest.fixture
def two_regions_of_the_unit(organization: Organization, monkeypatch: pytest.MonkeyPatch) -> list[Target]:
    """The own account and the unit's two accounts, in two regions: six targets, in chunks of four."""
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", f"{REGION},{OTHER_REGION}")
    monkeypatch.setenv("EC2_POWERCYCLE_ORGANIZATION_UNITS", organization.unit)
    monkeypatch.setenv("EC2_POWERCYCLE_TARGETS_PER_INVOCATION", "4")
    members = [organization.accounts["in_unit"], organization.accounts["nested"]]
    accounts: list[tuple[str, str | None]] = [(OWN, None)] + [(member, role(member)) for member in members]
    return [Target(account, region, role_arn) for account, role_arn in accounts for region in (REGION, OTHER_REGION)]


def test_more_targets_than_one_invocation_takes_are_sent_to_the_function_in_chunks(
    two_regions_of_the_unit: list[Target], calls: Calls
) -> None:
    instance = launch(OWN, REGION)
    summary = handler({"time": TIME}, LambdaContext())
    invokes = calls.named("Invoke")
    assert {(call["FunctionName"], call["InvocationType"]) for call in invokes} == {(FUNCTION_ARN, "Event")}
    events = calls.events()
    assert [sorted(event) for event in events] == [["targets", "time"]] * 2
    assert {event["time"] for event in events} == {TIME}
    sent = [Target(**entry) for event in events for entry in event["targets"]]
    assert sorted(sent, key=str) == sorted(two_regions_of_the_unit, key=str)  # each target once, in one chunk
    assert sorted(len(event["targets"]) for event in events) == [2, 4]
    assert summary == {
        "time": TIME,
        "dry_run": False,
        "chunks": 2,
        "failed_chunks": 0,
        "targets": 6,
        "accounts": 3,
        "regions": 2,
        "errors": [],
    }
    assert not calls.named("DescribeInstances") and state(OWN, REGION, instance) == "running"


def test_without_a_lambda_context_every_target_runs_in_this_process(
    two_regions_of_the_unit: list[Target], calls: Calls
) -> None:
    summary = handler({"time": TIME})
    assert covered(summary) == {(t.account, t.region) for t in two_regions_of_the_unit}
    assert not calls.named("Invoke")


def test_a_chunk_whose_invoke_fails_is_reported_and_the_others_are_sent(
    two_regions_of_the_unit: list[Target], calls: Calls, organization: Organization, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = Inbox()
    monkeypatch.setenv(ec2_powercycle.NOTIFY_TOPIC_SETTING, inbox.topic)
    nested = organization.accounts["nested"]
    calls.fail_invoke = lambda event: any(target["account"] == nested for target in event["targets"])
    with pytest.raises(RunError, match="1 of 2 chunks not dispatched") as raised:
        handler({"time": TIME}, LambdaContext())
    summary = raised.value.summary
    assert (summary["chunks"], summary["failed_chunks"]) == (2, 1)
    failed = next(event for event in calls.events() if calls.fail_invoke(event))
    assert summary["errors"] == [
        {
            "instance_id": None,
            "account": target["account"],
            "region": target["region"],
            "error": f"{target['account']}/{target['region']}: not dispatched: Invoke failed: "
            "InvalidRequestContentException: injected",
        }
        for target in failed["targets"]
    ]
    assert len(calls.events()) == 2  # the other chunk was sent
    # The chunks' runs cannot tell of targets never sent: the dispatch's own notification does.
    [message] = inbox.messages()
    lost = len(failed["targets"])  # 2 or 4: how the accounts fall into chunks depends on their IDs
    assert message["Subject"] == f"ec2-powercycle: {lost} errors, {lost} targets failed; 1 of 2 chunks not dispatched"
    assert f"- target {nested}/{REGION} could not be handled: not dispatched: Invoke failed: " in message["Message"]
    assert "1 chunk sent of 6 targets in 3 accounts and 2 regions." in message["Message"]


def test_a_chunk_event_runs_exactly_its_targets_and_never_fans_out(
    organization: Organization, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = organization.accounts["nested"]
    monkeypatch.setenv("EC2_POWERCYCLE_TARGETS_PER_INVOCATION", "1")
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", f"{REGION},{OTHER_REGION}")  # a chunk names configured regions
    listed = {(OWN, REGION): launch(OWN, REGION), (nested, OTHER_REGION): launch(nested, OTHER_REGION)}
    left_out = launch(OWN, OTHER_REGION)
    event = chunk_event(
        datetime(2026, 11, 23, 8, 7, tzinfo=UTC), [Target(OWN, REGION), Target(nested, OTHER_REGION, role(nested))]
    )
    summary = handler(json.loads(json.dumps(event)), LambdaContext())
    assert sorted(summary["stopped"]) == sorted(listed.values())
    assert all(state(account, region, instance) == "stopped" for (account, region), instance in listed.items())
    assert state(OWN, OTHER_REGION, left_out) == "running"
    assert covered(summary) == set(listed)
    assert not calls.named("Invoke") and not [name for name, _ in calls.made if name.startswith("List")]


# --- Chunk events (pure) ----------------------------------------------------------------


CHUNK_SETTINGS = {
    "AWS_REGION": REGION,
    "EC2_POWERCYCLE_REGIONS": f"{REGION},{OTHER_REGION},ap-east-1",
    "EC2_POWERCYCLE_ORGANIZATION_ROLE": ROLE_NAME,
    "EC2_POWERCYCLE_ROLE_ARNS": "arn:aws:iam::333333333333:role/explicit",
    "EC2_POWERCYCLE_EXCLUDE_ACCOUNTS": "444444444444",
}
GOOD_TARGETS = [
    {"account": OWN, "region": REGION, "role_arn": None},
    {"account": "222222222222", "region": OTHER_REGION, "role_arn": role("222222222222")},
    {"account": "333333333333", "region": REGION, "role_arn": "arn:aws:iam::333333333333:role/explicit"},
]


def test_chunks_partition_the_targets_and_read_back_as_sent() -> None:
    targets = [Target(f"{n:012d}", region, role(f"{n:012d}")) for n in range(1, 4) for region in (REGION, "ap-east-1")]
    chunks = chunk_targets(targets, 4)
    assert [len(chunk) for chunk in chunks] == [4, 2] and [t for chunk in chunks for t in chunk] == targets
    settings = Settings.from_env(CHUNK_SETTINGS)
    event = json.loads(json.dumps(chunk_event(datetime(2026, 11, 23, 8, 7, tzinfo=UTC), chunks[0])))
    assert chunk_of_event(event, settings, OWN) == (datetime(2026, 11, 23, 8, 7, tzinfo=UTC), chunks[0])
    good = {"time": TIME, "targets": GOOD_TARGETS}
    assert [str(t) for t in chunk_of_event(good, settings, OWN)[1]] == [
        f"{OWN}/{REGION}",
        f"222222222222/{OTHER_REGION}",
        f"333333333333/{REGION}",
    ]


def _with_target(**changes: Any) -> dict[str, Any]:
    return {"time": TIME, "targets": [*GOOD_TARGETS[:1], {**GOOD_TARGETS[1], **changes}]}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"time": TIME, "targets": GOOD_TARGETS, "detail": {}}, "exactly the keys 'targets' and 'time'"),
        ({"targets": GOOD_TARGETS}, "exactly the keys 'targets' and 'time'"),
        ({"time": 1790000000, "targets": GOOD_TARGETS}, "'time' must be a UTC time"),
        ({"time": "2026-11-23T08:07:00+00:00", "targets": GOOD_TARGETS}, "'time' must be a UTC time"),
        ({"time": TIME + "\n", "targets": GOOD_TARGETS}, "'time' must be a UTC time"),
        ({"time": "2026-13-23T08:07:00Z", "targets": GOOD_TARGETS}, "not an ISO-8601 time"),
        ({"time": TIME, "targets": []}, "'targets' must be a list of 1 to 1000"),
        ({"time": TIME, "targets": {"account": OWN}}, "'targets' must be a list of 1 to 1000"),
        ({"time": TIME, "targets": GOOD_TARGETS[1:2] * 1001}, "'targets' must be a list of 1 to 1000"),
        ({"time": TIME, "targets": ["222222222222/us-east-1"]}, r"targets\[0\] must be an object"),
        (_with_target(extra=True), r"targets\[1\] must be an object with exactly the keys"),
        (_with_target(account=222222222222), r"targets\[1\].account must be a 12-digit"),
        (_with_target(account="22222222222"), r"targets\[1\].account must be a 12-digit"),
        (_with_target(account="٢٢٢٢٢٢٢٢٢٢٢٢"), r"targets\[1\].account must be a 12-digit"),
        (_with_target(region="eu-west-1\n"), r"targets\[1\].region must be a region name"),
        (_with_target(region="EU-WEST-1"), r"targets\[1\].region must be a region name"),
        (_with_target(role_arn=role("999999999999")), r"role_arn must be null or the ARN of a role in account 2222"),
        (_with_target(role_arn=role("222222222222") + "\n"), r"role_arn must be null or the ARN of a role"),
        (_with_target(role_arn="arn:aws:iam::222222222222:role/admin"), "neither in EC2_POWERCYCLE_ROLE_ARNS nor"),
        (_with_target(role_arn=None), "role_arn null means the function's own account, which 222222222222 is not"),
        (_with_target(account="444444444444", role_arn=role("444444444444")), "excluded by .*EXCLUDE_ACCOUNTS"),
        ({"time": TIME, "targets": [GOOD_TARGETS[1], GOOD_TARGETS[1]]}, "listed twice"),
        (_with_target(region="sa-east-1"), "region sa-east-1 is not in EC2_POWERCYCLE_REGIONS"),
    ],
)
def test_a_malformed_chunk_event_runs_nothing(
    event: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CHUNK_SETTINGS.items():
        monkeypatch.setenv(name, value)

    def no_aws(*_: Any, **__: Any) -> Any:
        raise AssertionError("an AWS client was made for a malformed event")

    for factory in ("ec2_client", "sts_client", "organizations_client", "lambda_client"):
        monkeypatch.setattr(ec2_powercycle, factory, no_aws)
    with pytest.raises(ConfigError, match=message):
        handler(event, LambdaContext())


def test_the_memo_lists_an_accounts_regions_once(aws_lambda: None, calls: Calls) -> None:
    settings = Settings.from_env({"AWS_REGION": REGION, "EC2_POWERCYCLE_REGIONS": "all"})
    memo = RunMemo()
    for _ in range(2):
        ec2_powercycle.enabled_regions(Target(OWN, REGION), settings, shared_aws(), memo)
    assert len(calls.named("DescribeRegions")) == 1


def test_an_execution_environment_keeps_a_bounded_number_of_role_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """A warm environment that runs chunk after chunk of an organization must not keep a client per target."""
    made: list[str] = []
    monkeypatch.setattr(ec2_powercycle, "ROLE_CLIENTS_KEPT", 3)
    monkeypatch.setattr(ec2_powercycle, "ec2_client", lambda region, *_: made.append(region) or object())
    aws, memo, settings = ec2_powercycle.Aws(session=object()), RunMemo(), Settings(regions=(REGION,))
    accounts = [f"{n:012d}" for n in range(1, 6)]
    for account in accounts:
        memo.roles.get(role(account), lambda: {"AccessKeyId": "ASIA-TEST"})
    targets = [Target(OWN, REGION)] + [Target(account, REGION, role(account)) for account in accounts]
    for target in targets + targets[3:]:  # the own client and the three latest role clients are kept
        aws.ec2(target, settings, memo)
    assert len(made) == 6
    aws.ec2(targets[1], settings, memo)
    assert len(made) == 7
