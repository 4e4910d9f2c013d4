"""The JetStream streams of async calls (FX_ASYNC) and dead letters (FX_DLQ), and how they are made.

The controller makes them and keeps their configuration current at start; a gateway's NATS user may not
create or change any stream (a stream it could create may mirror fx_functions), so a gateway only
checks them, and creates them itself only on a NATS without auth (tests, a bare dev server).
"""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from .protocol import ASYNC_SUBJECTS, DEAD_LETTER_SUBJECTS, STREAM_ASYNC, STREAM_DLQ

DLQ_MAX_AGE_S = 14 * 86400
# JetStream drops a second message with the same Nats-Msg-Id within this window: how N gateways store a
# schedule's tick once (fx_gateway.schedules). JetStream's default, set explicitly because schedules rely on it.
DUPLICATE_WINDOW_S = 120.0

# Only what fx sets: the server fills in the rest, and a stream is brought up to date when one of these differs.
SETTINGS: tuple[dict, ...] = (
    {
        "name": STREAM_ASYNC,
        "subjects": [ASYNC_SUBJECTS],
        "retention": RetentionPolicy.WORK_QUEUE,
        "storage": StorageType.FILE,
        "duplicate_window": DUPLICATE_WINDOW_S,
        "description": "fx async calls, one subject per function",
    },
    {
        "name": STREAM_DLQ,
        "subjects": [DEAD_LETTER_SUBJECTS],
        "storage": StorageType.FILE,
        "max_age": DLQ_MAX_AGE_S,
        "description": "fx dead letters: the original call plus Fx-Error headers",
    },
)


async def ensure(js: JetStreamContext) -> list[str]:
    """Create the streams, or bring them up to date; asks nothing of NATS but their info when they are.
    Returns the names of the streams it created."""
    created = []
    for settings in SETTINGS:
        try:
            have = (await js.stream_info(settings["name"])).config
        except nats.js.errors.NotFoundError:
            await js.add_stream(StreamConfig(**settings))
            created.append(settings["name"])
            continue
        if any(getattr(have, k) != v for k, v in settings.items()):
            await js.update_stream(StreamConfig(**settings))
    return created
