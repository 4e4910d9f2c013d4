"""The `context` object handlers receive, with the attributes of Lambda's Python runtime."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id = None
        self.cognito_identity_pool_id = None


class Client:
    __slots__ = ("app_package_name", "app_title", "app_version_code", "app_version_name", "installation_id")

    def __init__(self, raw: dict) -> None:
        for name in self.__slots__:
            setattr(self, name, raw.get(name))


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, raw: dict) -> None:
        client = raw.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = raw.get("custom")
        self.env = raw.get("env")


LATEST = "$LATEST"


class LambdaContext:
    """Per invocation; the constant fields are class attributes set once at init (see `configure`).

    As on Lambda, `invoked_function_arn` ends with the qualifier the caller named (`:1`, `:beta`, `:$LATEST`),
    with none when it named none, and `function_version` is the version that runs: `$LATEST` when the call
    named no version (or `$LATEST`) and the platform ran the newest one, else its number."""

    function_name: str = ""
    function_arn: str = ""  # unqualified
    version: str = ""  # this replica's version number
    memory_limit_in_mb: str = ""
    log_group_name: str = ""
    log_stream_name: str = ""
    tenant_id = None

    __slots__ = (
        "_deadline_ms",
        "_identity",
        "aws_request_id",
        "client_context",
        "function_version",
        "invoked_function_arn",
    )

    def __init__(
        self,
        request_id: str,
        deadline_ms: int,
        client_context: dict | None = None,
        qualifier: str = "",
        latest: bool = False,
    ) -> None:
        self.aws_request_id = request_id
        self._deadline_ms = deadline_ms
        self.client_context = ClientContext(client_context) if isinstance(client_context, dict) else None
        self._identity: CognitoIdentity | None = None
        self.invoked_function_arn = f"{self.function_arn}:{qualifier}" if qualifier else self.function_arn
        self.function_version = LATEST if latest else self.version

    @property
    def identity(self) -> CognitoIdentity:
        """Made when first read: most handlers never do, and each invocation has its own."""
        if self._identity is None:
            self._identity = CognitoIdentity()
        return self._identity

    @identity.setter
    def identity(self, value: CognitoIdentity) -> None:
        self._identity = value

    def get_remaining_time_in_millis(self) -> int:
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg: Any) -> None:
        sys.stdout.write(str(msg))

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},client_context={self.client_context},"
            f"identity={self.identity},tenant_id={self.tenant_id}])"
        )


def configure(env: Mapping[str, str], function_arn: str) -> None:
    LambdaContext.function_name = env["AWS_LAMBDA_FUNCTION_NAME"]
    LambdaContext.version = env["AWS_LAMBDA_FUNCTION_VERSION"]
    LambdaContext.memory_limit_in_mb = env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
    LambdaContext.log_group_name = env["AWS_LAMBDA_LOG_GROUP_NAME"]
    LambdaContext.log_stream_name = env["AWS_LAMBDA_LOG_STREAM_NAME"]
    LambdaContext.function_arn = function_arn
