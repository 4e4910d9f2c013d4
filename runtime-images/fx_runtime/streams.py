"""Response streaming: a handler's chunks written to the caller's socket as the handler produces them.

Lambda's Python runtime has no response streaming, so fx defines it: a handler that returns an iterator
(a generator, sync or async) streams, each item (bytes or str) one chunk. On the HTTP trigger a dict with a
`statusCode` whose `body` is such an iterator streams too, with that status and those headers (a function URL
in RESPONSE_STREAM mode). A caller that takes the answer whole (Invoke) gets the chunks joined.

The chunks go straight to the socket's fd from the handler's thread, one blocking write each: the loop is not
running while a handler runs (server.py), and the watchdog thread writes the stream's last words to the same fd
on a timeout, so a lock keeps a chunk and those words apart. The connection's transport has nothing buffered
when a stream begins: the gateway sends a request only once the previous answer on the connection is whole.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from . import eventstream, http11
from .http_events import response

LAST_WORDS_WAIT_S = 1.0  # how long the watchdog waits for a chunk being written before it ends the process anyway
_END = b"0\r\n\r\n"  # the last chunk of a chunked body
_OCTET_STREAM = (("Content-Type", "application/octet-stream"),)  # what a function URL streams by default


class CallerGone(ConnectionError):
    """The caller's connection broke mid-stream: the handler is stopped, nobody reads what it would produce."""


def chunks_of(result: Any) -> Iterator[Any] | None:
    """The items of a result that streams (an iterator, or an async iterator driven here), else None."""
    if hasattr(result, "__next__"):
        return result
    if hasattr(result, "__anext__"):
        return _drive(result)
    return None


def _drive(items: AsyncIterator[Any]) -> Iterator[Any]:
    """An async iterator's items, each awaited on a loop of its own (a handler runs where no loop runs)."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(items.__anext__())
            except StopAsyncIteration:
                return
    finally:
        close = getattr(items, "aclose", None)
        if close is not None:
            loop.run_until_complete(close())
        loop.close()


def chunk_bytes(chunk: Any) -> bytes:
    """A streamed item as bytes: bytes-like as they are, str in UTF-8; anything else is a TypeError."""
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise TypeError(f"a streamed chunk must be bytes or str, not {type(chunk).__name__}")


def _write(fd: int, data: bytes) -> None:
    """Write all of `data` to a non-blocking socket, waiting while the reader lags (the watchdog bounds it)."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            writable = select.poll()  # not select(): a replica's fds may pass FD_SETSIZE
            writable.register(fd, select.POLLOUT)
            writable.poll()
        except OSError as e:
            raise CallerGone(f"the caller's connection broke mid-stream: {e}") from None


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Stream:
    """The streaming answer of the invocation in progress. A replica runs one invocation at a time, so its server
    keeps one of each kind and `begin`s it anew per call (no allocation on the usual call's path). `open` decides
    whether the result streams and sets the head; `send` writes a chunk (the head before the first);
    `last_words` completes the answer at once, the process about to end (a timeout, out of memory)."""

    __slots__ = ("fd", "head", "head_only", "keep", "lock", "started")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.begin(-1, False)

    def begin(self, fd: int, keep: bool, head_only: bool = False) -> Stream:
        self.fd = fd
        self.keep = keep
        self.head_only = head_only  # a HEAD request: the head alone
        self.head = b""  # set by `open` once the result is known to stream
        self.started = False  # the head is out
        return self

    def open(self, result: Any) -> Iterator[Any] | None:
        raise NotImplementedError

    def frame(self, data: bytes) -> bytes:
        raise NotImplementedError

    def cut(self, whole: bytes) -> bytes:
        """What ends the answer now, `whole` being what a plain call would get."""
        raise NotImplementedError

    def send(self, data: bytes) -> None:
        with self.lock:
            if self.started:
                _write(self.fd, self.frame(data))
            else:
                self.started = True
                _write(self.fd, self.head + self.frame(data))

    def last_words(self, whole: bytes) -> bytes:
        """On the watchdog thread, the process about to end with `whole` as the answer to a plain call (Lambda's
        timeout or out-of-memory error): what completes this one. The lock is kept: no chunk goes out after."""
        if not self.lock.acquire(timeout=LAST_WORDS_WAIT_S):
            return b""  # a chunk's write is stuck on a caller that reads nothing: the exit's close ends the answer
        return self.cut(whole)


class EventStream(Stream):
    """InvokeWithResponseStream's answer: each chunk a PayloadChunk event, then one InvokeComplete."""

    __slots__ = ("version",)

    def __init__(self, version: bytes) -> None:
        super().__init__()
        self.version = version

    def open(self, result: Any) -> Iterator[Any] | None:
        chunks = chunks_of(result)
        if chunks is not None:
            self.head = _event_stream_head(self.version, self.keep)
        return chunks

    def frame(self, data: bytes) -> bytes:
        return _chunked(eventstream.payload_chunk(data))

    def cut(self, whole: bytes) -> bytes:
        return self.finish(whole)

    def finish(self, whole: bytes) -> bytes:
        """The rest of the answer, `whole` being the plain invoke answer the invocation ended with: its error and
        log tail go into the InvokeComplete after the chunks sent; if none was sent, it all goes in one chunk."""
        if not self.started:
            return from_answer(whole, self.version)
        _, headers, body = _parse(whole)
        return _completion(headers, body)


def _event_stream_head(version: bytes, keep: bool) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nX-Amz-Executed-Version: %s\r\n%s\r\n" % (
        eventstream.CONTENT_TYPE.encode(),
        version,
        b"Transfer-Encoding: chunked\r\n" if keep else b"Transfer-Encoding: chunked\r\nConnection: close\r\n",
    )


class ChunkedStream(Stream):
    """The HTTP trigger's answer, in HTTP/1.1 chunks. A failure mid-stream cannot change the status that is out:
    the connection closes before the last chunk, the one way a chunked body says it is incomplete."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind  # the trigger's event format: which response shapes are valid

    def open(self, result: Any) -> Iterator[Any] | None:
        chunks = chunks_of(result)
        if chunks is not None:
            self.head = http11.chunked_head(200, _OCTET_STREAM, self.keep)
        elif isinstance(result, dict) and "statusCode" in result:
            chunks = chunks_of(result.get("body"))
            if chunks is not None:
                status, headers, _ = response(self.kind, {**result, "body": None}, b"")
                self.head = http11.chunked_head(status, headers, self.keep)
        return chunks

    def frame(self, data: bytes) -> bytes:
        return b"" if self.head_only else _chunked(data)

    def cut(self, whole: bytes) -> bytes:
        return b"" if self.started else whole

    def finish(self) -> bytes:
        """The rest of an answer that streamed to its end."""
        if self.head_only:
            return b"" if self.started else self.head
        return _END if self.started else self.head + _END


def _parse(answer: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """(status, headers by lower-case name, body) of a whole answer the runtime made."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return lines[0].split(b" ", 2)[1], headers, body


def _completion(headers: dict[bytes, bytes], body: bytes) -> bytes:
    """The InvokeComplete event, in its HTTP chunk, and the last chunk: the answer's error and log tail."""
    err = _error_of(body) if b"x-amz-function-error" in headers else None
    log = headers.get(b"x-amz-log-result")
    return _chunked(eventstream.invoke_complete(err, log.decode("latin-1") if log else None)) + _END


def from_answer(answer: bytes, version: bytes) -> bytes:
    """A whole invoke answer (status, headers, body) as InvokeWithResponseStream gives it: the body one
    PayloadChunk, or its error (X-Amz-Function-Error) the InvokeComplete's. Not 200: an error of the call, as is."""
    status, headers, body = _parse(answer)
    if status != b"200":
        return answer
    keep = headers.get(b"connection", b"").lower() != b"close"
    head = _event_stream_head(headers.get(b"x-amz-executed-version", version), keep)
    chunk = _chunked(eventstream.payload_chunk(body)) if body and b"x-amz-function-error" not in headers else b""
    return head + chunk + _completion(headers, body)


def _error_of(body: bytes) -> dict:
    """The errorType and errorMessage of a function error's answer."""
    try:
        shape = json.loads(body)
    except ValueError:
        shape = None
    if not isinstance(shape, dict):
        return {"errorType": "Unhandled", "errorMessage": body.decode("utf-8", "replace")}
    return {"errorType": str(shape.get("errorType", "Unhandled")), "errorMessage": str(shape.get("errorMessage", ""))}
