"""NATS credentials of the functions the local backend runs: only a version whose spec has a `nats:` grant
gets them, as a `.creds` file in its function's private directory, minted for that version's grant.

The JWTs are short-lived (`ttl`, FX_NATS_CREDS_TTL) and re-minted in place every ttl/3 while a replica of
the version lives. So a deleted function's, or a changed grant's, credentials stop working at most `ttl`
after its last replica stopped, copies taken by the function itself included, with no revocation list to
keep (that would need the operator's key to re-sign the account, and the server's config rewritten to
survive a restart). The limit: nats-server ends a connection when its JWT expires, and nats-py then closes
the client for good; a handler that keeps a client across invocations must connect again when it finds
it closed (the file is always fresh). A renewal keeps the version's user key (one per version and
controller run), so a client reading the JWT and the seed at two moments never pairs mismatched halves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from fx.nats_auth import Signer, function_inbox_prefix, mint_function_creds, new_user_seed, write_secret

from .base import ReplicaSpec

log = logging.getLogger("fx_controller.nats")

CREDS_MODE = 0o400


class FunctionCreds:
    def __init__(
        self,
        root: Path,
        nats_url: str,
        signer: Signer | None,
        ttl: float,
        owner_of: Callable[[str], tuple[int, int] | None] = lambda function: None,
    ) -> None:
        self._root = root  # <state>/fn: one private directory per function
        self._owner_of = owner_of  # function -> (uid, gid) its replicas run as, who must read the file
        self._nats_url = nats_url
        self._signer = signer  # None: NATS runs without auth (tests, a dev server): no creds to mint
        self._ttl = ttl
        self._live: dict[str, ReplicaSpec] = {}  # granted replicas not yet gone: their files are kept fresh
        self._users: dict[tuple[str, int], str] = {}  # (function, version) -> its user's seed
        self._renewer: asyncio.Task | None = None

    def private_dir(self, function: str) -> Path:
        path = self._root / function
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def env(self, replica: ReplicaSpec) -> dict[str, str]:
        """FX_NATS_* for a granted replica (its creds file written first), nothing for the others."""
        if replica.spec.nats is None:
            return {}
        env = {"FX_NATS_URL": self._nats_url, "FX_NATS_INBOX_PREFIX": function_inbox_prefix(replica.function)}
        if self._signer is not None:
            env["FX_NATS_CREDS"] = str(self._write(replica))
            self._live[replica.id] = replica
        return env

    def forget(self, replica_id: str) -> None:
        self._live.pop(replica_id, None)

    def start(self) -> None:
        if self._signer is not None:
            self._renewer = asyncio.create_task(self._renew())

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer

    def _path(self, replica: ReplicaSpec) -> Path:
        return self.private_dir(replica.function) / f"nats-v{replica.version}.creds"

    def _write(self, replica: ReplicaSpec) -> Path:
        assert self._signer is not None and replica.spec.nats is not None
        grant, version = replica.spec.nats, (replica.function, replica.version)
        seed = self._users.setdefault(version, new_user_seed())
        creds = mint_function_creds(
            self._signer, replica.function, replica.version, grant.publish, grant.subscribe, self._ttl, seed
        )
        path = self._path(replica)
        write_secret(path, creds, CREDS_MODE, self._owner_of(replica.function))
        return path

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            versions = {(r.function, r.version): r for r in self._live.values()}
            for replica in versions.values():
                try:
                    self._write(replica)
                except OSError as exc:
                    log.error("cannot renew the NATS credentials of %s v%d: %s", replica.function, replica.version, exc)
