"""Actions that take: catch-up of missed runs, starts that did not take, hibernation.

moto never moves LaunchTime on a start and never fails one, so the tests set each instance's
record (LaunchTime, StateTransitionReason, StateReason) on moto's own backend objects, and drive
the clock moto stamps stops with through time-machine.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import StateReason

import ec2_powercycle
from ec2_powercycle import ConfigError, RunError, Settings, handler
from tests.support.faults import ApiRecorder, instance_ids_in
from tests.support.fleet import REGION, Fleet

OFFICE_HOURS = '{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5"}'
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)


def at(hour: int, minute: int, day: datetime = MONDAY) -> datetime:
    return day.replace(hour=hour, minute=minute)


def event(moment: datetime) -> dict[str, str]:
    return {"time": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}


def record(
    instance_id: str,
    *,
    launched: datetime | None = None,
    stopped_at: datetime | None = None,
    reason: str | None = None,
    state_reason: tuple[str, str] | None = None,
) -> None:
    """Write an instance's own record on moto's backend, as EC2 would have left it."""
    instance = ec2_backends["123456789012"][REGION].get_instance(instance_id)
    if launched is not None:
        instance.launch_time = launched
    if stopped_at is not None:
        instance._reason = f"User initiated ({stopped_at:%Y-%m-%d %H:%M:%S} GMT)"
    if reason is not None:
        instance._reason = reason
    if state_reason is not None:
        code, message = state_reason
        instance.state_reason = StateReason(f"{code}: {message}", code)


# --- The setting -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "window", "expected"),
    [(None, None, 60), ("0", None, 0), ("90", None, 90), ("15", None, 15), (None, "120", 120), ("", "30", 60)],
)
def test_catch_up_minutes_setting(value: str | None, window: str | None, expected: int) -> None:
    env = {"AWS_REGION": REGION}
    if value is not None:
        env[ec2_powercycle.CATCH_UP_SETTING] = value
    if window is not None:
        env[ec2_powercycle.WINDOW_SETTING] = window
    assert Settings.from_env(env).catch_up == timedelta(minutes=expected)


@pytest.mark.parametrize("value", ["10", "-5", "1.5", "an hour"])
def test_a_bad_catch_up_setting_is_an_error_naming_it(value: str) -> None:
    with pytest.raises(ConfigError, match=ec2_powercycle.CATCH_UP_SETTING):
        Settings.from_env({"AWS_REGION": REGION, ec2_powercycle.CATCH_UP_SETTING: value})


# --- Catch-up ----------------------------------------------------------------------


def test_a_missed_start_and_stop_are_made_within_the_horizon(fleet: Fleet, api: ApiRecorder) -> None:
    [stopped] = fleet.launch(OFFICE_HOURS, state="stopped")
    record(stopped, stopped_at=at(17, 55) - timedelta(days=3))  # last Friday's stop
    [running] = fleet.launch('{"stop": "55 17 * * 1-5"}')
    record(running, launched=at(7, 30))
    summary = handler(event(at(8, 52)))  # the 08:07 run and two more were missed
    assert summary["started"] == [stopped]
    assert summary["caught_up"] == [
        {"instance_id": stopped, "account": "own", "region": REGION, "action": "start", "due": "2026-11-23T08:00:00Z"}
    ]
    summary = handler(event(at(18, 22)))
    assert summary["stopped"] == [running]
    assert [entry["action"] for entry in summary["caught_up"]] == ["stop"]
    assert fleet.states() == {stopped: "running", running: "stopped"}


def test_nothing_is_caught_up_once_the_horizon_has_passed(fleet: Fleet, api: ApiRecorder) -> None:
    [stopped] = fleet.launch(OFFICE_HOURS, state="stopped")
    record(stopped, stopped_at=at(17, 55) - timedelta(days=3))
    summary = handler(event(at(9, 7)))  # the horizon (08:07, 09:07] no longer holds the 08:00 start
    assert (summary["started"], summary["caught_up"], summary["skipped"]) == ([], [], [])
    assert api.operations() == ["DescribeInstances"]


@pytest.mark.parametrize(
    ("schedule", "state", "by_hand"),
    [(OFFICE_HOURS, "stopped", "stopped_at"), ('{"stop": "55 17 * * 1-5"}', "running", "launched")],
)
def test_a_change_made_by_hand_after_the_scheduled_time_is_left_alone_and_not_listed(
    fleet: Fleet, api: ApiRecorder, schedule: str, state: str, by_hand: str
) -> None:
    [instance] = fleet.launch(schedule, state=state)
    due = at(8, 0) if state == "stopped" else at(17, 55)
    record(instance, **{by_hand: due + timedelta(minutes=20)})
    summary = handler(event(due + timedelta(minutes=37)))
    assert (summary["started"], summary["stopped"], summary["skipped"], summary["errors"]) == ([], [], [], [])
    assert fleet.state(instance) == state


@pytest.mark.parametrize("reason", ["", "Server.ScheduledStop", "User initiated (yesterday)"])
def test_an_unknown_last_change_is_never_caught_up(fleet: Fleet, api: ApiRecorder, reason: str) -> None:
    [instance] = fleet.launch(OFFICE_HOURS, state="stopped")
    record(instance, reason=reason)
    summary = handler(event(at(8, 22)))
    assert summary["started"] == [] and fleet.state(instance) == "stopped"


def test_catch_up_zero_acts_only_in_the_window_as_before(
    fleet: Fleet, api: ApiRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ec2_powercycle.CATCH_UP_SETTING, "0")
    [instance] = fleet.launch(OFFICE_HOURS, state="stopped")
    record(instance, stopped_at=at(17, 55) - timedelta(days=3), state_reason=("Server.InternalError", "x"))
    record(instance, launched=at(8, 3))
    summary = handler(event(at(8, 22)))
    assert (summary["started"], summary["errors"], summary["caught_up"]) == ([], [], [])
    assert handler(event(at(8, 7)))["started"] == [instance]


def test_a_day_of_runs_with_two_failures_makes_every_scheduled_action_exactly_once(
    fleet: Fleet, api: ApiRecorder, backoff: list[float]
) -> None:
    """Runs every 15 minutes from 07:07 to 19:07; the runs holding the start and the stop fail."""
    [instance] = fleet.launch(OFFICE_HOURS, state="stopped")
    record(instance, stopped_at=at(17, 55) - timedelta(days=3))
    failing = {at(8, 7), at(18, 7)}
    failing_now = [False]
    api.inject(lambda action, form: (503, "Unavailable", "injected") if failing_now[0] else None)
    actions: list[tuple[datetime, str]] = []
    moment = at(7, 7)
    while moment <= at(19, 7):
        failing_now[0] = moment in failing
        with time_machine.travel(moment, tick=False):  # moto stamps stops with its clock
            try:
                summary = handler(event(moment))
            except RunError:
                assert moment in failing
            else:
                assert moment not in failing
                actions += [(moment, "start") for _ in summary["started"]]
                actions += [(moment, "stop") for _ in summary["stopped"]]
                if summary["started"]:
                    record(instance, launched=moment)  # what EC2 does at a start and moto does not
        moment += timedelta(minutes=15)
    assert actions == [(at(8, 22), "start"), (at(18, 22), "stop")]
    assert api.operations("StartInstances") == ["StartInstances"]
    assert api.operations("StopInstances") == ["StopInstances"]


# --- Starts that did not take ----------------------------------------------------


@pytest.mark.parametrize("code", sorted(ec2_powercycle.FAILED_START_CODES))
def test_a_start_that_did_not_take_is_reported_and_retried_only_for_server_codes(
    fleet: Fleet, api: ApiRecorder, code: str
) -> None:
    [instance] = fleet.launch(OFFICE_HOURS, state="stopped")
    record(instance, launched=at(8, 7), stopped_at=at(8, 8), state_reason=(code, "it fell back"))
    summary = handler(event(at(8, 22)))
    [error] = summary["errors"]
    assert error["instance_id"] == instance
    assert error["error"].startswith(f"start due at 2026-11-23T08:00:00Z did not take: {code}: it fell back")
    retried = code.startswith("Server.")
    assert summary["started"] == ([instance] if retried else [])
    assert [entry["instance_id"] for entry in summary["caught_up"]] == ([instance] if retried else [])
    assert fleet.state(instance) == ("running" if retried else "stopped")
    if code == "Client.InternalError":
        assert "KMS key" in error["error"]


def test_a_failed_start_is_reported_until_the_horizon_ends(fleet: Fleet, api: ApiRecorder) -> None:
    [instance] = fleet.launch(OFFICE_HOURS, state="stopped")
    record(instance, launched=at(8, 7), stopped_at=at(8, 8), state_reason=("Client.InternalError", "x"))
    assert len(handler(event(at(8, 52)))["errors"]) == 1
    assert handler(event(at(9, 7)))["errors"] == []


def test_an_older_failure_is_not_this_starts_failure(fleet: Fleet, api: ApiRecorder) -> None:
    [instance] = fleet.launch(OFFICE_HOURS, state="stopped")
    record(instance, launched=at(8, 7) - timedelta(days=1), state_reason=("Client.InternalError", "x"))
    summary = handler(event(at(8, 7)))
    assert summary["started"] == [instance] and summary["errors"] == []


# --- Hibernation -----------------------------------------------------------------


def test_hibernate_uses_hibernation_where_configured_and_falls_back_where_refused(
    fleet: Fleet, api: ApiRecorder
) -> None:
    schedule = '{"stop": "0 8 * * *", "hibernate": true}'
    configured = fleet.launch(schedule, hibernation=True, count=2)
    [plain] = fleet.launch(schedule)
    [refusing] = fleet.launch(schedule, hibernation=True)

    def refuse(action: str, form: dict[str, list[str]]) -> tuple[int, str, str] | None:
        if action == "StopInstances" and form.get("Hibernate") == ["true"] and refusing in instance_ids_in(form):
            return 400, "UnsupportedHibernationConfiguration", "not ready for hibernation yet"
        return None

    api.inject(refuse)
    summary = handler(event(at(8, 7)))
    assert sorted(summary["hibernated"]) == sorted(configured)
    assert sorted(summary["stopped"]) == sorted([*configured, plain, refusing])
    assert summary["errors"] == []
    hibernating_calls = [params["InstanceIds"] for params in api.params("StopInstances") if params.get("Hibernate")]
    plain_calls = [params["InstanceIds"] for params in api.params("StopInstances") if not params.get("Hibernate")]
    # Hibernation asked of the configured ones only (the refusing one bisected out); a plain stop for the rest.
    assert {id_ for call in hibernating_calls for id_ in call} == {*configured, refusing}
    assert sorted(id_ for call in plain_calls for id_ in call) == sorted([plain, refusing])
    assert set(fleet.states().values()) == {"stopped"}


@pytest.mark.parametrize("value", ['"yes"', "1", "null"])
def test_hibernate_must_be_a_boolean(value: str) -> None:
    with pytest.raises(ec2_powercycle.ScheduleError, match="'hibernate' must be true or false"):
        ec2_powercycle.parse_schedule_json(f'{{"stop": "0 8 * * *", "hibernate": {value}}}', "UTC")


# --- Seen before it happens -----------------------------------------------------


def test_plan_explains_a_missed_start_a_change_by_hand_and_a_start_that_did_not_take(
    fleet: Fleet, api: ApiRecorder, capsys: pytest.CaptureFixture[str]
) -> None:
    import ec2_powercycle_cli

    [missed] = fleet.launch(OFFICE_HOURS, state="stopped", tags={"Name": "missed"})
    record(missed, stopped_at=at(17, 55) - timedelta(days=3))
    [by_hand] = fleet.launch('{"stop": "55 17 * * 1-5"}', tags={"Name": "by-hand"})
    record(by_hand, launched=at(18, 10))
    [failed] = fleet.launch(OFFICE_HOURS, state="stopped", tags={"Name": "failed"})
    record(failed, launched=at(8, 7), state_reason=("Client.InternalError", "Client error on launch"))
    assert ec2_powercycle_cli.main(["plan", "--json", "--at", "2026-11-23T08:22:00Z"]) == 0
    plan = {entry["name"]: entry["now"] for entry in json.loads(capsys.readouterr().out)["instances"]}
    assert plan["missed"]["outcome"] == "act"
    assert plan["missed"]["reason"].startswith("start due at 2026-11-23T08:00:00Z was missed: caught up now")
    assert "catch-up until 2026-11-23T09:00:00Z" in plan["missed"]["reason"]
    assert plan["failed"]["outcome"] == "error"
    assert "did not take: Client.InternalError" in plan["failed"]["reason"]
    assert ec2_powercycle_cli.main(["plan", "--at", "2026-11-23T08:22:00Z"]) == 0
    text = capsys.readouterr().out
    assert "a run now: start due at 2026-11-23T08:00:00Z was missed" in text
    assert ec2_powercycle_cli.main(["plan", "--json", "--at", "2026-11-23T18:22:00Z"]) == 0
    plan = {entry["name"]: entry["now"] for entry in json.loads(capsys.readouterr().out)["instances"]}
    assert plan["by-hand"] == {
        "outcome": "left",
        "action": None,
        "reason": "started by hand at 2026-11-23T18:10:00Z after the stop at 2026-11-23T17:55:00Z: "
        "left alone until the next stop",
    }


def test_check_accepts_and_shows_hibernate(capsys: pytest.CaptureFixture[str]) -> None:
    import ec2_powercycle_cli

    assert ec2_powercycle_cli.main(["check", '{"stop": "0 8 * * *", "hibernate": true}', "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schedule"]["hibernate"] is True
    assert ec2_powercycle_cli.main(["check", '{"stop": "0 8 * * *", "hibernate": true}']) == 0
    assert "hibernate true: stops hibernate instances configured for it" in capsys.readouterr().out
