"""Secrets: what the admin API does with them, and the rules that tie them to functions.

A function's spec names secrets (`secrets: [db]`); each secret's keys become environment variables of its
replicas, read when a replica starts. The rules, checked where they can break:

- deploy: every named secret exists (400 SecretNotFound), and no key is given twice by the function's `env`
  and its secrets (400 SecretKeyConflict);
- `fx secret set`: the new keys collide with nothing in the live versions that use the secret (409);
- `fx secret rm`: no live version uses it (409 SecretInUse). A version is live when it takes traffic, has an
  alias, or is the latest; an older one pinned by number after its secret is gone fails to start with
  Fx.SecretNotFound instead;
- replica start: the same checks again (a StartFailed the caller sees as a 502 naming the secret).

No message, log line or answer holds a value: they name secrets and keys only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime

from fx.models import FunctionSpec, SecretInfo, SecretSpec

from ..api.errors import ApiError
from ..backends.base import SecretMirror
from ..replicas.fleet import StartFailed
from ..state.store import FunctionRecord, FunctionStore, VersionRecord
from .store import SecretRecord, SecretStore

log = logging.getLogger("fx_controller.secrets")


def not_found(name: str) -> ApiError:
    return ApiError(404, "SecretNotFound", f"secret {name!r} not found; `fx secret ls` lists secrets", field="name")


def live_versions(record: FunctionRecord) -> list[VersionRecord]:
    """Versions that run without anyone naming their number: traffic, aliases, the latest."""
    live = {*record.traffic, *record.aliased, record.latest.version}
    return [v for v in record.versions if v.version in live]


def conflict(spec: FunctionSpec, keys_of: dict[str, Iterable[str]]) -> tuple[str, str, str] | None:
    """The first key two sources give (key, first source, second source), the function's env being one."""
    seen = dict.fromkeys(spec.env, "env")
    for secret in spec.secrets:
        for key in sorted(keys_of.get(secret, ())):
            if key in seen:
                return key, seen[key], f"secret {secret!r}"
            seen[key] = f"secret {secret!r}"
    return None


class Secrets:
    def __init__(
        self,
        store: SecretStore,
        functions: FunctionStore,
        lock: asyncio.Lock,
        mirror: SecretMirror | None,
        max_bytes: int,
    ) -> None:
        self._store = store
        self._functions = functions
        self._lock = lock  # the controller's: deploys and secret changes never interleave
        self._mirror = mirror
        self._max_bytes = max_bytes

    async def open(self) -> None:
        """Make the backend's copies exactly the stored secrets (a restarted controller converges)."""
        if self._mirror:
            await self._mirror.sync({r.name: r.values for r in self._store.all()})

    # --- the admin API ----------------------------------------------------------------

    def list(self) -> list[SecretInfo]:
        return [record.info(self.users(record.name)) for record in self._store.all()]

    def get(self, name: str) -> SecretInfo:
        record = self._store.get(name)
        if record is None:
            raise not_found(name)
        return record.info(self.users(name))

    async def set(self, name: str, spec: SecretSpec) -> SecretInfo:
        size = sum(len(k.encode()) + len(v.encode()) for k, v in spec.values.items())
        if size > self._max_bytes:
            raise ApiError(
                400,
                "SecretTooLarge",
                f"values: secret {name!r} holds {size} bytes of keys and values; the limit is {self._max_bytes}"
                " (the controller's --max-secret-bytes); split it into several secrets",
                field="values",
            )
        async with self._lock:
            self._check_users(name, spec.values)
            if self._mirror:
                await self._mirrored(name, self._mirror.put(name, spec.values))
            record = SecretRecord(name=name, values=spec.values, updated_at=datetime.now(UTC))
            await self._store.put(record)
        log.info("secret %s set: keys %s", name, ", ".join(sorted(spec.values)))
        return record.info(self.users(name))

    async def delete(self, name: str) -> None:
        async with self._lock:
            if self._store.get(name) is None:
                raise not_found(name)
            users = self.users(name)
            if users:
                raise ApiError(
                    409,
                    "SecretInUse",
                    f"secret {name!r} is used by {', '.join(users)} (a version with traffic, an alias or the"
                    " latest): deploy them without it (fx.yaml `secrets:`) or remove them first",
                    field="name",
                )
            if self._mirror:
                await self._mirrored(name, self._mirror.delete(name))
            await self._store.delete(name)
        log.info("secret %s removed", name)

    def users(self, name: str) -> list[str]:
        """Functions with a live version that names the secret."""
        return [
            record.name
            for record in self._functions.all()
            if any(name in v.spec.secrets for v in live_versions(record))
        ]

    # --- deploys and replica starts -------------------------------------------------------

    def check_refs(self, function: str, spec: FunctionSpec) -> None:
        """A deploy's secrets: each exists, and no key comes twice. Called under the controller's lock."""
        for n, secret in enumerate(spec.secrets):
            if self._store.get(secret) is None:
                raise ApiError(
                    400,
                    "SecretNotFound",
                    f"secrets.{n}: secret {secret!r} does not exist; create it first"
                    f" (`fx secret set {secret} KEY=VALUE`)",
                    function=function,
                    field=f"secrets.{n}",
                )
        found = conflict(spec, self._keys_of(spec))
        if found:
            key, first, second = found
            raise ApiError(
                400,
                "SecretKeyConflict",
                f"secrets: {key!r} is given by both {first} and {second}; rename one of them",
                function=function,
                field="secrets",
            )

    def env(self, spec: FunctionSpec) -> dict[str, str]:
        """The variables a replica gets from its secrets, read now; StartFailed if one is gone or collides."""
        if not spec.secrets:
            return {}
        missing = [s for s in spec.secrets if self._store.get(s) is None]
        if missing:
            raise StartFailed(
                "Fx.SecretNotFound", f"secret {missing[0]!r} was removed; `fx secret set {missing[0]} KEY=VALUE`"
            )
        found = conflict(spec, self._keys_of(spec))
        if found:
            key, first, second = found
            raise StartFailed("Fx.SecretKeyConflict", f"{key!r} is given by both {first} and {second}")
        env: dict[str, str] = {}
        for secret in spec.secrets:
            env.update(self._store.get(secret).values)  # type: ignore[union-attr]
        return env

    # --- helpers ---------------------------------------------------------------------------

    def _check_users(self, name: str, values: dict[str, str]) -> None:
        """New keys must not collide with the env or other secrets of a live version that uses the secret."""
        for record in self._functions.all():
            for version in live_versions(record):
                spec = version.spec
                if name not in spec.secrets:
                    continue
                found = conflict(spec, {**self._keys_of(spec), name: values})
                if found:
                    key, first, second = found
                    raise ApiError(
                        409,
                        "SecretKeyConflict",
                        f"values: {key!r} would be given by both {first} and {second} in {record.name} version"
                        f" {version.version}; rename the key",
                        function=record.name,
                        field="values",
                    )

    def _keys_of(self, spec: FunctionSpec) -> dict[str, Iterable[str]]:
        return {s: record.values.keys() for s in spec.secrets if (record := self._store.get(s))}

    @staticmethod
    async def _mirrored(name: str, write: Awaitable[None]) -> None:
        """The backend's copy is written before the store, so a failure leaves nothing half-applied."""
        try:
            await write
        except Exception as e:  # a mirror's errors name no value (SecretMirror's contract)
            log.error("secret %s: the backend could not write its copy: %s", name, e)
            raise ApiError(
                503,
                "BackendError",
                f"secret {name!r}: the backend could not write its copy ({e}); nothing changed, try again",
                field="name",
            ) from None
