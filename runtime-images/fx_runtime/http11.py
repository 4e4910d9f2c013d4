"""Writing HTTP/1.1 responses."""

from __future__ import annotations

from http import HTTPStatus

_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_SKIPPED = frozenset({"content-length", "transfer-encoding", "connection"})  # the server owns message framing

JSON = (("Content-Type", "application/json"),)


def response(status: int, headers: tuple | list, body: bytes, keep_alive: bool = True, report: bytes = b"") -> bytes:
    """A complete response; raises ValueError for header names or values that would split it.

    `report`: the invocation's X-Fx-Report line (Invoker.report), which must come first after the status line.
    """
    status_line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d Unknown\r\n" % status
    framing = b"Content-Length: %d\r\n\r\n" if keep_alive else b"Content-Length: %d\r\nConnection: close\r\n\r\n"
    if not headers:  # the usual HTTP answer of a function ({"statusCode": ..., "body": ...})
        return b"".join((status_line, report, framing % len(body), body))
    lines = []
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise ValueError(f"invalid header {name!r}")
        if name.lower() not in _SKIPPED:
            lines.append(f"{name}: {value}\r\n")
    return b"".join((status_line, report, "".join(lines).encode("latin-1"), framing % len(body), body))


def chunked_head(status: int, headers: tuple | list, keep_alive: bool) -> bytes:
    """The head of a response whose body follows in chunks (a streaming handler's)."""
    head = response(status, headers, b"", keep_alive)  # its one Content-Length is the framing's: headers skip theirs
    return head.replace(b"\r\nContent-Length: 0\r\n", b"\r\nTransfer-Encoding: chunked\r\n", 1)
