"""InvokeWithResponseStream (`POST /2021-11-15/functions/NAME/response-streaming-invocations`): an Invoke whose
replica answers in the `application/vnd.amazon.eventstream` framing, each chunk of a streaming handler as it is
yielded (fx_runtime/streams.py). The gateway relays it as it relays every answer, as the bytes come."""

from __future__ import annotations

from collections.abc import Callable

from fx.protocol import RESPONSE_STREAM

from fx_gateway.http import lambda_errors, responses
from fx_gateway.http.answers import Answer
from fx_gateway.http.server import Call, ClientConnection
from fx_gateway.proxy.exchange import Exchange

STREAM_PREFIX = b"/2021-11-15/functions/"
STREAM_SUFFIX = b"/response-streaming-invocations"
STREAM_HEADER = RESPONSE_STREAM.lower().encode()  # the gateway's to send: a caller's own is dropped (router.HOP_BY_HOP)
_ASK = b"%s: eventstream\r\n" % RESPONSE_STREAM.encode()

Headers = list[tuple[bytes, bytes]]
Invoke = Callable[[ClientConnection, bytes, bytes, Headers], Call | None]


def invoke_stream(invoke: Invoke, client: ClientConnection, name: bytes, query: bytes, headers: Headers):
    """`invoke` (the Invoke API's route) for `name`, its replica asked for the event stream. Invocation types:
    RequestResponse and DryRun, as Lambda's; Event is refused before anything is stored."""
    for header, value in headers:
        if header.lower() == b"x-amz-invocation-type" and value == b"Event":
            message = "X-Amz-Invocation-Type 'Event' is not one of RequestResponse, DryRun"
            return Answer(client, lambda_errors.translate(responses.error(400, "InvalidInvocationType", message)))
    call = invoke(client, name, query, headers)
    if isinstance(call, Exchange):
        call.head += _ASK
    return call
