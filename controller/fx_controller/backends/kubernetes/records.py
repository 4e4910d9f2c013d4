"""Function records mirrored into their Function resources, so that the function store can be rebuilt from the
Kubernetes API when NATS lost it (an emptyDir, a wiped volume) and the controller restarted too.

The resource's spec is the latest version's; the whole record (every version with its digest and spec, the
traffic split, aliases, rollback history) is in the annotation `fx.dev/record`: its JSON, gzip'd, in base64.
A leader about to load the store creates each mirrored record the store lacks, before it loads it; a record the
store has is never replaced (NATS stays the truth while it has the data). A record too big for an annotation is
not mirrored: that function comes back by its spec alone, as a new version 1 (the resource's GitOps path).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import logging
import zlib
from typing import Protocol

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import ValidationError

from ...state.store import FunctionRecord

log = logging.getLogger("fx_controller.kubernetes")

ANNOTATION = "fx.dev/record"
# An object's annotations may hold 256 KiB in all (keys and values); leave room for everyone else's.
MAX_BYTES = 192 * 1024
MAX_JSON_BYTES = 16 * 1024 * 1024  # a record inflated from the annotation


class FunctionApi(Protocol):
    async def list_functions(self) -> list[dict]: ...


def encode(record: FunctionRecord) -> str | None:
    """The annotation's value, or None if it would not fit."""
    text = base64.b64encode(gzip.compress(record.model_dump_json().encode(), mtime=0)).decode()
    return text if len(text) <= MAX_BYTES else None


def decode(text: str) -> FunctionRecord:
    """Raises ValueError on anything but what `encode` made (a hand-edited annotation). Anyone who may edit a
    Function may write the annotation, so its size and what it inflates to are bounded: a small gzip bomb would
    otherwise take the leader's memory at start, in a crash loop."""
    if len(text) > MAX_BYTES:
        raise ValueError(f"{len(text)} bytes, over the {MAX_BYTES} fx writes at most")
    try:
        inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
        raw = inflate.decompress(base64.b64decode(text, validate=True), MAX_JSON_BYTES)
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError(f"it inflates past {MAX_JSON_BYTES} bytes, or is cut short")
        return FunctionRecord.model_validate_json(raw)
    except (binascii.Error, zlib.error, ValidationError) as e:
        raise ValueError(str(e)) from None


class StoreFromResources:
    """The kubernetes backend's `store_source`."""

    def __init__(self, api: FunctionApi) -> None:
        self._api = api

    async def restore(self, kv: KeyValue) -> list[str]:
        """Create the records the store lacks from the Function resources; the names restored."""
        restored = []
        for item in await self._api.list_functions():
            meta = item["metadata"]
            text = (meta.get("annotations") or {}).get(ANNOTATION)
            if not text or meta.get("deletionTimestamp"):
                continue
            try:
                record = decode(text)
            except ValueError as e:
                log.warning("Function %s: annotation %s unreadable (%s); not restored", meta["name"], ANNOTATION, e)
                continue
            if record.name != meta["name"]:
                continue  # copied from another resource: not this function's
            try:
                await kv.create(record.name, record.model_dump_json().encode())
            except KeyWrongLastSequenceError:
                continue  # the store has it: NATS kept its data
            restored.append(record.name)
        if restored:
            log.warning(
                "the function store lacked %d function(s) that Kubernetes holds (NATS lost its data?): restored %s"
                " from their Function resources",
                len(restored),
                ", ".join(restored),
            )
        return restored
