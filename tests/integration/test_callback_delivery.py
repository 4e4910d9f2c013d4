"""Delivering an async call's X-Callback-Url to a loopback server that fails: retried 3 times in all (0.5 s,
then 2 s apart) while it answers 5xx or cannot be reached, then given up and counted; the call itself is
neither run again nor dead-lettered for it (README "Async calls", docs/metrics.md)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fx_controller.backends.local_sandbox import run_dir

from tests.integration.conftest import RunningPlatform
from tests.integration.helpers import metric
from tests.waiting import wait_for

# Notes each run in $OUT; an event with "fail" raises.
HANDLER = """\
import os


def handler(event, context):
    with open(os.environ["OUT"], "a") as out:
        out.write(f"{event['n']}\\n")
    if event.get("fail"):
        raise ValueError("bad order")
    return {"n": event["n"]}
"""


class Receiver:
    """A loopback HTTP server answering each path's POSTs with the statuses a test lists (the last one repeats),
    keeping every POST it got as (path, headers, body)."""

    def __init__(self, statuses: dict[str, list[int]]) -> None:
        self.statuses = statuses
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if self.path == "/endless":  # a status line that never ends
                    self.wfile.write(b"HTTP/1.1 200 " + b"x" * (1 << 17))
                    self.close_connection = True
                    return
                queue = receiver.statuses[self.path]
                self.send_response(queue.pop(0) if len(queue) > 1 else queue[0])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        return [(headers, body) for p, headers, body in self.posts if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver({"/flaky": [500, 200], "/down": [503], "/done": [200], "/endless": [200]})
    yield running
    running.close()


def deploy(platform: RunningPlatform, tmp_path: Path) -> Path:
    project = tmp_path / "orders"
    project.mkdir()
    out = run_dir(platform.state_dir) / "orders" / "out"
    (project / "handler.py").write_text(HANDLER)
    spec = {"handler": "handler.handler", "env": {"OUT": str(out)}}
    (project / "fx.yaml").write_text(json.dumps({"functions": {"orders": spec}}))
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    return out


def call(platform: RunningPlatform, event: dict, callback: str) -> str:
    r = httpx.post(
        f"{platform.gateway_url}/2015-03-31/functions/orders/invocations",
        json=event,
        headers={"X-Amz-Invocation-Type": "Event", "X-Callback-Url": callback},
    )
    assert r.status_code == 202, r.text
    return r.headers["X-Fx-Call-Id"]


def callbacks(platform: RunningPlatform, result: str) -> float:
    text = httpx.get(f"{platform.gateway_url}/metrics").text
    return metric(text, "fx_gateway_async_callbacks_total", result=result)


def test_a_callback_answered_500_is_retried_and_one_never_answered_well_is_given_up_after_3(
    fast_platform, receiver, tmp_path
):
    out = deploy(fast_platform, tmp_path)
    flaky = call(fast_platform, {"n": 1}, f"{receiver.url}/flaky")
    wait_for(lambda: callbacks(fast_platform, "ok") == 1, 30, "the flaky callback to be delivered")
    posts = receiver.to("/flaky")
    assert len(posts) == 2  # the 500, then the 200; nothing after it
    for headers, body in posts:
        assert headers["x-fx-call-id"] == flaky and headers["x-fx-outcome"] == "success"
        assert json.loads(body) == {"n": 1}

    down = call(fast_platform, {"n": 2}, f"{receiver.url}/down")
    wait_for(lambda: callbacks(fast_platform, "failed") == 1, 30, "the callback to be given up")
    assert [headers["x-fx-call-id"] for headers, _ in receiver.to("/down")] == [down] * 3
    # A callback that fails does not make the call fail: it ran once each, and nothing was dead-lettered.
    assert out.read_text().split() == ["1", "2"]
    assert json.loads(fast_platform.fx("dlq", "ls", "-o", "json").stdout) == []


def test_a_callback_answering_an_endless_line_is_given_up_without_running_the_call_again(
    fast_platform, receiver, tmp_path
):
    out = deploy(fast_platform, tmp_path)
    endless = call(fast_platform, {"n": 4}, f"{receiver.url}/endless")
    wait_for(lambda: callbacks(fast_platform, "failed") == 1, 30, "the callback to be given up")
    assert [headers["x-fx-call-id"] for headers, _ in receiver.to("/endless")] == [endless] * 3
    assert out.read_text().split() == ["4"]  # not redelivered: the call succeeded, only its callback failed
    assert json.loads(fast_platform.fx("dlq", "ls", "-o", "json").stdout) == []


def test_a_dead_lettered_call_calls_back_with_its_failure(fast_platform, receiver, tmp_path):
    out = deploy(fast_platform, tmp_path)
    failing = call(fast_platform, {"n": 3, "fail": True}, f"{receiver.url}/done")
    wait_for(lambda: receiver.to("/done"), 30, "the failure's callback")
    [(headers, body)] = receiver.to("/done")
    assert headers["x-fx-call-id"] == failing
    assert (headers["x-fx-outcome"], headers["x-fx-error"], headers["x-fx-attempts"]) == ("failure", "ValueError", "3")
    assert json.loads(body)["errorType"] == "ValueError"
    assert out.read_text().split() == ["3"] * 3  # the first try and --async-retries 2
