"""The gateway's NATS connection: made (retrying until NATS is up, so start order does not matter), kept
(reconnecting forever, whatever closed it: fx.nats_client) and closed, and the two things the data plane says
on it: activation requests and load reports."""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from fx import nats_client
from fx.protocol import (
    LOAD_REPORT_INTERVAL_S,
    SUBJECT_ACTIVATE,
    SUBJECT_LOAD,
    SUBJECT_USAGE,
    ActivationReply,
    ActivationRequest,
    LoadReport,
    UsageReport,
)

from fx_gateway.config import Settings
from fx_gateway.proxy.dispatch import NoController
from fx_gateway.proxy.stats import Stats

log = logging.getLogger("fx_gateway")

CONNECT_RETRY_S = 0.5


class NatsLink:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.nats_url
        self.creds = settings.nats_creds
        self.gateway_id = settings.gateway_id
        self.nc: nats_client.Client | None = None

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def connect(self) -> nats_client.Client:
        warned = False
        while self.nc is None:
            try:
                self.nc = await nats_client.connect(
                    self.url,
                    f"fx-gateway {self.gateway_id}",
                    self.creds,
                    reconnect_time_wait=CONNECT_RETRY_S,
                    connect_timeout=2,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                )
            except (OSError, nats.errors.Error) as exc:
                if not warned:
                    log.warning("NATS at %s not reachable (%s); retrying", self.url, exc)
                    warned = True
                await asyncio.sleep(CONNECT_RETRY_S)
        log.info("connected to NATS at %s", self.url)
        return self.nc

    async def activate(self, request: ActivationRequest, timeout: float) -> ActivationReply:
        """The dispatchers' Activator."""
        nc = self.nc
        if nc is None or not nc.is_connected:
            raise NoController
        try:
            msg = await nc.request(SUBJECT_ACTIVATE, request.to_json(), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NoController from None
        except nats.errors.TimeoutError:
            raise TimeoutError from None
        except nats.errors.Error as exc:
            log.warning("activation request failed: %s", exc)
            raise NoController from None
        return ActivationReply.from_json(msg.data)

    async def report(self, stats: Stats) -> None:
        while True:
            await asyncio.sleep(LOAD_REPORT_INTERVAL_S)
            nc = self.nc
            if nc is None or not nc.is_connected:
                continue  # counts keep accumulating until a report can go out
            await nc.publish(SUBJECT_LOAD, LoadReport(self.gateway_id, stats.load()).to_json())

    async def report_usage(self, stats: Stats, interval: float) -> None:
        """Billed usage to the controller, which keeps it per hour (`fx usage`); what it does not acknowledge
        (away, or a failover) goes again with the next report, so a gateway's counts are not lost."""
        while True:
            await asyncio.sleep(interval)
            nc = self.nc
            deltas, totals = stats.usage()
            if nc is None or not nc.is_connected or not deltas:
                continue
            try:
                await nc.request(SUBJECT_USAGE, UsageReport(self.gateway_id, deltas).to_json(), timeout=interval)
            except (nats.errors.Error, TimeoutError) as exc:
                log.debug("usage report not acknowledged (%s); sent again next time", exc)
                continue
            stats.usage_acknowledged(totals)

    async def close(self) -> None:
        """Leave NATS once what this gateway published (acks, naks, reports) is there (the event engines have
        stopped and finished their work by then)."""
        if self.nc is not None:
            await self.nc.leave()

    async def _disconnected(self) -> None:
        log.warning("NATS disconnected; serving from the route tables held")

    async def _reconnected(self) -> None:
        log.info("NATS reconnected")
