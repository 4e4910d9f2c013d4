"""Writing HTTP/1.1 responses."""

from __future__ import annotations

from http import HTTPStatus

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_SKIPPED = frozenset({"content-length", "transfer-encoding", "connection"})  # the server owns message framing

JSON = (("Content-Type", "application/json"),)


def response(status: int, headers: tuple | list, body: bytes, keep_alive: bool = True, report: bytes = b"") -> bytes:
    """A complete response; raises ValueError for header names or values that would split it.

    `report`: the invocation's X-Fx-Report line (Invoker.report), which must come first after the status line.
    """
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise ValueError(f"invalid header {name!r}")
        if name.lower() not in _SKIPPED:
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    if report:
        lines[0] += "\r\n" + report.decode("latin-1").removesuffix("\r\n")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked_head(status: int, headers: tuple | list, keep_alive: bool) -> bytes:
    """The head of a response whose body follows in chunks (a streaming handler's)."""
    head = response(status, headers, b"", keep_alive)  # its one Content-Length is the framing's: headers skip theirs
    return head.replace(b"\r\nContent-Length: 0\r\n", b"\r\nTransfer-Encoding: chunked\r\n", 1)
