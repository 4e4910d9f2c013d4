"""NATS identities for fx: decentralized JWT auth ("operator mode"), so users are minted without a server reload.

An `Authority` holds four Ed25519 nkeys: the operator, the system account, the fx account (JetStream on)
and a signing key of the fx account. The nats-server config it renders trusts the operator and preloads
both account JWTs (`resolver: MEMORY`); every user JWT is signed by the fx account's signing key, so the
server accepts a user it has never heard of as long as the signature chains to the operator. A `Signer`
(the account's public key and the signing key's seed) is all a minting component needs.

The JWT v2 claims are built here (see ARCHITECTURE.md): the PyPI `nats-jwt` package is a third party's
self-declared untested port that pins old pytz/dacite/dataclasses-json, while the claims fx needs are a
few fields. `nkeys` (nats-io's own) does the keys and signatures.

Users' permissions are allow/deny lists of subjects (deny wins over allow, as in nats-server). Identities:
- controller, admin: no permissions field, i.e. everything in the fx account;
- gateway (`gateway_permissions`): no writes to fx's KV buckets, no reads of any but those it follows (fx_routes,
  fx_apis), may request
  but not serve `fx.activate`;
- function (`function_permissions`): only its grant, its own inbox prefix and replies to requests it got.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import nkeys

from .protocol import KV_API_KEYS, KV_API_USAGE, KV_APIS, KV_ROUTES, OBJ_BLOBS, kv_stream, kv_subject

# Inbox prefixes. A function's user may subscribe only under its own; the controller's is kept apart so
# the gateway may be denied its replies (JetStream answers carrying fx_functions records).
FUNCTION_INBOX_ROOT = "_INBOX.fx-fn"
CONTROLLER_INBOX_PREFIX = "_INBOX.fx-controller"

# fx's JetStream buckets other than those the gateways follow: nobody but the controller touches them.
PRIVATE_BUCKETS = ("fx_functions", "fx_secrets", "fx_credentials", "fx_usage", KV_API_USAGE)
PRIVATE_OBJECT_STORES = ("fx_artifacts",)
# What the gateways follow (route tables, API routes, API keys: their hashes only): the controller writes them,
# the gateways only read them.
FOLLOWED_BUCKETS = (KV_ROUTES, KV_APIS, KV_API_KEYS)

_SEEDS = {
    "operator": "operator.nk",
    "system": "system-account.nk",
    "account": "fx-account.nk",
    "signing": "fx-signing.nk",
}
_ACCOUNT_PUB = "fx-account.pub"
_UNLIMITED = -1


class NatsAuthError(Exception):
    pass


@dataclass(frozen=True)
class Permissions:
    """What one user may do, as allow/deny lists (deny wins). A kind with neither list denies everything:
    NATS itself would read a missing allow-list as "allow all"."""

    publish: tuple[str, ...] = ()
    publish_deny: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    responses: bool = False  # may publish one reply to each request it received (allow_responses)

    def claims(self) -> dict:
        def lists(allow: tuple[str, ...], deny: tuple[str, ...]) -> dict:
            return {k: list(v) for k, v in (("allow", allow), ("deny", deny)) if v} or {"deny": [">"]}

        out: dict = {"pub": lists(self.publish, self.publish_deny), "sub": lists(self.subscribe, self.subscribe_deny)}
        if self.responses:
            out["resp"] = {"max": 1, "ttl": 0}
        return out


ALL = None  # the controller's and the admin's permissions: everything in the fx account
ADMIN_CREDS = "admin.creds"  # the admin user's credentials, in the embedded mode's nats-auth directory


def _new_key(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(nkeys.encode_seed(os.urandom(32), prefix))


def new_user_seed() -> str:
    return _new_key(nkeys.PREFIX_BYTE_USER).seed.decode()


def _key(seed: str) -> nkeys.KeyPair:
    try:
        return nkeys.from_seed(seed.strip().encode())
    except (nkeys.NkeysError, ValueError, TypeError) as exc:
        raise NatsAuthError(f"not an nkey seed: {exc}") from exc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_HEADER = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}, separators=(",", ":")).encode())


def encode_jwt(claims: dict, signer: nkeys.KeyPair) -> str:
    """A NATS JWT: `iss` is the signer; `jti` identifies these claims (a hash of them, as nats-io/jwt does)."""
    body = {"iat": int(time.time()), **claims, "iss": signer.public_key.decode(), "jti": ""}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    signature = signer.sign(f"{_HEADER}.{payload}".encode())
    return f"{_HEADER}.{payload}.{_b64(signature)}"


def decode_jwt(token: str) -> dict:
    """The claims of a JWT, unverified (for tests and tools; nats-server does the verifying)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def creds_text(jwt: str, seed: str) -> str:
    """The `.creds` file nats-py's `user_credentials=` (and the nats CLI) read."""
    return (
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def write_secret(path: Path, text: str, mode: int = 0o600, owner: tuple[int, int] | None = None) -> None:
    """Replace `path` atomically with `text`, never readable by others, even for a moment; `owner`: (uid, gid)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if owner is not None:
            os.chown(tmp, *owner)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Signer:
    """Mints users of the fx account: its public key and the seed of one of its signing keys."""

    account: str
    signing_seed: str = field(repr=False)

    def mint(
        self, name: str, permissions: Permissions | None = ALL, ttl: float | None = None, user_seed: str | None = None
    ) -> str:
        """A user's `.creds` text; `ttl` seconds until nats-server refuses it (and drops its connections).
        `user_seed` renews an existing user's JWT (see new_user_seed); by default the user is new."""
        user = _key(user_seed) if user_seed else _new_key(nkeys.PREFIX_BYTE_USER)
        nats: dict = {"type": "user", "version": 2, "issuer_account": self.account}
        nats.update({k: _UNLIMITED for k in ("subs", "data", "payload")})
        if permissions is not None:
            nats.update(permissions.claims())
        claims: dict = {"sub": user.public_key.decode(), "name": name, "nats": nats}
        if ttl is not None:
            claims["exp"] = int(time.time() + ttl)
        return creds_text(encode_jwt(claims, self._signing_key), user.seed.decode())

    @cached_property
    def _signing_key(self) -> nkeys.KeyPair:  # decoding a seed costs about as much as a signature
        return _key(self.signing_seed)

    def to_dict(self) -> dict[str, str]:
        return {"account": self.account, "signing_seed": self.signing_seed}

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> Signer:
        try:
            signer = cls(d["account"].strip(), d["signing_seed"].strip())
        except (KeyError, AttributeError) as exc:
            raise NatsAuthError(f"a NATS signer needs 'account' and 'signing_seed': missing {exc}") from exc
        _key(signer.signing_seed)
        return signer

    @classmethod
    def load(cls, directory: Path) -> Signer:
        """From an authority directory; only its fx-account.pub and fx-signing.nk are read."""
        try:
            return cls.from_dict(
                {
                    "account": (directory / _ACCOUNT_PUB).read_text(),
                    "signing_seed": (directory / _SEEDS["signing"]).read_text(),
                }
            )
        except OSError as exc:
            raise NatsAuthError(f"cannot read the NATS signing key in {directory}: {exc.strerror}") from exc


@dataclass(frozen=True)
class Authority:
    """The seeds that define fx's NATS trust: operator, system account, fx account, fx signing key."""

    operator: str = field(repr=False)
    system: str = field(repr=False)
    account: str = field(repr=False)
    signing: str = field(repr=False)

    @classmethod
    def create(cls) -> Authority:
        return cls(
            operator=_new_key(nkeys.PREFIX_BYTE_OPERATOR).seed.decode(),
            system=_new_key(nkeys.PREFIX_BYTE_ACCOUNT).seed.decode(),
            account=_new_key(nkeys.PREFIX_BYTE_ACCOUNT).seed.decode(),
            signing=_new_key(nkeys.PREFIX_BYTE_ACCOUNT).seed.decode(),
        )

    @property
    def account_public(self) -> str:
        return _key(self.account).public_key.decode()

    @property
    def system_public(self) -> str:
        return _key(self.system).public_key.decode()

    @property
    def signer(self) -> Signer:
        return Signer(self.account_public, self.signing)

    # --- storage: a dict (e.g. a Kubernetes Secret's data) or a directory of 0600 files ---

    def to_dict(self) -> dict[str, str]:
        return {"operator": self.operator, "system": self.system, "account": self.account, "signing": self.signing}

    @classmethod
    def from_dict(cls, d: Mapping[str, str]) -> Authority:
        missing = [k for k in _SEEDS if not d.get(k)]
        if missing:
            raise NatsAuthError(f"the NATS authority lacks {', '.join(missing)}")
        authority = cls(**{k: d[k].strip() for k in _SEEDS})
        for seed in authority.to_dict().values():
            _key(seed)
        return authority

    def save(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        for role, seed in self.to_dict().items():
            write_secret(directory / _SEEDS[role], seed + "\n")
        write_secret(directory / _ACCOUNT_PUB, self.account_public + "\n", 0o644)

    @classmethod
    def load(cls, directory: Path) -> Authority:
        try:
            return cls.from_dict({role: (directory / name).read_text() for role, name in _SEEDS.items()})
        except OSError as exc:
            raise NatsAuthError(f"cannot read the NATS authority in {directory}: {exc.strerror}") from exc

    @classmethod
    def load_or_create(cls, directory: Path) -> Authority:
        if (directory / _SEEDS["operator"]).exists():
            return cls.load(directory)
        authority = cls.create()
        authority.save(directory)
        return authority

    # --- what nats-server needs ---

    def account_jwts(self) -> dict[str, str]:
        """Public key -> JWT of the system account and of the fx account (JetStream enabled, no limits)."""
        op = _key(self.operator)
        limits: dict = {k: _UNLIMITED for k in ("subs", "data", "payload", "imports", "exports", "conn", "leaf")}
        limits["wildcards"] = True
        jetstream = {k: _UNLIMITED for k in ("mem_storage", "disk_storage", "streams", "consumer")}
        accounts = {
            self.system_public: ("SYS", {"limits": limits}),
            self.account_public: (
                "fx",
                {"limits": {**limits, **jetstream}, "signing_keys": [_key(self.signing).public_key.decode()]},
            ),
        }
        return {
            pub: encode_jwt({"sub": pub, "name": name, "nats": {"type": "account", "version": 2, **nats}}, op)
            for pub, (name, nats) in accounts.items()
        }

    def server_config(self) -> str:
        """nats-server config lines for operator mode; listen address and JetStream come from its flags."""
        op = _key(self.operator)
        operator_jwt = encode_jwt(
            {
                "sub": op.public_key.decode(),
                "name": "fx",
                "nats": {"type": "operator", "version": 2, "system_account": self.system_public},
            },
            op,
        )
        preload = "\n".join(f"  {pub}: {jwt}" for pub, jwt in self.account_jwts().items())
        return (
            f"operator: {operator_jwt}\n"
            f"system_account: {self.system_public}\n"
            "resolver: MEMORY\n"
            f"resolver_preload: {{\n{preload}\n}}\n"
        )


# --- the identities' permissions -------------------------------------------------------------------


def _stream_api(stream: str) -> tuple[str, ...]:
    """Every JetStream API subject naming `stream` ($JS.API.STREAM.INFO.S, ...MSG.GET.S, DIRECT.GET.S.>, ...)."""
    return (f"$JS.API.*.*.{stream}", f"$JS.API.*.*.{stream}.>", f"$JS.API.*.*.*.{stream}", f"$JS.API.*.*.*.{stream}.>")


def gateway_permissions() -> Permissions:
    """The gateway serves triggers on any user subject and user stream, so its allow-lists are `>`; the
    deny-lists keep it off fx's control plane: it reads route tables and blobs (fx_blobs) but writes neither,
    reads no other fx bucket, makes or changes no stream, requests activations but cannot answer them, and cannot
    read or forge the controller's replies."""
    private = [kv_stream(b) for b in PRIVATE_BUCKETS] + [f"OBJ_{o}" for o in PRIVATE_OBJECT_STORES]
    # No stream of its own making (one could mirror fx_functions), and no stream changed or emptied: the
    # controller makes FX_ASYNC, FX_DLQ, fx_routes and fx_apis; the gateway adds consumers only.
    stream_writes = [
        f"$JS.API.STREAM.{op}.*" for op in ("CREATE", "UPDATE", "DELETE", "PURGE", "RESTORE", "SNAPSHOT")
    ] + ["$JS.API.STREAM.MSG.DELETE.*", "$JS.API.STREAM.PEER.REMOVE.*", "$JS.API.ACCOUNT.PURGE.*"]
    stream_writes.append("$JS.API.CONSUMER.DELETE.*.*")  # it never deletes one; another's would stop its work
    publish_deny = [
        *(kv_subject(b, ">") for b in (*FOLLOWED_BUCKETS, *PRIVATE_BUCKETS)),
        *(f"$O.{o}.>" for o in (*PRIVATE_OBJECT_STORES, OBJ_BLOBS)),  # fx_blobs: read (to send), not written
        *(s for stream in private for s in _stream_api(stream)),
        *stream_writes,
        "$SYS.>",
        f"{CONTROLLER_INBOX_PREFIX}.>",
    ]
    subscribe_deny = ["fx.>", "$KV.>", "$O.>", "$JS.>", "$SYS.>", f"{CONTROLLER_INBOX_PREFIX}.>", "_INBOX.fx-fn.>"]
    return Permissions(
        publish=(">",), publish_deny=tuple(publish_deny), subscribe=(">",), subscribe_deny=tuple(subscribe_deny)
    )


def function_inbox_prefix(function: str) -> str:
    return f"{FUNCTION_INBOX_ROOT}.{function}"


def function_permissions(function: str, publish: Iterable[str], subscribe: Iterable[str]) -> Permissions:
    """A function's grant (validated by FunctionSpec) plus its own inbox and replies to requests it received."""
    return Permissions(
        publish=tuple(publish),
        subscribe=(*subscribe, f"{function_inbox_prefix(function)}.>"),
        responses=True,
    )


def mint_function_creds(
    signer: Signer,
    function: str,
    version: int,
    publish: Iterable[str],
    subscribe: Iterable[str],
    ttl: float | None,
    user_seed: str | None = None,
) -> str:
    """The `.creds` text of a function version's user: its grant only, valid for `ttl` seconds (None: no end)."""
    permissions = function_permissions(function, publish, subscribe)
    return signer.mint(f"fn/{function}/{version}", permissions, ttl, user_seed)
