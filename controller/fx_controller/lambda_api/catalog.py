"""Lookups the Lambda actions share: a function, a version by qualifier, its configuration in Lambda's shape.

Reads go through the same controller methods the admin API uses (describe, version); 404s are Lambda's,
naming the ARN that was not found."""

from __future__ import annotations

import os
from typing import Any

from fx.models import FunctionInfo, VersionInfo

from ..controller import Controller
from ..state.store import FunctionRecord
from . import shapes
from .errors import invalid, not_found, precondition
from .fields import fixed


class Catalog:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        # The region fx's ARNs name: the replicas' (they read the same variables), so the ARNs agree.
        self.region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.fixed = fixed(controller.settings.sandbox_tmp_mb)

    def record(self, name: str) -> FunctionRecord:
        record = self.controller.store.get(name)
        if record is None:
            raise not_found(f"Function not found: {shapes.function_arn(self.region, name)}")
        return record

    def info(self, name: str) -> FunctionInfo:
        self.record(name)
        return self.controller.describe(name)

    def resolve(self, name: str, qualifier: str | None) -> tuple[VersionInfo, str]:
        """The version a qualifier names, and the Version it is answered as: $LATEST for none or $LATEST,
        the number for a number or an alias."""
        info = self.info(name)
        if not qualifier or qualifier == shapes.LATEST:
            return info.versions[-1], shapes.LATEST
        number = info.aliases.get(qualifier, qualifier)
        found = next((v for v in info.versions if str(v.version) == str(number)), None)
        if found is None:
            what = "Alias" if qualifier not in info.aliases and not qualifier.isdigit() else "Function"
            raise not_found(f"{what} not found: {shapes.function_arn(self.region, name, qualifier)}")
        return found, str(found.version)

    def code_size(self, version: VersionInfo) -> int:
        """The zip's bytes, as this controller holds it (an image's: 0)."""
        path = self.controller.artifacts.path(version.digest) if version.spec.artifact else None
        return path.stat().st_size if path is not None and path.is_file() else 0

    def configuration(self, name: str, version: VersionInfo, shown: str) -> dict[str, Any]:
        return shapes.configuration(self.region, name, version, shown, self.code_size(version), self.fixed)

    def qualified(self, name: str, qualifier: str | None) -> dict[str, Any]:
        """GetFunction(Configuration)'s answer: an alias's version under the alias's ARN, as Lambda answers."""
        version, shown = self.resolve(name, qualifier)
        config = self.configuration(name, version, shown)
        if qualifier not in (None, shown, shapes.LATEST):
            config["FunctionArn"] = shapes.function_arn(self.region, name, qualifier)
        return config

    def check_revision(self, name: str, version: VersionInfo, given: str | None) -> None:
        """Lambda's optimistic lock: a RevisionId that is not the current one is 412."""
        if given is not None and given != shapes.revision_id(name, version):
            message = f"RevisionId {given!r} is not the current one of {name}: get the function again, then retry"
            raise precondition(message)

    def qualifier(self, path_qualifier: str | None, query_qualifier: str | None) -> str | None:
        if path_qualifier and query_qualifier and path_qualifier != query_qualifier:
            raise invalid(f"the qualifier in FunctionName ({path_qualifier}) and Qualifier ({query_qualifier}) differ")
        return query_qualifier or path_qualifier
