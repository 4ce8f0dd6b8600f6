"""What a run reports: its metric line (CloudWatch EMF), its one notification (SNS) and its time.

The handler runs against moto's EC2, SNS and SQS in process: a topic with an SQS queue
subscribed stands for the operators' inbox. A publish that fails is injected at botocore's
before-send hook with a real SNS error body, as conftest's ApiRecorder does for EC2.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

import ec2_powercycle
from ec2_powercycle import NOTIFY_TOPIC_SETTING, ConfigError, RunError, Settings, TargetResult, handler
from tests.support.faults import ApiRecorder, fail_region, on_every_client, query_error_response
from tests.support.fleet import OFFICE_HOURS, REGION, Fleet
from tests.support.inbox import Inbox

MONDAY_0807 = {"time": "2026-11-23T08:07:00Z"}
ACCOUNT = "123456789012"
FUNCTION = "ec2-powercycle-test"
BAD_TAG = '{"stat": "0 8 * * *"}'
# The units the EMF specification allows (CloudWatch's StandardUnit values).
EMF_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


class LambdaContext:
    """The parts of Lambda's context object the handler reads."""

    function_name = FUNCTION
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{FUNCTION}:live"

    def __init__(self, remaining_ms: int = 300_000) -> None:
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


def emf_metrics(document: dict[str, Any]) -> dict[str, float]:
    """Check a document against the structure the EMF specification requires; return its metrics by name."""
    metadata = document["_aws"]
    assert set(metadata) == {"Timestamp", "CloudWatchMetrics"}
    timestamp = metadata["Timestamp"]
    assert isinstance(timestamp, int) and not isinstance(timestamp, bool) and timestamp > 10**12  # ms since epoch
    directives = metadata["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives
    metrics: dict[str, float] = {}
    for directive in directives:
        assert set(directive) == {"Namespace", "Dimensions", "Metrics"}
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert isinstance(dimension_set, list) and 1 <= len(dimension_set) <= 30
            for dimension in dimension_set:
                assert isinstance(document[dimension], str) and document[dimension]
        assert 1 <= len(directive["Metrics"]) <= 100
        for definition in directive["Metrics"]:
            assert set(definition) <= {"Name", "Unit", "StorageResolution"}
            name = definition["Name"]
            assert isinstance(name, str) and 1 <= len(name) <= 255
            assert definition.get("Unit", "None") in EMF_UNITS
            value = document[name]
            assert isinstance(value, int | float) and not isinstance(value, bool), name
            metrics[name] = value
    return metrics


def the_metric_line(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The one line the run printed on standard output, parsed."""
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def counts_of(summary: dict[str, Any]) -> dict[str, float]:
    """What the metrics must say, counted from the summary."""
    counts = {
        "Instances": summary["instances"],
        "Started": len(summary["started"]),
        "Stopped": len(summary["stopped"]),
        "Skipped": len(summary["skipped"]),
        "Errors": len(summary["errors"]),
        "TargetsFailed": len([entry for entry in summary["errors"] if entry["instance_id"] is None]),
        "RunSeconds": summary["run_seconds"],
    }
    optional = (("CaughtUp", "caught_up"), ("Hibernated", "hibernated"))
    for metric, key in (*optional, ("GroupsStarted", "groups_started"), ("GroupsStopped", "groups_stopped")):
        if key in summary:
            counts[metric] = len(summary[key])
    if "stopped_instance_hours" in summary:
        counts["StoppedInstanceHours"] = sum(summary["stopped_instance_hours"].values())
    for metric, key in (("StatusTagErrors", "status_tag_errors"), ("EventErrors", "event_errors")):
        if key in summary:
            counts[metric] = summary[key]
    return counts


# --- The metric line ------------------------------------------------------------------


def test_a_clean_run_prints_one_metric_line_that_agrees_with_its_summary_and_sends_nothing(
    fleet: Fleet, api: ApiRecorder, inbox: Inbox, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    [due] = fleet.launch(OFFICE_HOURS, state="stopped")
    fleet.launch(OFFICE_HOURS, state="running")  # already running at its start time: skipped
    with caplog.at_level(logging.INFO, logger="ec2_powercycle"):
        summary = handler(MONDAY_0807, LambdaContext())
    document = the_metric_line(capsys)
    metrics = emf_metrics(document)
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ec2-powercycle"
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["FunctionName"]]
    assert document["FunctionName"] == FUNCTION
    assert metrics == counts_of(summary)
    assert (summary["started"], metrics["Started"], metrics["Skipped"], metrics["Errors"]) == ([due], 1, 1, 0)
    assert 0 < summary["run_seconds"] < 60
    assert inbox.messages() == []
    assert not [record for record in caplog.records if "still running" in record.getMessage()]


def test_a_failing_run_prints_its_errors_and_failed_targets(
    fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch(BAD_TAG)
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", f"{REGION},us-east-1")
    fail_region(monkeypatch, "us-east-1")
    with pytest.raises(RunError) as raised:
        handler(MONDAY_0807, LambdaContext())
    summary = raised.value.summary
    metrics = emf_metrics(the_metric_line(capsys))
    assert metrics == counts_of(summary)
    assert (metrics["Errors"], metrics["TargetsFailed"]) == (2, 1)


@pytest.mark.parametrize("optional_lists", [False, True], ids=["without", "with-caught-up-and-hibernated"])
def test_the_metric_document_follows_the_emf_specification(optional_lists: bool) -> None:
    summary: dict[str, Any] = {
        "time": "2026-11-23T08:07:00Z",
        "dry_run": False,
        "instances": 5,
        "started": ["i-1", "i-2"],
        "stopped": [],
        "skipped": [{"instance_id": "i-3"}],
        "errors": [{"instance_id": None}, {"instance_id": "i-4"}],
        "run_seconds": 1.25,
    }
    if optional_lists:
        summary |= {"caught_up": ["i-1"], "hibernated": []}
    document = ec2_powercycle.metrics_document(summary, FUNCTION, 1_795_421_220_000)
    metrics = emf_metrics(json.loads(json.dumps(document)))
    assert metrics == counts_of(summary)
    assert ("CaughtUp" in metrics, "Hibernated" in metrics) == (optional_lists, optional_lists)
    units = {d["Name"]: d["Unit"] for d in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units.pop("RunSeconds") == "Seconds" and set(units.values()) == {"Count"}


@pytest.mark.parametrize(
    ("context_name", "environment_name", "expected"),
    [("from-context", "from-environment", "from-context"), (None, "from-environment", "from-environment"),
     (None, None, "ec2-powercycle")],
)  # fmt: skip
def test_the_function_name_dimension(
    monkeypatch: pytest.MonkeyPatch, context_name: str | None, environment_name: str | None, expected: str
) -> None:
    if environment_name:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", environment_name)
    context = type("Context", (), {"function_name": context_name})() if context_name else None
    assert ec2_powercycle.function_name_of(context) == expected


# --- The notification -----------------------------------------------------------------


def test_a_run_with_errors_sends_exactly_one_message_naming_its_problems(
    fleet: Fleet, api: ApiRecorder, inbox: Inbox
) -> None:
    [named] = fleet.launch(BAD_TAG, tags={"Name": "typo-in-tag"})
    [unnamed] = fleet.launch('{"start": "61 8 * * *"}')
    [started] = fleet.launch(OFFICE_HOURS, state="stopped", tags={"Name": "web-1"})
    summary = handler(MONDAY_0807, LambdaContext())
    assert summary["started"] == [started]
    assert [entry.get("name") for entry in summary["errors"]] == ["typo-in-tag", None]
    [message] = inbox.messages()
    assert message["Subject"] == f"{FUNCTION}: 2 errors; 1 started, 0 stopped"
    body = message["Message"]
    assert f"- {named} (typo-in-tag) in {ACCOUNT}/{REGION}: bad schedule in tag 'ec2Powercycle': unknown key" in body
    assert f"- {unnamed} in {ACCOUNT}/{REGION}: bad schedule in tag 'ec2Powercycle': invalid cron" in body
    assert started not in body and "more." not in body


def test_the_notification_lists_fifty_problems_and_counts_the_rest() -> None:
    errors = [{"instance_id": None, "account": ACCOUNT, "region": "us-east-1", "error": f"{ACCOUNT}/us-east-1: down"}]
    errors += [
        {"instance_id": f"i-{n:017x}", "account": ACCOUNT, "region": REGION, "error": "start failed: X"}
        for n in range(60)
    ]
    summary = {
        "time": "2026-11-23T08:07:00Z", "dry_run": True, "instances": 60, "accounts": [ACCOUNT],
        "regions": [REGION, "us-east-1"], "started": [], "stopped": [], "skipped": [], "errors": errors,
        "run_seconds": 2.5,
    }  # fmt: skip
    subject, body = ec2_powercycle.notification(summary, "f" * 64)
    assert len(subject) < 100
    assert subject.endswith(": 61 errors, 1 target failed; 0 started, 0 stopped (dry run)")
    problems = [line for line in body.splitlines() if line.startswith("- ")]
    assert len(problems) == 50
    assert problems[0] == f"- target {ACCOUNT}/us-east-1 could not be handled: down"
    assert "\nand 11 more.\n" in body
    assert ec2_powercycle.notification({**summary, "errors": []}, FUNCTION) is None


def _deny_publish(request: Any, **_: Any) -> AWSResponse:
    """SNS's answer to a Publish the role may not make, instead of sending the request."""
    return query_error_response(request, 403, "AuthorizationError", "not authorized to perform: SNS:Publish")


@pytest.mark.parametrize("problem", ["topic missing", "access denied"])
def test_a_notification_that_cannot_be_published_is_logged_and_the_run_stands(
    fleet: Fleet,
    api: ApiRecorder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    [bad] = fleet.launch(BAD_TAG)
    if problem == "topic missing":
        monkeypatch.setenv(NOTIFY_TOPIC_SETTING, f"arn:aws:sns:{REGION}:{ACCOUNT}:nowhere")
    else:
        monkeypatch.setenv(NOTIFY_TOPIC_SETTING, Inbox().topic)
        on_every_client(
            monkeypatch,
            "sns_client",
            lambda client, *_: client.meta.events.register("before-send.sns.Publish", _deny_publish),
        )
    with caplog.at_level(logging.INFO, logger="ec2_powercycle"):
        summary = handler(MONDAY_0807, LambdaContext())
    assert [entry["instance_id"] for entry in summary["errors"]] == [bad]
    [record] = [r for r in caplog.records if "could not publish" in r.getMessage()]
    code = "NotFound" if problem == "topic missing" else "AuthorizationError"
    assert record.levelno == logging.ERROR and code in record.getMessage()
    assert emf_metrics(the_metric_line(capsys))["Errors"] == 1


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("arn:aws:sns:eu-west-1:123456789012:ec2-powercycle", True),
        ("arn:aws-us-gov:sns:us-gov-west-1:123456789012:ops_alerts", True),
        ("", True),
        ("arn:aws:sns:eu-west-1:123456789012:ops.fifo", False),
        ("arn:aws:sns:eu-west-1:1234:ops", False),
        ("arn:aws:sqs:eu-west-1:123456789012:ops", False),
        ("ops", False),
    ],
)
def test_the_topic_setting_takes_standard_topic_arns_only(value: str, accepted: bool) -> None:
    environment = {"AWS_REGION": REGION, NOTIFY_TOPIC_SETTING: value}
    if accepted:
        assert Settings.from_env(environment).notify_topic_arn == (value or None)
    else:
        with pytest.raises(ConfigError, match=NOTIFY_TOPIC_SETTING):
            Settings.from_env(environment)


# --- The run's time -------------------------------------------------------------------


def test_a_run_past_most_of_its_time_warns_naming_the_targets_still_running(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("EC2_POWERCYCLE_REGIONS", f"{REGION},us-east-1")
    warned = threading.Event()

    class WarningSeen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "still running" in record.getMessage():
                warned.set()

    def slow_target(target: Any, context: Any) -> TargetResult:
        warned.wait(10)  # the targets run until the warning has named them
        return TargetResult(target)

    monkeypatch.setattr(ec2_powercycle, "run_target", slow_target)
    seen = WarningSeen()
    logging.getLogger("ec2_powercycle").addHandler(seen)
    try:
        with caplog.at_level(logging.INFO, logger="ec2_powercycle"):
            summary = handler(MONDAY_0807, LambdaContext(remaining_ms=50))
    finally:
        logging.getLogger("ec2_powercycle").removeHandler(seen)
    [warning] = [r for r in caplog.records if "still running" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    still_running = warning.getMessage().split("still running: ")[1].split(";")[0]
    assert sorted(still_running.split(", ")) == [f"{ACCOUNT}/{REGION}", f"{ACCOUNT}/us-east-1"]
    assert summary["run_seconds"] < 10
