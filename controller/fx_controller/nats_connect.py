"""The controller's NATS connections: its own user (none for a NATS without auth) and its own inbox prefix,
which the gateway's user may neither read nor answer (fx.nats_auth.gateway_permissions)."""

from __future__ import annotations

from pathlib import Path

import nats
from fx.nats_auth import CONTROLLER_INBOX_PREFIX
from nats.aio.client import Client as NATS


async def connect(url: str, creds: Path | None, name: str) -> NATS:
    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        user_credentials=str(creds) if creds else None,
        inbox_prefix=CONTROLLER_INBOX_PREFIX,
    )
