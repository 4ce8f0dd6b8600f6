"""Tagged instances and Auto Scaling groups in moto, in process: launched, and their states read back.

The clients come from one boto3 session per test process: a session loads and parses the EC2
service model once (a new one, such as boto3's default session, which moto resets in every
mock, takes about half a second for it). They are made while a mock is active, so moto's
in-process stubber (installed when moto is imported) answers them.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3

import ec2_powercycle
from tests.support.local_endpoint import dummy_keys

REGION = "eu-west-1"
TAG = ec2_powercycle.DEFAULT_TAG
IMAGE_ID = "ami-12c6146b"  # any ID works in moto; looking one up costs a second per test
OFFICE_HOURS = '{"start": "0 8 * * 1-5", "stop": "55 17 * * 1-5"}'


@functools.cache
def _session() -> boto3.session.Session:
    return boto3.session.Session(**dummy_keys())


def moto_client(service: str, region: str = REGION, **credentials: str) -> Any:
    """A client of the process's shared session (the dummy keys, unless `credentials` are given)."""
    return _session().client(service, region_name=region, **credentials)


def role_client(service: str, role_arn: str, region: str = REGION, **options: str) -> Any:
    """A client acting as a role assumed through moto's STS: how tests reach another account.

    `options` (an `endpoint_url`, say) go to both the STS client and the new one.
    """
    sts = moto_client("sts", region, **options)
    keys = sts.assume_role(RoleArn=role_arn, RoleSessionName="test-setup")["Credentials"]
    return moto_client(
        service,
        region,
        aws_access_key_id=keys["AccessKeyId"],
        aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys["SessionToken"],
        **options,
    )


class Fleet:
    """Launches tagged instances in moto and reads their states back: in the own account, or in the
    account of `role_arn` (assumed through moto's STS)."""

    def __init__(self, role_arn: str | None = None) -> None:
        self._role_arn = role_arn
        self._clients: dict[tuple[str, str], Any] = {}
        self._templates: set[str] = set()

    def client(self, region: str = REGION, service: str = "ec2") -> Any:
        if (service, region) not in self._clients:
            self._clients[service, region] = (
                role_client(service, self._role_arn, region) if self._role_arn else moto_client(service, region)
            )
        return self._clients[service, region]

    def launch_group(
        self,
        name: str,
        schedule: str | None = OFFICE_HOURS,
        sizes: tuple[int, int, int] = (1, 4, 2),
        tags: dict[str, str] | None = None,
        propagate: bool = False,
        region: str = REGION,
    ) -> str:
        """An Auto Scaling group (min, max, desired) with the tag set to `schedule`; moto launches its instances."""
        if region not in self._templates:
            self.client(region).create_launch_template(
                LaunchTemplateName="groups", LaunchTemplateData={"ImageId": IMAGE_ID, "InstanceType": "t3.micro"}
            )
            self._templates.add(region)
        all_tags = {**({TAG: schedule} if schedule is not None else {}), **(tags or {})}
        low, high, desired = sizes
        self.client(region, "autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": "groups"},
            MinSize=low,
            MaxSize=high,
            DesiredCapacity=desired,
            AvailabilityZones=[f"{region}a"],
            Tags=[
                {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
                 "PropagateAtLaunch": propagate}
                for k, v in all_tags.items()
            ],
        )  # fmt: skip
        return name

    def group(self, name: str, region: str = REGION) -> tuple[tuple[int, int, int], dict[str, str]]:
        """A group's (min, max, desired) and its tags, as Auto Scaling reports them."""
        reply = self.client(region, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        [group] = reply["AutoScalingGroups"]
        tags = {tag["Key"]: tag.get("Value", "") for tag in group.get("Tags", ())}
        return (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]), tags

    def launch(
        self,
        schedule: str | None = OFFICE_HOURS,
        state: str = "running",
        count: int = 1,
        region: str = REGION,
        tags: dict[str, str] | None = None,
        disable_api_stop: bool = False,
        hibernation: bool = False,
        instance_type: str | None = None,
    ) -> list[str]:
        """Launch `count` instances (one reservation) with the tag set to `schedule`."""
        ec2 = self.client(region)
        all_tags = dict(tags or {})
        if schedule is not None:
            all_tags[TAG] = schedule
        extra: dict[str, Any] = {}
        if all_tags:
            extra["TagSpecifications"] = [
                {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in all_tags.items()]}
            ]
        if disable_api_stop:
            extra["DisableApiStop"] = True
        if hibernation:
            extra["HibernationOptions"] = {"Configured": True}
        if instance_type:
            extra["InstanceType"] = instance_type
        reply = ec2.run_instances(ImageId=IMAGE_ID, MinCount=count, MaxCount=count, **extra)
        ids = [instance["InstanceId"] for instance in reply["Instances"]]
        if state == "stopped":
            ec2.stop_instances(InstanceIds=ids)
        return ids

    def state(self, instance_id: str, region: str = REGION) -> str:
        reply = self.client(region).describe_instances(InstanceIds=[instance_id])
        return reply["Reservations"][0]["Instances"][0]["State"]["Name"]

    def tags(self, instance_id: str, region: str = REGION) -> dict[str, str]:
        reply = self.client(region).describe_instances(InstanceIds=[instance_id])
        return {tag["Key"]: tag["Value"] for tag in reply["Reservations"][0]["Instances"][0].get("Tags", ())}

    def states(self, region: str = REGION) -> dict[str, str]:
        result: dict[str, str] = {}
        for page in self.client(region).get_paginator("describe_instances").paginate():
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    result[instance["InstanceId"]] = instance["State"]["Name"]
        return result
