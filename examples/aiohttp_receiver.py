"""A callback receiver that acknowledges fast and processes later (aiohttp).

    POSTBACK_SIGNING_SECRET=whsec_... python examples/aiohttp_receiver.py   # listens on :8080

The handler only verifies, deduplicates and queues, then answers 204 at once: Vibes gives a
receiver two seconds, Postback five by default, and a slow answer is a failed attempt that
will be retried. The real work happens in a background task reading the queue.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from postback.receiver import (
    Deduplicator,
    PayloadError,
    WebhookVerificationError,
    parse,
    verify,
)
from postback.receiver.events import Event, InboundText, RecipientDeliveryReport

QUEUE: web.AppKey[asyncio.Queue[Event]] = web.AppKey("queue", asyncio.Queue)
HANDLED: web.AppKey[list[Event]] = web.AppKey("handled", list)
SECRETS: web.AppKey[list[str]] = web.AppKey("secrets", list)
SEEN: web.AppKey[Deduplicator] = web.AppKey("seen", Deduplicator)
WORKER: web.AppKey[asyncio.Task[None]] = web.AppKey("worker", asyncio.Task)


async def callback(request: web.Request) -> web.Response:
    body = await request.read()  # the raw bytes: the signature covers them exactly
    try:
        verify(request.headers, body, request.app[SECRETS])
    except WebhookVerificationError:
        return web.Response(status=401)
    if not request.app[SEEN].first_time(request.headers["webhook-id"]):
        return web.Response(status=204)  # a retry of something we already have
    try:
        event = parse(body)
    except PayloadError as error:
        # Acknowledge what you cannot use (as Vibes advises), or it is retried for nothing.
        request.app.logger.warning("unusable callback: %s", error)
        return web.Response(status=204)
    request.app[QUEUE].put_nowait(event)
    return web.Response(status=204)


async def process(app: web.Application) -> None:
    while True:
        event = await app[QUEUE].get()
        if isinstance(event, RecipientDeliveryReport):
            pass  # e.g. update the message's status in your database
        elif isinstance(event, InboundText):
            pass  # e.g. route the reply to a conversation
        app[HANDLED].append(event)


async def start_worker(app: web.Application) -> None:
    app[WORKER] = asyncio.create_task(process(app))


async def stop_worker(app: web.Application) -> None:
    app[WORKER].cancel()


def make_app(secrets: list[str]) -> web.Application:
    app = web.Application()
    app[SECRETS] = secrets
    app[SEEN] = Deduplicator()
    app[QUEUE] = asyncio.Queue()
    app[HANDLED] = []
    app.router.add_post("/callbacks", callback)
    app.on_startup.append(start_worker)
    app.on_cleanup.append(stop_worker)
    return app


if __name__ == "__main__":
    secrets = os.environ["POSTBACK_SIGNING_SECRET"].split(",")  # old,new during a rotation
    web.run_app(make_app(secrets), host="127.0.0.1", port=8080)
