"""What the attacks in these tests need: raw HTTP on real sockets, a process's memory, the platform's PIDs."""

from __future__ import annotations

import socket
import time
import weakref
from pathlib import Path
from urllib.parse import urlsplit

from tests.integration.conftest import RunningPlatform


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1"  # attacks stay on this machine's loopback
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


# Bytes read past an answer: the start of the next one on that socket.
_unread: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers by lower-case name, body) of the next answer; its body framed by Content-Length."""
    data = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:]))
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed in the middle of the answer"
        body += chunk
    if len(body) > length:
        _unread[sock] = body[length:]
    return int(lines[0].split()[1]), headers, body[:length]


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the other side ends the connection (whatever else it sends is read and dropped)."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def send_until_answered(sock: socket.socket, head: bytes, chunk: bytes, most: int) -> tuple[int, dict, bytes]:
    """Send `head`, then `chunk` up to `most` times while no answer has come; the answer."""
    sock.sendall(head)
    sock.setblocking(False)
    sent = 0
    try:
        while sent < most:
            try:
                sock.recv(1, socket.MSG_PEEK)
                break  # an answer, or the end: either way the server stopped reading
            except BlockingIOError:
                pass
            try:
                sock.send(chunk)
                sent += 1
            except BlockingIOError:
                time.sleep(0.001)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.setblocking(True)
    return read_answer(sock)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


def pid_of(platform: RunningPlatform, name: str) -> int:
    """The PID of the platform's `name` process (nats, controller, gateway)."""
    return next(p.proc.pid for p in platform._platform._running if p.name == name)
