"""The README is the operator's manual: the parts that restate the code must agree with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import ec2_powercycle

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_the_readme_shows_the_policy_file_as_it_is() -> None:
    section = README[README.index("### The IAM policy") :]
    block = section[section.index("```json") + len("```json") : section.index("```", section.index("```json") + 7)]
    assert json.loads(block) == json.loads((ROOT / "iam" / "lambda-policy.json").read_text())


def test_every_setting_of_the_code_is_in_the_settings_table_with_its_default() -> None:
    table = README[README.index("## Settings") : README.index("## Schedules behind a URL")]
    names = {value for name, value in vars(ec2_powercycle).items() if name.endswith("_SETTING")}
    assert names, "no settings found in the module"
    for name in names:
        assert f"`{name}`" in table, f"{name} is missing from the README's settings table"
    rows = {match[0]: match[1] for match in re.findall(r"^\| `(EC2_POWERCYCLE_\w+)` \| ([^|]+) \|", table, re.M)}
    assert "`ec2Powercycle`" in rows["EC2_POWERCYCLE_TAG"]
    assert f"`{ec2_powercycle.DEFAULT_WINDOW_MINUTES}`" in rows["EC2_POWERCYCLE_WINDOW_MINUTES"]
    assert f"`{ec2_powercycle.DEFAULT_PROTECTED_ENVIRONMENTS}`" in rows["EC2_POWERCYCLE_PROTECTED_ENVIRONMENTS"]
    assert f"`{ec2_powercycle.DEFAULT_MAX_WORKERS}`" in rows["EC2_POWERCYCLE_MAX_WORKERS"]
