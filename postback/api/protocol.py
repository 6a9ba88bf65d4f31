"""The HTTP/1.1 connection layer under the API: what happens to a request aiohttp's parser
refuses before any handler runs (a header over 8 KB, a request line too long, bytes that are
not HTTP).

aiohttp would answer those in plain text that echoes the first 100 bytes of the offending line
(for ``Authorization``, part of a credential) and log them with a traceback. Here the answer
is the API's usual JSON error, echoes nothing, and is logged as one line without the value.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from postback.api.app import error_response

log = logging.getLogger("postback.api")

MAX_HEADER_BYTES = 8192
"""A request header (name and value) may be at most 8 KB; a longer one gets 431 (RFC 6585
section 5). The request line keeps aiohttp's own limit, one byte less, so the two can be told
apart: a longer request line gets 414 (RFC 9110 section 15.5.15)."""
MAX_REQUEST_LINE_BYTES = MAX_HEADER_BYTES - 2


def _refusal(exc: HttpProcessingError) -> tuple[int, str, str]:
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_HEADER_BYTES,):
            return (
                431,
                "header_too_large",
                f"a request header is longer than {MAX_HEADER_BYTES} bytes",
            )
        return (
            414,
            "uri_too_long",
            f"the request line is longer than {MAX_REQUEST_LINE_BYTES} bytes",
        )
    return 400, "bad_request", "the request is not valid HTTP/1.1"


class ApiRequestHandler(RequestHandler):
    """aiohttp's connection handler with the parser's refusals answered the API's way."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        status, code, text = _refusal(exc)
        # The exception's text quotes the offending bytes: log its kind only.
        level = logging.DEBUG if isinstance(exc, BadHttpMethod) else logging.WARNING
        log.log(
            level,
            "refused a malformed request from %s: %s (%s)",
            request.remote,
            text,
            type(exc).__name__,
        )
        response = error_response(status, code, text)
        response.force_close()
        return response


class ApiServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ApiRequestHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are handled by ``ApiRequestHandler``."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_field_size", MAX_HEADER_BYTES)
        kwargs.setdefault("max_line_size", MAX_REQUEST_LINE_BYTES)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = ApiServer  # same state, our handler class per connection
        return server
