"""Notifications on the app's SNS topic, the one place humans hear what a workflow did."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

_SUBJECT_LIMIT = 100
_MESSAGE_LIMIT = 200_000  # SNS takes 256 KB; keep well clear of it


def subject_line(text: str) -> str:
    """SNS subjects must be one line of ASCII, at most 100 characters."""
    flat = " ".join(text.split())
    ascii_only = flat.encode("ascii", "replace").decode("ascii")
    return ascii_only[:_SUBJECT_LIMIT] or "ec2ops"


class Notifier:
    """Publishes on one topic; a client is made on first use, never at import."""

    def __init__(self, topic_arn: str, client: SNSClient | None = None) -> None:
        self.topic_arn = topic_arn
        self._client = client

    @property
    def client(self) -> SNSClient:
        """The boto3 client, created lazily."""
        if self._client is None:
            self._client = boto3.client("sns")
        return self._client

    def publish(self, subject: str, message: str) -> str:
        """Publish one message; returns its id."""
        response = self.client.publish(
            TopicArn=self.topic_arn,
            Subject=subject_line(subject),
            Message=message[:_MESSAGE_LIMIT],
        )
        return str(response.get("MessageId", ""))
