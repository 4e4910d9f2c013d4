"""`python -m fx_runtime.pool`: a warm pool member, a process that has imported the runtime and waits to become
one function's replica (the kubernetes backend keeps pods of it idle; see ARCHITECTURE.md).

`POST /_fx/specialize` is a doorbell, nothing more: the member then fetches its assignment from the controller
(`GET $FX_POOL_URL/pool/assignment`, where the controller knows the pod by its address and hands out the replica
environment once), so nobody but the controller can make it a replica, whatever they send. With an assignment
it writes the assignment's files (a granted function's NATS user, under /tmp, mode 0600), stops listening and
runs the replica in this very process (fetch and verify the code, import the handler, listen on FX_LISTEN),
and answers the doorbell once that is done: 200 with the `ready` event, or 500 with the
`init_error` event (the process then exits). Without one: 403, and it stays in the pool. A member that became a
replica never waits for work again. So a cold start costs the zip and the handler's import, not a container
start.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import sys
import time
import urllib.parse

from . import replica

MAX_BODY = 1 << 16  # a doorbell: its body is not even read as anything
READ_TIMEOUT_S = 5.0  # a doorbell that does not finish its request in time is dropped, not waited for
ASSIGNMENT_TIMEOUT_S = 10.0
# A new leader rings pool pods as soon as it starts, a moment before the controller Service routes to it (it
# labels its pod once it serves, then the Service's endpoints follow): the fetch is refused until then.
ASSIGNMENT_WAIT_S = 10.0
RETRY_S = 0.1
NATS_WAIT_S = 5.0


class NoAssignment(Exception):
    """The controller has no replica environment for this pod: the doorbell was not the controller's."""


class Controller:
    """Where assignments come from. Its Service's address is looked up while idle, not on the cold start path
    (a Service keeps its ClusterIP for life; the pool pods go with the release that made both)."""

    def __init__(self, pool_url: str) -> None:
        url = urllib.parse.urlsplit(pool_url)
        self._host, self._port, self._netloc = url.hostname or "", url.port or 80, url.netloc
        self._address: str | None = None
        self.resolve()

    def resolve(self) -> None:
        with contextlib.suppress(OSError):  # no DNS yet: looked up again on the next doorbell
            self._address = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_STREAM)[0][4][0]

    def assignment(self, wait: float = ASSIGNMENT_WAIT_S) -> tuple[dict[str, str], dict[str, str]]:
        """The replica environment and the files (path under /tmp -> text) the controller left for this pod
        (raises NoAssignment, or OSError). A connection refused or reset is tried again for up to `wait` s."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._fetch()
            except (ConnectionError, socket.gaierror):
                if time.monotonic() + RETRY_S > deadline:
                    raise
                time.sleep(RETRY_S)

    def _fetch(self) -> tuple[dict[str, str], dict[str, str]]:
        if self._address is None:
            self.resolve()
        conn = http.client.HTTPConnection(self._address or self._host, self._port, timeout=ASSIGNMENT_TIMEOUT_S)
        try:
            conn.request("GET", "/pool/assignment", headers={"Host": self._netloc})
            response = conn.getresponse()
            body = response.read()
        except OSError:
            self._address = None
            raise
        finally:
            conn.close()
        if response.status in (403, 404):
            raise NoAssignment
        if response.status != 200:
            raise OSError(f"the controller answered {response.status}")
        assignment = json.loads(body)
        env, files = assignment["env"], assignment.get("files", {})
        for what, mapping in (("env", env), ("files", files)):
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise ValueError(f"the assignment's {what} must map names to strings")
        for path in files:
            if os.path.normpath(path) != path or not path.startswith("/tmp/"):
                raise ValueError(f"the assignment's file {path!r} is not a plain path under /tmp")
        return env, files


def write_files(files: dict[str, str]) -> None:
    """Readable by this uid alone (a NATS user's seed among them)."""
    for path, text in files.items():
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)


def wait_for_nats(url: str, timeout: float = NATS_WAIT_S) -> None:
    """A granted function's pod was let through to NATS by a label the controller set a moment ago: wait (a
    bounded while) until the NetworkPolicy engine has caught up, so the handler's first connect works."""
    address = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address.hostname, address.port or 4222), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)


def _answer(conn: socket.socket, status: str, body: dict) -> None:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    conn.sendall(head.encode() + b"Connection: close\r\n\r\n" + data)


def _read_request(conn: socket.socket) -> tuple[str, bytes]:
    """The request line and body of one small HTTP/1.1 request."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk or len(data) > MAX_BODY:
            raise ValueError("incomplete request")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length > MAX_BODY:
        raise ValueError("body too large")
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("incomplete body")
        body += chunk
    return lines[0], body[:length]


def wait_for_work(
    listener: socket.socket, controller: Controller
) -> tuple[socket.socket, dict[str, str], dict[str, str]]:
    """Serve health checks until a doorbell comes for which the controller has an assignment; its connection
    stays open for the answer."""
    while True:
        conn, _ = listener.accept()
        try:
            conn.settimeout(READ_TIMEOUT_S)
            line, _ = _read_request(conn)
            method, path = line.split(" ")[:2]
            if method == "POST" and path == "/_fx/specialize":
                try:
                    env, files = controller.assignment()
                except NoAssignment:
                    _answer(conn, "403 Forbidden", {"error": "only the controller specialises a pool pod"})
                except (OSError, ValueError, KeyError) as e:
                    _answer(conn, "502 Bad Gateway", {"error": f"cannot fetch the assignment: {e}"})
                else:
                    conn.settimeout(None)
                    return conn, env, files
            elif method == "GET" and path == "/_fx/health":
                _answer(conn, "200 OK", {"status": "pool"})
            else:
                _answer(conn, "404 Not Found", {"error": "not found"})
        except (ValueError, OSError) as e:
            with contextlib.suppress(OSError):
                _answer(conn, "400 Bad Request", {"error": str(e)})
        conn.close()


def main() -> None:
    # PID 1 in its container: SIGTERM is ignored unless handled. Idle, there is nothing to finish.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    host, _, port = os.environ.get("FX_LISTEN", "0.0.0.0:8080").rpartition(":")
    listener = socket.create_server((host or "0.0.0.0", int(port)))
    conn, env, files = wait_for_work(listener, Controller(os.environ.pop("FX_POOL_URL")))
    listener.close()  # the replica binds the same port (SO_REUSEADDR) while this connection waits
    write_files(files)
    os.environ.update(env)
    if "FX_NATS_URL" in env:
        wait_for_nats(env["FX_NATS_URL"])

    def report(event: dict) -> None:
        with contextlib.suppress(OSError):  # the controller gave up waiting: it sees the pod go anyway
            _answer(conn, "200 OK" if event["event"] == "ready" else "500 Internal Server Error", event)
        conn.close()

    sys.exit(replica.run(report))


if __name__ == "__main__":
    main()
