"""After NATS comes back: what it lost re-created from the controller, then every route table published again.

The controller is the only writer of fx's buckets and holds all of them in memory (the function store and the
secrets), and the code zips on its disk. So when a bucket, stream or the object store is missing (nats-server
came back with an empty store dir, or an operation found one gone), it is created again, the records and the
zips are written back, and gateways get every route table again (a gateway re-watches the routes bucket after a
reconnect). What only NATS held is gone and said once, in the log: the async calls not yet run and the dead
letters (FX_ASYNC, FX_DLQ), and the users' own streams and KV buckets (durable triggers on them stop firing
until they are created again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import nats.errors
from fx.models import FunctionSpec
from fx.protocol import (
    KV_API_KEYS,
    KV_APIS,
    KV_CREDENTIALS,
    KV_FUNCTIONS,
    KV_SECRETS,
    OBJ_ARTIFACTS,
    STREAM_ASYNC,
    STREAM_DLQ,
    kv_stream,
)
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from .nats_buckets import provision
from .secrets.store import SecretStore
from .state.artifacts import Artifacts
from .state.routes import RoutePublisher
from .state.store import CachedBucket, FunctionStore

log = logging.getLogger("fx_controller.nats")

RETRY_S = 0.5  # while JetStream is not answering yet (nats-server restarting)


class NatsRecovery:
    def __init__(
        self,
        js: JetStreamContext,
        store: FunctionStore,
        secrets: SecretStore,
        artifacts: Artifacts,
        routes: RoutePublisher,
        lock: asyncio.Lock,
        live_specs: Callable[[], list[tuple[str, FunctionSpec]]],
        replicas: int = 1,
        credentials: CachedBucket | None = None,
        apis: CachedBucket | None = None,
        api_keys: CachedBucket | None = None,
    ) -> None:
        self._js = js
        self._credentials = credentials  # the Lambda API's access keys
        self._apis = apis  # API routes (fx_apis)
        self._api_keys = api_keys  # API routes' keys (fx_api_keys)
        self._replicas = replicas  # copies of what it re-creates, in a JetStream cluster (FX_NATS_REPLICAS)
        self._store = store
        self._secrets = secrets
        self._artifacts = artifacts
        self._routes = routes
        self._lock = lock  # the controller's: no deploy writes the store while it is restored
        self._live_specs = live_specs
        self._running: asyncio.Task | None = None
        self._again = False

    def request(self) -> None:
        """Recover soon (after NATS reconnected, or an operation met a missing stream); one run at a time, and
        one more if asked while running."""
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            await self._recover()

    async def _recover(self) -> None:
        started = asyncio.get_running_loop().time()
        created = await self._provision()
        if created:
            await self._restore(created)
        try:
            await self._routes.publish_all()
        except nats.errors.Error as exc:  # NATS went away again: the next reconnect runs this again
            log.warning("could not publish the route tables again: %s", exc)
            return
        took = asyncio.get_running_loop().time() - started
        log.info("NATS back: %d route tables published again in %.2f s", len(self._store.all()), took)

    async def _provision(self) -> list[str]:
        warned = False
        while True:
            try:
                return await provision(self._js, self._replicas)
            except (nats.errors.Error, OSError) as exc:  # JetStream still starting, or NATS gone again
                if not warned:
                    log.warning("cannot check fx's JetStream streams and buckets yet (%s); retrying", exc)
                    warned = True
                await asyncio.sleep(RETRY_S)

    async def _restore(self, created: list[str]) -> None:
        async with self._lock:
            functions = await self._store.restore() if KV_FUNCTIONS in created else 0
            secrets = await self._secrets.restore() if KV_SECRETS in created else 0
            if self._credentials is not None and KV_CREDENTIALS in created:
                await self._credentials.restore()
            if self._apis is not None and KV_APIS in created:
                await self._apis.restore()
            if self._api_keys is not None and KV_API_KEYS in created:
                await self._api_keys.restore()
        missing: list[str] = []
        if OBJ_ARTIFACTS in created:
            digests = {d for r in self._store.all() for v in r.versions for d in (v.spec.artifact, v.spec.dependencies)}
            missing = await self._artifacts.restore({d for d in digests if d})
        lost = [name for name in (STREAM_ASYNC, STREAM_DLQ) if name in created]
        log.error(
            "NATS lost fx's data (re-created: %s). Restored from the controller: %d function records, %d secrets,"
            " the code zips on this host%s. Lost for good: %s%s",
            ", ".join(created),
            functions,
            secrets,
            f" (none for {', '.join(missing)}: deploy those functions again)" if missing else "",
            "the async calls not yet run and the dead letters" if lost else "nothing fx stored",
            await self._user_streams_gone(),
        )

    async def _user_streams_gone(self) -> str:
        """The users' streams and KV buckets that durable triggers read and NATS no longer has, said once."""
        wanted: dict[str, list[str]] = {}
        for function, spec in self._live_specs():
            for trigger in spec.triggers:
                if trigger.jetstream is not None:
                    wanted.setdefault(trigger.jetstream.stream, []).append(function)
                elif trigger.kv is not None:
                    wanted.setdefault(kv_stream(trigger.kv.bucket), []).append(function)
        gone = []
        for stream, functions in sorted(wanted.items()):
            try:
                await self._js.stream_info(stream)
            except NotFoundError:
                gone.append(f"{stream} (triggers of {', '.join(sorted(set(functions)))})")
        if not gone:
            return ""
        return "; and the users' streams " + ", ".join(gone) + ": create them again (fx stream create / fx kv create)"
