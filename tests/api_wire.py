"""An API's wire JSON (KV fx_apis) with every field present as the controller writes it, for tests and benches
that hand the gateway an API without a controller."""

from __future__ import annotations

import json
from typing import Any

ROUTE_DEFAULTS = {"auth": None, "scopes": [], "api_key": False, "throttle": None, "payload": None}


def api_wire(name: str, routes: dict[str, dict[str, Any]], **fields: Any) -> bytes:
    """`routes`: route key -> its integration and options (the defaults fill the rest); `fields` override the
    API's own defaults (hosts, stage, cors, throttle, authorizers, ...)."""
    wire = {
        "name": name,
        "hosts": [],
        "stage": "$default",
        "stage_variables": {},
        "payload": "2.0",
        "cors": None,
        "throttle": None,
        "authorizers": {},
        "routes": {key: ROUTE_DEFAULTS | spec for key, spec in routes.items()},
    }
    return json.dumps(wire | fields).encode()
