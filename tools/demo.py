"""The embedded demo: a short tour of the command line on a local EC2 endpoint.

Starts moto_server on 127.0.0.1 and a schedule server on 127.0.0.1, seeds the sample
fleet (office hours in London and New York, a schedule behind a URL, a stop-only
schedule, a protected instance and a tag with a typo), then shows, as a user would type
them: `check` on a good and a bad tag value, `plan` on Monday morning, and `run` at a
start time and at a stop time, with the fleet's states after each run.
Everything it starts is stopped before it exits.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.local_endpoint import endpoint_environment, moto_server  # noqa: E402
from tests.support.sample_fleet import LONDON_OFFICE, URL_PATH, schedule_server, seed  # noqa: E402

REGION = "eu-west-1"
PLAN_AT = "2026-11-23T07:00:00Z"  # a Monday, before the London office opens
RUNS = ("2026-11-23T08:07:00Z", "2026-11-23T18:07:00Z")  # London's start, then its stop (and Berlin's)


def command(argv: list[str]) -> int:
    """Show the command as typed, then run it in this process through the module's main()."""
    import ec2_powercycle_cli

    print(f"$ ec2-powercycle {shlex.join(argv)}", flush=True)
    code = ec2_powercycle_cli.main(argv)
    sys.stderr.flush()
    print(f"(exit code {code})\n", flush=True)
    return code


def show_fleet(ec2: object, names: dict[str, str]) -> None:
    states = {
        instance["InstanceId"]: instance["State"]["Name"]
        for reservation in ec2.describe_instances()["Reservations"]  # type: ignore[attr-defined]
        for instance in reservation["Instances"]
    }
    listing = sorted((names[instance_id], state) for instance_id, state in states.items())
    print("fleet now: " + ", ".join(f"{name} {state}" for name, state in listing))
    print()


def main(argv: list[str] | None = None) -> int:
    with moto_server() as endpoint, schedule_server() as schedules:
        os.environ.update(endpoint_environment(endpoint, REGION))
        os.environ["EC2_POWERCYCLE_URL_ALLOW"] = schedules + "/schedules/"  # the loopback schedule server
        import boto3

        ec2 = boto3.client("ec2")
        names = {instance_id: name for name, instance_id in seed(ec2, schedules + URL_PATH).items()}
        print(f"Local EC2 endpoint {endpoint} (moto_server), schedule server {schedules}.")
        print(f"Sample fleet of {len(names)} instances seeded in {REGION}.\n")

        print("# Check a tag value before writing it, then one with a typo:")
        command(["check", json.dumps(LONDON_OFFICE), "--at", PLAN_AT, "--count", "2"])
        command(["check", '{"stat": "0 8 * * MON-FRI"}'])

        aws = ["--endpoint-url", endpoint, "--region", REGION]
        print("# What the schedules will do, seen on Monday morning:")
        command(["plan", *aws, "--at", PLAN_AT])
        show_fleet(ec2, names)
        for moment in RUNS:
            print(f"# One run at {moment}, as EventBridge would trigger it:")
            command(["run", *aws, "--at", moment])
            show_fleet(ec2, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
