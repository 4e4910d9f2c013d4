"""A small legacy HTTP service (stdlib http.server, HTTP/1.1 keep-alive) for the API upstream tests: the
routes not yet moved to functions.

    GET  /slow          answers only once `release` is set (or after 60 s)
    GET  /stream        a chunked answer: "first\\n", then "last\\n" only once `go` is set
    GET  /until-close   an answer without a length: its body ends with the connection
    POST /early         413 from the head alone, the body never read
    POST /count         reads the body (Content-Length or chunked) and answers {"bytes": n}
    anything else       {"legacy": true, "method", "path", "headers", "body"} (the request as it arrived)

Serves on a free loopback port in a thread (over TLS with `tls`: a folder where its self-signed certificate for
127.0.0.1 is written, `cert.pem`, which is also the CA to trust); records the connections it accepted, how many were
open at once, and the body bytes it read.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import sys
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.loopback import free_port


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, written to `folder`: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legacy.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class LegacyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: Path | None = None) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.port = self.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self_signed(tls))
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.release = threading.Event()
        self.go = threading.Event()
        self.lock = threading.Lock()
        self.connections = 0  # accepted in all
        self.open = 0
        self.most_open = 0
        self.requests: list[dict] = []
        self.received = 0  # request body bytes read, in all

    def __enter__(self) -> LegacyServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.go.set()
        self.shutdown()
        self.server_close()

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # else the gateway cut it: a timeout, a caller gone
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    def counted(self, delta: int) -> None:
        with self.lock:
            self.open += delta
            if delta > 0:
                self.connections += 1
                self.most_open = max(self.most_open, self.open)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LegacyServer

    def setup(self) -> None:
        super().setup()
        self.server.counted(1)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.counted(-1)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.answer()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def answer(self) -> None:
        path = self.path.partition("?")[0]
        if path.endswith("/slow"):
            self.server.release.wait(60)
        if path.endswith("/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"6\r\nfirst\n\r\n")
            self.wfile.flush()
            self.server.go.wait(60)
            self.wfile.write(b"5\r\nlast\n\r\n0\r\n\r\n")
            return
        if path.endswith("/early"):  # refuses from the head alone: the body is never read
            self.send_response(413)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return
        if path.endswith("/until-close"):
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"the whole body")
            self.close_connection = True
            return
        size = self.read_body()
        if path.endswith("/count"):
            body = {"bytes": size}
        else:
            headers = {name.lower(): value for name, value in self.headers.items()}
            body = {"legacy": True, "method": self.command, "path": self.path, "headers": headers, "body": size}
            self.server.requests.append(body)
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Keep-Alive", "timeout=5")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def read_body(self) -> int:
        """Bytes of the request body, read and dropped as they come."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            size = 0
            while True:
                length = int(self.rfile.readline().split(b";")[0], 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return size
                size += self._drain(length)
                self.rfile.readline()
        return self._drain(int(self.headers.get("Content-Length") or 0))

    def _drain(self, length: int) -> int:
        left = length
        while left:
            data = self.rfile.read(min(left, 1 << 16))
            if not data:
                break
            left -= len(data)
            with self.server.lock:
                self.server.received += len(data)
        return length - left
