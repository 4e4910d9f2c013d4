"""The `application/vnd.amazon.eventstream` framing of InvokeWithResponseStream's answer, encoded.

No library on PyPI encodes it but awscrt (native, far heavier than this runtime's stdlib-only imports), and
botocore only decodes (its EventStreamBuffer is what the tests check these bytes with). A message is a prelude
(total length, headers length, the CRC-32 of those 8 bytes), the headers (name length, name, type 7 = string,
value length, value), the payload and the CRC-32 of everything before it.
"""

from __future__ import annotations

import json
import struct
from zlib import crc32

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7  # the header value type botocore reads as utf-8


def _header(name: bytes, value: bytes) -> bytes:
    return struct.pack("!B", len(name)) + name + struct.pack("!BH", _STRING, len(value)) + value


def _headers(event_type: bytes, content_type: bytes) -> bytes:
    return (
        _header(b":event-type", event_type)
        + _header(b":content-type", content_type)
        + _header(b":message-type", b"event")
    )


_CHUNK_HEADERS = _headers(b"PayloadChunk", b"application/octet-stream")
_COMPLETE_HEADERS = _headers(b"InvokeComplete", b"application/json")


def message(headers: bytes, payload: bytes) -> bytes:
    """One event-stream message of these encoded headers and this payload."""
    prelude = struct.pack("!II", 16 + len(headers) + len(payload), len(headers))
    prelude += struct.pack("!I", crc32(prelude))
    body = prelude + headers + payload
    return body + struct.pack("!I", crc32(body))


def payload_chunk(data: bytes) -> bytes:
    """A `PayloadChunk` event: what the handler produced, as it is."""
    return message(_CHUNK_HEADERS, data)


def invoke_complete(err: dict | None, log_result: str | None) -> bytes:
    """The `InvokeComplete` event that ends every stream: ErrorCode is the error's errorType, ErrorDetails
    its message; LogResult the base64 tail of the log when the caller asked for it (LogType Tail)."""
    body: dict[str, str] = {}
    if err is not None:
        body["ErrorCode"] = err["errorType"]
        body["ErrorDetails"] = err["errorMessage"]
    if log_result is not None:
        body["LogResult"] = log_result
    return message(_COMPLETE_HEADERS, json.dumps(body, ensure_ascii=False).encode())
