"""The operators' inbox: an SNS topic on moto with an SQS queue subscribed, to read what a run published."""

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
