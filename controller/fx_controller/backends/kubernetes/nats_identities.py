"""NATS identities on Kubernetes (fx.nats_auth, operator mode), kept in Secrets the controller writes:

- `<release>-nats-auth`: the authority's seeds and the nats-server config rendered from it. Made once, by the
  leader, before it connects to NATS; the NATS pod mounts only the config (it waits while the Secret is
  missing, so the start order needs nothing). Only the controller's account may read Secrets.
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
TOKEN_KEY = "key"


class SecretApi(Protocol):
    cfg: KubeConfig

    async def read_secret(self, name: str) -> dict[str, str] | None: ...
    async def create_secret(self, body: dict) -> bool: ...


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
    stored = await _ensure(
        api, _secret(cfg, cfg.nats_auth_secret, {**fresh.to_dict(), CONFIG_KEY: fresh.server_config()})
    )
    authority = Authority.from_dict(stored)
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
