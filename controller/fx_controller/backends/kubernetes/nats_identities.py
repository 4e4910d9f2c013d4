"""NATS identities on Kubernetes (fx.nats_auth, operator mode), kept in Secrets the controller writes:

- `<release>-nats-auth`: the authority's seeds and the nats-server config rendered from it. Made once, by the
  leader, before it connects to NATS; the NATS pod mounts only the config (it waits while the Secret is
  missing, so the start order needs nothing). Only the controller's account may read Secrets. In cluster mode
  (FX_K8S_NATS_ROUTES) the config has a `cluster` block whose routes need a password, made once and kept here
  too: a pod that can reach port 6222 cannot join the cluster (and so read every message) without it. Each
  leader re-renders the config, so turning cluster mode on or off by `helm upgrade` reaches the NATS pods.
- `<release>-gateway-nats`: the gateway's user (`nats.creds`), mounted into gateway pods.
- `fx-NAME-vN-nats`: one per function version with a `nats:` grant, its user limited to the grant, mounted
  into that version's Deployment pods (owned by the Function, so it goes with it). A pool pod specialised
  to such a version gets a user of its own in its assignment instead.

The controller's own user is minted in memory at each start, from the authority, into its state dir.
Users minted here do not expire: the Secret is the credential's life, and a version's pods read it once.
"""

from __future__ import annotations

import base64
import logging
import secrets
from pathlib import Path
from typing import Protocol

from fx.models import FunctionSpec
from fx.nats_auth import ALL, Authority, Signer, gateway_permissions, mint_function_creds, write_secret

from ...replicas.tokens import KEY_FILE, load_key, new_key
from . import manifests
from .config import KubeConfig

log = logging.getLogger("fx_controller.kubernetes")

CONFIG_KEY = "nats.conf"  # in the authority's Secret: what the NATS pod mounts
CREDS_KEY = "nats.creds"
ROUTE_KEY = "route-password"  # in the authority's Secret: what NATS servers present to each other
ROUTE_USER = "fx-route"
ROUTE_PORT = 6222
TOKEN_KEY = "key"


class SecretApi(Protocol):
    cfg: KubeConfig

    async def read_secret(self, name: str) -> dict[str, str] | None: ...
    async def create_secret(self, body: dict) -> bool: ...
    async def apply_secret(self, body: dict) -> None: ...


def _secret(cfg: KubeConfig, name: str, values: dict[str, str], owner: dict | None = None) -> dict:
    metadata: dict = {
        "name": name,
        "namespace": cfg.namespace,
        "labels": manifests.nats_identity_selector(cfg),
    }
    if owner:
        metadata["ownerReferences"] = [owner]
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata, "data": data}


async def _ensure(api: SecretApi, body: dict) -> dict[str, str]:
    """The Secret's values: the existing ones if it is there (another leader made it first), else body's."""
    name = body["metadata"]["name"]
    existing = await api.read_secret(name)
    if existing is None and await api.create_secret(body):
        log.info("created Secret %s", name)
        return {k: base64.b64decode(v).decode() for k, v in body["data"].items()}
    return existing if existing is not None else await api.read_secret(name) or {}


async def prepare_platform(api: SecretApi, state_dir: Path) -> tuple[Path, Path]:
    """Before the leader connects: the authority (made once), the gateway's user, and this controller's user.
    Returns (the controller's .creds file, the directory Signer.load reads) for its Settings."""
    cfg = api.cfg
    fresh = Authority.create()
    password = secrets.token_hex(24)
    stored = await _ensure(
        api,
        _secret(
            cfg,
            cfg.nats_auth_secret,
            {**fresh.to_dict(), ROUTE_KEY: password, CONFIG_KEY: server_config(fresh, cfg.nats_routes, password)},
        ),
    )
    authority = Authority.from_dict(stored)
    # Made by an older chart (no route password) or for another number of servers: render it again.
    wanted = {ROUTE_KEY: stored.get(ROUTE_KEY) or password}
    wanted[CONFIG_KEY] = server_config(authority, cfg.nats_routes, wanted[ROUTE_KEY])
    if any(stored.get(k) != v for k, v in wanted.items()):
        await api.apply_secret(_secret(cfg, cfg.nats_auth_secret, {**stored, **wanted}))
        log.info("rendered the NATS servers' config again (%d route(s))", len(cfg.nats_routes))
    signer = authority.signer
    await _ensure(
        api, _secret(cfg, cfg.gateway_nats_secret, {CREDS_KEY: signer.mint("fx-gateway", gateway_permissions())})
    )
    auth_dir = state_dir / "nats-auth"
    authority.save(auth_dir)
    creds = auth_dir / "controller.creds"
    write_secret(creds, signer.mint("fx-controller", ALL))
    return creds, auth_dir


async def prepare_replica_token_key(api: SecretApi, state_dir: Path) -> None:
    """The replica token key (fx_controller.replicas.tokens), made once into `<nats-auth>-replica-token` and
    copied to the state dir, where the controller reads it: the emptyDir does not outlive the pod, while the
    Deployments that carry tokens derived from it do."""
    cfg = api.cfg
    stored = await _ensure(api, _secret(cfg, f"{cfg.nats_auth_secret}-replica-token", {TOKEN_KEY: new_key()}))
    path = state_dir / KEY_FILE
    path.unlink(missing_ok=True)
    load_key(path, stored[TOKEN_KEY])


def server_config(authority: Authority, routes: tuple[str, ...], password: str) -> str:
    """The nats-server config: operator-mode auth, and with `routes` (host:port) the cluster block. The
    server's name (unique, stable per pod) and JetStream's store come from its flags."""
    config = authority.server_config()
    if not routes:
        return config
    urls = "\n".join(f"    nats-route://{ROUTE_USER}:{password}@{route}" for route in routes)
    return config + (
        "cluster {\n"
        "  name: fx\n"
        f"  listen: 0.0.0.0:{ROUTE_PORT}\n"
        f"  authorization {{\n    user: {ROUTE_USER}\n    password: {password}\n  }}\n"
        f"  routes: [\n{urls}\n  ]\n"
        "}\n"
    )


def function_creds(signer: Signer, function: str, version: int, spec: FunctionSpec) -> str:
    assert spec.nats is not None
    return mint_function_creds(signer, function, version, spec.nats.publish, spec.nats.subscribe, None)


async def ensure_function_secret(
    api: SecretApi, signer: Signer, function: str, version: int, spec: FunctionSpec, owner_uid: str
) -> None:
    """The version's user, made once (its Deployment's pods mount it)."""
    name = manifests.nats_secret_name(function, version)
    if await api.read_secret(name) is None:
        creds = function_creds(signer, function, version, spec)
        await api.create_secret(
            _secret(api.cfg, name, {CREDS_KEY: creds}, manifests.owner_reference(function, owner_uid))
        )
