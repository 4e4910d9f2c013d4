"""The controller's NATS connections: its own user (none for a NATS without auth) and its own inbox prefix,
which the gateway's user may neither read nor answer (fx.nats_auth.gateway_permissions). They reconnect
forever, whatever closed them (fx.nats_client)."""

from __future__ import annotations

from pathlib import Path

from fx import nats_client
from fx.nats_auth import CONTROLLER_INBOX_PREFIX


async def connect(url: str, creds: Path | None, name: str) -> nats_client.Client:
    return await nats_client.connect(url, name, creds, inbox_prefix=CONTROLLER_INBOX_PREFIX)
