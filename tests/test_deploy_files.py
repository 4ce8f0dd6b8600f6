"""The deployment files agree with the code and with each other, and their linters are clean.

Dockerfile (hadolint; its entrypoint run as the image would run it), .circleci/config.yml,
iam/lambda-policy.json (against what the code really calls), template.yaml and
iam/spoke-role.yaml (cfn-lint), and the Lambda runtime they all name. iam/pipeline-policy.json is
held to what post-to-lambda.sh really calls in tests/test_post_to_lambda.py.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
import yaml
from moto import mock_aws

import ec2_powercycle
from tests.support.deploy import (
    PACKAGE_SH,
    POST_TO_LAMBDA_SH,
    REPO,
    b64sha256,
    lambda_trust_policy,
    parse_report,
    tool_path_env,
    venv_tool,
)
from tests.support.fleet import moto_client, role_client
from tests.support.local_endpoint import dummy_keys, endpoint_environment, moto_server

EC2_ACTIONS = {"ec2:DescribeInstances", "ec2:StartInstances", "ec2:StopInstances"}
# Auto Scaling groups carrying the tag: read, scaled to zero and back, their sizes kept in one tag meanwhile.
GROUP_WRITES = {"autoscaling:UpdateAutoScalingGroup", "autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"}
GROUP_ACTIONS = {"autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeScalingActivities"} | GROUP_WRITES
RUN_ACTIONS = EC2_ACTIONS | GROUP_ACTIONS
START_STOP = {"ec2:StartInstances", "ec2:StopInstances"}
ASSUME_ROLE = "sts:AssumeRole"
PUBLISH = "sns:Publish"
# Only with an organization, all regions or a fan-out: each in a statement of its own, added by template.yaml when used.
LIST_ACCOUNTS = {
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListOrganizationalUnitsForParent",
}
DESCRIBE_REGIONS = "ec2:DescribeRegions"
INVOKE_ITSELF = "lambda:InvokeFunction"
# Called only where a schedule names maintenance windows; read-only, so allowed without a condition.
DESCRIBE_WINDOWS = "ssm:DescribeMaintenanceWindows"
# Only with EC2_POWERCYCLE_STATUS_TAGS, and only with EC2_POWERCYCLE_EVENT_BUS (template.yaml's conditions).
STATUS_TAGS = {"ec2:CreateTags", "ec2:DeleteTags"}
# A group's status tags: the calls that write its size tag, in a statement of their own for the status keys.
GROUP_STATUS_TAGS = {"autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"}
PUT_EVENTS = "events:PutEvents"
OCCASIONAL = (
    {ASSUME_ROLE, DESCRIBE_REGIONS, INVOKE_ITSELF, PUT_EVENTS} | LIST_ACCOUNTS | STATUS_TAGS | GROUP_STATUS_TAGS
)
# The Lambda runtime: template.yaml's Runtime, the Dockerfile's Python, package.sh's default.
LAMBDA_RUNTIME = "python3.13"
RUNTIME_VERSION = LAMBDA_RUNTIME.removeprefix("python")
SPOKE_TEMPLATE = REPO / "iam" / "spoke-role.yaml"


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- Linters --------------------------------------------------------------------------


@pytest.mark.parametrize("script", [PACKAGE_SH, POST_TO_LAMBDA_SH], ids=lambda p: p.name)
def test_scripts_are_shellcheck_clean_strict_and_executable(script: Path):
    result = _run([str(venv_tool("shellcheck")), "--severity=info", str(script)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\nset -euo pipefail\n" in script.read_text()
    assert script.stat().st_mode & 0o111


def test_dockerfile_is_hadolint_clean():
    result = _run([str(venv_tool("hadolint")), str(REPO / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("template", [REPO / "template.yaml", SPOKE_TEMPLATE], ids=lambda p: p.name)
def test_templates_are_cfn_lint_clean(template: Path):
    result = _run([str(venv_tool("cfn-lint")), str(template)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfile -----------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _entrypoint() -> list[str]:
    entrypoints = [args for name, args in _dockerfile_instructions() if name == "ENTRYPOINT"]
    assert len(entrypoints) == 1
    return json.loads(entrypoints[0])


def _docker_context_files() -> list[str]:
    """The files .dockerignore lets into the image (it is an allow-list: '*' then '!name' lines)."""
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [line for line in lines if line and not line.startswith("#")]
    assert patterns[0] == "*"
    assert all(line.startswith("!") for line in patterns[1:])
    return [line[1:] for line in patterns[1:]]


def test_template_dockerfile_and_circleci_name_one_lambda_runtime():
    """package.sh's default is held to template.yaml's runtime by the zip it builds (tests/test_package.py)."""
    assert _template()["Resources"]["Function"]["Properties"]["Runtime"] == LAMBDA_RUNTIME
    base = [args for name, args in _dockerfile_instructions() if name == "FROM"]
    assert len(base) == 1 and re.fullmatch(rf"python:{re.escape(RUNTIME_VERSION)}-slim(-\w+)?", base[0])
    images = {job["docker"][0]["image"] for job in _circleci()["executors"].values()}
    assert f"cimg/python:{RUNTIME_VERSION}" in images


def test_dockerfile_matches_the_tested_cli_and_runs_unprivileged():
    instructions = _dockerfile_instructions()
    dev_pin = re.search(r"^awscli==(\S+)$", (REPO / "requirements-dev.txt").read_text(), re.MULTILINE)
    assert dev_pin and f"awscli=={dev_pin.group(1)}" in (REPO / "Dockerfile").read_text()
    users = [args for name, args in instructions if name == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_entrypoint_packages_and_deploys_the_copied_tree(tmp_path):
    """What `docker run --env ... ec2powercycle` does, without Docker: the ENTRYPOINT in a copy of the context."""
    workdir = tmp_path / "ec2-powercycle"
    workdir.mkdir()
    for name in _docker_context_files():
        shutil.copy2(REPO / name, workdir / name)
    with moto_server() as url:
        client_args = {"endpoint_url": url, "region_name": "eu-west-1"} | dummy_keys()
        role = boto3.client("iam", **client_args).create_role(
            RoleName="ec2-powercycle", AssumeRolePolicyDocument=lambda_trust_policy()
        )["Role"]["Arn"]
        placeholder = tmp_path / "placeholder.zip"
        with zipfile.ZipFile(placeholder, "w") as archive:
            archive.writestr("ec2_powercycle.py", "def handler(event, context):\n    return {}\n")
        lam = boto3.client("lambda", **client_args)
        lam.create_function(
            FunctionName="ec2-powercycle",
            Runtime=LAMBDA_RUNTIME,
            Role=role,
            Handler="ec2_powercycle.handler",
            Code={"ZipFile": placeholder.read_bytes()},
        )
        env = tool_path_env({**endpoint_environment(url), "AWS_LAMBDA_FUNCTION": "ec2-powercycle"})
        env["PYTHON"] = str(venv_tool("python"))
        result = _run(_entrypoint(), cwd=workdir, env=env, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        report = parse_report(result.stdout)
        built = Path(report["zip"])
        assert built.parent == workdir / "dist"
        assert report["CodeSha256"] == b64sha256(built)
        assert lam.get_function(FunctionName="ec2-powercycle", Qualifier="live")["Configuration"]["CodeSha256"] == (
            b64sha256(built)
        )


# --- CircleCI -------------------------------------------------------------------------


def _circleci() -> dict[str, Any]:
    return yaml.safe_load((REPO / ".circleci" / "config.yml").read_text())


def _run_commands(job: dict[str, Any]) -> list[str]:
    commands = []
    for step in job["steps"]:
        if isinstance(step, dict) and "run" in step:
            run = step["run"]
            commands.append(run if isinstance(run, str) else run["command"])
    return commands


def test_circleci_jobs_run_the_tested_commands_and_deploy_main_only():
    config = _circleci()
    jobs = config["jobs"]
    assert set(jobs) == {"test", "package", "deploy"}
    assert "make test" in _run_commands(jobs["test"])  # what .ci/run runs
    assert any("./package.sh" in shlex.split(command) for command in _run_commands(jobs["package"]))
    assert {"store_artifacts": {"path": "dist", "destination": "dist"}} in jobs["package"]["steps"]
    assert any("./post-to-lambda.sh" in shlex.split(command) for command in _run_commands(jobs["deploy"]))

    (workflow,) = config["workflows"].values()
    wired = {}
    for entry in workflow["jobs"]:
        name, options = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
        wired[name] = options
    assert set(wired) == set(jobs)
    assert wired["package"]["requires"] == ["test"]
    assert wired["deploy"]["requires"] == ["package"]
    assert wired["deploy"]["filters"] == {"branches": {"only": "main"}}
    assert wired["deploy"]["context"]
    assert "context" not in wired["test"] and "context" not in wired["package"]


def test_circleci_calls_only_scripts_and_targets_that_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", makefile, re.MULTILINE))
    for job in _circleci()["jobs"].values():
        for command in _run_commands(job):
            words = shlex.split(command)
            for index, word in enumerate(words):
                if word.startswith("./"):
                    path = REPO / word
                    assert path.is_file() and path.stat().st_mode & 0o111, word
                if word == "make":
                    assert words[index + 1] in targets, command
            for name in re.findall(r"[\w./-]+\.(?:txt|sh|py)\b", command):
                assert (REPO / name.removeprefix("./")).is_file(), name


# --- IAM: the Lambda's policy against the code ----------------------------------------


def _policy(name: str) -> dict[str, Any]:
    return json.loads((REPO / "iam" / name).read_text())


def _statements(policy: dict[str, Any], effect: str, actions: set[str]) -> list[dict[str, Any]]:
    return [s for s in policy["Statement"] if s["Effect"] == effect and set(_as_list(s["Action"])) == actions]


def test_lambda_policy_names_the_codes_tag_key_and_protected_values():
    policy = _policy("lambda-policy.json")
    (allow,) = _statements(policy, "Allow", START_STOP)
    assert allow["Condition"] == {"Null": {f"aws:ResourceTag/{ec2_powercycle.DEFAULT_TAG}": "false"}}
    protected = sorted(v.strip() for v in ec2_powercycle.DEFAULT_PROTECTED_ENVIRONMENTS.split(","))
    denies = {json.dumps(s["Condition"], sort_keys=True) for s in _statements(policy, "Deny", START_STOP)}
    assert denies == {
        json.dumps(
            {"StringEqualsIgnoreCase": {f"aws:ResourceTag/{ec2_powercycle.ENVIRONMENT_TAG}": protected}},
            sort_keys=True,
        ),
        json.dumps({"Null": {f"aws:ResourceTag/{ec2_powercycle.AUTOSCALING_TAG}": "false"}}, sort_keys=True),
    }


SPOKE_ROLE = "arn:aws:iam::111111111111:role/ec2-powercycle-spoke"


def _launch_due_groups(ec2: Any, autoscaling: Any) -> None:
    """A group due to stop and one at zero due to start at 18:00, and one that missed a stop at 17:30 (its
    scaling activities are read): every Auto Scaling call a run makes."""
    ec2.create_launch_template(LaunchTemplateName="due", LaunchTemplateData={"ImageId": "ami-12c6146b"})
    size_tag = ec2_powercycle.size_key(ec2_powercycle.DEFAULT_TAG)
    for name, schedule, sizes, extra in (
        ("stopping", '{"stop": "0 18 * * *"}', (1, 3, 1), {}),
        ("starting", '{"start": "0 18 * * *"}', (0, 3, 0), {size_tag: '{"min": 1, "max": 3, "desired": 1}'}),
        ("behind", '{"stop": "30 17 * * *"}', (0, 3, 1), {}),
    ):
        tags = {ec2_powercycle.DEFAULT_TAG: schedule, **extra}
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": "due"},
            MinSize=sizes[0],
            MaxSize=sizes[1],
            DesiredCapacity=sizes[2],
            AvailabilityZones=["eu-west-1a"],
            Tags=[
                {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                 "PropagateAtLaunch": False}
                for k, v in tags.items()
            ],
        )  # fmt: skip


def _group_calls_allowed(calls: list[tuple[str, dict[str, Any]]], policy: dict[str, Any]) -> list[str]:
    """The Auto Scaling writes among `calls` (action, params) that `policy` would refuse, on groups that carry
    only the schedule tag (and the size tag: it is ours)."""
    refused = []
    for action, params in calls:
        if action in GROUP_WRITES:
            keys = [tag["Key"] for tag in params.get("Tags", ())] if "Tags" in params else None
            if not _allowed(policy, action, {ec2_powercycle.DEFAULT_TAG: "{}"}, keys):
                refused.append(f"{action} {params}")
    return refused


def _launch_due_pair(ec2: Any) -> None:
    """One running instance due to stop and one stopped instance due to start at 18:00."""
    for schedule, state in (('{"stop": "0 18 * * *"}', "running"), ('{"start": "0 18 * * *"}', "stopped")):
        tags = [{"Key": ec2_powercycle.DEFAULT_TAG, "Value": schedule}]
        instance = ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]
        if state == "stopped":
            ec2.stop_instances(InstanceIds=[instance])


def _launch_patched(ec2: Any, ssm: Any) -> None:
    """A maintenance window, and one stopped instance whose schedule names it (its lead time is 17:50)."""
    ssm.create_maintenance_window(
        Name="patching", Schedule="cron(10 18 * * ? *)", Duration=1, Cutoff=0, AllowUnassociatedTargets=True
    )
    tags = [{"Key": ec2_powercycle.DEFAULT_TAG, "Value": '{"stop": "0 20 * * *", "maintenance_windows": ["patching"]}'}]
    instance = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, TagSpecifications=[{"ResourceType": "instance", "Tags": tags}]
    )["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[instance])


def _allowed_actions(statements: list[dict[str, Any]]) -> set[str]:
    return {a for s in statements if s["Effect"] == "Allow" for a in _as_list(s["Action"]) if not a.startswith("logs:")}


@pytest.mark.parametrize("role_arns", [(), (SPOKE_ROLE,)], ids=["own-account", "with-a-spoke-role"])
def test_policies_allow_the_codes_aws_calls_and_no_others(monkeypatch, role_arns):
    """Run the handler (moto in process) and record every API call it makes, by whose credentials.

    The function's own credentials need the EC2 calls, sns:Publish for the notification of a run
    with errors (here a bad tag), and sts:AssumeRole only with EC2_POWERCYCLE_ROLE_ARNS; a spoke
    role's credentials need the EC2 calls only, and DescribeMaintenanceWindows for a schedule that names
    a maintenance window (here one in each account).
    """
    calls: dict[str, set[str]] = {"own": set(), "spoke": set()}
    made: dict[str, list[tuple[str, dict[str, Any]]]] = {"own": [], "spoke": []}  # (action, params)
    real_call = botocore.client.BaseClient._make_api_call

    def recording_call(client, operation_name, api_params):
        assumed = client._request_signer._credentials.get_frozen_credentials().token is not None
        action = f"{client.meta.service_model.endpoint_prefix}:{operation_name}"
        calls["spoke" if assumed else "own"].add(action)
        made["spoke" if assumed else "own"].append((action, api_params))
        return real_call(client, operation_name, api_params)

    for name in ("AWS_ENDPOINT_URL", "EC2_POWERCYCLE_REGIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv(ec2_powercycle.ROLE_ARNS_SETTING, ",".join(role_arns))
    with mock_aws():
        own_ec2 = moto_client("ec2")
        _launch_due_pair(own_ec2)
        _launch_due_groups(own_ec2, moto_client("autoscaling"))
        own_ec2.run_instances(
            ImageId="ami-12c6146b",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {"ResourceType": "instance", "Tags": [{"Key": ec2_powercycle.DEFAULT_TAG, "Value": '{"stat": ""}'}]}
            ],
        )
        _launch_patched(own_ec2, moto_client("ssm"))
        topic = moto_client("sns").create_topic(Name="ec2-powercycle")["TopicArn"]
        monkeypatch.setenv(ec2_powercycle.NOTIFY_TOPIC_SETTING, topic)
        for role_arn in role_arns:
            _launch_due_pair(role_client("ec2", role_arn))
            _launch_due_groups(role_client("ec2", role_arn), role_client("autoscaling", role_arn))
            _launch_patched(role_client("ec2", role_arn), role_client("ssm", role_arn))
        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording_call)
        summary = ec2_powercycle.handler({"time": "2026-11-23T18:00:00Z"}, None)
    accounts = 1 + len(role_arns)
    assert (len(summary["started"]), len(summary["stopped"]), len(summary["errors"])) == (2 * accounts, accounts, 1)
    assert (len(summary["groups_started"]), len(summary["groups_stopped"])) == (accounts, accounts)
    assert calls["own"] == RUN_ACTIONS | {DESCRIBE_WINDOWS, PUBLISH} | ({ASSUME_ROLE} if role_arns else set())
    assert calls["spoke"] == (RUN_ACTIONS | {DESCRIBE_WINDOWS} if role_arns else set())
    # Each group write passes its statement's conditions: a group carrying the tag, the size tag's key only.
    assert _group_calls_allowed(made["own"], _policy("lambda-policy.json")) == []
    assert _group_calls_allowed(made["spoke"], _spoke_policy()) == []

    # The hub: lambda-policy.json allows these calls and nothing else; AssumeRole in a statement of its own,
    # marked as needed only with roles, on the spoke role's name; template.yaml adds it only with RoleArns.
    # (The organization's calls: test_policies_allow_an_organizations_calls_and_no_others.)
    policy = _policy("lambda-policy.json")["Statement"]
    assert _allowed_actions(policy) == RUN_ACTIONS | OCCASIONAL | {DESCRIBE_WINDOWS, PUBLISH}
    (publish,) = [s for s in policy if PUBLISH in _as_list(s["Action"])]
    assert _as_list(publish["Action"]) == [PUBLISH] and fnmatch.fnmatchcase(topic, publish["Resource"])
    (assume,) = [s for s in policy if ASSUME_ROLE in _as_list(s["Action"])]
    assert assume["Sid"].startswith("OnlyWithRoleArns") and _as_list(assume["Action"]) == [ASSUME_ROLE]
    assert all(any(fnmatch.fnmatchcase(arn, r) for r in _as_list(assume["Resource"])) for arn in role_arns)
    template_statements = _template_role_statements()
    unconditional = RUN_ACTIONS | {DESCRIBE_WINDOWS, PUBLISH}
    assert _allowed_actions([s for s in template_statements if "Fn::If" not in s]) == unconditional
    assert _allowed_actions([s["Fn::If"][1] for s in template_statements if "Fn::If" in s]) == OCCASIONAL
    # A spoke: its role allows exactly what is called with its credentials (DescribeRegions with all regions,
    # the status tags with them on: test_policies_allow_the_status_tags_and_events_calls).
    spoke_actions = RUN_ACTIONS | {DESCRIBE_REGIONS, DESCRIBE_WINDOWS} | STATUS_TAGS
    assert _allowed_actions(_spoke_policy()["Statement"]) == spoke_actions


@pytest.mark.parametrize("units", [False, True], ids=["whole-organization", "units"])
def test_policies_allow_an_organizations_calls_and_no_others(monkeypatch, units):
    """An organization, all regions and a fan-out: the dispatching run, then each chunk it sent, recorded by
    whose credentials. Each call is allowed by its conditional statement (template.yaml) or the spoke role."""
    calls: dict[str, set[str]] = {"own": set(), "spoke": set()}
    events: list[dict[str, Any]] = []
    real_call = botocore.client.BaseClient._make_api_call

    def recording_call(client, operation_name, api_params):
        assumed = client._request_signer._credentials.get_frozen_credentials().token is not None
        action = f"{client.meta.service_model.endpoint_prefix}:{operation_name}"
        calls["spoke" if assumed else "own"].add({"lambda:Invoke": INVOKE_ITSELF}.get(action, action))
        if operation_name == "Invoke":
            events.append(json.loads(api_params["Payload"]))
        return real_call(client, operation_name, api_params)

    class Context:
        invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:ec2-powercycle:live"

    for name in ("AWS_ENDPOINT_URL", "EC2_POWERCYCLE_REGIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv(ec2_powercycle.REGIONS_SETTING, "all")
    monkeypatch.setenv(ec2_powercycle.TARGETS_PER_INVOCATION_SETTING, "1")
    monkeypatch.setenv(ec2_powercycle.ORGANIZATION_ROLE_SETTING, SPOKE_ROLE.rsplit("/", 1)[1])
    with mock_aws(config={"lambda": {"use_docker": False}}):
        organizations = boto3.client("organizations", region_name="eu-west-1")
        organizations.create_organization(FeatureSet="ALL")
        root = organizations.list_roots()["Roots"][0]["Id"]
        unit = organizations.create_organizational_unit(ParentId=root, Name="unit")["OrganizationalUnit"]["Id"]
        member = organizations.create_account(Email="member@example.com", AccountName="member")
        member_id = member["CreateAccountStatus"]["AccountId"]
        organizations.move_account(AccountId=member_id, SourceParentId=root, DestinationParentId=unit)
        if units:
            monkeypatch.setenv(ec2_powercycle.ORGANIZATION_UNITS_SETTING, unit)
        from moto.ec2.models import ec2_backends

        for account in ("123456789012", member_id):  # moto lists every region; one is enough here
            ec2_backends[account]["eu-west-1"].regions = [
                r for r in ec2_backends[account]["eu-west-1"].regions if r.name == "eu-west-1"
            ]
        _launch_due_pair(boto3.client("ec2", region_name="eu-west-1"))
        _launch_due_pair(role_client("ec2", f"arn:aws:iam::{member_id}:role/{SPOKE_ROLE.rsplit('/', 1)[1]}"))
        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording_call)
        dispatched = ec2_powercycle.handler({"time": "2026-11-23T18:00:00Z"}, Context())
        summaries = [ec2_powercycle.handler(event, Context()) for event in events]
    assert (dispatched["chunks"], dispatched["errors"]) == (2, [])
    assert sum(len(summary["started"]) + len(summary["stopped"]) for summary in summaries) == 4
    listing = {"organizations:ListAccountsForParent", "organizations:ListOrganizationalUnitsForParent"}
    group_reads = {"autoscaling:DescribeAutoScalingGroups"}  # no group in this organization: read, never written
    assert calls["own"] == EC2_ACTIONS | group_reads | {ASSUME_ROLE, DESCRIBE_REGIONS, INVOKE_ITSELF} | (
        listing if units else {"organizations:ListAccounts"}
    )
    assert calls["spoke"] == EC2_ACTIONS | group_reads | {DESCRIBE_REGIONS}
    template = {s["Fn::If"][1]["Sid"]: s["Fn::If"][0] for s in _template_role_statements() if "Fn::If" in s}
    conditional = {
        action: template[s["Sid"]]
        for s in _policy("lambda-policy.json")["Statement"]
        for action in _as_list(s["Action"])
        if s["Sid"] in template
    }
    assert {action: conditional[action] for action in calls["own"] - RUN_ACTIONS} == {
        ASSUME_ROLE: "HasRolesToAssume",
        DESCRIBE_REGIONS: "AllRegions",
        INVOKE_ITSELF: "MayFanOut",
        **{action: "HasOrganizationRole" for action in calls["own"] & LIST_ACCOUNTS},
    }
    assert calls["spoke"] <= _allowed_actions(_spoke_policy()["Statement"])


@pytest.mark.parametrize("role_arns", [(), (SPOKE_ROLE,)], ids=["own-account", "with-a-spoke-role"])
def test_policies_allow_the_status_tags_and_events_calls(monkeypatch, role_arns):
    """Status tags and events on: every call the run makes, by whose credentials, is allowed: the tag writes
    for the two status keys on scheduled instances and groups only, PutEvents on the bus only, each in the
    template under its own setting's condition; a spoke's role allows its tag writes."""
    calls: dict[str, set[str]] = {"own": set(), "spoke": set()}
    tag_keys: set[str] = set()
    group_writes: dict[str, list[tuple[str, dict[str, Any]]]] = {"own": [], "spoke": []}  # (action, params)
    real_call = botocore.client.BaseClient._make_api_call

    def recording_call(client, operation_name, api_params):
        assumed = client._request_signer._credentials.get_frozen_credentials().token is not None
        action = f"{client.meta.service_model.endpoint_prefix}:{operation_name}"
        calls["spoke" if assumed else "own"].add(action)
        if action in STATUS_TAGS:
            tag_keys.update(tag["Key"] for tag in api_params["Tags"])
        if action in GROUP_STATUS_TAGS:
            group_writes["spoke" if assumed else "own"].append((action, api_params))
        return real_call(client, operation_name, api_params)

    idle = '{"start": "0 3 * * 6"}'
    stale = {ec2_powercycle.DEFAULT_TAG: idle, "ec2Powercycle:error": "old"}  # an error that has cleared: deleted

    def launch(ec2: Any, autoscaling: Any) -> None:
        _launch_due_pair(ec2)  # starts and stops: last-action tags
        instance_tags = [{"Key": key, "Value": value} for key, value in stale.items()]
        ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": instance_tags}],
        )  # fmt: skip
        _launch_due_groups(ec2, autoscaling)  # scaled: the groups' last-action tags
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName="cleared", LaunchTemplate={"LaunchTemplateName": "due"},
            MinSize=1, MaxSize=2, DesiredCapacity=1, AvailabilityZones=["eu-west-1a"],
            Tags=[{"ResourceId": "cleared", "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                   "PropagateAtLaunch": False} for k, v in stale.items()],
        )  # fmt: skip

    monkeypatch.delenv("EC2_POWERCYCLE_REGIONS", raising=False)
    monkeypatch.setenv(ec2_powercycle.ROLE_ARNS_SETTING, ",".join(role_arns))
    monkeypatch.setenv(ec2_powercycle.STATUS_TAGS_SETTING, "true")
    monkeypatch.setenv(ec2_powercycle.EVENT_BUS_SETTING, "default")
    with mock_aws():
        launch(moto_client("ec2"), moto_client("autoscaling"))
        for role_arn in role_arns:
            launch(role_client("ec2", role_arn), role_client("autoscaling", role_arn))
        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording_call)
        summary = ec2_powercycle.handler({"time": "2026-11-23T18:00:00Z"}, None)
    assert (summary["status_tag_errors"], summary["event_errors"], summary["errors"]) == (0, 0, [])
    assert calls["own"] == EC2_ACTIONS | GROUP_ACTIONS | STATUS_TAGS | {PUT_EVENTS} | (
        {ASSUME_ROLE} if role_arns else set()
    )
    assert calls["spoke"] == (EC2_ACTIONS | GROUP_ACTIONS | STATUS_TAGS if role_arns else set())
    assert tag_keys == {"ec2Powercycle:last-action", "ec2Powercycle:error"}
    statements = _policy("lambda-policy.json")["Statement"]
    assert calls["own"] <= _allowed_actions(statements)
    assert calls["spoke"] <= _allowed_actions(_spoke_policy()["Statement"])
    # The groups' tag writes (their sizes, and their status tags written and deleted): each allowed by its
    # statement's conditions, in both policies.
    written = {
        (action, tag["Key"]) for who in group_writes.values() for action, params in who for tag in params["Tags"]
    }
    assert written >= {("autoscaling:CreateOrUpdateTags", "ec2Powercycle:last-action")} | {
        ("autoscaling:DeleteTags", "ec2Powercycle:error")
    }
    assert len(group_writes["spoke"]) == (len(group_writes["own"]) if role_arns else 0)
    assert _group_calls_allowed(group_writes["own"], _policy("lambda-policy.json")) == []
    assert _group_calls_allowed(group_writes["spoke"], _spoke_policy()) == []
    (group_tags,) = [s for s in statements if s["Sid"] == "OnlyWithStatusTagsWriteThemOnGroups"]
    (spoke_group_tags,) = [s for s in _spoke_policy()["Statement"] if s["Sid"] == group_tags["Sid"]]
    assert group_tags == spoke_group_tags and set(_as_list(group_tags["Action"])) == GROUP_STATUS_TAGS
    # The tag writes: the status keys only, on instances with the schedule tag only, in both policies.
    (tags,) = [s for s in statements if set(_as_list(s["Action"])) == STATUS_TAGS]
    (spoke_tags,) = [s for s in _spoke_policy()["Statement"] if set(_as_list(s["Action"])) == STATUS_TAGS]
    assert (
        tags["Condition"]
        == spoke_tags["Condition"]
        == {
            "Null": {f"aws:ResourceTag/{ec2_powercycle.DEFAULT_TAG}": "false", "aws:TagKeys": "false"},
            "ForAllValues:StringEquals": {"aws:TagKeys": sorted(tag_keys, reverse=True)},
        }
    )
    assert tags["Resource"] == spoke_tags["Resource"] == "arn:aws:ec2:*:*:instance/*"
    (put,) = [s for s in statements if PUT_EVENTS in _as_list(s["Action"])]
    assert _as_list(put["Action"]) == [PUT_EVENTS]
    assert fnmatch.fnmatchcase("arn:aws:events:eu-west-1:123456789012:event-bus/default", put["Resource"])
    # template.yaml: the same statements, each only with its setting; PutEvents on the bus given only.
    template = {s["Fn::If"][1]["Sid"]: s["Fn::If"] for s in _template_role_statements() if "Fn::If" in s}
    assert template[tags["Sid"]][0] == "HasStatusTags" and template[put["Sid"]][0] == "HasEventBus"
    assert template[tags["Sid"]][1]["Condition"] == tags["Condition"]
    assert template[group_tags["Sid"]][0] == "HasStatusTags"  # its condition: with the regions' (test below)
    assert template[put["Sid"]][1]["Resource"] == {
        "Fn::If": [
            "EventBusIsArn",
            {"Ref": "EventBus"},
            {"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBus}"},
        ]
    }
    conditions = _template()["Conditions"]
    assert conditions["HasStatusTags"] == {"Fn::Equals": [{"Ref": "StatusTags"}, "true"]}
    assert conditions["HasEventBus"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "EventBus"}, ""]}]}
    variables = _template()["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert variables[ec2_powercycle.STATUS_TAGS_SETTING] == {"Ref": "StatusTags"}
    assert variables[ec2_powercycle.EVENT_BUS_SETTING] == {"Ref": "EventBus"}


@pytest.mark.parametrize(
    "bus",
    [
        "default",
        "ops/automation.events-1",
        "arn:aws:events:eu-west-1:111111111111:event-bus/ops",
        "arn:aws:sns:eu-west-1:111111111111:ops",
        "ops bus",
        "arn:aws:events:eu-west-1:1111:event-bus/ops",
    ],
)
def test_event_bus_parameter_takes_what_the_code_takes(bus):
    try:
        ec2_powercycle.Settings.from_env({"AWS_REGION": "eu-west-1", ec2_powercycle.EVENT_BUS_SETTING: bus})
        code = True
    except ec2_powercycle.ConfigError:
        code = False
    assert bool(re.fullmatch(_template()["Parameters"]["EventBus"]["AllowedPattern"], bus)) == code


def test_lambda_policy_has_no_wildcard_actions_and_only_its_log_group():
    policy = _policy("lambda-policy.json")
    actions = {a for s in policy["Statement"] for a in _as_list(s["Action"])}
    log_actions = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert actions == RUN_ACTIONS | OCCASIONAL | {DESCRIBE_WINDOWS, PUBLISH} | log_actions
    assert not [a for a in actions if "*" in a]
    (logs,) = [s for s in policy["Statement"] if any(a.startswith("logs:") for a in _as_list(s["Action"]))]
    assert all(":log-group:/aws/lambda/ec2-powercycle" in r for r in _as_list(logs["Resource"]))
    # Roles only, and only roles of the spoke template's default name (any account: docs say to narrow it).
    (assume,) = [s for s in policy["Statement"] if ASSUME_ROLE in _as_list(s["Action"])]
    role_name = _spoke()["Parameters"]["RoleName"]["Default"]
    assert _as_list(assume["Resource"]) == [f"arn:aws:iam::*:role/{role_name}"]
    assert "Condition" not in assume and assume["Effect"] == "Allow"
    # Publish on one topic, named like the function (as template.yaml names the topic it creates).
    (publish,) = [s for s in policy["Statement"] if PUBLISH in _as_list(s["Action"])]
    assert (publish["Effect"], publish["Resource"]) == ("Allow", "arn:aws:sns:*:*:ec2-powercycle")
    # Lambda: the function itself, its versions and aliases, nothing else.
    (invoke,) = [s for s in policy["Statement"] if INVOKE_ITSELF in _as_list(s["Action"])]
    function = "arn:aws:lambda:*:*:function:ec2-powercycle"
    assert invoke["Resource"] == [function, f"{function}:*"]


def _allowed(policy: dict[str, Any], action: str, tags: dict[str, str], tag_keys: list[str] | None = None) -> bool:
    """IAM's decision for `action` on an instance or group with `tags`, for the operators this policy uses.

    Tag keys in aws:ResourceTag/ are matched ignoring case, as IAM does; values as the operator says.
    `tag_keys` are the request's aws:TagKeys (the keys a tagging call writes or deletes), None when it has none.
    """
    lowered = {key.lower(): value for key, value in tags.items()}

    def matches(statement: dict[str, Any]) -> bool:
        if action not in _as_list(statement["Action"]):
            return False
        for operator, conditions in statement.get("Condition", {}).items():
            for key, expected in conditions.items():
                if key == "aws:TagKeys":
                    if operator == "Null":
                        ok = (tag_keys is None) == (expected == "true")
                    elif operator == "ForAllValues:StringEquals":
                        ok = set(tag_keys or ()) <= set(_as_list(expected))
                    else:
                        raise AssertionError(f"no model of {operator} on aws:TagKeys")
                    if not ok:
                        return False
                    continue
                tag = key.removeprefix("aws:ResourceTag/").lower()
                present = tag in lowered
                if operator == "Null":
                    ok = present != (expected == "true")
                elif operator == "StringEqualsIgnoreCase":
                    ok = present and lowered[tag].lower() in {e.lower() for e in _as_list(expected)}
                else:
                    raise AssertionError(f"no model of {operator}")
                if not ok:
                    return False
        return True

    statements = policy["Statement"]
    if any(s["Effect"] == "Deny" and matches(s) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and matches(s) for s in statements)


@pytest.mark.parametrize(
    "tags",
    [
        {"ec2Powercycle": "{}"},
        {"ec2Powercycle": "{}", "environment": "dev"},
        {"ec2Powercycle": "{}", "environment": "p"},
        {"ec2Powercycle": "{}", "Environment": "P"},
        {"ec2Powercycle": "{}", "ENVIRONMENT": "p"},
        {"ec2Powercycle": "{}", "aws:autoscaling:groupName": "web"},
        {"environment": "dev"},
        {},
    ],
)
@pytest.mark.parametrize("policy_name", ["lambda-policy.json", "spoke-role.yaml"])
def test_lambda_and_spoke_policies_and_the_codes_guard_agree(tags, policy_name):
    """Each policy lets through exactly the tagged instances that the code's own guard lets through."""
    policy = _policy(policy_name) if policy_name.endswith(".json") else _spoke_policy()
    protected = frozenset(v.strip().lower() for v in ec2_powercycle.DEFAULT_PROTECTED_ENVIRONMENTS.split(","))
    code_would_act = ec2_powercycle.DEFAULT_TAG in tags and ec2_powercycle.guard_reason(tags, protected) is None
    for action in sorted(START_STOP):
        assert _allowed(policy, action, tags) == code_would_act, (action, tags)


@pytest.mark.parametrize(
    "tags",
    [
        {"ec2Powercycle": "{}"},
        {"ec2Powercycle": "{}", "environment": "dev"},
        {"ec2Powercycle": "{}", "Environment": "P"},
        {"ec2Powercycle": "{}", "eks:nodegroup-name": "workers"},
        {"environment": "dev"},
    ],
)
@pytest.mark.parametrize("policy_name", ["lambda-policy.json", "spoke-role.yaml"])
def test_policies_scale_exactly_the_groups_the_codes_guard_lets_through_and_write_only_the_size_tag(tags, policy_name):
    policy = _policy(policy_name) if policy_name.endswith(".json") else _spoke_policy()
    protected = frozenset(v.strip().lower() for v in ec2_powercycle.DEFAULT_PROTECTED_ENVIRONMENTS.split(","))
    code_would_act = ec2_powercycle.DEFAULT_TAG in tags and ec2_powercycle.guard_reason(tags, protected) is None
    size_tag = ec2_powercycle.size_key(ec2_powercycle.DEFAULT_TAG)
    assert _allowed(policy, "autoscaling:UpdateAutoScalingGroup", tags) == code_would_act
    for action in ("autoscaling:CreateOrUpdateTags", "autoscaling:DeleteTags"):
        assert _allowed(policy, action, tags, [size_tag]) == code_would_act, (action, tags)
        assert not _allowed(policy, action, tags, [size_tag, "Name"])  # any other key: never
        assert not _allowed(policy, action, tags, [ec2_powercycle.DEFAULT_TAG])  # the schedule itself: never


# --- template.yaml --------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short tags (!Ref, !Sub, ...) as their long forms."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def _template() -> dict[str, Any]:
    return yaml.load((REPO / "template.yaml").read_text(), Loader=_CfnLoader)  # a SafeLoader subclass


def _spoke() -> dict[str, Any]:
    return yaml.load(SPOKE_TEMPLATE.read_text(), Loader=_CfnLoader)


def _template_role_statements() -> list[dict[str, Any]]:
    (inline,) = _template()["Resources"]["Role"]["Properties"]["Policies"]
    return inline["PolicyDocument"]["Statement"]


def _resolve(node: Any, parameters: dict[str, Any], pseudo: dict[str, str]) -> Any:
    """A template fragment with parameters at their defaults: Ref, Fn::Split, Fn::Join and Fn::Sub of them."""
    if isinstance(node, list):
        return [_resolve(item, parameters, pseudo) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"} and node["Ref"] in pseudo:
        return pseudo[node["Ref"]]
    if set(node) == {"Ref"} and node["Ref"] in parameters:
        parameter = parameters[node["Ref"]]
        default = str(parameter["Default"])
        return default.split(",") if parameter["Type"] == "CommaDelimitedList" else default
    if set(node) == {"Fn::Split"}:
        separator, value = node["Fn::Split"]
        return _resolve(value, parameters, pseudo).split(separator)
    if set(node) == {"Fn::Join"}:
        separator, values = node["Fn::Join"]
        return separator.join(_resolve(values, parameters, pseudo))
    if set(node) == {"Fn::Sub"}:
        text = node["Fn::Sub"]
        for name, value in {**pseudo, **{k: str(v.get("Default", "")) for k, v in parameters.items()}}.items():
            text = text.replace(f"${{{name}}}", value)
        return text
    return {key: _resolve(value, parameters, pseudo) for key, value in node.items()}


def _spoke_policy() -> dict[str, Any]:
    """The spoke role's permissions with its parameters' defaults, in any account (as the JSON policy is)."""
    spoke = _spoke()
    (inline,) = spoke["Resources"]["Role"]["Properties"]["Policies"]
    return _resolve(inline["PolicyDocument"], spoke["Parameters"], {"AWS::Partition": "aws", "AWS::AccountId": "*"})


def test_template_function_settings_are_the_codes():
    template = _template()
    function = template["Resources"]["Function"]["Properties"]
    assert function["Handler"] == "ec2_powercycle.handler"
    variables = function["Environment"]["Variables"]
    settings = {
        value for name, value in vars(ec2_powercycle).items() if name.endswith("_SETTING") and isinstance(value, str)
    }
    assert set(variables) <= settings  # no misspelt or retired setting
    core = ("TAG", "WINDOW", "TIMEZONE", "PROTECTED", "REGIONS", "DRY_RUN", "URL_ALLOW")
    core += ("ROLE_ARNS", "EXTERNAL_ID", "OWN_ACCOUNT", "MAX_WORKERS")
    core += ("ORGANIZATION_ROLE", "ORGANIZATION_UNITS", "EXCLUDE_ACCOUNTS", "TARGETS_PER_INVOCATION")
    core += ("MAINTENANCE_LEAD",)
    assert {getattr(ec2_powercycle, f"{name}_SETTING") for name in core} <= set(variables)
    assert variables[ec2_powercycle.TAG_SETTING] == ec2_powercycle.DEFAULT_TAG
    parameters = template["Parameters"]
    assert parameters["ProtectedEnvironments"]["Default"] == ec2_powercycle.DEFAULT_PROTECTED_ENVIRONMENTS
    assert parameters["Timezone"]["Default"] == ec2_powercycle.DEFAULT_TIMEZONE
    assert parameters["ScheduleMinutes"]["Default"] == ec2_powercycle.DEFAULT_WINDOW_MINUTES
    assert variables[ec2_powercycle.WINDOW_SETTING] == {"Ref": "ScheduleMinutes"}
    assert variables[ec2_powercycle.MAINTENANCE_LEAD_SETTING] == {"Ref": "MaintenanceLeadMinutes"}
    lead = parameters["MaintenanceLeadMinutes"]
    assert (lead["Default"], lead["MinValue"], lead["MaxValue"]) == (
        ec2_powercycle.DEFAULT_MAINTENANCE_LEAD_MINUTES,
        0,
        ec2_powercycle.MAINTENANCE_MAX_LEAD_MINUTES,
    )
    # Many accounts: the four settings, from their parameters.
    assert variables[ec2_powercycle.ROLE_ARNS_SETTING] == {"Fn::Join": [",", {"Ref": "RoleArns"}]}
    assert variables[ec2_powercycle.EXTERNAL_ID_SETTING] == {"Ref": "ExternalId"}
    assert variables[ec2_powercycle.OWN_ACCOUNT_SETTING] == {"Ref": "OwnAccount"}
    assert variables[ec2_powercycle.MAX_WORKERS_SETTING] == {"Ref": "MaxWorkers"}
    assert parameters["RoleArns"]["Type"] == "CommaDelimitedList" and parameters["RoleArns"]["Default"] == ""
    assert parameters["ExternalId"]["NoEcho"] is True and parameters["ExternalId"]["Default"] == ""
    assert parameters["OwnAccount"]["Default"] == "true"
    assert parameters["MaxWorkers"]["Default"] == ec2_powercycle.DEFAULT_MAX_WORKERS
    # A whole organization: the four settings, from their parameters.
    assert variables[ec2_powercycle.ORGANIZATION_ROLE_SETTING] == {"Ref": "OrganizationRole"}
    assert variables[ec2_powercycle.ORGANIZATION_UNITS_SETTING] == {"Fn::Join": [",", {"Ref": "OrganizationUnits"}]}
    assert variables[ec2_powercycle.EXCLUDE_ACCOUNTS_SETTING] == {"Fn::Join": [",", {"Ref": "ExcludeAccounts"}]}
    assert variables[ec2_powercycle.TARGETS_PER_INVOCATION_SETTING] == {"Ref": "TargetsPerInvocation"}
    assert parameters["TargetsPerInvocation"]["Default"] == ec2_powercycle.DEFAULT_TARGETS_PER_INVOCATION
    assert parameters["TargetsPerInvocation"]["MaxValue"] == ec2_powercycle.MAX_TARGETS_PER_INVOCATION
    # What the code refuses at start-up (no account to schedule), the stack refuses at deployment.
    assert template["Rules"]["AnAccountToSchedule"] == {
        "RuleCondition": {"Fn::Equals": [{"Ref": "OwnAccount"}, "false"]},
        "Assertions": [
            {
                "Assert": {
                    "Fn::Or": [
                        {"Fn::Not": [{"Fn::EachMemberEquals": [{"Ref": "RoleArns"}, ""]}]},
                        {"Fn::Not": [{"Fn::Equals": [{"Ref": "OrganizationRole"}, ""]}]},
                    ]
                },
                "AssertDescription": "OwnAccount false needs at least one role in RoleArns, or an OrganizationRole.",
            }
        ],
    }
    assert template["Rules"]["UnitsNeedTheOrganizationRole"]["Assertions"][0]["Assert"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "OrganizationRole"}, ""]}]
    }
    refused = [{"OWN_ACCOUNT": "false"}, {"ORGANIZATION_UNITS": "ou-ab12-cd34ef56"}]
    for environment in refused:
        with pytest.raises(ec2_powercycle.ConfigError):
            ec2_powercycle.Settings.from_env(
                {"AWS_REGION": "eu-west-1", **{f"EC2_POWERCYCLE_{k}": v for k, v in environment.items()}}
            )


def test_template_defaults_are_the_codes_defaults():
    """The function's environment at the parameters' defaults reads as the settings' own defaults."""
    template = _template()
    variables = dict(template["Resources"]["Function"]["Properties"]["Environment"]["Variables"])
    # Always a topic: the one given, or the one the stack creates (test_template_notifies_one_topic...).
    assert variables.pop(ec2_powercycle.NOTIFY_TOPIC_SETTING) == TOPIC
    environment = _resolve(variables, template["Parameters"], {"AWS::Region": "eu-west-1"})
    settings = ec2_powercycle.Settings.from_env({**environment, "AWS_REGION": "eu-west-1"})
    assert settings == ec2_powercycle.Settings(regions=("eu-west-1",))


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::111111111111:role/ec2-powercycle-spoke",
        "arn:aws-cn:iam::111111111111:role/path/ec2-powercycle-spoke",
        "arn:aws:iam::111111111111:user/someone",
        "arn:aws:iam::1111:role/short-account",
        "arn:aws:iam::111111111111:role/*",
        "*",
    ],
)
def test_role_arn_parameters_take_what_the_code_takes(arn):
    code = bool(ec2_powercycle._ROLE_ARN_PATTERN.match(arn))
    assert bool(re.fullmatch(_template()["Parameters"]["RoleArns"]["AllowedPattern"], arn)) == code
    assert bool(re.fullmatch(_spoke()["Parameters"]["SchedulerRoleArn"]["AllowedPattern"], arn)) == code


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sns:eu-west-1:111111111111:ec2-powercycle",
        "arn:aws-cn:sns:cn-north-1:111111111111:ops_alerts",
        "arn:aws:sns:eu-west-1:111111111111:ops.fifo",
        "arn:aws:sns:eu-west-1:1111:ops",
        "arn:aws:sqs:eu-west-1:111111111111:ops",
        "arn:aws:sns:eu-west-1:111111111111:*",
    ],
)
def test_topic_parameter_takes_what_the_code_takes(arn):
    code = bool(ec2_powercycle._TOPIC_ARN_PATTERN.match(arn))
    assert bool(re.fullmatch(_template()["Parameters"]["AlarmTopicArn"]["AllowedPattern"], arn)) == code


TOPIC = {"Fn::If": ["CreateTopic", {"Ref": "Topic"}, {"Ref": "AlarmTopicArn"}]}


def test_template_notifies_one_topic_alarms_on_our_metrics_and_the_functions_and_draws_them():
    template = _template()
    resources = template["Resources"]
    # The topic given, else one the stack creates; the function publishes to it and only to it.
    assert template["Conditions"]["CreateTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}
    assert resources["Topic"]["Condition"] == "CreateTopic"
    variables = resources["Function"]["Properties"]["Environment"]["Variables"]
    assert variables[ec2_powercycle.NOTIFY_TOPIC_SETTING] == TOPIC
    (publish,) = [s for s in _template_role_statements() if "Fn::If" not in s and PUBLISH in _as_list(s["Action"])]
    assert (_as_list(publish["Action"]), publish["Resource"]) == ([PUBLISH], TOPIC)
    # Alarms on our Errors and TargetsFailed and on the function's Errors and Throttles, all told to the topic.
    alarms = {
        (r["Properties"]["Namespace"], r["Properties"]["MetricName"]): r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    ours = ec2_powercycle.METRICS_NAMESPACE
    lambdas = "AWS/Lambda"
    assert set(alarms) == {(ours, "Errors"), (ours, "TargetsFailed"), (lambdas, "Errors"), (lambdas, "Throttles")}
    for alarm in alarms.values():
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "Function"}}]
        assert alarm["AlarmActions"] == [TOPIC]
        assert alarm["Period"] == {"Fn::FindInMap": ["RunPeriod", {"Ref": "ScheduleMinutes"}, "Seconds"]}
    periods = template["Mappings"]["RunPeriod"]
    assert {int(minutes) * 60 for minutes in periods} == {p["Seconds"] for p in periods.values()}
    assert {int(m) for m in periods} == set(template["Parameters"]["ScheduleMinutes"]["AllowedValues"])
    # The dashboard: JSON once substituted, graphing every metric the code prints and the timeout.
    body, _ = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    for name, value in {"AWS::Region": "eu-west-1", "Function": "ec2-powercycle", "Period": "900"}.items():
        body = body.replace(f"${{{name}}}", value)
    dashboard = json.loads(body.replace("${TimeoutSeconds}", "300"))
    graphed = {
        metric[1] for widget in dashboard["widgets"] for metric in widget["properties"]["metrics"] if metric[0] == ours
    }
    summary = {"instances": 0, "errors": [], "caught_up": [], "hibernated": [], "stopped_instance_hours": {}}
    summary |= {"status_tag_errors": 0, "event_errors": 0}
    summary |= {key: [] for key in ("started", "stopped", "skipped", "groups_started", "groups_stopped")}
    assert graphed == set(ec2_powercycle.run_metrics(summary))
    (duration,) = [w["properties"] for w in dashboard["widgets"] if "RunSeconds" in json.dumps(w)]
    assert duration["annotations"]["horizontal"][0]["value"] == 300


def test_template_role_assumes_the_listed_roles_only_and_only_when_there_are_some():
    template = _template()
    assert template["Conditions"]["HasRoleArns"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "RoleArns"}]}, ""]}]
    }
    assert template["Conditions"]["HasRolesToAssume"] == {
        "Fn::Or": [{"Condition": "HasRoleArns"}, {"Condition": "HasOrganizationRole"}]
    }
    statements = _template_role_statements()
    (conditional,) = [s for s in statements if "Fn::If" in s and ASSUME_ROLE in _as_list(s["Fn::If"][1]["Action"])]
    condition, statement, otherwise = conditional["Fn::If"]
    assert (condition, otherwise) == ("HasRolesToAssume", {"Ref": "AWS::NoValue"})
    organization_role = {"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${OrganizationRole}"}
    role_arns = {"Fn::If": ["HasRoleArns", {"Fn::Join": [",", {"Ref": "RoleArns"}]}, {"Ref": "AWS::NoValue"}]}
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == (
        "Allow",
        ASSUME_ROLE,
        {
            "Fn::If": [
                "HasOrganizationRole",
                {
                    "Fn::Split": [
                        ",",
                        {
                            "Fn::Join": [
                                ",",
                                [organization_role, role_arns],
                            ]
                        },
                    ]
                },
                {"Ref": "RoleArns"},
            ]
        },
    )
    # With an organization role, only roles inside the function's own organization are assumed.
    assert statement["Condition"] == {
        "Fn::If": [
            "HasOrganizationRole",
            {"StringEquals": {"aws:ResourceOrgID": "${aws:PrincipalOrgID}"}},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert not [s for s in statements if "Fn::If" not in s and any(a.startswith("sts:") for a in _as_list(s["Action"]))]
    # Its ARN is what each spoke stack trusts.
    assert template["Outputs"]["RoleArn"]["Value"] == {"Fn::GetAtt": ["Role", "Arn"]}


def test_template_role_has_the_policy_of_iam_json_limited_to_the_regions():
    statements = {s["Sid"]: s for s in (s["Fn::If"][1] if "Fn::If" in s else s for s in _template_role_statements())}
    files = {s["Sid"]: s for s in _policy("lambda-policy.json")["Statement"]}
    assert set(statements) == set(files)
    regions = {"Fn::If": ["HasRegions", {"Fn::Split": [",", {"Ref": "Regions"}]}, [{"Ref": "AWS::Region"}]]}
    only_listed = {"Fn::If": ["AllRegions", {"Ref": "AWS::NoValue"}, {"aws:RequestedRegion": regions}]}
    assert statements["FindScheduledInstances"]["Condition"] == {
        "Fn::If": ["AllRegions", {"Ref": "AWS::NoValue"}, {"StringEquals": {"aws:RequestedRegion": regions}}]
    }
    assert statements["StartAndStopOnlyTaggedInstances"]["Condition"]["StringEquals"] == only_listed
    assert _template()["Conditions"]["AllRegions"] == {"Fn::Equals": [{"Ref": "Regions"}, ec2_powercycle.ALL_REGIONS]}
    for sid, statement in files.items():
        ours = statements[sid]
        assert (ours["Effect"], set(_as_list(ours["Action"]))) == (
            statement["Effect"],
            set(_as_list(statement["Action"])) - {"logs:CreateLogGroup"},  # the stack makes the group
        )
    assert (
        statements["StartAndStopOnlyTaggedInstances"]["Condition"]["Null"]
        == files["StartAndStopOnlyTaggedInstances"]["Condition"]["Null"]
    )
    assert (
        statements["NeverTouchAutoScalingGroupInstances"]["Condition"]
        == files["NeverTouchAutoScalingGroupInstances"]["Condition"]
    )
    # Groups: read in the regions as instances are; written only where they carry the tag, the size tag only.
    assert statements["FindScheduledGroups"]["Condition"] == statements["FindScheduledInstances"]["Condition"]
    for sid in ("ScaleOnlyTaggedGroups", "WriteOnlyTheSizeTagOfTaggedGroups", "OnlyWithStatusTagsWriteThemOnGroups"):
        ours, theirs = statements[sid]["Condition"], files[sid]["Condition"]
        assert ours["StringEquals"] == only_listed
        assert {key: value for key, value in ours.items() if key != "StringEquals"} == theirs
    assert files["WriteOnlyTheSizeTagOfTaggedGroups"]["Condition"]["ForAllValues:StringEquals"] == {
        "aws:TagKeys": [ec2_powercycle.size_key(ec2_powercycle.DEFAULT_TAG)]
    }
    # A group's status tags: the keys, and the groups, of the instances' status tags.
    group_status = files["OnlyWithStatusTagsWriteThemOnGroups"]["Condition"]
    assert group_status == files["OnlyWithStatusTagsWriteThem"]["Condition"]
    assert group_status["ForAllValues:StringEquals"]["aws:TagKeys"] == list(
        ec2_powercycle.status_keys(ec2_powercycle.DEFAULT_TAG)
    )
    assert statements["NeverScaleEksNodeGroups"]["Condition"] == files["NeverScaleEksNodeGroups"]["Condition"]
    protected = statements["NeverTouchProtectedEnvironments"]["Condition"]
    assert statements["NeverScaleProtectedGroups"]["Condition"] == protected
    assert statements["NeverTouchProtectedEnvironments"]["Condition"] == {
        "StringEqualsIgnoreCase": {
            f"aws:ResourceTag/{ec2_powercycle.ENVIRONMENT_TAG}": {"Fn::Split": [",", {"Ref": "ProtectedEnvironments"}]}
        }
    }


def test_template_grants_the_organizations_permissions_only_when_used():
    conditions = _template()["Conditions"]
    assert conditions["HasOrganizationRole"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "OrganizationRole"}, ""]}]}
    default = ec2_powercycle.DEFAULT_TARGETS_PER_INVOCATION
    assert conditions["MayFanOut"] == {
        "Fn::Or": [
            {"Condition": "HasRolesToAssume"},
            {"Condition": "AllRegions"},
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "TargetsPerInvocation"}, default]}]},
        ]
    }
    # Otherwise a run has one target per listed region, and there are fewer regions than that: no fan-out.
    session = boto3.session.Session()
    partitions = session.get_available_partitions()
    assert len({r for partition in partitions for r in session.get_available_regions("ec2", partition)}) < default
    statements = {s["Fn::If"][1]["Sid"]: s["Fn::If"] for s in _template_role_statements() if "Fn::If" in s}
    assert {sid: condition for sid, (condition, _, otherwise) in statements.items()} == {
        "OnlyWithRoleArnsOrOrganizationRoleAssumeTheSpokeRoles": "HasRolesToAssume",
        "OnlyWithOrganizationRoleListTheAccounts": "HasOrganizationRole",
        "OnlyWithAllRegionsListTheEnabledRegions": "AllRegions",
        "OnlyForFanOutInvokeItself": "MayFanOut",
        "OnlyWithStatusTagsWriteThem": "HasStatusTags",
        "OnlyWithStatusTagsWriteThemOnGroups": "HasStatusTags",
        "OnlyWithEventBusPutEvents": "HasEventBus",
    }
    function = "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${FunctionName}"
    invoke = statements["OnlyForFanOutInvokeItself"][1]
    assert invoke["Resource"] == [{"Fn::Sub": function}, {"Fn::Sub": f"{function}:*"}]


def test_chunks_and_scheduled_events_never_act_after_the_next_run():
    """Asynchronous events older than the schedule's interval (a chunk held back by reserved concurrency) are
    dropped: run late with the original time, they could undo what the next run did. A failed run is not
    retried: the next run catches up, and retries would multiply the work of a failure that lasts."""
    template = _template()
    config = template["Resources"]["LiveAsyncConfig"]["Properties"]
    assert (config["FunctionName"], config["Qualifier"]) == ({"Ref": "Function"}, "live")
    assert config["MaximumRetryAttempts"] == 0
    age = {"Fn::FindInMap": ["AsyncEventAge", {"Ref": "ScheduleMinutes"}, "Seconds"]}
    assert config["MaximumEventAgeInSeconds"] == age
    [target] = template["Resources"]["Schedule"]["Properties"]["Targets"]
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == age  # EventBridge's delivery retries too
    ages = template["Mappings"]["AsyncEventAge"]
    assert {int(minutes) for minutes in ages} == set(template["Parameters"]["ScheduleMinutes"]["AllowedValues"])
    for minutes, age in ages.items():
        assert 60 <= age["Seconds"] < int(minutes) * 60


def test_template_schedule_logs_and_alarm():
    resources = _template()["Resources"]
    schedule = resources["Schedule"]["Properties"]
    assert schedule["ScheduleExpression"] == {"Fn::Sub": "rate(${ScheduleMinutes} minutes)"}
    (target,) = schedule["Targets"]
    assert target["Arn"] == {"Ref": "LiveAlias"}
    assert not {"Input", "InputPath", "InputTransformer"} & set(target)  # the scheduled event itself
    assert resources["LiveAlias"]["Properties"]["Name"] == "live"
    permission = resources["SchedulePermission"]["Properties"]
    assert (permission["FunctionName"], permission["Principal"]) == ({"Ref": "LiveAlias"}, "events.amazonaws.com")
    log_group = resources["LogGroup"]["Properties"]
    assert log_group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert log_group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${FunctionName}"}
    alarm = resources["ErrorsAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "Function"}}]


# --- iam/spoke-role.yaml: the role in each other account ------------------------------


def test_spoke_role_trusts_only_the_scheduler_role():
    spoke = _spoke()
    role = spoke["Resources"]["Role"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert (trust["Effect"], trust["Action"]) == ("Allow", ASSUME_ROLE)
    assert trust["Principal"] == {"AWS": {"Ref": "SchedulerRoleArn"}}  # one role ARN: no account root, no service
    assert trust["Condition"] == {
        "Fn::If": [
            "HasExternalId",
            {"StringEquals": {"sts:ExternalId": {"Ref": "ExternalId"}}},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert spoke["Conditions"]["HasExternalId"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ExternalId"}, ""]}]}
    parameters = spoke["Parameters"]
    assert "Default" not in parameters["SchedulerRoleArn"]  # must be given
    assert parameters["ExternalId"]["NoEcho"] is True and parameters["ExternalId"]["Default"] == ""
    # The name the hub's policy may assume, and the ARN to list in the hub's RoleArns.
    assert role["RoleName"] == {"Ref": "RoleName"}
    assert parameters["RoleName"]["Default"] == SPOKE_ROLE.rsplit("/", 1)[1]
    assert spoke["Outputs"]["RoleArn"]["Value"] == {"Fn::GetAtt": ["Role", "Arn"]}


def test_spoke_role_is_stackset_ready():
    """The same template and parameters in every account of a StackSet: nothing names an account or a region."""
    spoke = _spoke()
    body = json.dumps({key: spoke[key] for key in ("Conditions", "Resources", "Outputs")})
    assert not re.search(r"[0-9]{12}", body) and not re.search(r"[a-z]{2}-[a-z]+-[0-9]", body)
    assert {resource["Type"] for resource in spoke["Resources"].values()} == {"AWS::IAM::Role"}  # global: one region
    assert [name for name, parameter in spoke["Parameters"].items() if "Default" not in parameter] == [
        "SchedulerRoleArn"
    ]


def test_spoke_role_has_the_ec2_and_ssm_statements_of_the_lambda_policy():
    spoke = _spoke()
    assert spoke["Parameters"]["ProtectedEnvironments"]["Default"] == ec2_powercycle.DEFAULT_PROTECTED_ENVIRONMENTS
    (inline,) = spoke["Resources"]["Role"]["Properties"]["Policies"]
    raw = {s["Sid"]: s for s in inline["PolicyDocument"]["Statement"]}
    assert raw["NeverTouchProtectedEnvironments"]["Condition"] == {
        "StringEqualsIgnoreCase": {
            f"aws:ResourceTag/{ec2_powercycle.ENVIRONMENT_TAG}": {"Fn::Split": [",", {"Ref": "ProtectedEnvironments"}]}
        }
    }
    ours = _spoke_policy()["Statement"]
    files = [
        s
        for s in _policy("lambda-policy.json")["Statement"]
        if _as_list(s["Action"])[0].startswith(("ec2:", "autoscaling:", "ssm:"))
    ]
    assert len(files) == 13

    def normal(statement: dict[str, Any]) -> dict[str, Any]:
        return {**statement, "Action": sorted(_as_list(statement["Action"]))}

    assert [normal(s) for s in ours] == [normal(s) for s in files]


def test_the_tag_writers_scp_guards_exactly_the_keys_that_decide_what_the_function_does():
    """The SCP of docs/security.md: every key a run reads to decide (schedule, override, environment guard)."""
    statements = _policy("tag-writers-scp.json")["Statement"]
    decisive = {ec2_powercycle.DEFAULT_TAG, ec2_powercycle.override_key(ec2_powercycle.DEFAULT_TAG)}
    decisive.add(ec2_powercycle.ENVIRONMENT_TAG)
    size = {ec2_powercycle.size_key(ec2_powercycle.DEFAULT_TAG)}  # a group's: what a start restores

    def keys(statement: dict[str, Any]) -> set[str]:
        return set(statement["Condition"]["ForAnyValue:StringEquals"]["aws:TagKeys"])

    assert all(statement["Effect"] == "Deny" for statement in statements)
    guarded = {(statement["Resource"].split(":")[2], frozenset(keys(statement))) for statement in statements}
    assert guarded == {
        ("ec2", frozenset(decisive)),
        ("autoscaling", frozenset(decisive)),
        ("autoscaling", frozenset(size)),
    }
    actions = {a for s in statements for a in _as_list(s["Action"])}
    assert actions == {"ec2:CreateTags", "ec2:DeleteTags", "ec2:RunInstances"} | {
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
        "autoscaling:CreateAutoScalingGroup",
    }
    # The size tag: only the function writes it, with the hub's role or a spoke role (named ec2-powercycle-...).
    (size_writers,) = [statement for statement in statements if keys(statement) == size]
    exempt = size_writers["Condition"]["ArnNotLike"]["aws:PrincipalArn"]
    spoke_role = _spoke()["Parameters"]["RoleName"]["Default"]
    assert any(fnmatch.fnmatchcase(f"arn:aws:iam::111111111111:role/{spoke_role}", arn) for arn in exempt)
    assert any(fnmatch.fnmatchcase("arn:aws:iam::111111111111:role/ec2-powercycle-Role-1ABC", arn) for arn in exempt)
