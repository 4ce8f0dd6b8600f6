"""The command line as a user drives it: `python ec2_powercycle.py check|plan|run` in a subprocess.

plan and run talk to a live moto_server on 127.0.0.1 (one per module, reset before each
test); URL schedules come from a loopback schedule server. Assertions are on exit codes,
JSON output and the key lines of the text output.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.fleet import role_client
from tests.support.local_endpoint import DUMMY_CREDENTIALS, free_port, moto_server, reset
from tests.support.sample_fleet import LONDON_OFFICE, URL_PATH, schedule_server, seed

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "ec2_powercycle.py")
REGION = "eu-west-1"
IMAGE_ID = "ami-12c6146b"  # any ID works on moto
TAG_ERROR = "bad schedule in tag 'ec2Powercycle': "
MONDAY_MIDNIGHT = "2026-11-23T00:00:00Z"
MONDAY_MORNING = "2026-11-23T07:00:00Z"
LONDON_START_RUN = "2026-11-23T08:07:00Z"
LONDON_STOP_RUN = "2026-11-23T18:07:00Z"
RUNNING, STOPPED = "█", "·"
SHARE_70 = "70% stopped (118 of 168 h)"

# --- Fixtures and helpers ---------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def schedules() -> Iterator[str]:
    """A loopback schedule server: the sample fleet's document plus some bad ones."""
    documents = {
        URL_PATH: {"start": "0 7 * * 1-5", "stop": "0 19 * * 1-5", "tz": "Europe/Berlin"},
        "/schedules/typo.json": {"stat": "0 8 * * 1-5"},
        "/schedules/big.json": {"start": "0 8 * * *", "padding": "x" * 70_000},
    }
    with schedule_server(documents) as url:
        yield url


@pytest.fixture(scope="module")
def dead_url() -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def fresh(endpoint: str) -> str:
    """The endpoint, emptied."""
    reset(endpoint)
    return endpoint


def base_env(tmp: Path | None = None, **extra: str) -> dict[str, str]:
    """os.environ without AWS or ec2-powercycle settings, isolated from ~/.aws and instance metadata."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EC2_POWERCYCLE_", "NO_COLOR"))}
    missing = str((tmp or Path("/nonexistent")) / "no-such-aws-file")
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=missing,
        AWS_SHARED_CREDENTIALS_FILE=missing,
        PYTHONIOENCODING="utf-8",
    )
    env.update(extra)
    return env


def aws_env(endpoint: str, schedules: str = "", dead_url: str = "", **extra: str) -> dict[str, str]:
    """Dummy credentials, the region, the endpoint, and loopback URLs allowed."""
    allow = ",".join(f"{url}/schedules/" for url in (schedules, dead_url) if url)
    env = base_env(**DUMMY_CREDENTIALS, AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=endpoint)
    if allow:
        env["EC2_POWERCYCLE_URL_ALLOW"] = allow
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def ec2_of(endpoint: str, region: str = REGION) -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def launch(ec2: Any, tags: dict[str, str], state: str = "stopped") -> str:
    reply = ec2.run_instances(
        ImageId=IMAGE_ID,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )
    instance_id = reply["Instances"][0]["InstanceId"]
    if state == "stopped":
        ec2.stop_instances(InstanceIds=[instance_id])
    return instance_id


def states(ec2: Any) -> dict[str, str]:
    return {
        instance["InstanceId"]: instance["State"]["Name"]
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    }


@pytest.fixture
def env(endpoint: str, schedules: str, dead_url: str) -> dict[str, str]:
    """The environment of plan and run: the live endpoint, loopback schedule URLs allowed."""
    return aws_env(endpoint, schedules, dead_url)


@pytest.fixture
def fleet(fresh: str, schedules: str) -> dict[str, str]:
    """The sample fleet plus an Auto Scaling instance: name -> instance ID."""
    ec2 = ec2_of(fresh)
    ids = seed(ec2, schedules + URL_PATH, image_id=IMAGE_ID)
    ids["asg-worker"] = launch(
        ec2, {"Name": "asg-worker", "ec2Powercycle": json.dumps(LONDON_OFFICE), "aws:autoscaling:groupName": "workers"}
    )
    return ids


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# --- help -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["plan"]])  # every command shares the same epilog
def test_help_explains_the_tag_format(command: list[str]) -> None:
    result = cli(*command, "--help", env=base_env())
    assert result.returncode == 0
    assert '{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5", "tz": "Europe/London"}' in result.stdout
    assert "https:// URL" in result.stdout
    assert "enforce" in result.stdout
    pages = re.findall(r"docs/[\w-]+\.md", result.stdout)
    assert "docs/schedules.md" in pages, "the help points to the manual"
    assert all((ROOT / page).is_file() for page in pages), pages


def test_version_is_the_module_version(capsys: pytest.CaptureFixture[str]) -> None:
    import ec2_powercycle
    import ec2_powercycle_cli

    with pytest.raises(SystemExit) as exit_:
        ec2_powercycle_cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"ec2-powercycle {ec2_powercycle.__version__}\n"


def test_the_package_takes_its_version_from_the_module() -> None:
    """One place for the version: pyproject.toml reads __version__ rather than writing its own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "ec2_powercycle.__version__"}


def test_the_installed_console_script_is_the_command_line() -> None:
    """`make setup` installs the project into the venv (pip install --editable .): the command is on its PATH."""
    script = Path(sys.executable).parent / "ec2-powercycle"
    result = subprocess.run([str(script), "--help"], env=base_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ec2-powercycle ")
    assert "check" in result.stdout and "plan" in result.stdout and "run" in result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = cli(env=base_env())
    assert result.returncode == 2
    assert "usage:" in result.stderr


# --- check ----------------------------------------------------------------------


def test_check_shows_words_and_next_times_in_the_zone_and_in_utc() -> None:
    value = '{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5", "tz": "Europe/London"}'
    # Monday 1 June 2026: London is on summer time, one hour ahead of UTC.
    result = cli("check", value, "--at", "2026-06-01T06:00:00Z", "--count", "2", env=base_env())
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["valid", "schedule", "(inline", "JSON)"]
    assert "zone     Europe/London" in result.stdout
    assert "0 8 * * 1-5    At 08:00, Monday through Friday" in result.stdout
    assert "55 17 * * 1-5  At 17:55, Monday through Friday" in result.stdout
    assert ["start", "Mon", "2026-06-01", "08:00", "BST", "2026-06-01", "07:00", "UTC", "in", "1h"] in lines
    assert ["stop", "Mon", "2026-06-01", "17:55", "BST", "2026-06-01", "16:55", "UTC", "in", "10h", "55m"] in lines
    assert ["start", "Tue", "2026-06-02", "08:00", "BST", "2026-06-02", "07:00", "UTC", "in", "1d", "1h"] in lines
    assert sum(1 for line in lines if line and line[0] in ("start", "stop") and "UTC" in line) == 4


def test_check_json_gives_the_schedule_and_the_next_times() -> None:
    value = '{"start": ["0 8 * * MON-FRI", "0 10 * * SAT"], "stop": "0 18 * * *", "tz": "Europe/Berlin"}'
    result = cli("check", value, "--json", "--at", "2026-11-27T12:00:00Z", "--count", "2", env=base_env())
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert data["valid"] is True
    assert data["source"] == "inline"
    assert data["schedule"] == {
        "start": ["0 8 * * MON-FRI", "0 10 * * SAT"],
        "stop": ["0 18 * * *"],
        "tz": "Europe/Berlin",
        "enforce": False,
        "hibernate": False,
    }
    assert data["words"]["0 10 * * SAT"] == "At 10:00, only on Saturday"
    # Friday 12:00 UTC = 13:00 in Berlin: next stop Friday 18:00, next starts Saturday 10:00 and Monday 08:00.
    assert [(entry["action"], entry["time"]) for entry in data["next"]] == [
        ("stop", "2026-11-27T17:00:00Z"),
        ("start", "2026-11-28T09:00:00Z"),
        ("stop", "2026-11-28T17:00:00Z"),
        ("start", "2026-11-30T07:00:00Z"),
    ]
    assert data["next"][0]["local"] == "2026-11-27T18:00:00+01:00"


def test_check_follows_the_daylight_saving_rule_of_the_scheduler() -> None:
    # 01:30 does not exist in London on 29 March 2026: it fires when the clocks jump, at 01:00 UTC.
    value = '{"start": "30 1 * * *", "tz": "Europe/London"}'
    result = cli("check", value, "--json", "--at", "2026-03-28T12:00:00Z", "--count", "2", env=base_env())
    times = [entry["time"] for entry in json.loads(result.stdout)["next"]]
    assert times == ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]


def test_check_reads_standard_input_and_quiet_prints_nothing() -> None:
    valid = cli("check", "-", "--quiet", env=base_env(), stdin='{"stop": "0 20 * * *"}\n')
    assert (valid.returncode, valid.stdout, valid.stderr) == (0, "", "")
    invalid = cli("check", "-", "--quiet", env=base_env(), stdin='{"stop": "0 25 * * *"}\n')
    assert invalid.returncode == 1
    assert invalid.stdout == ""
    assert invalid.stderr.startswith("invalid: invalid cron '0 25 * * *' in 'stop'")


def test_check_uses_the_default_time_zone_setting() -> None:
    env = base_env(EC2_POWERCYCLE_TIMEZONE="America/New_York")
    result = cli("check", '{"start": "0 8 * * *"}', "--json", "--at", "2026-11-23T00:00:00Z", env=env)
    data = json.loads(result.stdout)
    assert data["schedule"]["tz"] == "America/New_York"
    assert data["next"][0]["time"] == "2026-11-23T13:00:00Z"


def test_check_needs_no_credentials_or_region(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    assert not any(name.startswith("AWS_ACCESS") or name == "AWS_REGION" for name in env)
    assert cli("check", json.dumps(LONDON_OFFICE), env=env).returncode == 0


def test_check_of_a_url_fetches_it_as_the_scheduler_does(schedules: str) -> None:
    env = base_env(EC2_POWERCYCLE_URL_ALLOW=schedules + "/schedules/")
    result = cli("check", schedules + URL_PATH, "--json", env=env)
    data = json.loads(result.stdout)
    assert (result.returncode, data["source"], data["schedule"]["tz"]) == (0, "url", "Europe/Berlin")


def test_check_with_a_bad_setting_fails_before_checking() -> None:
    result = cli("check", json.dumps(LONDON_OFFICE), env=base_env(EC2_POWERCYCLE_TIMEZONE="Mars/Olympus"))
    assert_clean_failure(result, 2, "EC2_POWERCYCLE_TIMEZONE: unknown time zone 'Mars/Olympus'")


def test_check_json_of_an_invalid_value() -> None:
    result = cli("check", '{"start": "0 8 * * *", "enforce": "yes"}', "--json", env=base_env())
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"valid": False, "error": "'enforce' must be true or false, got string 'yes'"}


BAD_INLINE = {
    "not JSON": '{"start": "0 8 * * *"',
    "not an object": '["0 8 * * 1-5"]',
    "no start or stop": '{"tz": "Europe/London"}',
    "unknown key": '{"stat": "0 8 * * 1-5", "stop": "0 18 * * 1-5"}',
    "non-string cron": '{"start": 8}',
    "non-boolean enforce": '{"start": "0 8 * * *", "enforce": "yes"}',
    "minute 61": '{"start": "61 8 * * *"}',
    "four fields": '{"start": "0 8 * *"}',
    "six fields": '{"start": "0 0 8 * * *"}',
    "unknown zone": '{"start": "0 8 * * *", "tz": "Mars/Olympus"}',
    "empty": "",
    "blank": "   ",
}
BAD_URLS = {
    "http refused": "{schedules}/other/fleet.json",
    "loopback https refused": "https://127.0.0.1:9/schedules/fleet.json",
    "private address refused": "https://10.0.0.1/schedules/fleet.json",
    "dead URL": "{dead_url}/schedules/fleet.json",
    "not 200": "{schedules}/schedules/missing.json",
    "oversize": "{schedules}/schedules/big.json",
    "bad document": "{schedules}/schedules/typo.json",
}


def bad_value(case: str, schedules: str, dead_url: str) -> str:
    return BAD_INLINE[case] if case in BAD_INLINE else BAD_URLS[case].format(schedules=schedules, dead_url=dead_url)


@pytest.fixture(scope="module")
def reports(endpoint: str, schedules: str, dead_url: str) -> dict[str, tuple[str, subprocess.CompletedProcess[str]]]:
    """For each bad value: the error one handler run (`run --json`) reports for an instance tagged
    with it, and the result of `check` on it (the checks run side by side, to save time)."""
    reset(endpoint)
    env = aws_env(endpoint, schedules, dead_url)
    cases = [*BAD_INLINE, *BAD_URLS]
    ec2 = ec2_of(endpoint)
    ids = {case: launch(ec2, {"ec2Powercycle": bad_value(case, schedules, dead_url)}) for case in cases}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(lambda case: cli("check", bad_value(case, schedules, dead_url), env=env), cases)
        checks = dict(zip(cases, results, strict=True))
    result = cli("run", "--json", "--at", LONDON_START_RUN, env=env)
    assert result.returncode == 1
    errors = {entry["instance_id"]: entry["error"] for entry in json.loads(result.stdout)["errors"]}
    return {case: (errors[ids[case]], checks[case]) for case in cases}


@pytest.mark.parametrize("case", [*BAD_INLINE, *BAD_URLS])
def test_check_prints_the_error_the_handler_reports(
    case: str, reports: dict[str, tuple[str, subprocess.CompletedProcess[str]]]
) -> None:
    handler_error, check = reports[case]
    assert check.returncode == 1
    assert check.stdout == ""
    assert check.stderr.startswith("invalid: ")
    assert handler_error == TAG_ERROR + check.stderr.removeprefix("invalid: ").rstrip("\n")


# --- plan -----------------------------------------------------------------------


def test_plan_json_shows_each_instance_and_why_it_is_left_alone(fleet: dict[str, str], env: dict[str, str]) -> None:
    result = cli("plan", "--json", "--at", MONDAY_MORNING, env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["time"], data["regions"], data["tag"], data["errors"]) == (
        MONDAY_MORNING,
        [REGION],
        "ec2Powercycle",
        [],
    )
    by_name = {entry["name"]: entry for entry in data["instances"]}
    assert set(by_name) == set(fleet)
    london = by_name["web-london-1"]
    assert (london["instance_id"], london["state"], london["source"], london["touched"]) == (
        fleet["web-london-1"],
        "stopped",
        "inline",
        True,
    )
    assert london["schedule"]["tz"] == "Europe/London"
    assert (london["next_start"], london["next_stop"]) == ("2026-11-23T08:00:00Z", "2026-11-23T18:00:00Z")
    new_york = by_name["api-new-york"]
    assert (new_york["next_start"], new_york["next_stop"]) == ("2026-11-23T13:00:00Z", "2026-11-23T23:30:00Z")
    berlin = by_name["build-berlin"]
    assert (berlin["source"], berlin["schedule"]["tz"], berlin["next_start"]) == (
        "url",
        "Europe/Berlin",
        "2026-11-24T06:00:00Z",
    )
    assert (by_name["nightly-stop"]["next_start"], by_name["nightly-stop"]["next_stop"]) == (
        None,
        "2026-11-23T20:00:00Z",
    )
    untouched = {name: entry["reason"] for name, entry in by_name.items() if not entry["touched"]}
    assert untouched == {
        "db-production": "protected environment 'P'",
        "asg-worker": "in Auto Scaling group 'workers'",
        "typo-in-tag": TAG_ERROR + "unknown key 'stat'; allowed keys: start, stop, tz, enforce, hibernate, skip",
    }


def test_plan_json_timeline_has_one_row_per_schedule(fleet: dict[str, str], env: dict[str, str]) -> None:
    result = cli("plan", "--json", "--at", MONDAY_MIDNIGHT, env=env)
    timeline = json.loads(result.stdout)["timeline"]
    assert (timeline["start"], timeline["hours"], timeline["zone"]) == (MONDAY_MIDNIGHT, 168, "UTC")
    rows = {row["schedule"]["tz"]: row for row in timeline["schedules"]}
    assert set(rows) == {"Europe/London", "America/New_York", "Europe/Berlin", "UTC"}
    london = rows["Europe/London"]
    assert london["instances"] == 2  # the protected and Auto Scaling instances are not counted
    assert sorted(london["instance_ids"]) == sorted([fleet["web-london-1"], fleet["web-london-2"]])
    weekday = [False] * 8 + [True] * 10 + [False] * 6
    assert london["running"] == weekday * 5 + [False] * 48
    assert (london["stopped_hours"], london["stopped_share"]) == (118, 0.7024)
    assert rows["UTC"]["running"] == [False] * 168  # stop-only: never started by the schedule
    assert rows["UTC"]["stopped_share"] == 1.0


def test_plan_text_lists_instances_and_shades_the_week(fleet: dict[str, str], env: dict[str, str]) -> None:
    result = cli("plan", "--at", MONDAY_MIDNIGHT, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Plan at 2026-11-23 00:00 UTC: 8 instances tagged ec2Powercycle in eu-west-1" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split() and line.split()[0] in fleet}
    assert rows["web-london-1"][:5] == ["web-london-1", fleet["web-london-1"], "stopped", "inline", "Europe/London"]
    assert " ".join(rows["web-london-1"][5:]) == (
        "Mon 2026-11-23 08:00 GMT (in 8h) Mon 2026-11-23 18:00 GMT (in 18h)"
    )
    assert rows["build-berlin"][3:5] == ["url", "Europe/Berlin"]
    assert "    not touched: protected environment 'P'" in out
    assert "    not touched: in Auto Scaling group 'workers'" in out
    assert f"    not touched: {TAG_ERROR}unknown key 'stat'" in out
    assert "Timeline from Mon 2026-11-23 00:00 UTC, one column per hour (█ running, · stopped)" in out
    weekday = STOPPED * 8 + RUNNING * 10 + STOPPED * 6
    london_row = next(line for line in out.splitlines() if line.startswith("S1 "))
    assert london_row.split() == ["S1", "2", "instances", weekday * 5 + STOPPED * 48, *SHARE_70.split()]
    assert "S1  start 0 8 * * MON-FRI, stop 0 18 * * MON-FRI (Europe/London)" in out
    ruler = next(line for line in out.splitlines() if "Mon 23" in line and "Tue 24" in line)
    assert ruler.index("Tue 24") - ruler.index("Mon 23") == 24


def test_plan_timeline_in_another_zone(fresh: str) -> None:
    schedule = {"start": "0 9 * * *", "stop": "0 17 * * *", "tz": "America/New_York"}
    launch(ec2_of(fresh), {"Name": "ny", "ec2Powercycle": json.dumps(schedule)})
    # 05:30 UTC is 00:30 in New York: the timeline starts at 00:00 there.
    args = ("plan", "--at", "2026-11-23T05:30:00Z", "--tz", "America/New_York", "--hours", "24")
    result = cli(*args, env=aws_env(fresh))
    assert "Timeline from Mon 2026-11-23 00:00 EST" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("S1 "))
    assert row.split()[3:] == [STOPPED * 9 + RUNNING * 8 + STOPPED * 7, "67%", "stopped", "(16", "of", "24", "h)"]
    data = json.loads(cli(*args, "--json", env=aws_env(fresh)).stdout)
    assert data["timeline"]["start"] == "2026-11-23T05:00:00Z"
    assert data["timeline"]["schedules"][0]["stopped_hours"] == 16


def test_plan_reads_another_tag_and_takes_the_endpoint_from_the_flag(fresh: str) -> None:
    ec2 = ec2_of(fresh)
    office = launch(ec2, {"Name": "office", "officeHours": json.dumps(LONDON_OFFICE)})
    launch(ec2, {"Name": "default-tag", "ec2Powercycle": json.dumps(LONDON_OFFICE)})
    env = aws_env("http://127.0.0.1:9")  # the environment's endpoint is dead: only the flag can work
    result = cli("plan", "--json", "--tag", "officeHours", "--endpoint-url", fresh, "--region", REGION, env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tag"] == "officeHours"
    assert [entry["instance_id"] for entry in data["instances"]] == [office]


def test_plan_with_no_tagged_instances(fresh: str) -> None:
    result = cli("plan", env=aws_env(fresh))
    assert result.returncode == 0
    assert "0 instances tagged ec2Powercycle" in result.stdout
    assert "No schedule to show" in result.stdout


def test_plan_notes_what_a_run_now_would_do(fresh: str) -> None:
    instance = launch(ec2_of(fresh), {"Name": "late", "ec2Powercycle": json.dumps(LONDON_OFFICE)})
    result = cli("plan", "--json", "--at", LONDON_START_RUN, env=aws_env(fresh))
    entry = json.loads(result.stdout)["instances"][0]
    assert entry["instance_id"] == instance
    assert entry["now"] == {"outcome": "act", "action": "start", "reason": "start due at 2026-11-23T08:00:00Z"}
    text = cli("plan", "--at", LONDON_START_RUN, env=aws_env(fresh)).stdout
    assert "    a run now: start due at 2026-11-23T08:00:00Z" in text


# --- run ------------------------------------------------------------------------


SPOKE = "111111111111"
SPOKE_ROLE = f"arn:aws:iam::{SPOKE}:role/ec2-powercycle-spoke"
OTHER_REGION = "us-east-1"


@pytest.mark.parametrize("own_account", ["true", "false"])
def test_plan_and_a_dry_run_agree_on_every_start_and_stop(fresh: str, own_account: str) -> None:
    """One decision path: over two accounts and two regions, plan's "act" entries are the dry run's actions."""
    office = json.dumps(LONDON_OFFICE)
    launched: dict[str, tuple[str, str]] = {}  # instance ID -> (account, region)
    for account, region in [("own", REGION), ("own", OTHER_REGION), (SPOKE, REGION), (SPOKE, OTHER_REGION)]:
        ec2 = ec2_of(fresh, region) if account == "own" else role_client("ec2", SPOKE_ROLE, region, endpoint_url=fresh)
        fleet = [
            ({"ec2Powercycle": office}, "stopped"),  # start due
            ({"ec2Powercycle": '{"stop": "5 8 * * *"}'}, "running"),  # stop due
            ({"ec2Powercycle": office}, "running"),  # already running: skipped
            ({"ec2Powercycle": '{"start": "0 12 * * *"}'}, "stopped"),  # nothing due
            ({"ec2Powercycle": office, "environment": "p"}, "stopped"),  # protected
            ({"ec2Powercycle": '{"stat": "0 8 * * *"}'}, "stopped"),  # bad tag
        ]
        for tags, state in fleet:
            launched[launch(ec2, tags, state)] = (account, region)
    env = aws_env(
        fresh,
        EC2_POWERCYCLE_ROLE_ARNS=SPOKE_ROLE,
        EC2_POWERCYCLE_OWN_ACCOUNT=own_account,
        EC2_POWERCYCLE_REGIONS=f"{REGION},{OTHER_REGION}",
    )
    plan = json.loads(cli("plan", "--json", "--at", LONDON_START_RUN, env=env).stdout)
    run = json.loads(cli("run", "--dry-run", "--json", "--at", LONDON_START_RUN, env=env).stdout)
    planned = {
        action: sorted(entry["instance_id"] for entry in plan["instances"] if entry["now"]["action"] == action)
        for action in ("start", "stop")
    }
    assert planned == {"start": sorted(run["started"]), "stop": sorted(run["stopped"])}
    covered = {(entry["account"], entry["region"]) for entry in plan["instances"]}
    assert covered == {(target["account"], target["region"]) for target in run["targets"]}
    expected_accounts = {"own", SPOKE} if own_account == "true" else {SPOKE}
    assert {account for account, _ in covered} == expected_accounts
    assert len(run["started"]) == len(run["stopped"]) == 2 * len(expected_accounts)
    assert all(launched[instance_id][0] in expected_accounts for instance_id in run["started"] + run["stopped"])


def test_run_at_a_start_time_then_a_stop_time(fleet: dict[str, str], endpoint: str, env: dict[str, str]) -> None:
    ec2 = ec2_of(endpoint)
    result = cli("run", "--json", "--at", LONDON_START_RUN, env=env)
    assert result.returncode == 1  # the typo is an error
    summary = json.loads(result.stdout)
    assert summary["time"] == LONDON_START_RUN
    assert sorted(summary["started"]) == sorted([fleet["web-london-1"], fleet["web-london-2"]])
    assert summary["stopped"] == []
    assert {entry["instance_id"]: entry["reason"] for entry in summary["skipped"]} == {
        fleet["db-production"]: "protected environment 'P'",
        fleet["asg-worker"]: "in Auto Scaling group 'workers'",
    }
    assert [entry["instance_id"] for entry in summary["errors"]] == [fleet["typo-in-tag"]]
    assert states(ec2)[fleet["web-london-1"]] == "running"

    text = cli("run", "--at", LONDON_STOP_RUN, env=env)
    assert text.returncode == 1
    lines = [line.split() for line in text.stdout.splitlines()]
    assert lines[0][:4] == ["Run", "at", "2026-11-23", "18:07"]
    assert ["stopped", "web-london-1", fleet["web-london-1"]] in lines
    assert ["stopped", "web-london-2", fleet["web-london-2"]] in lines
    assert ["skipped", "db-production", fleet["db-production"], "protected", "environment", "'P'"] in lines
    assert lines[-1] == ["0", "started,", "2", "stopped,", "3", "skipped,", "1", "failed"]
    assert any(line[:3] == ["failed", "typo-in-tag", fleet["typo-in-tag"]] for line in lines)
    assert states(ec2)[fleet["web-london-1"]] == "stopped"


def test_run_dry_run_changes_nothing(fleet: dict[str, str], endpoint: str, env: dict[str, str]) -> None:
    before = states(ec2_of(endpoint))
    result = cli("run", "--dry-run", "--at", LONDON_START_RUN, env=env)
    assert "(dry run: nothing changed)" in result.stdout.splitlines()[0]
    assert ["started", "web-london-1", fleet["web-london-1"], "dry", "run:", "left", "as", "it", "is"] in [
        line.split() for line in result.stdout.splitlines()
    ]
    assert states(ec2_of(endpoint)) == before


def test_run_without_errors_exits_zero(fresh: str) -> None:
    instance = launch(ec2_of(fresh), {"Name": "web", "ec2Powercycle": json.dumps(LONDON_OFFICE)})
    result = cli("run", "--json", "--at", LONDON_START_RUN, env=aws_env(fresh))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["started"] == [instance]
    quiet = cli("run", "--at", "2026-11-23T12:07:00Z", env=aws_env(fresh))
    assert quiet.returncode == 0
    assert "nothing due" in quiet.stdout


def test_run_in_two_regions_names_each_region(fresh: str) -> None:
    dublin = launch(ec2_of(fresh), {"Name": "dublin", "ec2Powercycle": json.dumps(LONDON_OFFICE)})
    virginia_ec2 = boto3.client(
        "ec2", endpoint_url=fresh, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    virginia = launch(virginia_ec2, {"Name": "virginia", "ec2Powercycle": json.dumps(LONDON_OFFICE)})
    args = ("run", "--region", REGION, "--region", "us-east-1", "--at", LONDON_START_RUN)
    result = cli(*args, env=aws_env(fresh))
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["WHAT", "NAME", "INSTANCE", "REGION", "NOTE"] in lines
    assert ["started", "dublin", dublin, REGION] in lines
    assert ["started", "virginia", virginia, "us-east-1"] in lines
    plan = json.loads(cli("plan", "--json", "--region", f"{REGION},us-east-1", env=aws_env(fresh)).stdout)
    assert plan["regions"] == [REGION, "us-east-1"]
    assert {entry["region"] for entry in plan["instances"]} == {REGION, "us-east-1"}


# --- expected problems: a message, no traceback ---------------------------------------


def test_no_credentials(tmp_path: Path, endpoint: str) -> None:
    env = base_env(tmp_path, AWS_REGION=REGION, AWS_ENDPOINT_URL=endpoint)
    for command in ("plan", "run"):
        assert_clean_failure(cli(command, env=env), 2, "no AWS credentials")


def test_unknown_region(endpoint: str) -> None:
    for command in ("plan", "run"):
        result = cli(command, "--region", "xx-nowhere-1", env=aws_env(endpoint))
        assert_clean_failure(result, 2, "unknown region 'xx-nowhere-1'")


def test_no_region(tmp_path: Path, endpoint: str) -> None:
    env = base_env(tmp_path, **DUMMY_CREDENTIALS, AWS_ENDPOINT_URL=endpoint)
    assert_clean_failure(cli("plan", env=env), 2, "no region: pass --region")


def test_unreachable_endpoint(dead_url: str) -> None:
    plan = cli("plan", env=aws_env(dead_url))
    assert_clean_failure(plan, 1, f"own/{REGION}: cannot read instances: EndpointConnectionError")
    run = cli("run", env=aws_env(dead_url))
    assert_clean_failure(run, 1, REGION)  # the run's own message names what failed
    assert any(line.startswith("failed") and "EndpointConnectionError" in line for line in run.stdout.splitlines())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--at", "tomorrow"], "--at: event time 'tomorrow' is not an ISO-8601 time"),
        (["plan", "--tz", "Mars/Olympus"], "--tz: unknown time zone 'Mars/Olympus'"),
        (["plan", "--endpoint-url", "ftp://example"], "--endpoint-url must be an http(s) URL"),
        (["plan", "--tag", ""], "--tag must be a tag key of 1 to 128 characters"),
        (["plan", "--hours", "0"], "argument --hours"),
    ],
)
def test_bad_options(args: list[str], message: str, endpoint: str) -> None:
    assert_clean_failure(cli(*args, env=aws_env(endpoint)), 2, message)


# --- colour ---------------------------------------------------------------------


def test_colour_only_on_a_terminal() -> None:
    value = json.dumps(LONDON_OFFICE)
    piped = cli("check", value, env=base_env(TERM="xterm"))
    assert "\033[" not in piped.stdout
    controller, terminal = pty.openpty()
    try:
        process = subprocess.run(
            [sys.executable, SCRIPT, "check", value],
            env=base_env(TERM="xterm"),
            stdout=terminal,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if terminal != -1:
            os.close(terminal)
        os.close(controller)
    assert process.returncode == 0
    assert "\033[32mvalid\033[0m" in b"".join(chunks).decode()


def test_the_lambda_does_not_load_the_command_line_libraries() -> None:
    probe = "import sys, ec2_powercycle; print(sorted({'argparse', 'cron_descriptor'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=base_env(), capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
