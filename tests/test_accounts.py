"""Many accounts and regions: roles assumed through moto's STS, instances in each account's EC2."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from moto.sts.models import sts_backends

import ec2_powercycle
from ec2_powercycle import ConfigError, RunError, Settings, discover_targets, handler, run, shared_aws
from tests.support.faults import injected_response, on_every_client
from tests.support.fleet import Fleet

SPOKES = ("111111111111", "222222222222")
ROLE = "arn:aws:iam::{account}:role/ec2-powercycle-spoke"
REGIONS = ("eu-west-1", "us-east-1")
MONDAY_0807 = {"time": "2026-11-23T08:07:00Z"}
STOP_AT_EIGHT = '{"stop": "0 8 * * *"}'


def fleet_in(account: str | None) -> Fleet:
    """Instances of a spoke account (through a role assumed in moto) or of the own account (None)."""
    return Fleet(None if account is None else ROLE.format(account=account))


def launch(account: str | None, region: str, schedule: str = STOP_AT_EIGHT) -> str:
    return fleet_in(account).launch(schedule, region=region)[0]


def state(account: str | None, region: str, instance_id: str) -> str:
    return fleet_in(account).state(instance_id, region)


def scheduler_sessions(account: str) -> list[Any]:
    """The role sessions the scheduler opened in a spoke account (as moto's STS recorded them)."""
    return [role for role in sts_backends[account]["aws"].assumed_roles if role.session_name != "test-setup"]


@pytest.fixture
def spokes(aws: None, monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str | None, str], str]:
    """One instance due to stop in every (account, region): the own account is None."""
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", ",".join(REGIONS))
    monkeypatch.setenv("EC2_POWERCYCLE_ROLE_ARNS", ",".join(ROLE.format(account=a) for a in SPOKES))
    return {(account, region): launch(account, region) for account in (None, *SPOKES) for region in REGIONS}


def test_every_account_and_region_is_scheduled(spokes: dict[tuple[str | None, str], str]) -> None:
    summary = handler(MONDAY_0807)
    assert sorted(summary["stopped"]) == sorted(spokes.values())
    for (account, region), instance_id in spokes.items():
        assert state(account, region, instance_id) == "stopped"
    assert summary["accounts"] == ["own", *SPOKES]
    assert [(t["account"], t["region"], t["stopped"]) for t in summary["targets"]] == [
        (account or "own", region, [spokes[account, region]]) for account in (None, *SPOKES) for region in REGIONS
    ]


def test_each_role_is_assumed_once_per_run_with_a_named_session(
    spokes: dict[tuple[str | None, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "ec2-powercycle-prod")
    monkeypatch.setenv("EC2_POWERCYCLE_EXTERNAL_ID", "shared-secret-id")
    handler(MONDAY_0807)
    for account in SPOKES:
        [session] = scheduler_sessions(account)
        assert session.session_name == "ec2-powercycle-prod"
        assert session.external_id == "shared-secret-id"
        assert session.role_arn == ROLE.format(account=account)


def test_the_own_account_can_be_left_out(
    spokes: dict[tuple[str | None, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EC2_POWERCYCLE_OWN_ACCOUNT", "false")
    summary = handler(MONDAY_0807)
    assert summary["accounts"] == list(SPOKES)
    assert state(None, "eu-west-1", spokes[None, "eu-west-1"]) == "running"
    assert state("111111111111", "eu-west-1", spokes["111111111111", "eu-west-1"]) == "stopped"


def test_the_lambda_context_names_the_own_account(spokes: dict[tuple[str | None, str], str]) -> None:
    class Context:
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:ec2-powercycle:live"

    summary = handler(MONDAY_0807, Context())
    assert summary["accounts"] == ["123456789012", *SPOKES]


def test_a_role_that_cannot_be_assumed_fails_its_targets_only(
    spokes: dict[tuple[str | None, str], str], caplog: pytest.LogCaptureFixture
) -> None:
    session = boto3.session.Session()
    refused = ROLE.format(account=SPOKES[0])

    def deny(request: Any, **_: Any) -> Any:
        body = request.body.decode() if isinstance(request.body, bytes) else (request.body or "")
        if refused.replace(":", "%3A").replace("/", "%2F") in body:
            error = (
                b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not trusted"
                b"</Message></Error><RequestId>x</RequestId></ErrorResponse>"
            )
            return injected_response(request, 403, error)
        return None

    session.events.register("before-send.sts.AssumeRole", deny)
    settings = Settings.from_env()
    with pytest.raises(RunError, match="111111111111/eu-west-1, 111111111111/us-east-1") as raised:
        run(settings, ec2_powercycle.reference_time(MONDAY_0807), session=session)
    summary = raised.value.summary
    assert sorted(summary["stopped"]) == sorted(
        instance_id for (account, _), instance_id in spokes.items() if account != SPOKES[0]
    )
    assert [(e["account"], e["region"], e["error"]) for e in summary["errors"]] == [
        (SPOKES[0], region, f"{SPOKES[0]}/{region}: cannot assume role {refused}: AccessDenied: not trusted")
        for region in REGIONS
    ]
    assert state(SPOKES[0], "eu-west-1", spokes[SPOKES[0], "eu-west-1"]) == "running"


def test_targets_run_in_a_bounded_pool(
    spokes: dict[tuple[str | None, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EC2_POWERCYCLE_MAX_WORKERS", "2")
    threads: set[str] = set()
    on_every_client(
        monkeypatch,
        "ec2_client",
        lambda client, *_: client.meta.events.register(
            "before-send.ec2.*", lambda **_: threads.add(threading.current_thread().name)
        ),
    )
    summary = handler(MONDAY_0807)
    assert len(summary["stopped"]) == 6
    assert len(threads) == 2


def test_targets_are_every_account_region_pair() -> None:
    settings = Settings.from_env(
        {
            "EC2_POWERCYCLE_REGIONS": "eu-west-1,us-east-1",
            "EC2_POWERCYCLE_ROLE_ARNS": "arn:aws:iam::111111111111:role/a, arn:aws-cn:iam::333333333333:role/path/b",
        }
    )
    targets = discover_targets(settings, "999999999999", shared_aws()).targets
    assert [(t.account, t.region, t.role_arn) for t in targets] == [
        ("999999999999", "eu-west-1", None),
        ("999999999999", "us-east-1", None),
        ("111111111111", "eu-west-1", "arn:aws:iam::111111111111:role/a"),
        ("111111111111", "us-east-1", "arn:aws:iam::111111111111:role/a"),
        ("333333333333", "eu-west-1", "arn:aws-cn:iam::333333333333:role/path/b"),
        ("333333333333", "us-east-1", "arn:aws-cn:iam::333333333333:role/path/b"),
    ]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EC2_POWERCYCLE_ROLE_ARNS": "arn:aws:iam::1234:role/x"}, "EC2_POWERCYCLE_ROLE_ARNS must be"),
        ({"EC2_POWERCYCLE_ROLE_ARNS": "arn:aws:iam::111111111111:user/x"}, "EC2_POWERCYCLE_ROLE_ARNS must be"),
        ({"EC2_POWERCYCLE_OWN_ACCOUNT": "false"}, "no account to schedule"),
        ({"EC2_POWERCYCLE_OWN_ACCOUNT": "nope"}, "EC2_POWERCYCLE_OWN_ACCOUNT must be true/1/yes"),
        ({"EC2_POWERCYCLE_MAX_WORKERS": "0"}, "EC2_POWERCYCLE_MAX_WORKERS must be a positive whole number"),
    ],
)
def test_bad_account_settings_fail_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"AWS_REGION": "eu-west-1", **environ})
