"""Delivering an async call's outcome to its callback: a NATS subject, or the caller's X-Callback-Url (retried
a few times), wherever the callback policy allows; counted in the async metrics."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from fx.protocol import (
    ASYNC_CALL_ID,
    ASYNC_CALLBACK_SUBJECT,
    ASYNC_CALLBACK_URL,
    CALL_ID,
    CALLBACK_ATTEMPTS,
    CALLBACK_ERROR,
    CALLBACK_FUNCTION,
    CALLBACK_OUTCOME,
    CALLBACK_STATUS,
    CALLBACK_VERSION,
)
from nats.aio.client import Client as NATS

from fx_gateway.events.callback import CallbackError, post
from fx_gateway.events.callback_policy import CallbackPolicy, CallbackRefused
from fx_gateway.proxy.internal import Result
from fx_gateway.proxy.stats import AsyncStats

log = logging.getLogger("fx_gateway")

DELAYS_S = (0.5, 2.0)  # retries of a failed callback


class Callbacks:
    def __init__(self, nc: NATS, policy: CallbackPolicy, stats: AsyncStats) -> None:
        self.nc = nc
        self.policy = policy
        self.stats = stats

    async def deliver(
        self, headers: dict[str, str], function: str, result: Result, attempts: int, error: str | None
    ) -> None:
        """Send the outcome of the stored call with `headers` (its last answer, or its failure) where it asks.
        Never raises: the call is settled after this, and a callback's failure must not have it run again."""
        try:
            await self._deliver(headers, function, result, attempts, error)
        except Exception:
            log.exception("async call to %s: its callback failed unexpectedly; the call stands", function)
            self.stats.count(self.stats.callbacks, "failed")

    async def _deliver(
        self, headers: dict[str, str], function: str, result: Result, attempts: int, error: str | None
    ) -> None:
        url, subject = headers.get(ASYNC_CALLBACK_URL), headers.get(ASYNC_CALLBACK_SUBJECT)
        if not url and not subject:
            return
        out = {
            CALL_ID: headers.get(ASYNC_CALL_ID, ""),
            CALLBACK_FUNCTION: function,
            CALLBACK_STATUS: str(result.status),
            CALLBACK_OUTCOME: "failure" if error else "success",
            CALLBACK_ATTEMPTS: str(attempts),
            "Content-Type": result.headers.get(b"content-type", b"application/json").decode("latin-1"),
        }
        if result.version:
            out[CALLBACK_VERSION] = result.version
        if error:
            out[CALLBACK_ERROR] = error
        if subject:
            try:
                self.policy.check_subject(subject)  # again: the call may predate the policy, or not come from a gateway
                await self.nc.publish(subject, result.body, headers=out)
                self.stats.count(self.stats.callbacks, "ok")
            except (nats.errors.Error, CallbackRefused) as exc:
                log.warning("callback subject %s for %s: %s", subject, function, exc)
                self.stats.count(self.stats.callbacks, "failed")
        if url:
            await self._post(url, result.body, out, function)

    async def _post(self, url: str, body: bytes, headers: dict[str, str], function: str) -> None:
        for delay in (*DELAYS_S, None):
            try:
                address = await self.policy.address(url)
            except CallbackRefused as exc:
                log.warning("async call to %s: its callback is refused: %s", function, exc)
                self.stats.count(self.stats.callbacks, "failed")
                return
            try:
                status = await post(url, address, body, headers)
            except CallbackError as exc:
                problem = str(exc)
            else:
                if status < 500:
                    self.stats.count(self.stats.callbacks, "ok" if status < 400 else "failed")
                    return
                problem = f"callback to {url} answered {status}"
            if delay is None:
                log.warning("async call to %s: giving up on its callback: %s", function, problem)
                self.stats.count(self.stats.callbacks, "failed")
                return
            await asyncio.sleep(delay)
