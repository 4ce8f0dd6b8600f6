"""The embedded demo: a short tour of the command line on a local EC2 endpoint.

Starts moto_server on 127.0.0.1 and a schedule server on 127.0.0.1, seeds the sample
fleet (office hours in London and in New York, where US public holidays are skipped, a
schedule behind a URL, a stop-only schedule, a protected instance and a tag with a typo)
and one Auto Scaling group on London's office hours, scaled to zero overnight,
then shows, as a user would type them: `check` on a good and a bad tag value and on one
that skips days over Christmas, `override` holding one instance stopped until Monday noon,
`plan` on Monday morning (Thanksgiving skipped in New York's row, the override held), and
`run` at the start time, when the override ends and at the stop time, with the fleet's
states after each run. Everything it starts is stopped before it exits.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.local_endpoint import endpoint_environment, moto_server  # noqa: E402
from tests.support.sample_fleet import LONDON_OFFICE, TAG, URL_PATH, schedule_server, seed  # noqa: E402

REGION = "eu-west-1"
PLAN_AT = "2026-11-23T07:00:00Z"  # a Monday, before the London office opens
OVERRIDE_UNTIL = "2026-11-23T12:00:00Z"  # web-london-2 held stopped until Monday noon
# London's start, the run whose window holds the override's end, then London's stop (and Berlin's).
RUNS = ("2026-11-23T08:07:00Z", "2026-11-23T12:07:00Z", "2026-11-23T18:07:00Z")
CHRISTMAS = {**LONDON_OFFICE, "skip": ["holidays:GB-ENG", "12-24"]}
GROUP = "build-agents"  # an Auto Scaling group on London's office hours, at zero overnight


def command(argv: list[str]) -> int:
    """Show the command as typed, then run it in this process through the module's main()."""
    import ec2_powercycle_cli

    print(f"$ ec2-powercycle {shlex.join(argv)}", flush=True)
    code = ec2_powercycle_cli.main(argv)
    sys.stderr.flush()
    print(f"(exit code {code})\n", flush=True)
    return code


def seed_group(ec2: Any, autoscaling: Any) -> None:
    """The group as a run leaves it overnight: desired 0, its daytime sizes saved in its size tag."""
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName=GROUP, LaunchTemplateData={"ImageId": image_id})
    tags = {TAG: json.dumps(LONDON_OFFICE), f"{TAG}:size": '{"min": 1, "max": 4, "desired": 2}'}
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        LaunchTemplate={"LaunchTemplateName": GROUP},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=0,
        AvailabilityZones=[f"{REGION}a"],
        Tags=[
            {"ResourceId": GROUP, "ResourceType": "auto-scaling-group", "Key": key, "Value": value,
             "PropagateAtLaunch": False}
            for key, value in tags.items()
        ],
    )  # fmt: skip


def show_fleet(ec2: Any, autoscaling: Any, names: dict[str, str]) -> None:
    states = {
        instance["InstanceId"]: instance["State"]["Name"]
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
        if instance["InstanceId"] in names  # the group's own instances are the group's
    }
    listing = sorted((names[instance_id], state) for instance_id, state in states.items())
    [group] = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"]
    sizes = f"min {group['MinSize']}, max {group['MaxSize']}, desired {group['DesiredCapacity']}"
    print("fleet now: " + ", ".join(f"{name} {state}" for name, state in listing) + f"; group {GROUP}: {sizes}")
    print()


def main(argv: list[str] | None = None) -> int:
    with moto_server() as endpoint, schedule_server() as schedules:
        os.environ.update(endpoint_environment(endpoint, REGION))
        os.environ["EC2_POWERCYCLE_URL_ALLOW"] = schedules + "/schedules/"  # the loopback schedule server
        import boto3

        ec2, autoscaling = boto3.client("ec2"), boto3.client("autoscaling")
        names_to_ids = seed(ec2, schedules + URL_PATH)
        seed_group(ec2, autoscaling)
        names = {instance_id: name for name, instance_id in names_to_ids.items()}
        print(f"Local EC2 endpoint {endpoint} (moto_server), schedule server {schedules}.")
        print(f"Sample fleet of {len(names)} instances and the Auto Scaling group {GROUP} seeded in {REGION}.\n")

        print("# Check a tag value before writing it, then one with a typo:")
        command(["check", json.dumps(LONDON_OFFICE), "--at", PLAN_AT, "--count", "2"])
        command(["check", '{"stat": "0 8 * * MON-FRI"}'])
        print("# Skip days: public holidays in England and Christmas Eve, seen the evening before:")
        command(["check", json.dumps(CHRISTMAS), "--at", "2026-12-23T19:00:00Z", "--count", "1"])

        aws = ["--endpoint-url", endpoint, "--region", REGION]
        print("# Keep web-london-2 stopped until noon, whatever its schedule says (the tag ec2Powercycle:override):")
        web_london_2 = names_to_ids["web-london-2"]
        command(["override", web_london_2, "--stopped", "--until", OVERRIDE_UNTIL, *aws, "--at", PLAN_AT])
        print("# What the schedules will do, seen on Monday morning:")
        command(["plan", *aws, "--at", PLAN_AT])
        show_fleet(ec2, autoscaling, names)
        for moment in RUNS:
            print(f"# One run at {moment}, as EventBridge would trigger it:")
            command(["run", *aws, "--at", moment])
            show_fleet(ec2, autoscaling, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
