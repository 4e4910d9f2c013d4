"""A small fake of the admin API on 127.0.0.1 for the CLI's tests, and the isolation they run in (their own
config, cache and working directory: `pytestmark = pytest.mark.usefixtures("isolated")`)."""

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

TOKEN = "test-token"


class FakeGateway(BaseHTTPRequestHandler):
    """Stores what it is sent. A deploy (not its dry run) is answered from `answers` when a test scripted the
    server's answer, else as the controller would (a new version unless the spec is the latest's)."""

    artifacts: dict[str, bytes]
    functions: dict[str, list[dict]]
    uploads: list[str]
    deploys: list[dict]  # every spec PUT, in order
    answers: list[dict]
    platform_version: str  # what /system/version answers

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body=None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            return True
        self._reply(401, {"error": {"code": "Unauthorized", "message": "bad token: run `fx login` or set FX_TOKEN"}})
        return False

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_HEAD(self) -> None:
        if self._authorized():
            self._reply(200 if self.path.rsplit("/", 1)[1] in self.artifacts else 404)

    def do_PUT(self) -> None:
        if not self._authorized():
            return
        path, _, query = self.path.partition("?")
        kind, name = path.split("/")[2:4]
        body = self._body()
        if kind == "artifacts":
            assert name == "sha256:" + hashlib.sha256(body).hexdigest()
            self.artifacts[name] = body
            self.uploads.append(name)
            return self._reply(200, {"digest": name, "size": len(body), "unzipped_size": 1})
        spec = json.loads(body)
        dry_run = "dry_run=true" in query  # the server's validation: nothing stored
        if not dry_run:
            self.deploys.append(spec)
            if self.answers:
                answer = {"function": name, "digest": spec.get("artifact"), "dry_run": False, "message": "ok"}
                answer.update(self.answers.pop(0))
                return self._reply(200, answer)
        versions = self.functions.get(name, [])
        created = not versions or versions[-1] != spec
        if created and not dry_run:
            self.functions[name] = versions = [*versions, spec]
        code = spec.get("artifact") or spec["image"]
        version = len(versions) + (1 if created and dry_run else 0)
        result = {"function": name, "version": version, "created": created, "digest": code, "dry_run": dry_run}
        self._reply(200, {**result, "message": "ok"})

    def do_GET(self) -> None:
        if self.path == "/system/version" and self._authorized():
            self._reply(200, {"version": self.platform_version})
        elif self._authorized():
            self._reply(200, [self._info(name) for name in sorted(self.functions)])

    def _info(self, name: str) -> dict:
        versions = [
            {"version": i + 1, "digest": s["artifact"], "created_at": "2024-01-01T00:00:00Z", "spec": s}
            for i, s in enumerate(self.functions[name])
        ]
        return {"name": name, "latest": len(versions), "traffic": {str(len(versions)): 100}, "versions": versions}


@pytest.fixture
def gateway(isolated, monkeypatch) -> Iterator[type[FakeGateway]]:
    """The fake, serving; FX_GATEWAY and FX_TOKEN point the CLI at it (set after `isolated` clears them)."""
    state = {"artifacts": {}, "functions": {}, "uploads": [], "deploys": [], "answers": [], "platform_version": ""}
    handler = type("Handler", (FakeGateway,), state)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("FX_GATEWAY", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("FX_TOKEN", TOKEN)
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FX_CONFIG", str(tmp_path / "fx-config.json"))
    monkeypatch.setenv("FX_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("FX_GATEWAY", "FX_TOKEN"):
        monkeypatch.delenv(var, raising=False)


class Scripted(BaseHTTPRequestHandler):
    """Answers every GET with `answer` (status, a JSON body or the bytes of a text one) and `fields`, chunked when
    `chunked`; keeps what it was asked."""

    protocol_version = "HTTP/1.1"
    answer: tuple[int, object] = (200, [])
    fields: dict[str, str] = {}
    chunked = False
    seen: list[tuple[str, str | None]]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        status, body = self.answer
        text = isinstance(body, bytes)
        data = body if text else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8" if text else "application/json")
        for name, value in self.fields.items():
            self.send_header(name, value)
        if self.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for at in range(0, len(data), 7):  # several chunks, one with an extension
                piece = data[at : at + 7]
                self.wfile.write(f"{len(piece):x};x=y\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


@pytest.fixture
def scripted() -> Iterator[tuple[type[Scripted], str]]:
    """A gateway answering every GET with the answer a test scripts (handler.answer), on 127.0.0.1."""
    handler = type("Handler", (Scripted,), {"seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()  # a quick shutdown
    try:
        yield handler, f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
