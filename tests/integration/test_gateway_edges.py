"""HTTP edges through the real gateway to a real replica: HEAD, Upgrade, header injection from a function's
answer, and a gateway stopped with calls in flight.

Raw sockets, since an HTTP library would hide the framing these tests are about.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fx_controller.backends.local_sandbox import run_dir

from tests.integration.conftest import FX, RunningPlatform
from tests.integration.helpers import metric
from tests.waiting import wait_for

# Answers by the last part of its path; /slow notes its start in $OUT first, then takes a second.
EDGES = """\
import os
import time


def handler(event, context):
    path = event["rawPath"]
    if path.endswith("/slow"):
        with open(os.environ["OUT"], "a") as out:
            out.write("started\\n")
        time.sleep(1.0)
        return {"statusCode": 200, "body": "done"}
    if path.endswith("/say"):
        print("said", event["rawQueryString"])
    if path.endswith("/inject"):
        return {"statusCode": 200, "headers": {"X-Evil": "a\\r\\nSet-Cookie: pwned=1"}, "body": "x"}
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "hello world"}
"""


def deploy_edges(platform: RunningPlatform, folder: Path, scale: str = "{min: 1}") -> Path:
    """Deploy the `edges` function from `folder`; returns the file its slow calls note their start in (in its
    private directory: the sandbox hides the test's own files)."""
    out = run_dir(platform.state_dir) / "edges" / "out"
    (folder / "handler.py").write_text(EDGES)
    (folder / "fx.yaml").write_text(
        f"functions:\n  edges:\n    handler: handler.handler\n    env: {{OUT: {out}}}\n    scale: {scale}\n"
    )
    deployed = platform.fx("deploy", cwd=folder)
    assert deployed.returncode == 0, deployed.stderr
    return out


@pytest.fixture(scope="module")
def edges(tmp_path_factory) -> Iterator[RunningPlatform]:
    """One platform for the read-only checks of this module, with `edges` deployed and warm."""
    root = tmp_path_factory.mktemp("edges")
    running = RunningPlatform(root / "state", root / "fx-config.json")
    try:
        (root / "edges").mkdir()
        deploy_edges(running, root / "edges")
        yield running
    finally:
        running.stop()


class Conn:
    """One raw connection to the gateway."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.data = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self) -> tuple[int, dict[str, str]]:
        """The next answer's status and headers (lower-case names); its body stays in `data`."""
        while b"\r\n\r\n" not in self.data:
            self._read()
        head, self.data = self.data.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"header {name} twice in {head!r}"
            headers[name.lower()] = value.strip()
        return int(status_line.split()[1]), headers

    def body(self, length: int) -> bytes:
        while len(self.data) < length:
            self._read()
        body, self.data = self.data[:length], self.data[length:]
        return body

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.head()
        return status, headers, self.body(int(headers.get("content-length", "0")))

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the gateway closed the connection; read so far: {self.data!r}"
        self.data += chunk

    def close(self) -> None:
        self.sock.close()


def test_head_is_answered_without_a_body_and_the_connection_goes_on(edges):
    conn = Conn(edges.gateway_url)
    try:
        conn.send(b"GET /function/edges/page HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.answer()[0::2] == (200, b"hello world")
        conn.send(b"HEAD /function/edges/page HTTP/1.1\r\nHost: x\r\n\r\nGET /function/edges/page HTTP/1.1\r\n\r\n")
        status, headers = conn.head()
        assert status == 200
        assert headers.get("content-length", "11") == "11"  # as for GET, or absent (RFC 9110 §9.3.2)
        # What follows a HEAD answer is the next answer, never a body.
        assert conn.answer()[0::2] == (200, b"hello world")
    finally:
        conn.close()


def test_a_websocket_upgrade_is_answered_as_plain_http_at_once(edges):
    """The gateway does not switch protocols: the client gets the function's answer, not a 101 and not a hang,
    so a WebSocket client fails cleanly; the connection stays HTTP/1.1."""
    conn = Conn(edges.gateway_url)
    try:
        conn.send(
            b"GET /function/edges/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        status, headers, body = conn.answer()
        assert status == 200 and body == b"hello world"
        assert "upgrade" not in headers and "sec-websocket-accept" not in headers
        conn.send(b"GET /function/edges/page HTTP/1.1\r\n\r\n")
        assert conn.answer()[0] == 200
    finally:
        conn.close()


def test_a_header_value_with_cr_lf_from_the_function_injects_nothing(edges):
    conn = Conn(edges.gateway_url)
    try:
        conn.send(b"GET /function/edges/inject HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = conn.answer()
        assert status == 502  # the function's answer cannot be sent as it is
        assert "set-cookie" not in headers and "x-evil" not in headers
        conn.send(b"GET /function/edges/page HTTP/1.1\r\n\r\n")
        assert conn.answer()[0::2] == (200, b"hello world")  # the framing held
    finally:
        conn.close()


def test_sigterm_answers_every_call_in_flight_then_refuses_connections_and_exits(platform, tmp_path):
    (tmp_path / "edges").mkdir()
    out = deploy_edges(platform, tmp_path / "edges", scale="{min: 2, max: 2}")
    url = f"{platform.gateway_url}/function/edges/slow"
    wait_for(lambda: httpx.get(f"{platform.gateway_url}/function/edges/page").status_code == 200, 30, "warm")
    answers: list[httpx.Response | Exception] = []

    def call() -> None:
        try:
            answers.append(httpx.get(url, timeout=30))
        except httpx.HTTPError as exc:
            answers.append(exc)

    idle = Conn(platform.gateway_url)  # a keep-alive connection between requests: closed by the drain
    idle.send(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert idle.answer()[0] == 200
    callers = [threading.Thread(target=call) for _ in range(4)]
    for caller in callers:
        caller.start()

    def in_gateway() -> float:
        text = httpx.get(f"{platform.gateway_url}/metrics").text
        labels = {"function": "edges", "version": "1"}
        return metric(text, "fx_gateway_in_flight", **labels) + metric(text, "fx_gateway_held", **labels)

    # Two run on the replicas, two wait in the gateway for one to free up.
    started = lambda: out.exists() and out.read_text().count("started") == 2  # noqa: E731
    wait_for(lambda: in_gateway() == 4 and started(), 30, "4 calls in the gateway")
    [gateway] = [p for p in platform._platform._running if p.name == "gateway"]
    stopped_at = time.monotonic()
    os.kill(gateway.proc.pid, signal.SIGTERM)
    wait_for(lambda: refused(platform.gateway_url), 5, "the gateway to stop accepting connections")
    for caller in callers:
        caller.join(30)
    code = gateway.proc.wait(15)
    took = time.monotonic() - stopped_at

    assert [a.status_code if isinstance(a, httpx.Response) else a for a in answers] == [200] * 4
    assert [a.text for a in answers] == ["done"] * 4  # type: ignore[union-attr]
    assert code == 0
    assert took < 10  # the default --drain-timeout
    idle.sock.settimeout(5)
    assert idle.sock.recv(1) == b""  # closed by the gateway, not left open


def refused(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def established(port: int) -> int:
    """TCP connections on 127.0.0.1 accepted by the server listening on `port` and still open."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "01")


def test_fx_logs_follow_through_the_gateway_streams_lines_and_ctrl_c_ends_the_controller_s_stream(edges):
    """The gateway's /system proxy relays a followed log as it grows, and closes its side to the controller when
    the follower goes, so no follow is left running in the controller."""
    controller_port = int(edges.controller_url.rpartition(":")[2])
    say = f"{edges.gateway_url}/function/edges/say"
    assert httpx.get(say, params={"n": "1"}).status_code == 200
    wait_for(lambda: established(controller_port) == 0, 10, "no connection to the controller")
    env = {**os.environ, "FX_GATEWAY": edges.gateway_url, "FX_TOKEN": edges.token, "FX_CONFIG": str(edges.config)}
    proc = subprocess.Popen(
        [FX, "logs", "edges", "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        wait_for(lambda: "said n=1\n" in seen, 30, "the earlier invocation's line")
        assert established(controller_port) == 1  # the follow, gateway to controller
        assert httpx.get(say, params={"n": "2"}).status_code == 200
        wait_for(lambda: "said n=2\n" in seen, 30, "the line printed while following")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(30)
    assert proc.returncode == 0 and proc.stderr.read() == ""  # type: ignore[union-attr]
    wait_for(lambda: established(controller_port) == 0, 10, "the gateway to end the follow at the controller")
