"""SNS as a destination, against moto's SNS server (the real AWS wire protocol), with an SQS
subscription read back through boto3; failure paths against a stand-in speaking AWS errors."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aiohttp import web
from moto.server import ThreadedMotoServer

from postback.core import signing
from postback.core.wire import AttemptOut
from tests.support.receiver import Received, Receiver, sequence
from tests.support.service import RunningPostback, wait_until

REGION = "eu-west-1"
KEY_ID = "AKIAPOSTBACKTEST"
SECRET_KEY = "sns-secret-access-key-never-shown"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"  # type: ignore[attr-defined]
    finally:
        server.stop()


def aws(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET_KEY,
    )


def destination(topic_arn: str, endpoint_url: str) -> dict[str, str]:
    return {
        "type": "sns",
        "topic_arn": topic_arn,
        "region": REGION,
        "access_key_id": KEY_ID,
        "secret_access_key": SECRET_KEY,
        "endpoint_url": endpoint_url,
    }


async def test_publishes_to_topic_and_subscriber_receives_it(
    postback: RunningPostback, moto_url: str
) -> None:
    sns, sqs = aws("sns", moto_url), aws("sqs", moto_url)
    topic = sns.create_topic(Name=f"callbacks-{time.monotonic_ns()}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"q-{time.monotonic_ns()}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    payload = (
        b'{"type":"mo_text","id":"01X","body":"hello \\u00e9","from":"16051234567",'
        b'"to":"13185551234","received_at":"2022-08-24T14:15:22Z"}'
    )
    async with await postback.new_account() as pb:
        endpoint = await pb.create_endpoint(None, destination=destination(topic, moto_url))
        assert endpoint.url == topic and endpoint.destination is not None
        shown = await pb.get_endpoint(endpoint.id)
        assert SECRET_KEY not in repr(shown) and SECRET_KEY not in repr(endpoint)
        accepted = await pb.send("mo_text", payload)

        async def received() -> list[dict[str, Any]]:
            answer = await asyncio.to_thread(sqs.receive_message, QueueUrl=queue)
            return answer.get("Messages", [])

        [message] = await wait_until(received)
        [attempt] = await wait_until(lambda: attempts_when(pb, accepted.id, "delivered"))
    envelope = json.loads(message["Body"])
    attributes = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
    assert envelope["Message"].encode() == payload
    assert attributes["event_type"] == "mo_text"
    assert attributes["webhook-id"] == accepted.id
    signing.verify(
        [str(endpoint.signing_secret)],
        attributes["webhook-id"],
        attributes["webhook-timestamp"],
        attributes["webhook-signature"],
        envelope["Message"].encode(),
        now_s=time.time(),
    )
    assert attempt.status_code == 200
    assert attempt.response_body == f"SNS MessageId {envelope['MessageId']}"


def aws_error(status: int, code: str, message: str):  # type: ignore[no-untyped-def]
    body = (
        f'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error>'
        f"<Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>r-1</RequestId></ErrorResponse>"
    )

    async def respond(request: web.Request, received: Received) -> web.StreamResponse:
        return web.Response(status=status, text=body, content_type="text/xml")

    return respond


async def published(request: web.Request, received: Received) -> web.StreamResponse:
    body = (
        '<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult>'
        "<MessageId>m-123</MessageId></PublishResult></PublishResponse>"
    )
    return web.Response(status=200, text=body, content_type="text/xml")


async def attempts_when(pb, message_id: str, state: str) -> list[AttemptOut] | None:  # type: ignore[no-untyped-def]
    [delivery] = (await pb.get_message(message_id)).deliveries
    if delivery.state != state:
        return None
    return (await pb.list_attempts(delivery.id)).data


async def test_throttling_is_retried_and_auth_errors_are_permanent(
    postback: RunningPostback, receiver: Receiver
) -> None:
    topic = f"arn:aws:sns:{REGION}:123456789012:callbacks"
    async with await postback.new_account() as pb:
        await pb.create_endpoint(
            None,
            destination=destination(topic, receiver.url("/throttled")),
            event_types=["busy"],
            retry_policy={"schedule_s": [0.2, 0.2]},
        )
        await pb.create_endpoint(
            None,
            destination=destination(topic, receiver.url("/forbidden")),
            event_types=["denied"],
        )
        receiver.on(
            "/throttled", sequence(aws_error(400, "Throttling", "Rate exceeded"), published)
        )
        receiver.on(
            "/forbidden", aws_error(403, "InvalidClientTokenId", "The security token is invalid")
        )
        busy = await pb.send("busy", {"n": 1})
        denied = await pb.send("denied", {"n": 2})
        busy_attempts = await wait_until(lambda: attempts_when(pb, busy.id, "delivered"))
        denied_attempts = await wait_until(lambda: attempts_when(pb, denied.id, "dead"))
    [signed] = receiver.at("/forbidden")
    assert signed.headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIAPOSTBACKTEST/"
    )
    assert SECRET_KEY not in signed.headers["authorization"]
    assert [a.outcome for a in busy_attempts] == ["throttled", "delivered"]
    assert busy_attempts[0].error == "SNS Throttling: Rate exceeded"
    assert busy_attempts[1].response_body == "SNS MessageId m-123"
    [refused] = denied_attempts
    assert refused.outcome == "permanent" and refused.status_code == 403
    assert refused.error == "SNS InvalidClientTokenId: The security token is invalid"
