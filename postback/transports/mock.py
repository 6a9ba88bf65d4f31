"""A transport for unit tests: records every request and answers from a script, no sockets.

    transport = MockTransport.scripted(503, 200)      # first attempt 503, then 200
    transport = MockTransport(lambda request: respond(204))
    ...
    await transport.wait_for_requests(2)
    assert transport.requests[1].headers["webhook-id"] == message_id

Like the real transports it never raises for a failed attempt: a failure is a scripted
``AttemptResult`` (see ``fail``), and the core decides what it means.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from postback.core.outcome import AttemptResult, FailureKind
from postback.transports.base import OutboundRequest

Handler = Callable[[OutboundRequest], AttemptResult | Awaitable[AttemptResult]]


def respond(
    status_code: int, body: str | None = None, *, retry_after_s: float | None = None
) -> AttemptResult:
    """An HTTP answer, as a transport reports it."""
    return AttemptResult(status_code=status_code, response_body=body, retry_after_s=retry_after_s)


def fail(kind: FailureKind, error: str = "scripted failure") -> AttemptResult:
    """No HTTP answer at all: a timeout, a network error or a blocked destination."""
    return AttemptResult(status_code=None, failure=kind, error=error)


class MockTransport:
    """A ``Transport`` whose answers come from ``handler``; every request is kept in order."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler: Handler = handler or (lambda _request: respond(200))
        self.requests: list[OutboundRequest] = []
        self.closed = False
        self._seen = asyncio.Condition()

    @classmethod
    def scripted(
        cls, *answers: int | AttemptResult, then: int | AttemptResult = 200
    ) -> MockTransport:
        """Answer with ``answers`` in order (status codes or results), then ``then`` forever."""
        script = [respond(a) if isinstance(a, int) else a for a in answers]
        last = respond(then) if isinstance(then, int) else then

        def next_answer(_request: OutboundRequest) -> AttemptResult:
            return script.pop(0) if script else last

        return cls(next_answer)

    async def send(self, request: OutboundRequest) -> AttemptResult:
        self.requests.append(request)
        answer = self.handler(request)
        result = await answer if inspect.isawaitable(answer) else answer
        async with self._seen:
            self._seen.notify_all()
        return result

    async def close(self) -> None:
        self.closed = True

    async def wait_for_requests(self, count: int) -> list[OutboundRequest]:
        """Wait until at least ``count`` requests were sent; returns all of them so far."""
        async with self._seen:
            await self._seen.wait_for(lambda: len(self.requests) >= count)
        return list(self.requests)

    def requests_to(self, endpoint_id: str) -> list[OutboundRequest]:
        """The requests sent to one endpoint, in order."""
        return [r for r in self.requests if r.endpoint_id == endpoint_id]
