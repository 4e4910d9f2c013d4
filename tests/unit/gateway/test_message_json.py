"""A trigger's event JSON is written by hand around C-escaped strings (no dict per event); whatever a publisher
sends — quotes, backslashes, control characters, line separators, bytes that are not UTF-8, odd headers — it
must stay the JSON the dict form encodes to."""

from __future__ import annotations

import json

import pytest
from fx_gateway.events.messages import message_fields, message_json
from nats.aio.msg import Msg

HOSTILE = [
    (b'{"id": 7}', None),
    (b'"}, "isBase64Encoded": true, "x": "', {"k": 'v"\\'}),
    (b"\x00\x1f\n\r\t\\ \xe2\x80\xa8 \xf0\x9f\x98\x80", {"Nats-Msg-Id": "\u2028"}),
    (b"\xff\xfe not utf-8", {"a": "1", "b": ""}),
    (b"", {}),
]


@pytest.mark.parametrize(("data", "headers"), HOSTILE)
def test_the_hand_written_json_is_the_dicts(data: bytes, headers: dict | None) -> None:
    msg = Msg(None, subject='orders."eu"\\x', reply="", data=data, headers=headers)
    assert json.loads("{" + message_json(msg) + "}") == message_fields(msg)
