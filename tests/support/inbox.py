"""The operators' inbox (an SNS topic with an SQS queue subscribed) and the automation's (an EventBridge rule
with an SQS target): what a run published, read back from moto."""

from __future__ import annotations

import json
from typing import Any

from tests.support.fleet import moto_client


class Inbox:
    """An SNS topic with an SQS queue subscribed: what the operators would receive."""

    def __init__(self) -> None:
        sns, self._sqs = moto_client("sns"), moto_client("sqs")
        self.topic = sns.create_topic(Name="ec2-powercycle")["TopicArn"]
        self._queue = self._sqs.create_queue(QueueName="operators")["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])

    def messages(self) -> list[dict[str, Any]]:
        reply = self._sqs.receive_message(QueueUrl=self._queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(message["Body"]) for message in reply.get("Messages", ())]


class EventInbox:
    """An EventBridge bus with a rule sending ec2-powercycle's events to an SQS queue: what automation receives."""

    def __init__(self, bus: str = "ops") -> None:
        events, self._sqs = moto_client("events"), moto_client("sqs")
        self.bus = events.create_event_bus(Name=bus)["EventBusArn"]
        self._queue = self._sqs.create_queue(QueueName="automation")["QueueUrl"]
        queue_arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])
        events.put_rule(Name="all-of-them", EventBusName=bus, EventPattern=json.dumps({"source": ["ec2-powercycle"]}))
        events.put_targets(
            Rule="all-of-them",
            EventBusName=bus,
            Targets=[{"Id": "queue", "Arn": queue_arn["Attributes"]["QueueArn"]}],
        )

    def events(self) -> list[dict[str, Any]]:
        """Every event delivered so far, as the rule delivered it (the envelope included)."""
        received: list[dict[str, Any]] = []
        while True:
            reply = self._sqs.receive_message(QueueUrl=self._queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = reply.get("Messages", ())
            if not messages:
                return received
            for message in messages:
                received.append(json.loads(message["Body"]))
                self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=message["ReceiptHandle"])
