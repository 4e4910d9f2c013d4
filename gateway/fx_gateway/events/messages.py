"""What the NATS and durable triggers share: a NATS message as their events show it, and the raw-invoke head."""

from __future__ import annotations

import base64

from fx.protocol import REPLICA_INVOKE_PATH
from nats.aio.msg import Msg

INVOKE_HEAD = b"POST %s HTTP/1.1\r\nContent-Type: application/json\r\n" % REPLICA_INVOKE_PATH.encode()


def message_fields(msg: Msg) -> dict:
    """A NATS message as events show it: data as UTF-8 text, else base64 with isBase64Encoded true."""
    try:
        data, is_base64 = msg.data.decode("utf-8"), False
    except UnicodeDecodeError:
        data, is_base64 = base64.b64encode(msg.data).decode("ascii"), True
    return {"subject": msg.subject, "data": data, "isBase64Encoded": is_base64, "headers": dict(msg.headers or {})}
