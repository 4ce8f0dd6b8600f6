"""Auto Scaling groups on the same schedules: a stop scales a group to zero (its sizes saved in a tag), a start
restores them. moto's Auto Scaling in process; catch-up and paging against the benchmark endpoint, which knows
scaling activities (moto reports none)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

import ec2_powercycle
from ec2_powercycle import RunError, handler
from tests.support.ec2_endpoint import serve_in_thread
from tests.support.faults import ApiRecorder, on_every_client, query_error_response
from tests.support.fleet import REGION, TAG, Fleet
from tests.support.inbox import EventInbox, Inbox

SIZE_TAG = f"{TAG}:size"
MONDAY_0807 = {"time": "2026-11-23T08:07:00Z"}
STOP_AT_EIGHT = '{"stop": "0 8 * * *"}'
START_AT_EIGHT = '{"start": "0 8 * * *"}'
SAVED = json.dumps({"min": 1, "max": 4, "desired": 2})
SPOKE_ROLE = "arn:aws:iam::111111111111:role/ec2-powercycle-spoke"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, aws: None) -> ApiRecorder:
    """The Auto Scaling calls the scheduler makes."""
    recorder = ApiRecorder()

    def attach(client: Any, *_: Any) -> None:
        client.meta.events.register("before-parameter-build.autoscaling.*", recorder._record)

    on_every_client(monkeypatch, "autoscaling_client", attach)
    return recorder


def entry(group: str) -> dict[str, Any]:
    return {"group": group, "account": "own", "region": REGION}


# --- Stop and start -------------------------------------------------------------------


def test_a_stop_saves_the_sizes_then_scales_the_group_to_zero(
    fleet: Fleet, calls: ApiRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.launch_group("web", STOP_AT_EIGHT, sizes=(1, 4, 2))
    summary = handler(MONDAY_0807)
    # The run's EMF line, the first (then one per instance type: the group's hours stopped).
    metrics = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (metrics["GroupsStopped"], metrics["GroupsStarted"], metrics["Stopped"]) == (1, 0, 0)
    sizes, tags = fleet.group("web")
    assert sizes == (0, 4, 0)  # MaxSize kept
    assert json.loads(tags[SIZE_TAG]) == {"min": 1, "max": 4, "desired": 2}
    assert calls.operations() == ["DescribeAutoScalingGroups", "CreateOrUpdateTags", "UpdateAutoScalingGroup"]
    assert (summary["groups_stopped"], summary["groups_started"], summary["groups"]) == ([entry("web")], [], 1)
    assert (summary["stopped"], summary["skipped"], summary["errors"]) == ([], [], [])


def test_a_start_restores_the_saved_sizes_and_removes_the_tag(fleet: Fleet) -> None:
    fleet.launch_group("web", START_AT_EIGHT, sizes=(0, 4, 0), tags={SIZE_TAG: SAVED})
    summary = handler(MONDAY_0807)
    sizes, tags = fleet.group("web")
    assert sizes == (1, 4, 2)
    assert SIZE_TAG not in tags
    assert summary["groups_started"] == [entry("web")]


def test_a_group_at_zero_with_no_saved_size_is_its_error_and_left_as_it_is(
    fleet: Fleet, calls: ApiRecorder, inbox: Inbox
) -> None:
    fleet.launch_group("web", START_AT_EIGHT, sizes=(0, 3, 0))
    summary = handler(MONDAY_0807)  # a group's error, not the run's: no RunError
    assert fleet.group("web")[0] == (0, 3, 0)
    assert calls.operations() == ["DescribeAutoScalingGroups"]
    [error] = summary["errors"]
    assert (error["instance_id"], error["group"]) == (None, "web")
    assert error["error"].startswith(f"nothing to restore: the group is at zero and has no saved size in tag '{TAG}:")
    assert summary["groups_started"] == []
    [message] = inbox.messages()  # the notification names the group as it names an instance
    assert f"- group web in own/{REGION}: nothing to restore: the group is at zero" in message["Message"]


def test_a_stop_keeps_the_saved_sizes_of_a_group_scaled_up_by_hand_from_zero(
    fleet: Fleet, calls: ApiRecorder
) -> None:
    # Stopped by a run (sizes saved), then someone set desired 1 by hand: min is still the stop's 0.
    fleet.launch_group("web", STOP_AT_EIGHT, sizes=(0, 4, 1), tags={SIZE_TAG: SAVED})
    summary = handler(MONDAY_0807)
    sizes, tags = fleet.group("web")
    assert sizes == (0, 4, 0) and tags[SIZE_TAG] == SAVED  # what the next start restores: 1/4/2, not 0/4/1
    assert calls.operations() == ["DescribeAutoScalingGroups", "UpdateAutoScalingGroup"]
    assert summary["groups_stopped"] == [entry("web")]


def test_enforce_scales_down_again_a_group_scaled_up_by_hand(fleet: Fleet) -> None:
    # The stop at 18:00 was yesterday; someone scaled the group up since: enforce holds it at zero.
    fleet.launch_group("web", '{"start": "0 8 * * 1-5", "stop": "0 18 * * *", "enforce": true}', sizes=(1, 5, 3))
    summary = handler({"time": "2026-11-23T07:00:00Z"})
    sizes, tags = fleet.group("web")
    assert sizes == (0, 5, 0)
    assert json.loads(tags[SIZE_TAG]) == {"min": 1, "max": 5, "desired": 3}  # what it had: what a start restores
    assert summary["groups_stopped"] == [entry("web")]


def test_an_override_holds_a_group_against_its_schedule(fleet: Fleet) -> None:
    override = json.dumps({"state": "running", "until": "2026-11-23T12:00:00Z"})
    fleet.launch_group("web", STOP_AT_EIGHT, tags={f"{TAG}:override": override})
    summary = handler(MONDAY_0807)
    assert fleet.group("web")[0] == (1, 4, 2)
    assert summary["skipped"] == [
        {"instance_id": None, "group": "web", **entry("web"), "reason": "override: running until 2026-11-23T12:00:00Z"}
    ]


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        ({"environment": "p"}, "protected environment 'p'"),
        ({"eks:nodegroup-name": "workers"}, "managed by EKS (node group 'workers'): scale the node group with EKS"),
    ],
    ids=["protected", "eks"],
)
def test_guarded_groups_are_skipped_with_the_reason(
    fleet: Fleet, calls: ApiRecorder, tags: dict[str, str], reason: str
) -> None:
    fleet.launch_group("web", STOP_AT_EIGHT, tags=tags)
    summary = handler(MONDAY_0807)
    assert fleet.group("web")[0] == (1, 4, 2)
    assert calls.operations() == ["DescribeAutoScalingGroups"]
    assert summary["skipped"] == [{"instance_id": None, **entry("web"), "reason": reason}]


def test_a_dry_run_lists_the_groups_it_would_scale_and_changes_nothing(
    fleet: Fleet, calls: ApiRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EC2_POWERCYCLE_DRY_RUN", "true")
    fleet.launch_group("web", STOP_AT_EIGHT)
    fleet.launch_group("api", START_AT_EIGHT, sizes=(0, 4, 0), tags={SIZE_TAG: SAVED})
    summary = handler(MONDAY_0807)
    assert (summary["groups_stopped"], summary["groups_started"]) == ([entry("web")], [entry("api")])
    assert calls.operations() == ["DescribeAutoScalingGroups"]
    assert fleet.group("web") == ((1, 4, 2), {TAG: STOP_AT_EIGHT})
    assert fleet.group("api")[0] == (0, 4, 0)


# --- Bad tags: that group's error, the others go on ------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "saved", "error"),
    [
        ('{"stop": "0 8 * *"}', None, "bad schedule in tag 'ec2Powercycle': invalid cron"),
        ('{"stop": "0 8 * * *", "hibernate": true}', None, "bad schedule in tag 'ec2Powercycle': 'hibernate' is for"),
        (
            '{"stop": "0 8 * * *", "maintenance_windows": ["patch-tuesday"]}',
            None,
            "bad schedule in tag 'ec2Powercycle': 'maintenance_windows' is for instances",
        ),
        (START_AT_EIGHT, "{min: 1}", f"bad saved size in tag '{SIZE_TAG}': not valid JSON"),
        (START_AT_EIGHT, '{"min": -1, "max": 4, "desired": 2}', f"bad saved size in tag '{SIZE_TAG}': min, max"),
        (START_AT_EIGHT, '{"min": 3, "max": 2, "desired": 2}', f"bad saved size in tag '{SIZE_TAG}': needs min <="),
        (START_AT_EIGHT, '{"min": 0, "max": 2, "desired": 0}', f"bad saved size in tag '{SIZE_TAG}': desired is 0"),
    ],
    ids=[
        "schedule",
        "hibernate",
        "maintenance-windows",
        "size-json",
        "size-negative",
        "size-min-over-max",
        "size-zero",
    ],
)
def test_a_bad_tag_on_one_group_is_its_error_beside_a_good_one(
    fleet: Fleet, schedule: str, saved: str | None, error: str
) -> None:
    sizes = (0, 4, 0) if saved else (1, 4, 2)
    fleet.launch_group("bad", schedule, sizes=sizes, tags={SIZE_TAG: saved} if saved else {})
    fleet.launch_group("good", STOP_AT_EIGHT)
    before = fleet.group("bad")
    summary = handler(MONDAY_0807)
    assert fleet.group("bad") == before  # nothing changed, its tags included
    assert fleet.group("good")[0] == (0, 4, 0)
    [entry_] = summary["errors"]
    assert (entry_["group"], entry_["instance_id"]) == ("bad", None)
    assert entry_["error"].startswith(error), entry_["error"]
    assert summary["groups_stopped"] == [entry("good")]


def test_groups_that_cannot_be_read_fail_their_target_and_its_instances_still_run(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(client: Any, *_: Any) -> None:
        client.meta.events.register(
            "before-send.autoscaling.DescribeAutoScalingGroups",
            lambda request, **_: query_error_response(request, 403, "AccessDenied", "not authorized"),
        )

    on_every_client(monkeypatch, "autoscaling_client", refuse)
    [instance] = fleet.launch(STOP_AT_EIGHT)
    with pytest.raises(RunError) as raised:
        handler(MONDAY_0807)
    summary = raised.value.summary
    assert summary["stopped"] == [instance] and fleet.state(instance) == "stopped"
    assert summary["errors"] == [
        {
            "instance_id": None,
            "account": "own",
            "region": REGION,
            "error": f"own/{REGION}: cannot read Auto Scaling groups: AccessDenied: not authorized",
        }
    ]


def test_groups_actions_and_errors_are_events_naming_the_group_and_never_an_instances_status_tag(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = EventInbox()
    monkeypatch.setenv(ec2_powercycle.EVENT_BUS_SETTING, bus.bus)
    monkeypatch.setenv(ec2_powercycle.STATUS_TAGS_SETTING, "true")
    fleet.launch_group("web", START_AT_EIGHT, sizes=(0, 3, 0))  # nothing to restore
    fleet.launch_group("api", STOP_AT_EIGHT)
    summary = handler(MONDAY_0807)
    assert (summary["status_tag_errors"], summary["event_errors"]) == (0, 0)
    events = {event["detail-type"]: event["detail"] for event in bus.events()}
    assert set(events) == {"Scheduling Error", "Group Stopped"}
    error = events["Scheduling Error"]
    assert (error["group"], error["instance_id"], error["error"][:18]) == ("web", None, "nothing to restore")
    assert events["Group Stopped"] == {
        "group": "api", "account": "own", "region": REGION, "time": "2026-11-23T08:07:00Z",
        "action": "stop", "due": "2026-11-23T08:00:00Z", "reason": "schedule",
    }  # fmt: skip


# --- The group's instances ---------------------------------------------------------------


def test_instances_of_a_scheduled_group_are_left_to_it_and_listed_once_as_the_group(fleet: Fleet) -> None:
    fleet.launch_group("web", '{"stop": "0 12 * * *"}', sizes=(2, 4, 2), propagate=True)  # nothing due at 08:07
    loose = fleet.launch(STOP_AT_EIGHT)[0]
    members = [i for i in fleet.states() if i != loose]
    summary = handler(MONDAY_0807)
    assert len(members) == 2 and all(fleet.state(i) == "running" for i in members)
    assert summary["stopped"] == [loose] and summary["instances"] == 3
    assert summary["skipped"] == [
        {
            "instance_id": None,
            **entry("web"),
            "reason": "2 instances of the group carry the tag 'ec2Powercycle' (propagated at launch): the group is "
            "scheduled as a whole, never its instances one by one",
        }
    ]


# --- Another account ---------------------------------------------------------------------


def test_groups_in_another_account_are_scaled_through_its_role(monkeypatch: pytest.MonkeyPatch, aws: None) -> None:
    monkeypatch.setenv("EC2_POWERCYCLE_ROLE_ARNS", SPOKE_ROLE)
    spoke = Fleet(SPOKE_ROLE)
    spoke.launch_group("web", STOP_AT_EIGHT)
    summary = handler(MONDAY_0807)
    assert spoke.group("web")[0] == (0, 4, 0)
    assert summary["groups_stopped"] == [{"group": "web", "account": "111111111111", "region": REGION}]


# --- Against the benchmark endpoint: scaling activities (catch-up) and paging ---------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Any]]:
    """One endpoint for the module: one URL, so the tests share the process's session and its loaded models."""
    with serve_in_thread() as server:
        yield server


@pytest.fixture
def endpoint(served: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    url, fleet = served
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    return fleet


@pytest.mark.parametrize(
    ("activity", "stopped", "caught_up"),
    [
        ("2026-11-23T07:00:00Z", True, True),  # nothing has changed it since the stop at 08:00: made up for
        ("2026-11-23T08:10:00Z", False, False),  # scaled after the stop (by a person): left alone
    ],
    ids=["missed", "changed-since"],
)
def test_a_missed_stop_is_made_up_unless_the_group_changed_since(
    endpoint: Any, activity: str, stopped: bool, caught_up: bool
) -> None:
    endpoint.seed([], [{"name": "web", "tags": {TAG: STOP_AT_EIGHT}, "activity": activity}])
    summary = handler({"time": "2026-11-23T08:30:00Z"})  # the window (08:15, 08:30] misses 08:00
    assert (endpoint.group_sizes()["web"]["desired"] == 0) is stopped
    assert summary["caught_up"] == (
        [{"instance_id": None, **entry("web"), "action": "stop", "due": "2026-11-23T08:00:00Z"}] if caught_up else []
    )
    assert endpoint.counts()["calls"]["DescribeScalingActivities"] == 1


def test_groups_are_paged_100_a_call_and_their_activities_read_only_when_out_of_step(endpoint: Any) -> None:
    groups = [{"name": f"g{n:03d}", "tags": {TAG: STOP_AT_EIGHT}, "min": 0, "desired": 0} for n in range(150)]
    groups += [{"name": f"u{n}", "tags": {}} for n in range(5)]  # untagged: the service's filter drops them
    endpoint.seed([], groups)
    summary = handler({"time": "2026-11-23T08:30:00Z"})  # at zero since the 08:00 stop: in step, nothing to read
    assert (summary["groups"], summary["groups_stopped"], summary["errors"]) == (150, [], [])
    assert endpoint.counts()["calls"] == {"DescribeAutoScalingGroups": 2, "DescribeInstances": 1}


# --- The command line: plan, check and run show groups ------------------------------------


def test_plan_shows_each_group_its_sizes_and_what_a_run_now_does(fleet: Fleet, cli: Any) -> None:
    fleet.launch_group("web", STOP_AT_EIGHT, sizes=(1, 4, 2))
    fleet.launch_group("idle", START_AT_EIGHT, sizes=(0, 3, 0))
    code, out, _ = cli("plan", "--json", "--at", "2026-11-23T08:07:00Z", "--hours", "4")
    data = json.loads(out)
    groups = {group["group"]: group for group in data["groups"]}
    assert code == 0 and data["instances"] == []
    assert (groups["web"]["state"], groups["web"]["size"], groups["web"]["now"]["action"]) == (
        "running",
        "1/2/4",
        "stop",
    )
    assert groups["idle"]["now"]["outcome"] == "error"
    assert groups["idle"]["now"]["reason"].startswith("nothing to restore")
    rows = data["timeline"]["schedules"]
    assert sorted((row["instances"], row["group_names"]) for row in rows) == [(0, ["idle"]), (0, ["web"])]
    code, out, _ = cli("plan", "--at", "2026-11-23T08:07:00Z", "--hours", "4")
    assert "2 Auto Scaling groups tagged ec2Powercycle" in out
    assert re.search(r"^web +running +1/2/4 +inline", out, re.MULTILINE), out
    assert "a run now: stop due at 2026-11-23T08:00:00Z" in out and "S1  0 instances, 1 group" in out


def test_check_says_whether_a_group_can_follow_the_schedule(cli: Any) -> None:
    code, out, _ = cli("check", '{"stop": "0 8 * * *", "hibernate": true}', "--at", "2026-11-23T08:07:00Z")
    assert (
        code == 0
        and "groups   refused for an Auto Scaling group: bad schedule in tag 'ec2Powercycle': 'hibernate'" in out
    )
    code, out, _ = cli("check", "--json", STOP_AT_EIGHT)
    assert json.loads(out)["groups"] == {"valid": True, "error": None}


def test_run_lists_the_groups_it_scaled(fleet: Fleet, cli: Any) -> None:
    fleet.launch_group("web", STOP_AT_EIGHT)
    code, out, _ = cli("run", "--dry-run", "--at", "2026-11-23T08:07:00Z")
    assert code == 0
    assert re.search(r"^stopped +- +group web +dry run: left as it is$", out, re.MULTILINE), out
    assert "groups: 0 started, 1 stopped of 1 tagged" in out
