"""Dead letters (stream FX_DLQ) for the admin API: listed, shown, and redriven to where they came from.

A redrive is at-least-once: a letter leaves FX_DLQ only after JetStream acknowledged its copy, so a failure
midway leaves it in the DLQ (and a copy already stored is deduplicated by its Nats-Msg-Id if redriven again
within the stream's duplicate window).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from fx.event_models import (
    REDRIVE_BATCH,
    DeadLetter,
    DeadLetterDetail,
    RedriveFailure,
    RedriveResult,
    RedriveSpec,
)
from fx.protocol import (
    ASYNC_CALL_ID,
    ASYNC_FUNCTION,
    DEAD_ATTEMPTS,
    DEAD_ERROR,
    DEAD_LETTER_SUBJECTS,
    DEAD_MESSAGE,
    DEAD_SEQUENCE,
    DEAD_STATUS,
    DEAD_STREAM,
    DEAD_SUBJECT,
    STREAM_ASYNC,
    STREAM_DLQ,
    async_subject,
    dead_letter_function,
    dead_letter_subject,
    kv_bucket,
)
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from ..api.errors import ApiError, not_found

# What the dead-lettering added: a redriven copy is the call (or record) as it was first stored.
DEAD_HEADERS = frozenset(
    {DEAD_ERROR, DEAD_MESSAGE, DEAD_STATUS, DEAD_ATTEMPTS, DEAD_SUBJECT, DEAD_STREAM, DEAD_SEQUENCE}
)
ALL_LETTERS = DEAD_LETTER_SUBJECTS
NATS_ERRORS = (nats.errors.Error, nats.js.errors.Error)


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def summary(raw: RawStreamMsg) -> DeadLetter:
    headers = raw.headers or {}
    stream = headers.get(DEAD_STREAM)
    source = "async" if stream is None else "kv" if kv_bucket(stream) is not None else "jetstream"
    return DeadLetter(
        id=raw.seq,
        function=dead_letter_function(raw.subject or ""),
        source=source,
        error=headers.get(DEAD_ERROR, ""),
        message=headers.get(DEAD_MESSAGE, ""),
        status=_int(headers.get(DEAD_STATUS)),
        attempts=_int(headers.get(DEAD_ATTEMPTS)),
        time=raw.time or datetime.now(UTC),
        call_id=headers.get(ASYNC_CALL_ID),
        stream=stream,
        subject=headers.get(DEAD_SUBJECT),
    )


def detail(raw: RawStreamMsg) -> DeadLetterDetail:
    data = raw.data or b""
    try:
        body, binary = data.decode("utf-8"), False
    except UnicodeDecodeError:
        body, binary = base64.b64encode(data).decode("ascii"), True
    headers = {k: v for k, v in (raw.headers or {}).items() if not k.startswith("Nats-")}
    return DeadLetterDetail(**summary(raw).model_dump(), headers=headers, body=body, body_base64=binary)


class Refused(Exception):
    """This letter cannot be redriven; the reason is for the user."""


class DeadLetters:
    def __init__(self, js: JetStreamContext, function_exists: Callable[[str], bool]) -> None:
        self.js = js
        self.function_exists = function_exists
        self._redriving = asyncio.Lock()  # two redrives at once would each copy the same letters

    async def _scan(self, subject: str, last: int | None = None, first: int = 1) -> AsyncIterator[RawStreamMsg]:
        """The letters on `subject`, oldest first, from sequence `first` up to sequence `last`."""
        seq = first
        while last is None or seq <= last:
            try:
                raw = await self.js.get_msg(STREAM_DLQ, seq=seq, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return
            if last is not None and raw.seq > last:
                return
            yield raw
            seq = raw.seq + 1

    async def list(self, function: str | None, limit: int) -> list[DeadLetter]:
        letters = []
        async for raw in self._scan(dead_letter_subject(function) if function else ALL_LETTERS):
            letters.append(summary(raw))
            if len(letters) >= limit:
                break
        return letters

    async def _get(self, letter_id: int) -> RawStreamMsg:
        try:
            return await self.js.get_msg(STREAM_DLQ, seq=letter_id)
        except nats.js.errors.NotFoundError:
            raise ApiError(
                404, "DeadLetterNotFound", f"no dead letter {letter_id}; `fx dlq ls` lists them", field="id"
            ) from None

    async def show(self, letter_id: int) -> DeadLetterDetail:
        return detail(await self._get(letter_id))

    async def redrive(self, spec: RedriveSpec) -> RedriveResult:
        async with self._redriving:
            if spec.ids is None and spec.end is None:
                spec = await self._pinned(spec)
            redriven, failed, rest = [], [], None
            async for raw in self._select(spec):
                if len(redriven) + len(failed) == REDRIVE_BATCH:  # bounded work a call: the caller sends `next`
                    rest = spec.model_copy(update={"start": raw.seq})
                    break
                letter = summary(raw)
                try:
                    await self._copy(raw, letter)
                except Refused as exc:
                    failed.append(RedriveFailure(id=letter.id, reason=str(exc)))
                    continue
                except NATS_ERRORS as exc:  # NATS away, a full stream: nothing was stored
                    failed.append(RedriveFailure(id=letter.id, reason=f"not re-enqueued, kept in the DLQ: {exc!r}"))
                    continue
                try:
                    await self.js.delete_msg(STREAM_DLQ, raw.seq)
                except NATS_ERRORS as exc:
                    reason = f"re-enqueued, but still in the DLQ ({exc!r}): redriving it again may run it twice"
                    failed.append(RedriveFailure(id=letter.id, reason=reason))
                    continue
                redriven.append(letter)
            return RedriveResult(redriven=redriven, failed=failed, next=rest)

    async def _pinned(self, spec: RedriveSpec) -> RedriveSpec:
        """The first call of a redrive of `function` or `all`: it and its next calls take only the letters there
        are now (a redriven call that fails again becomes a new letter, past `end`: not a loop)."""
        gone = spec.function is not None and not self.function_exists(spec.function)
        if gone and not await self.list(spec.function, 1):
            raise not_found(spec.function)
        return spec.model_copy(update={"end": (await self.js.stream_info(STREAM_DLQ)).state.last_seq})

    async def _select(self, spec: RedriveSpec) -> AsyncIterator[RawStreamMsg]:
        if spec.ids is not None:
            for raw in [await self._get(i) for i in dict.fromkeys(spec.ids)]:  # an unknown id changes nothing
                yield raw
            return
        subject = dead_letter_subject(spec.function) if spec.function else ALL_LETTERS
        async for raw in self._scan(subject, spec.end, spec.start):
            yield raw

    async def _copy(self, raw: RawStreamMsg, letter: DeadLetter) -> None:
        """Store the letter again where it came from; returns once JetStream acknowledged it."""
        if letter.source == "kv":
            raise Refused(
                f"a KV change is not replayed (bucket {letter.stream}'s key now holds its latest value):"
                " put the key again to trigger the function"
            )
        headers = {k: v for k, v in (raw.headers or {}).items() if k not in DEAD_HEADERS and not k.startswith("Nats-")}
        headers["Nats-Msg-Id"] = f"fx-redrive-{letter.id}"  # a second redrive of the same copy is dropped
        if letter.source == "jetstream":
            if not letter.subject:
                raise Refused(f"the letter does not say which subject of {letter.stream} it came from")
            await self.js.publish(letter.subject, raw.data or b"", stream=letter.stream, headers=headers)
            return
        function = headers.get(ASYNC_FUNCTION, letter.function)
        if not self.function_exists(function):
            raise Refused(f"function {function!r} does not exist any more; deploy it, then redrive")
        await self.js.publish(async_subject(function), raw.data or b"", stream=STREAM_ASYNC, headers=headers)
