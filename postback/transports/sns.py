"""AWS SNS as a destination: ``Publish`` over the SNS Query API, signed with SigV4.

The callback body becomes the SNS message; message attributes carry the event type and the
Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), so a
subscriber can deduplicate and verify exactly as an HTTP receiver would. SNS answers map onto
the same outcome classes as HTTP: throttling is reported as 429 (retried, throughput lowered),
authorization and validation errors keep their 4xx (permanent), server errors their 5xx.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

import aiohttp

from postback.core.outcome import AttemptResult, FailureKind
from postback.core.sigv4 import sign_request
from postback.transports.base import OutboundRequest

API_VERSION = "2010-03-31"
# AWS error codes that mean "slow down" (the SNS API reference lists Throttled/Throttling;
# the SDKs also retry these spellings as throttling).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "RequestLimitExceeded",
    }
)
_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")
_MESSAGE_ID = re.compile(rb"<MessageId>([^<]+)</MessageId>")


def publish_form(request: OutboundRequest) -> dict[str, str]:
    assert request.sns is not None
    form = {
        "Action": "Publish",
        "Version": API_VERSION,
        "TopicArn": request.sns.topic_arn,
        "Message": request.body.decode("utf-8"),
    }
    attributes = {"event_type": request.event_type}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        if name in request.headers:
            attributes[name] = request.headers[name]
    for i, (name, value) in enumerate(attributes.items(), start=1):
        form[f"MessageAttributes.entry.{i}.Name"] = name
        form[f"MessageAttributes.entry.{i}.Value.DataType"] = "String"
        form[f"MessageAttributes.entry.{i}.Value.StringValue"] = value
    if request.sns.topic_arn.endswith(".fifo"):
        # FIFO topics need a group (per endpoint: its order) and deduplicate on our id.
        form["MessageGroupId"] = request.endpoint_id
        form["MessageDeduplicationId"] = request.message_id
    return form


class SNSTransport:
    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._session = session

    async def send(self, request: OutboundRequest) -> AttemptResult:
        destination = request.sns
        assert destination is not None
        url = destination.endpoint_url or f"https://sns.{destination.region}.amazonaws.com/"
        body = urlencode(publish_form(request)).encode()
        headers = sign_request(
            method="POST",
            url=url,
            headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
            body=body,
            access_key_id=destination.access_key_id,
            secret_access_key=destination.secret_access_key,
            region=destination.region,
            service="sns",
            now=datetime.now(UTC),
        )
        headers.pop("host")  # aiohttp sets the same Host itself
        started = time.perf_counter()
        try:
            async with self._session().post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=request.timeout_s),
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            return AttemptResult(
                status_code=None,
                failure=FailureKind.TIMEOUT,
                error=f"SNS did not answer within {request.timeout_s:g} s",
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return AttemptResult(
                status_code=None,
                failure=FailureKind.NETWORK,
                error=f"SNS unreachable: {type(exc).__name__}: {exc}"[:300],
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        duration = (time.perf_counter() - started) * 1000
        if 200 <= status < 300:
            found = _MESSAGE_ID.search(raw)
            message_id = found.group(1).decode() if found else "?"
            return AttemptResult(
                status_code=status,
                duration_ms=duration,
                response_body=f"SNS MessageId {message_id}",
            )
        code_match = _CODE.search(raw)
        code = code_match.group(1).decode() if code_match else f"HTTP {status}"
        message_match = _MESSAGE.search(raw)
        message = message_match.group(1).decode() if message_match else ""
        if code in THROTTLING_CODES:
            status = 429
        return AttemptResult(
            status_code=status,
            error=f"SNS {code}: {message}"[:300],
            duration_ms=duration,
            response_body=raw[:1024].decode("utf-8", "replace"),
        )

    async def close(self) -> None:
        pass
