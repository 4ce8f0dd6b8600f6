"""The embedded demo: the scheduler against a local EC2 endpoint with a sample fleet.

Starts moto_server on 127.0.0.1 and a schedule server on 127.0.0.1, seeds the sample
fleet, runs the handler at a Monday-morning start time and a Monday-evening stop time
as EventBridge would, and prints each run's summary and the fleet's states.
Everything it starts is stopped before it exits.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.local_endpoint import endpoint_environment, moto_server  # noqa: E402
from tools.sample_fleet import URL_PATH, schedule_server, seed  # noqa: E402

RUNS = ("2026-11-23T08:07:00Z", "2026-11-23T18:07:00Z")


def main() -> int:
    with moto_server() as endpoint, schedule_server() as schedules:
        os.environ.update(endpoint_environment(endpoint))
        os.environ["EC2_POWERCYCLE_URL_ALLOW"] = schedules + "/schedules/"
        import boto3

        import ec2_powercycle

        ec2 = boto3.client("ec2")
        names = {instance_id: name for name, instance_id in seed(ec2, schedules + URL_PATH).items()}
        print(f"Local EC2 endpoint {endpoint}; sample fleet of {len(names)} instances seeded.\n")
        for moment in RUNS:
            summary = ec2_powercycle.handler({"time": moment})
            print(f"=== handler run at {moment}")
            print(json.dumps(summary, indent=2))
            print("--- fleet after the run")
            for reservation in ec2.describe_instances()["Reservations"]:
                for instance in reservation["Instances"]:
                    instance_id = instance["InstanceId"]
                    print(f"  {names[instance_id]:<15} {instance_id}  {instance['State']['Name']}")
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
