"""Parsing tag values into schedules: no AWS, no network."""

from __future__ import annotations

import pytest

from ec2_powercycle import (
    ConfigError,
    Schedule,
    ScheduleError,
    Settings,
    parse_bool,
    parse_schedule_json,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            '{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5"}',
            Schedule(start=("0 8 * * 1-5",), stop=("55 17 * * 1-5",), tz="UTC"),
        ),
        ('  {"start": "0 8 * * 1-5"}  ', Schedule(start=("0 8 * * 1-5",), tz="UTC")),
        ('{"stop": "0 20 * * *"}', Schedule(stop=("0 20 * * *",), tz="UTC")),
        ('{"stop": "0  20 *  * *"}', Schedule(stop=("0 20 * * *",), tz="UTC")),
        (
            '{"start": ["0 8 * * MON-FRI", "0 10 * * SAT"], "tz": "Europe/London"}',
            Schedule(start=("0 8 * * MON-FRI", "0 10 * * SAT"), tz="Europe/London"),
        ),
        ('{"start": "0 8 * * *", "enforce": true}', Schedule(start=("0 8 * * *",), tz="UTC", enforce=True)),
        ('{"start": "0 8 * JAN-MAR *", "enforce": false}', Schedule(start=("0 8 * JAN-MAR *",), tz="UTC")),
    ],
)
def test_valid_tag_values_parse(value: str, expected: Schedule) -> None:
    assert parse_schedule_json(value, "UTC") == expected


def test_default_zone_comes_from_the_caller() -> None:
    assert parse_schedule_json('{"start": "0 8 * * *"}', "Asia/Tokyo").tz == "Asia/Tokyo"
    assert parse_schedule_json('{"start": "0 8 * * *", "tz": "UTC"}', "Asia/Tokyo").tz == "UTC"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", r"empty schedule"),
        ("   ", r"empty schedule"),
        ("start at eight", r"not valid JSON"),
        ("{'start': '0 8 * * *'}", r"not valid JSON"),
        ('["0 8 * * *"]', r"must be a JSON object .* got array"),
        ('"0 8 * * *"', r"must be a JSON object .* got string"),
        ("null", r"must be a JSON object .* got null"),
        ("{}", r"needs a 'start' or 'stop' key"),
        ('{"tz": "UTC"}', r"needs a 'start' or 'stop' key"),
        ('{"stat": "0 8 * * *"}', r"unknown key 'stat'; allowed keys: start, stop, tz, enforce, hibernate, skip"),
        ('{"start": "0 8 * * *", "Stop": "0 9 * * *"}', r"unknown key 'Stop'"),
        ('{"start": 8}', r"'start' must be a cron string or a non-empty list of them, got number"),
        ('{"start": []}', r"'start' must be a cron string or a non-empty list"),
        ('{"stop": ["0 8 * * *", 9]}', r"'stop' must hold cron strings, got number"),
        ('{"stop": {"cron": "0 8 * * *"}}', r"got object"),
        ('{"start": "0 8 * * *", "enforce": "true"}', r"'enforce' must be true or false, got string"),
        ('{"start": "0 8 * * *", "enforce": 1}', r"'enforce' must be true or false, got number"),
        ('{"start": "61 8 * * *"}', r"invalid cron '61 8 \* \* \*' in 'start'"),
        ('{"start": "0 25 * * *"}', r"invalid cron '0 25 \* \* \*'"),
        ('{"stop": "0 8 * *"}', r"invalid cron '0 8 \* \*' in 'stop': 4 fields, expected 5"),
        ('{"stop": "0 0 8 * * *"}', r"6 fields, expected 5"),
        ('{"stop": "0 8 * * 1-5 2026"}', r"6 fields, expected 5"),
        ('{"start": "@daily"}', r"1 fields, expected 5"),
        ('{"start": "0 8 * * FUNDAY"}', r"invalid cron"),
        ('{"start": "0 8 30 2 *"}', r"invalid cron '0 8 30 2 \*'"),
        ('{"start": "0 8 * * *", "tz": "Mars/Olympus"}', r"unknown time zone 'Mars/Olympus'"),
        ('{"start": "0 8 * * *", "tz": "../../etc/passwd"}', r"unknown time zone"),
        ('{"start": "0 8 * * *", "tz": 1}', r"'tz' must be a string"),
    ],
)
def test_bad_tag_values_are_rejected_with_the_reason(value: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule_json(value, "UTC")


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("YES", True), ("1", True), ("False", False),
                                                  ("no", False), ("0", False), ("", False), (" true ", True)])
def test_booleans_are_strict(text: str, expected: bool) -> None:
    assert parse_bool(text, "X") is expected


@pytest.mark.parametrize("text", ["ture", "on", "2", "y", "True!"])
def test_an_unknown_boolean_is_an_error_never_false(text: str) -> None:
    with pytest.raises(ConfigError, match="X must be true/1/yes or false/0/no"):
        parse_bool(text, "X")


def test_settings_defaults() -> None:
    settings = Settings.from_env({"AWS_REGION": "eu-west-1"})
    assert settings.tag == "ec2Powercycle"
    assert settings.window.total_seconds() == 15 * 60
    assert settings.timezone == "UTC"
    assert settings.protected_environments == frozenset({"p"})
    assert settings.regions == ("eu-west-1",)
    assert settings.dry_run is False
    assert settings.url_allow == ()


def test_settings_from_environment() -> None:
    settings = Settings.from_env(
        {
            "AWS_REGION": "eu-west-1",
            "EC2_POWERCYCLE_TAG": "schedule",
            "EC2_POWERCYCLE_WINDOW_MINUTES": "5",
            "EC2_POWERCYCLE_TIMEZONE": "Europe/Paris",
            "EC2_POWERCYCLE_PROTECTED_ENVIRONMENTS": "P, Prod ,live",
            "EC2_POWERCYCLE_REGIONS": "us-east-1, eu-central-1,us-east-1",
            "EC2_POWERCYCLE_DRY_RUN": "Yes",
            "EC2_POWERCYCLE_URL_ALLOW": "http://10.0.0.5:8080/schedules/",
        }
    )
    assert settings.tag == "schedule"
    assert settings.window.total_seconds() == 300
    assert settings.timezone == "Europe/Paris"
    assert settings.protected_environments == frozenset({"p", "prod", "live"})
    assert settings.regions == ("us-east-1", "eu-central-1")
    assert settings.dry_run is True
    assert settings.url_allow == ("http://10.0.0.5:8080/schedules/",)


def test_region_falls_back_to_aws_default_region() -> None:
    assert Settings.from_env({"AWS_DEFAULT_REGION": "ap-southeast-2"}).regions == ("ap-southeast-2",)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"EC2_POWERCYCLE_WINDOW_MINUTES": "0"}, "EC2_POWERCYCLE_WINDOW_MINUTES must be a positive whole number"),
        ({"EC2_POWERCYCLE_WINDOW_MINUTES": "-5"}, "EC2_POWERCYCLE_WINDOW_MINUTES"),
        ({"EC2_POWERCYCLE_WINDOW_MINUTES": "7.5"}, "EC2_POWERCYCLE_WINDOW_MINUTES"),
        ({"EC2_POWERCYCLE_WINDOW_MINUTES": "fifteen"}, "EC2_POWERCYCLE_WINDOW_MINUTES"),
        ({"EC2_POWERCYCLE_TIMEZONE": "Europe/Lundon"}, "EC2_POWERCYCLE_TIMEZONE: unknown time zone"),
        ({"EC2_POWERCYCLE_REGIONS": "eu-west-1;us-east-1"}, "EC2_POWERCYCLE_REGIONS must be comma-separated"),
        ({"EC2_POWERCYCLE_REGIONS": "eu-west-1,,us-east-1"}, "EC2_POWERCYCLE_REGIONS"),
        ({"EC2_POWERCYCLE_REGIONS": "Ireland"}, "EC2_POWERCYCLE_REGIONS"),
        ({"EC2_POWERCYCLE_DRY_RUN": "treu"}, "EC2_POWERCYCLE_DRY_RUN must be true/1/yes or false/0/no"),
        ({"EC2_POWERCYCLE_URL_ALLOW": "schedules.internal"}, "EC2_POWERCYCLE_URL_ALLOW entries must be"),
        ({"EC2_POWERCYCLE_TAG": " "}, "EC2_POWERCYCLE_TAG must be a tag key"),
    ],
)
def test_bad_settings_fail_naming_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"AWS_REGION": "eu-west-1", **environ})


def test_no_region_at_all_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no region: set EC2_POWERCYCLE_REGIONS"):
        Settings.from_env({})
