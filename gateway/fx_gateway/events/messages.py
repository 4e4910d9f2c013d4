"""What the NATS and durable triggers share: a NATS message as their events show it, and the raw-invoke head."""

from __future__ import annotations

import base64
import json
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # C, as json.dumps(ensure_ascii=False)

from fx.protocol import REPLICA_INVOKE_PATH
from nats.aio.msg import Msg

INVOKE_HEAD = b"POST %s HTTP/1.1\r\nContent-Type: application/json\r\n" % REPLICA_INVOKE_PATH.encode()
encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(ensure_ascii=False) makes one per call


def message_fields(msg: Msg) -> dict:
    """A NATS message as events show it: data as UTF-8 text, else base64 with isBase64Encoded true."""
    try:
        data, is_base64 = msg.data.decode("utf-8"), False
    except UnicodeDecodeError:
        data, is_base64 = base64.b64encode(msg.data).decode("ascii"), True
    return {"subject": msg.subject, "data": data, "isBase64Encoded": is_base64, "headers": dict(msg.headers or {})}


def message_json(msg: Msg) -> str:
    """message_fields(msg) as JSON members, without the braces: what encode() would write, at a fraction of
    its cost (no dict built, the strings escaped by the C encoder). A trigger sends one per event."""
    try:
        data, is_base64 = encode_basestring(msg.data.decode("utf-8")), "false"
    except UnicodeDecodeError:
        data, is_base64 = f'"{base64.b64encode(msg.data).decode("ascii")}"', "true"
    headers = encode(msg.headers) if msg.headers else "{}"
    return (
        f'"subject": {encode_basestring(msg.subject)}, "data": {data}, "isBase64Encoded": {is_base64},'
        f' "headers": {headers}'
    )
