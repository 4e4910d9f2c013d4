"""fx-probe: tries, from inside a function, what a hostile function would try, and reports what was blocked.

Deploy it on your own fx (`fx deploy` in this folder) and `fx invoke fx-probe`: the answer maps each attack to
{"blocked": true|false, "detail": "..."} (and "tried": false where the attack did not apply, e.g. Kubernetes
attacks on the embedded platform). It is safe to run: it connects only to loopback and cluster-internal
names, with short timeouts and a bounded count; it writes only in its own /tmp (and tests, by creating and
removing one empty file, whether its code dir is writable); it "signals" with signal 0, which delivers
nothing; it reads no more than it needs to say whether a read succeeded. The whole probe takes under 20 s.

Hints it takes from its environment (fx.yaml `env`) or from the invoke event (same names, lower-case
without PROBE_): PROBE_STATE_DIR (the platform's state dir), PROBE_CONTROLLER (the controller's Service name),
PROBE_NATS_URLS, PROBE_POOL_IPS (warm-pool pod IPs), PROBE_NODE_IP, PROBE_PORTS (loopback port range to scan,
e.g. "1024-65535").
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import ssl
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BUDGET_S = 18.0
WALK_S, WALK_ENTRIES = 3.0, 40_000
SCAN_S = 5.0
CONNECT_S = 0.5
SKIP = ("/proc", "/sys", "/dev", "/run/udev")
SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
HEX = re.compile(r"^[0-9a-f]{64}\Z")
RUNTIME_PARSE_ERROR = "InvalidRequestContentException"  # how fx's runtime answers a malformed invoke

Report = dict[str, dict[str, Any]]


def handler(event: Any, context: Any) -> Report:
    started = time.monotonic()
    hints = _hints(event if isinstance(event, dict) else {})
    found = _walk(hints.get("state_dir"))
    listeners = _scan_loopback(hints.get("ports"))
    report: Report = {}
    attacks: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("read_admin_token", lambda: _read_any(found["admin_token"], "admin token")),
        ("read_cli_config", lambda: _read_any(found["cli_config"], "CLI config")),
        ("read_other_functions_code", lambda: _read_other_code(found["code_dirs"], found["zips"])),
        ("read_nats_store", lambda: _read_any(found["nats_store"], "JetStream store file")),
        ("read_platform_nats_credentials", lambda: _read_any(found["nats_creds"], "NATS credentials file")),
        ("read_proc_environ", _read_proc_environ),
        ("signal_other_process", _signal_others),
        ("write_own_code", _write_own_code),
        ("run_as_root", _run_as_root),
        ("internal_addresses_in_env", _internal_env),
        ("replica_endpoints_reachable", lambda: _replicas(listeners["http"], found["sockets"])),
        ("nats_anonymous", lambda: _nats_anonymous(hints, listeners["nats"])),
        ("nats_own_credentials", _nats_own_credentials),
        ("kubernetes_api", _kubernetes_api),
        ("kubelet", lambda: _kubelet(hints)),
        ("controller_admin_port", lambda: _http_reachable(hints["controller"], 8081, "/system/health")),
        ("controller_artifact_port", lambda: _artifact_port(hints["controller"])),
        ("service_account_token", lambda: _read_any([SA_TOKEN], "service account token")),
        ("pool_specialize", lambda: _pool_specialize(hints)),
    ]
    for name, attack in attacks:
        if time.monotonic() - started > BUDGET_S:
            report[name] = _not_tried("the probe's time budget ran out")
            continue
        try:
            report[name] = attack()
        except Exception as exc:  # a probe that crashes reports nothing: say what went wrong instead
            report[name] = {"blocked": False, "detail": f"probe error: {type(exc).__name__}: {exc}"}
    count, lo, hi = listeners["scanned"]
    report["_probe"] = {
        "seconds": round(time.monotonic() - started, 2),
        "uid": os.getuid(),
        "loopback_ports_scanned": f"{count} ({lo}-{hi})",
        "file_system_entries_seen": found["entries"][0],
    }
    return report


# --- results --------------------------------------------------------------------------------------------


def _blocked(detail: str) -> dict[str, Any]:
    return {"blocked": True, "detail": detail}


def _open(detail: str) -> dict[str, Any]:
    return {"blocked": False, "detail": detail}


def _not_tried(why: str) -> dict[str, Any]:
    return {"blocked": True, "tried": False, "detail": f"not tried: {why}"}


def _hints(event: dict[str, Any]) -> dict[str, Any]:
    def hint(name: str) -> str | None:
        return event.get(name.lower()) or os.environ.get(f"PROBE_{name}") or None

    ports = hint("PORTS")
    lo, _, hi = (ports or "").partition("-")
    return {
        "state_dir": hint("STATE_DIR"),
        "nats_urls": [u.strip() for u in (hint("NATS_URLS") or "").split(",") if u.strip()],
        "pool_ips": [ip.strip() for ip in (hint("POOL_IPS") or "").split(",") if ip.strip()],
        "node_ip": hint("NODE_IP"),
        "controller": hint("CONTROLLER") or "fx-controller",  # the chart's <release>-controller Service
        "ports": (int(lo), int(hi)) if lo.isdigit() and hi.isdigit() else None,
    }


# --- the file system ------------------------------------------------------------------------------------


def _own_code_dir() -> Path:
    return Path(os.environ.get("LAMBDA_TASK_ROOT") or os.environ.get("FX_CODE_DIR") or Path(__file__).parent)


def _walk(state_dir: str | None) -> dict[str, list[str]]:
    """Known places, then a bounded walk of the visible file system for what the attacks want."""
    try:
        home = Path.home()
    except RuntimeError:  # a sandboxed uid with no HOME and no passwd entry
        home = Path("/root")
    found: dict[str, list[str]] = {
        "admin_token": [
            ".fx/admin-token",
            "../.fx/admin-token",
            "/root/.fx/admin-token",
            f"{home}/.fx/admin-token",
        ],
        "cli_config": [str(home / ".config/fx/config.json"), "/root/.config/fx/config.json"],
        "code_dirs": [],
        "zips": [],
        "nats_store": [],
        "nats_creds": [],
        "sockets": [],
    }
    if os.environ.get("FX_CONFIG"):
        found["cli_config"].append(os.environ["FX_CONFIG"])
    roots = ["/"]
    if state_dir:
        found["admin_token"].append(f"{state_dir}/admin-token")
        roots.insert(0, state_dir)
    deadline, entries = time.monotonic() + WALK_S, 0
    for root in roots:
        for top, dirs, files in os.walk(root, onerror=lambda e: None):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in SKIP]
            entries += len(dirs) + len(files)
            if entries > WALK_ENTRIES or time.monotonic() > deadline:
                break
            here = Path(top)
            if "admin-token" in files:
                found["admin_token"].append(str(here / "admin-token"))
            if here.parts[-2:] == (".config", "fx") and "config.json" in files:
                found["cli_config"].append(str(here / "config.json"))
            if here.name == "code":
                found["code_dirs"] += [str(here / d) for d in dirs if HEX.match(d)]
            if here.name == "artifacts":
                found["zips"] += [str(here / f) for f in files if f.endswith(".zip")]
            own_creds = os.environ.get("FX_NATS_CREDS")
            found["nats_creds"] += [
                str(here / f) for f in files if f.endswith((".creds", ".nk")) and str(here / f) != own_creds
            ]
            if here.name == "msgs" and "jetstream" in here.parts:
                found["nats_store"] += [str(here / f) for f in files[:3]]
            for f in files:  # replica endpoints are <dir>/http.sock; other services' sockets are not the point
                if f != "http.sock" and "fx" not in top:
                    continue
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(os.lstat(here / f).st_mode):
                        found["sockets"].append(str(here / f))
    found["entries"] = [str(entries)]
    return {k: list(dict.fromkeys(v)) for k, v in found.items()}


def _readable(path: str) -> bool:
    """A regular file this process can read (a directory, a missing or a forbidden path is not)."""
    try:
        with open(path, "rb") as f:
            f.read(64)
    except OSError:  # IsADirectoryError and PermissionError included
        return False
    return True


def _read_any(paths: list[str], what: str) -> dict[str, Any]:
    read = [p for p in paths if _readable(p)]  # not Path.is_file(): it raises where a parent is not searchable
    if read:
        return _open(f"read the {what} at {', '.join(read[:3])}")
    return _blocked(f"no {what} readable ({len(paths)} places tried)")


def _read_other_code(code_dirs: list[str], zips: list[str]) -> dict[str, Any]:
    own = _own_code_dir().resolve()
    read = []
    for d in code_dirs:
        if Path(d).resolve() == own:
            continue
        with contextlib.suppress(OSError):
            files = [p for p in Path(d).rglob("*.py")][:1]
            if files and _readable(str(files[0])):
                read.append(str(files[0]))
    own_zip = os.environ.get("FX_ARTIFACT", "")
    read += [z for z in zips if z != own_zip and _readable(z)][:3]
    if read:
        return _open(f"read other functions' code: {', '.join(read[:3])}")
    return _blocked(f"no other function's code readable ({len(code_dirs)} code dirs, {len(zips)} zips seen)")


# --- processes ------------------------------------------------------------------------------------------


def _own_pids() -> set[int]:
    """This process and its own children (the probe's thread pool runs in-process)."""
    own = {os.getpid()}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) in own:
                own.add(int(entry.name))
    return own


def _other_pids() -> list[int]:
    own = _own_pids()
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and int(e.name) not in own]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def _read_proc_environ() -> dict[str, Any]:
    others = _other_pids()
    read = []
    for pid in others[:2000]:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/environ").read_bytes()[:1]:
                read.append(f"{pid} ({_comm(pid)})")
    if read:
        return _open(f"read the environment of {len(read)} other processes, e.g. {', '.join(read[:3])}")
    return _blocked(f"{len(others)} other processes visible; no environment readable")


def _signal_others() -> dict[str, Any]:
    others = _other_pids()
    could = []
    for pid in others[:2000]:
        with contextlib.suppress(OSError):
            os.kill(pid, 0)  # signal 0: only the permission check, nothing is delivered
            could.append(f"{pid} ({_comm(pid)})")
    if could:
        return _open(f"may signal {len(could)} processes that are not its own, e.g. {', '.join(could[:3])}")
    return _blocked(f"{len(others)} other processes visible; none may be signalled")


def _write_own_code() -> dict[str, Any]:
    target = _own_code_dir() / ".fx-probe-write-test"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return _blocked(f"cannot create a file in its code dir {target.parent}: {exc.strerror}")
    os.close(fd)
    target.unlink()
    return _open(f"created (and removed) {target}: its code dir is writable")


def _run_as_root() -> dict[str, Any]:
    caps = "?"
    with contextlib.suppress(OSError):
        status = Path("/proc/self/status").read_text().splitlines()
        caps = next(line.split()[1] for line in status if line.startswith("CapEff:"))
    if os.geteuid() == 0:
        return _open(f"runs as uid 0 (effective capabilities {caps})")
    return _blocked(f"runs as uid {os.geteuid()} gid {os.getegid()}, effective capabilities {caps}")


def _internal_env() -> dict[str, Any]:
    env = os.environ
    leaks = []
    if "FX_NATS_URL" in env and "FX_NATS_CREDS" not in env:
        leaks.append(f"FX_NATS_URL={env['FX_NATS_URL']} without a grant")
    leaks += [f"{k}={v}" for k, v in env.items() if k.startswith("FX_ARTIFACT") and "://" in v]
    leaks += [k for k in env if k in ("FX_TOKEN", "FX_ADMIN_TOKEN", "FX_STATE_DIR", "FX_STATE_LOCK_FD")]
    if leaks:
        return _open("fx internals in its environment: " + "; ".join(leaks))
    return _blocked("no NATS URL without a grant, no artifact server address, no admin token in its environment")


# --- the network ----------------------------------------------------------------------------------------


def _own_ports() -> set[int]:
    """Ports this process listens on (its own replica endpoint)."""
    inodes = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            link = os.readlink(fd)
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def _scan_loopback(ports: tuple[int, int] | None) -> dict[str, list[int]]:
    """TCP ports on 127.0.0.1 that answer: NATS (its INFO banner) and HTTP ones answering /_fx/ paths."""
    if ports is None:
        lo, hi = 1024, 65535
    else:
        lo, hi = ports
    own = _own_ports()
    deadline = time.monotonic() + SCAN_S
    candidates = [p for p in range(lo, hi + 1) if p not in own]

    def probe(port: int) -> tuple[int, str] | None:
        if time.monotonic() > deadline:
            return None
        scanned.append(port)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.settimeout(0.3)
                try:
                    banner = s.recv(8)
                except TimeoutError:
                    banner = b""
                return (port, "nats") if banner.startswith(b"INFO ") else (port, "open")
        except OSError:
            return None

    def invoke(port: int) -> int | None:
        # Malformed: a runtime that takes unauthenticated invokes parses it and answers 400, invoking nothing.
        status, body = _http("127.0.0.1", port, "POST", "/_fx/invoke", b"{not json", timeout=0.5)
        return port if status == 400 and RUNTIME_PARSE_ERROR in body else None

    scanned: list[int] = []
    found: dict[str, list[int]] = {"nats": [], "open": [], "http": []}
    with ThreadPoolExecutor(64) as pool:
        for hit in pool.map(probe, candidates):
            if hit:
                found[hit[1]].append(hit[0])
        found["http"] = [p for p in pool.map(invoke, found["open"][:300]) if p]
    found["scanned"] = [len(scanned), min(scanned, default=0), max(scanned, default=0)]
    return found


def _http(host: str, port: int, method: str, path: str, body: bytes = b"", timeout: float = 1.0, tls: bool = False):
    """(status, first bytes of the body), or (None, why) when nothing answered. `port` 0: `host` is a Unix socket."""
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    try:
        if port:
            raw = socket.create_connection((host, port), timeout=timeout)
        else:
            raw = socket.socket(socket.AF_UNIX)
            raw.settimeout(timeout)
            raw.connect(host)
        with raw:
            sock = raw
            if tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                sock = ctx.wrap_socket(raw, server_hostname=host)
            sock.settimeout(timeout)
            sock.sendall(request)
            data = b""
            with contextlib.suppress(OSError):
                while len(data) < 4096:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
    except OSError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    head, _, rest = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None, f"no HTTP answer ({data[:40]!r})"
    return int(parts[1]), rest[:200].decode(errors="replace")


def _replicas(http_ports: list[int], sockets: list[str]) -> dict[str, Any]:
    own = os.environ.get("FX_LISTEN", "").removeprefix("unix:")
    reached = [f"127.0.0.1:{p}" for p in http_ports]
    for path in sockets[:200]:
        status, body = (None, "") if path == own else _http(path, 0, "POST", "/_fx/invoke", b"{not json", CONNECT_S)
        if status == 400 and RUNTIME_PARSE_ERROR in body:
            reached.append(f"unix:{path}")
    if reached:
        return _open(f"other endpoints accept it ({len(reached)}): {', '.join(reached[:5])}")
    return _blocked(f"no other replica endpoint answered ({len(sockets)} unix sockets seen)")


def _resolves(host: str) -> list[str]:
    try:
        return sorted({a[4][0] for a in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)})
    except OSError:
        return []


def _on_kubernetes() -> bool:
    return "KUBERNETES_SERVICE_HOST" in os.environ or bool(_resolves("kubernetes.default.svc"))


class _Nats:
    """Just enough of the NATS client protocol to ask the server what a connection may do."""

    def __init__(self, url: str, jwt: str | None = None, seed: bytes | None = None) -> None:
        host, _, port = url.split("://")[-1].rpartition(":")
        self.sock = socket.create_connection((host or "127.0.0.1", int(port or 4222)), timeout=1.0)
        self.buf = b""
        info = json.loads(self._line().split(b" ", 1)[1])
        connect: dict[str, Any] = {"verbose": False, "pedantic": False, "headers": True, "protocol": 1}
        if jwt and seed:
            import nkeys  # only here: the runtime may not have it

            signed = nkeys.from_seed(seed).sign(info.get("nonce", "").encode())
            connect.update(jwt=jwt, sig=base64.urlsafe_b64encode(signed).decode().rstrip("="))
        self.send(f"CONNECT {json.dumps(connect)}\r\nPING\r\n")
        reply = self._line()
        if not reply.startswith(b"PONG"):
            raise PermissionError(reply.decode(errors="replace"))

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def roundtrip(self, text: str, wait: float) -> list[bytes]:
        """Send, then collect what comes back (MSG payloads, -ERR lines) for up to `wait` seconds."""
        self.send(text + "PING\r\n")
        got, deadline = [], time.monotonic() + wait
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                line = self._line()
            except TimeoutError:
                continue
            except OSError:
                break
            if line.startswith((b"MSG ", b"HMSG ")):
                size = int(line.split()[-1])
                while len(self.buf) < size + 2:
                    self.buf += self.sock.recv(65536)
                got.append(line + b" " + self.buf[:size])
                self.buf = self.buf[size + 2 :]
            elif line.startswith(b"-ERR"):
                got.append(line)
            elif line.startswith(b"PING"):
                self.send("PONG\r\n")
        return got

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _nats_attempts(client: _Nats) -> list[str]:
    """What this connection could do that a function must not: each entry is a success."""
    done = []
    inbox = f"_INBOX.fx-probe.{os.getpid()}"
    got = client.roundtrip(f"SUB fx.> 1\r\nSUB {inbox} 2\r\n", wait=1.5)
    if not any(b'Permissions Violation for Subscription to "fx.>"' in g for g in got):
        heard = [g.split()[1].decode() for g in got if g.startswith(b"MSG ") and b" fx." in g[:40]]
        done.append("subscribed to fx.>" + (f" and heard {heard[0]}" if heard else ""))
    for seq in range(1, 6):  # the oldest records of fx_functions: other functions' specs, env included
        body = json.dumps({"seq": seq})
        got = client.roundtrip(f"PUB $JS.API.STREAM.MSG.GET.KV_fx_functions {inbox} {len(body)}\r\n{body}\r\n", 1.0)
        if any(b'"message"' in g for g in got):
            subject = re.search(rb'"subject":"([^"]+)"', b"".join(got))
            done.append(f"read {subject[1].decode() if subject else 'a record'} of KV fx_functions")
            break
    # A delete marker for a function that does not exist: the write's acknowledgement proves the permission.
    head = "NATS/1.0\r\nKV-Operation: DEL\r\n\r\n"
    got = client.roundtrip(f"HPUB $KV.fx_routes.fx-probe-canary {inbox} {len(head)} {len(head)}\r\n{head}\r\n", 1.0)
    if any(b'"stream":"KV_fx_routes"' in g for g in got):
        done.append("wrote to KV fx_routes")
    return done


def _nats_urls(hints: dict[str, Any], nats_ports: list[int]) -> list[str]:
    urls = list(hints["nats_urls"])
    if os.environ.get("FX_NATS_URL"):
        urls.append(os.environ["FX_NATS_URL"])
    urls += [f"nats://127.0.0.1:{p}" for p in [4222, *nats_ports]]
    if _resolves("fx-nats"):
        urls.append("nats://fx-nats:4222")
    return list(dict.fromkeys(urls))


def _nats_anonymous(hints: dict[str, Any], nats_ports: list[int]) -> dict[str, Any]:
    results, refused = [], []
    for url in _nats_urls(hints, nats_ports)[:8]:
        try:
            client = _Nats(url)
        except (OSError, ValueError, PermissionError) as exc:
            refused.append(f"{url}: {type(exc).__name__}")
            continue
        try:
            done = _nats_attempts(client)
        except OSError as exc:  # the server hung up: what it allowed before that is not known
            refused.append(f"{url}: closed the connection ({type(exc).__name__})")
            continue
        finally:
            client.close()
        if done:
            results.append(f"{url} without credentials: {'; '.join(done)}")
        else:
            refused.append(f"{url}: connected, every attempt refused")
    if results:
        return _open(" | ".join(results))
    return _blocked("; ".join(refused) or "no NATS server found")


def _nats_own_credentials() -> dict[str, Any]:
    creds, url = os.environ.get("FX_NATS_CREDS"), os.environ.get("FX_NATS_URL")
    if not creds or not url:
        return _not_tried("this function was granted no NATS credentials")
    text = Path(creds).read_text()
    jwt = re.search(r"-----BEGIN NATS USER JWT-----\s*(\S+)", text)
    seed = re.search(r"-----BEGIN USER NKEY SEED-----\s*(\S+)", text)
    if not jwt or not seed:
        return _not_tried(f"{creds} is not a NATS .creds file")
    try:
        client = _Nats(url, jwt[1], seed[1].encode())
    except ImportError:
        return _not_tried("the nkeys package is not importable here (add nkeys to requirements.txt)")
    try:
        done = _nats_attempts(client)
    except OSError as exc:
        return _blocked(f"{url} closed the connection of its own credentials ({type(exc).__name__})")
    finally:
        client.close()
    if done:
        return _open(f"{url} with its own credentials: {'; '.join(done)}")
    return _blocked("its own credentials reach none of fx.>, KV fx_functions, KV fx_routes")


def _http_reachable(
    host: str, port: int, path: str, tls: bool = False, refusals: tuple[int, ...] = ()
) -> dict[str, Any]:
    """`refusals`: statuses that mean the server refused this pod what it asked (blocked, though reachable)."""
    if not _on_kubernetes():
        return _not_tried("not on Kubernetes")
    addresses = _resolves(host)
    if not addresses:
        return _blocked(f"{host} does not resolve")
    status, body = _http(addresses[0], port, "GET", path, timeout=1.5, tls=tls)
    if status is None:
        return _blocked(f"{host}:{port} ({addresses[0]}): {body}")
    if status in refusals:
        return _blocked(f"{host}:{port} refused it: {status} to GET {path}")
    return _open(f"{host}:{port} answered {status} to GET {path}: {body[:80]}")


def _kubernetes_api() -> dict[str, Any]:
    host = os.environ.get("KUBERNETES_SERVICE_HOST") or "kubernetes.default.svc"
    port = int(os.environ.get("KUBERNETES_SERVICE_PORT") or 443)
    return _http_reachable(host, port, "/version", tls=True)


def _kubelet(hints: dict[str, Any]) -> dict[str, Any]:
    if not _on_kubernetes():
        return _not_tried("not on Kubernetes")
    node = hints["node_ip"] or _default_gateway()
    if not node:
        return _not_tried("the node's IP is not known (give PROBE_NODE_IP)")
    return _http_reachable(node, 10250, "/pods", tls=True)


def _default_gateway() -> str | None:
    with contextlib.suppress(OSError, IndexError, ValueError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[1] == "00000000":
                return socket.inet_ntoa(int(cols[2], 16).to_bytes(4, "little"))
    return None


def _artifact_port(controller: str) -> dict[str, Any]:
    """The artifact server, where FX_ARTIFACT_URL says (if the function was told) or on the controller. A pod
    may reach it (it fetched its own code there), but must get no other code: a refusal (403/404) is blocked."""
    address = os.environ.get("FX_ARTIFACT_URL", "").split("://")[-1].split("/")[0]
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
    other = "sha256-" + "0" * 64 + ".zip"  # another digest than its own
    port_number = int(port) if port.isdigit() else 8082
    return _http_reachable(host or controller, port_number, f"/artifacts/{other}", refusals=(403, 404))


def _pool_specialize(hints: dict[str, Any]) -> dict[str, Any]:
    if not _on_kubernetes():
        return _not_tried("not on Kubernetes")
    ips = hints["pool_ips"] or _resolves("fx-pool")
    if not ips:
        return _not_tried("no warm-pool pod IP is discoverable (give PROBE_POOL_IPS)")
    accepted = []
    for ip in ips[:10]:
        # An env that is not a mapping: a pool pod that accepts unauthenticated requests answers 400, unchanged.
        status, body = _http(ip, 8080, "POST", "/_fx/specialize", b'{"env": "probe"}', timeout=1.5)
        if status not in (None, 401, 403, 404):
            accepted.append(f"{ip} answered {status}: {body[:60]}")
    if accepted:
        return _open("pool pods take specialize requests from a function: " + "; ".join(accepted))
    return _blocked(f"{len(ips)} pool pods refused or did not answer")
