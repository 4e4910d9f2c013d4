"""A real Keycloak for the tests that need an OIDC provider: its server distribution from Maven Central (cached
in .cache/keycloak/, which `make clean` removes), run with `kc.sh start-dev` on 127.0.0.1 and free ports, and
driven through its admin REST API as an operator would: a realm, clients, client scopes, users, signing keys."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import httpx

from tests.loopback import free_port
from tests.waiting import wait_for

VERSION = "26.4.0"
URL = (
    "https://repo.maven.apache.org/maven2/org/keycloak/keycloak-quarkus-dist/"
    f"{VERSION}/keycloak-quarkus-dist-{VERSION}.zip"
)
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "keycloak"
START_TIMEOUT = 300.0  # s: ~15 s alone, far more on a loaded 2-core machine (the first start also builds)


def distribution(cache: Path = CACHE) -> Path:
    """Keycloak's home folder: the zip downloaded once (checked against the .sha1 Maven Central publishes beside
    it) and unpacked once. A half-done download or unpack is never taken for a whole one."""
    home = cache / f"keycloak-{VERSION}"
    if (home / "bin" / "kc.sh").exists():
        return home
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"keycloak-quarkus-dist-{VERSION}.zip"
    if not archive.exists():
        with urllib.request.urlopen(URL + ".sha1", timeout=60) as published:
            expected = published.read().decode().split()[0]
        partial = archive.with_suffix(".part")
        digest = hashlib.sha1()
        with urllib.request.urlopen(URL, timeout=60) as response, partial.open("wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected:
            partial.unlink()
            raise RuntimeError(f"{URL}: sha1 {digest.hexdigest()}, Maven Central publishes {expected}")
        partial.rename(archive)
    unpacking = cache / "unpacking"
    shutil.rmtree(unpacking, ignore_errors=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(unpacking)
    (unpacking / f"keycloak-{VERSION}").rename(home)
    unpacking.rmdir()
    return home


class Keycloak:
    """One Keycloak process (dev mode, in-memory database: nothing outlives it) and its admin API."""

    def __init__(self, home: Path, logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.management_port = free_port()  # health and metrics are off, so it should not even open
        self.admin_password = secrets.token_urlsafe(16)
        self._log = logs.open("wb")
        env = {
            **os.environ,
            "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
            "KC_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password,
            # The JIT's first tier only: a test's Keycloak serves a few dozen requests, and the optimising tier
            # spent 40 % of its start-up CPU (52 s against 31 s on a loaded 2-core machine) for nothing.
            "JAVA_OPTS_APPEND": f"{os.environ.get('JAVA_OPTS_APPEND', '')} -XX:TieredStopAtLevel=1".strip(),
        }
        self.process = subprocess.Popen(
            [
                "bash",
                str(home / "bin" / "kc.sh"),
                "start-dev",
                "--db=dev-mem",
                "--http-host=127.0.0.1",
                f"--http-port={self.port}",
                f"--http-management-port={self.management_port}",
                "--health-enabled=false",
                "--metrics-enabled=false",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # kc.sh runs java as its child: both stop together with the group
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)
        try:
            wait_for(self._ready, START_TIMEOUT, f"Keycloak on {self.url} (log: {logs})", interval=0.5)
            exposed = {address for address in self.listening() if not ipaddress.ip_address(address).is_loopback}
            if exposed:
                raise RuntimeError(f"Keycloak listens beyond the loopback interface: {sorted(exposed)}")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"Keycloak exited with {self.process.returncode} before it served")
        try:
            return self.http.get("/realms/master/.well-known/openid-configuration").status_code == 200
        except httpx.HTTPError:
            return False

    def listening(self) -> set[str]:
        """The addresses Keycloak's processes (its process group) accept TCP connections on, from /proc."""
        sockets = set()
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and os.getpgid(int(entry.name)) == self.process.pid:
                    sockets |= {os.readlink(fd) for fd in (entry / "fd").iterdir()}
            except OSError:
                continue
        addresses = set()
        for table, size in (("tcp", 4), ("tcp6", 16)):
            for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and f"socket:[{fields[9]}]" in sockets:  # LISTEN
                    raw = bytes.fromhex(fields[1].split(":")[0])
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))  # each 32-bit word host-order
                    address = ipaddress.ip_address(words)
                    mapped = getattr(address, "ipv4_mapped", None)
                    addresses.add(str(mapped or address))
        return addresses

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    # The admin REST API (/admin/realms/...), as the master realm's bootstrap admin.

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        token = self.http.post(
            "/realms/master/protocol/openid-connect/token",
            data={
                "grant_type": "password",
                "client_id": "admin-cli",
                "username": "admin",
                "password": self.admin_password,
            },
        )
        token.raise_for_status()
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        response = self.http.request(method, f"/admin/realms{path}", headers=headers, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"Keycloak {method} {path}: {response.status_code} {response.text}")
        return response

    def realm(self, name: str, scopes: list[str]) -> Realm:
        """A new realm with a client scope per entry of `scopes` (each put in the token's `scope` when asked)."""
        self.admin("POST", "", json={"realm": name, "enabled": True})
        for scope in scopes:
            attributes = {"include.in.token.scope": "true", "display.on.consent.screen": "false"}
            self.admin(
                "POST",
                f"/{name}/client-scopes",
                json={"name": scope, "protocol": "openid-connect", "attributes": attributes},
            )
        return Realm(self, name, scopes)


class Realm:
    def __init__(self, keycloak: Keycloak, name: str, scopes: list[str]) -> None:
        self.keycloak = keycloak
        self.name = name
        self.scopes = scopes
        self.issuer = f"{keycloak.url}/realms/{name}"
        self.id = keycloak.admin("GET", f"/{name}").json()["id"]

    def client(self, client_id: str, audience: str, lifespan: int | None = None) -> Client:
        """A confidential client (client credentials and direct access grants) whose access tokens carry
        `aud: audience` (an audience mapper), may ask for the realm's scopes, and live `lifespan` s if given."""
        secret = secrets.token_urlsafe(24)
        mapper = {
            "name": f"audience {audience}",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {"included.custom.audience": audience, "access.token.claim": "true", "id.token.claim": "false"},
        }
        attributes = {"access.token.lifespan": str(lifespan)} if lifespan else {}
        self.keycloak.admin(
            "POST",
            f"/{self.name}/clients",
            json={
                "clientId": client_id,
                "secret": secret,
                "publicClient": False,
                "serviceAccountsEnabled": True,
                "directAccessGrantsEnabled": True,
                "standardFlowEnabled": False,
                "protocolMappers": [mapper],
                "defaultClientScopes": ["basic", "profile", "email"],  # sub, preferred_username, email
                "optionalClientScopes": self.scopes,
                "attributes": attributes,
            },
        )
        return Client(self, client_id, secret)

    def user(self, username: str) -> str:
        """A user with a complete profile (Keycloak refuses a password grant for an unfinished one); its password."""
        password = secrets.token_urlsafe(16)
        self.keycloak.admin(
            "POST",
            f"/{self.name}/users",
            json={
                "username": username,
                "enabled": True,
                "email": f"{username}@example.com",
                "emailVerified": True,
                "firstName": username.title(),
                "lastName": "Tester",
                "credentials": [{"type": "password", "value": password, "temporary": False}],
            },
        )
        return password

    def rotate_keys(self) -> None:
        """What an operator does to rotate the realm's signing key: a new RSA key provider ranked above the others,
        then every older RSA provider removed (its key leaves the JWKS; tokens it signed no longer verify)."""
        kind = "org.keycloak.keys.KeyProvider"
        path = f"/{self.name}/components"
        old = [
            c["id"]
            for c in self.keycloak.admin("GET", path, params={"parent": self.id, "type": kind}).json()
            if c["providerId"] == "rsa-generated"
        ]
        config = {
            "priority": ["1000"],
            "keySize": ["2048"],
            "algorithm": ["RS256"],
            "active": ["true"],
            "enabled": ["true"],
        }
        self.keycloak.admin(
            "POST",
            path,
            json={
                "name": f"rsa-{secrets.token_hex(4)}",
                "providerId": "rsa-generated",
                "providerType": kind,
                "parentId": self.id,
                "config": config,
            },
        )
        for component in old:
            self.keycloak.admin("DELETE", f"{path}/{component}")

    def kids(self) -> set[str]:
        """The key ids the realm's JWKS publishes now."""
        jwks = self.keycloak.http.get(f"/realms/{self.name}/protocol/openid-connect/certs")
        jwks.raise_for_status()
        return {key["kid"] for key in jwks.json()["keys"]}


class Client:
    def __init__(self, realm: Realm, client_id: str, secret: str) -> None:
        self.realm = realm
        self.client_id = client_id
        self.secret = secret

    def token(self, scope: str = "", username: str = "", password: str = "") -> str:
        """An access token from the realm's token endpoint: the password grant for a user, else the client's own
        (client credentials)."""
        form = {"client_id": self.client_id, "client_secret": self.secret}
        if scope:
            form["scope"] = scope  # an empty one is refused (invalid_scope)
        if username:
            form |= {"grant_type": "password", "username": username, "password": password}
        else:
            form |= {"grant_type": "client_credentials"}
        response = self.realm.keycloak.http.post(f"/realms/{self.realm.name}/protocol/openid-connect/token", data=form)
        if response.status_code != 200:
            raise AssertionError(f"Keycloak token for {self.client_id}: {response.status_code} {response.text}")
        return response.json()["access_token"]
