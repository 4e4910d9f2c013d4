"""Response streaming in the replica: the event-stream framing (decoded by botocore, the client that reads it),
chunks on the wire as the handler yields them, and errors, timeouts and limits in the middle of a stream."""

import base64
import json
import socket

import httpx
import pytest
from botocore.eventstream import EventStreamBuffer
from fx_runtime import eventstream, streams

from tests.unit.runtime.test_runtime_api import BOOTSTRAP
from tests.waiting import wait_for

ASK = {"X-Fx-Response-Stream": "eventstream"}


def decode(data: bytes, piece: int = 7) -> list[tuple[dict, bytes]]:
    """(headers, payload) of each message, fed to botocore in small pieces as a network would."""
    buffer = EventStreamBuffer()
    messages = []
    for start in range(0, len(data), piece):
        buffer.add_data(data[start : start + piece])
        messages += [(m.headers, m.payload) for m in buffer]
    return messages


def events(data: bytes) -> list[tuple[str, object]]:
    """(event type, payload: bytes for a PayloadChunk, the JSON for InvokeComplete)."""
    out = []
    for headers, payload in decode(data, piece=len(data) or 1):
        assert headers[":message-type"] == "event"
        kind = headers[":event-type"]
        out.append((kind, payload if kind == "PayloadChunk" else json.loads(payload)))
    return out


def test_botocore_decodes_the_framing_with_its_checksums():
    chunk = "naïve ☃ ".encode() * 100
    data = eventstream.payload_chunk(chunk) + eventstream.payload_chunk(b"") + eventstream.invoke_complete(None, None)
    (first, body), (_, empty), (last, complete) = decode(data)
    assert first == {
        ":event-type": "PayloadChunk",
        ":content-type": "application/octet-stream",
        ":message-type": "event",
    }
    assert (body, empty) == (chunk, b"")
    assert last[":event-type"] == "InvokeComplete" and last[":content-type"] == "application/json"
    assert json.loads(complete) == {}

    failed = eventstream.invoke_complete({"errorType": "ValueError", "errorMessage": "non-ASCII: é"}, "bG9n")
    [(_, payload)] = decode(failed)
    assert json.loads(payload) == {"ErrorCode": "ValueError", "ErrorDetails": "non-ASCII: é", "LogResult": "bG9n"}


def test_a_whole_answer_becomes_one_chunk_or_the_error_of_the_completion():
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n[42]"
    converted = streams.from_answer(ok, b"7")
    head, _, body = converted.partition(b"\r\n\r\n")
    assert b"Content-Type: application/vnd.amazon.eventstream" in head and b"X-Amz-Executed-Version: 7" in head
    assert events(dechunk(body)) == [("PayloadChunk", b"[42]"), ("InvokeComplete", {})]

    error = json.dumps({"errorMessage": "boom", "errorType": "Sandbox.Timedout"}).encode()
    failed = (
        b"HTTP/1.1 200 OK\r\nX-Amz-Function-Error: Unhandled\r\nX-Amz-Log-Result: bG9n\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(error), error)
    )
    head, _, body = streams.from_answer(failed, b"7").partition(b"\r\n\r\n")
    assert b"Connection: close" in head
    complete = {"ErrorCode": "Sandbox.Timedout", "ErrorDetails": "boom", "LogResult": "bG9n"}
    assert events(dechunk(body)) == [("InvokeComplete", complete)]

    refused = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}"
    assert streams.from_answer(refused, b"7") == refused  # an error of the call itself stays an HTTP error


def dechunk(body: bytes) -> bytes:
    """The payload of a complete chunked body; fails unless it ends with the last chunk."""
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n"
            return out
        out, body = out + body[:size], body[size + 2 :]


def stream(replica, event: dict, headers: dict | None = None) -> tuple[httpx.Response, bytes]:
    r = httpx.post(f"{replica.base}/_fx/invoke", json=event, headers={**ASK, **(headers or {})}, timeout=10)
    return r, r.content


WAITS = """
import json, os, time
def handler(event, context):
    if "rawPath" in event:  # the HTTP route's event: the test's event is its body
        event = json.loads(event["body"])
    def chunks():
        yield "one"
        while not os.path.exists(os.environ["MARK"]):  # the test creates it once it holds "one"
            time.sleep(0.01)
        if event.get("sleep"):
            time.sleep(event["sleep"])
        yield "two"
    return chunks()
"""


def test_each_chunk_is_on_the_wire_before_the_handler_goes_on(start, tmp_path):
    mark = tmp_path / "mark"
    replica = start({"handler.py": WAITS}, MARK=str(mark))
    host, port = replica.endpoint.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /_fx/invoke HTTP/1.1\r\nHost: x\r\nX-Fx-Response-Stream: 1\r\nContent-Length: 2\r\n\r\n{}")
        received = b""
        while b"one" not in received:
            received += sock.recv(65536)
        assert b"Transfer-Encoding: chunked" in received
        mark.touch()
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(65536)
    body = received.partition(b"\r\n\r\n")[2]
    assert events(dechunk(body)) == [("PayloadChunk", b"one"), ("PayloadChunk", b"two"), ("InvokeComplete", {})]


def test_a_timeout_mid_stream_completes_it_with_lambdas_timeout_error(start, tmp_path):
    mark = tmp_path / "mark"
    mark.touch()
    replica = start({"handler.py": WAITS}, MARK=str(mark), FX_TIMEOUT_MS="300")
    r, body = stream(replica, {"sleep": 30}, {"X-Fx-Request-Id": "slow-1"})
    message = "RequestId: slow-1 Error: Task timed out after 0.30 seconds"
    complete = {"ErrorCode": "Sandbox.Timedout", "ErrorDetails": message}
    assert r.status_code == 200 and events(body) == [("PayloadChunk", b"one"), ("InvokeComplete", complete)]
    assert replica.wait_exit() != 0
    assert "Status: timeout" in replica.log_text("REPORT RequestId: slow-1")


def test_a_timeout_mid_stream_on_the_http_route_cuts_the_body(start, tmp_path):
    mark = tmp_path / "mark"
    mark.touch()
    replica = start({"handler.py": WAITS}, MARK=str(mark), FX_TIMEOUT_MS="300")
    with httpx.stream("POST", f"{replica.base}/_fx/http/", json={"sleep": 30}, timeout=10) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            r.read()
    assert replica.wait_exit() != 0


KINDS = """
import asyncio, os
def handler(event, context):
    kind = event.get("kind") or (event.get("queryStringParameters") or {}).get("kind")
    if kind == "async":
        async def chunks():
            for word in ("a", "sync"):
                await asyncio.sleep(0)
                yield word
        return chunks()
    if kind == "dict":
        return {"statusCode": 201, "headers": {"x-kind": "dict"}, "body": iter(["<p>", "streamed</p>"])}
    if kind == "odd":
        return iter(["fine", {"not": "bytes"}])
    if kind == "raise":
        raise KeyError("before any chunk")
    if kind == "plain":
        return {"plain": True}
    if kind == "limit":
        def chunks():
            try:
                while True:
                    yield b"x" * 40
            finally:
                print("generator closed")
        return chunks()
    return iter([b"bytes,", "str,", bytearray(b"bytearray"), b""])
"""


def test_what_streams_and_how_each_caller_gets_it(start):
    replica = start({"handler.py": KINDS}, FX_MAX_STREAM_BYTES="100", FX_MAX_RESPONSE_BYTES="60")
    _, body = stream(replica, {})
    assert events(body) == [
        ("PayloadChunk", b"bytes,"),
        ("PayloadChunk", b"str,"),
        ("PayloadChunk", b"bytearray"),
        ("InvokeComplete", {}),
    ]  # the empty chunk is left out: in HTTP/1.1 chunks it would end the body
    assert httpx.post(f"{replica.base}/_fx/invoke", json={}).content == b"bytes,str,bytearray"
    _, body = stream(replica, {"kind": "async"})
    assert events(body) == [("PayloadChunk", b"a"), ("PayloadChunk", b"sync"), ("InvokeComplete", {})]

    # Not a stream: one chunk. An error before any chunk: the completion alone.
    _, body = stream(replica, {"kind": "plain"})
    assert events(body) == [("PayloadChunk", b'{"plain": true}'), ("InvokeComplete", {})]
    _, body = stream(replica, {"kind": "raise"}, {"X-Amz-Log-Type": "Tail"})
    [(_, complete)] = events(body)
    assert (complete["ErrorCode"], complete["ErrorDetails"]) == ("KeyError", "'before any chunk'")
    assert "[ERROR] KeyError" in base64.b64decode(complete["LogResult"]).decode()

    _, body = stream(replica, {"kind": "odd"})
    assert events(body)[0] == ("PayloadChunk", b"fine")
    complete = events(body)[1][1]
    assert complete["ErrorCode"] == "Runtime.MarshalError"
    assert "must be bytes or str, not dict" in complete["ErrorDetails"]

    # The limits: FX_MAX_STREAM_BYTES for a stream, FX_MAX_RESPONSE_BYTES joined; the generator is closed.
    _, body = stream(replica, {"kind": "limit"})
    assert [kind for kind, _ in events(body)] == ["PayloadChunk", "PayloadChunk", "InvokeComplete"]  # 80 of 100
    assert events(body)[-1][1]["ErrorCode"] == "Function.ResponseSizeTooLarge"
    joined = httpx.post(f"{replica.base}/_fx/invoke", json={"kind": "limit"})
    assert joined.json()["errorMessage"] == "Response payload size exceeded maximum allowed payload size (60 bytes)."
    wait_for(lambda: replica.log_text().count("generator closed") == 2, 5, "both generators closed, in the log")


def test_the_http_route_streams_a_body_with_the_status_and_headers_given(start):
    replica = start({"handler.py": KINDS})
    with httpx.Client(base_url=replica.base) as client:
        r = client.get("/_fx/http/", params={"kind": "dict"})
        assert (r.status_code, r.headers["x-kind"], r.headers["transfer-encoding"]) == (201, "dict", "chunked")
        assert r.text == "<p>streamed</p>"
        plain = client.get("/_fx/http/")
        assert plain.headers["content-type"] == "application/octet-stream" and plain.content == b"bytes,str,bytearray"
        head = client.head("/_fx/http/")
        assert head.status_code == 200 and head.content == b""
        assert client.get("/_fx/http/", params={"kind": "raise"}).status_code == 502  # nothing sent yet: a 502
        assert client.get("/_fx/http/", params={"kind": "async"}).content == b"async"  # same connection, still good


def test_a_custom_runtimes_answer_is_one_chunk(start):
    """A bootstrap (the Lambda Runtime API) answers whole: one PayloadChunk, or the error in the completion."""
    replica = start({"bootstrap.py": BOOTSTRAP}, FX_BOOTSTRAP="python3 bootstrap.py")
    _, body = stream(replica, {"n": 1})
    [(kind, chunk), completion] = events(body)
    assert kind == "PayloadChunk" and json.loads(chunk)["event"] == {"n": 1}
    assert completion == ("InvokeComplete", {})
    _, body = stream(replica, {"action": "fail"})
    assert events(body) == [("InvokeComplete", {"ErrorCode": "ValueError", "ErrorDetails": "it failed"})]


def test_a_reader_slower_than_the_handler_gets_every_byte(start):
    """The replica waits for a reader that lags (its socket buffer full) rather than dropping or buffering."""
    replica = start({"handler.py": "def handler(e, c):\n    return (bytes([i]) * (1 << 20) for i in range(16))\n"})
    host, port = replica.endpoint.split(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the writer must wait
        sock.connect((host, int(port)))
        sock.sendall(b"POST /_fx/invoke HTTP/1.1\r\nHost: x\r\nX-Fx-Response-Stream: 1\r\nContent-Length: 2\r\n\r\n{}")
        received = bytearray()
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(1 << 16)
    got = events(dechunk(bytes(received).partition(b"\r\n\r\n")[2]))
    assert got == [("PayloadChunk", bytes([i]) * (1 << 20)) for i in range(16)] + [("InvokeComplete", {})]
