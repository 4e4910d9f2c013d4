"""The kubernetes backend's copies of fx's secrets: one Secret each (`<release>-secret-<name>`), which the
Deployments of the versions naming it take in with envFrom. The controller writes them; function pods never
read the API (no service-account token): the kubelet puts the values in their environment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Protocol

from kubernetes.client.exceptions import ApiException

from . import manifests
from .config import KubeConfig

log = logging.getLogger("fx_controller.kubernetes")


class SecretApi(Protocol):
    """What this uses of kube.KubeApi (a fake in the unit tests)."""

    cfg: KubeConfig

    async def apply_secret(self, body: dict) -> None: ...
    async def delete_secret(self, name: str) -> None: ...
    async def secret_names(self, selector: str) -> list[str]: ...


class SecretCopyError(Exception):
    """The API server refused a write. Its message names the Secret and the status, never a value (an
    ApiException's text holds the whole response)."""


class KubeSecrets:
    def __init__(self, api: SecretApi) -> None:
        self._api = api
        self._cfg = api.cfg

    async def put(self, name: str, values: dict[str, str]) -> None:
        await self._call(name, self._api.apply_secret(manifests.secret(self._cfg, name, values)))

    async def delete(self, name: str) -> None:
        await self._call(name, self._api.delete_secret(manifests.secret_name(self._cfg, name)))

    async def sync(self, secrets: dict[str, dict[str, str]]) -> None:
        for name, values in secrets.items():
            await self.put(name, values)
        wanted = {manifests.secret_name(self._cfg, name) for name in secrets}
        for stale in await self._api.secret_names(manifests.secret_selector(self._cfg)):
            if stale not in wanted:
                log.info("deleting Secret %s: its fx secret is gone", stale)
                await self._call(stale, self._api.delete_secret(stale))

    @staticmethod
    async def _call(name: str, write: Awaitable[None]) -> None:
        try:
            await write
        except ApiException as e:
            raise SecretCopyError(f"Kubernetes answered {e.status} {e.reason} for the Secret of {name!r}") from None
