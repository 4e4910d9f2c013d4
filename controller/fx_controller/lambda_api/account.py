"""GetAccountSettings: fx's limits in Lambda's AccountLimit, and what its functions use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from .catalog import Catalog
from .functions import zip_limit

PATH = "/2016-08-19/account-settings"


def router(catalog: Catalog) -> APIRouter:
    api = APIRouter()

    @api.get(PATH)
    async def get_account_settings() -> dict[str, Any]:
        controller = catalog.controller
        functions = controller.list()
        sizes = {v.digest: catalog.code_size(v) for info in functions for v in info.versions}  # each zip once
        zipped, _ = zip_limit(catalog)
        # fx has no account-wide limit: the most replicas the versions taking traffic may scale to.
        max_replicas = sum(v.spec.scale.max for info in functions for v in info.versions if v.traffic)
        return {
            "AccountLimit": {
                "TotalCodeSize": 0,  # fx sets no total: the artifacts' disk is the bound
                "CodeSizeUnzipped": controller.settings.max_unzipped_bytes,
                "CodeSizeZipped": zipped,
                "ConcurrentExecutions": max_replicas,
                "UnreservedConcurrentExecutions": max_replicas,
            },
            "AccountUsage": {"TotalCodeSize": sum(sizes.values()), "FunctionCount": len(functions)},
        }

    return api
