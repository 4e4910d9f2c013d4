"""The Lambda API's request bodies, and what fx does with each field it has no setting for.

Every field is used, accepted and reported, or refused by name: none is dropped unseen. A field fx has no
counterpart for is accepted when it asks for what fx does anyway (no layers, no VPC, PassThrough tracing, the
host's architecture...) and refused with InvalidParameterValueException otherwise. Role and Description are
accepted (boto3 requires a Role; fx has no IAM) and reported: in the answer to the call and in a log line."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .errors import invalid
from .shapes import architecture

log = logging.getLogger("fx_controller.lambda_api")

ZIP_ONLY = "fx takes the code as ZipFile (it has no S3): pass the zip itself, e.g. --zip-file fileb://code.zip"
# Why a field is refused when it asks for something fx does not do; the README's table says the same.
WHY = {
    "S3Bucket": ZIP_ONLY,
    "S3Key": ZIP_ONLY,
    "S3ObjectVersion": ZIP_ONLY,
    "S3ObjectStorageMode": ZIP_ONLY,
    "ImageUri": "the Lambda API takes ZipFile code; deploy a container image with `fx deploy` (image: in fx.yaml)",
    "PackageType": "the Lambda API takes Zip packages; deploy a container image with `fx deploy`",
    "Layers": "fx has no Lambda layers: put the dependencies in the zip (or use `fx deploy`'s requirements layer)",
    "DeadLetterConfig": "fx keeps failed async calls in its own dead-letter queue (`fx dlq`)",
    "VpcConfig": "fx runs functions on its own network: it has no VPC",
    "KMSKeyArn": "fx has no KMS: environment variables are kept in its own store",
    "SourceKMSKeyArn": "fx has no KMS",
    "TracingConfig": "fx has no X-Ray: only Mode PassThrough",
    "FileSystemConfigs": "fx mounts no EFS file system",
    "Architectures": "fx runs functions on its host's architecture",
    "EphemeralStorage": "a replica's /tmp is the controller's --sandbox-tmp-mb",
    "Tags": "fx has no tags",
    "ImageConfig": "the Lambda API takes Zip packages",
    "CodeSigningConfigArn": "fx does not verify code signatures",
    "SnapStart": "fx has no SnapStart (a zygote forks its replicas instead)",
    "PublishTo": "fx publishes versions only",
}
REPORTED = {"Role": "fx has no IAM roles", "Description": "fx keeps no descriptions"}


def fixed(tmp_mb: int) -> dict[str, Any]:
    """What fx answers for the fields it has no setting for; a request asking for the same is accepted."""
    return {
        "PackageType": "Zip",
        "Architectures": [architecture()],
        "EphemeralStorage": {"Size": tmp_mb},
        "TracingConfig": {"Mode": "PassThrough"},
        "SnapStart": {"ApplyOn": "None", "OptimizationStatus": "Off"},
    }


def _matches(given: Any, value: Any) -> bool:
    if isinstance(given, dict) and isinstance(value, dict):
        return all(key in value and _matches(v, value[key]) for key, v in given.items())
    return given == value


def check_rest(action: str, function: str, extras: dict[str, Any], fx_values: dict[str, Any]) -> dict[str, str]:
    """Refuse what fx cannot do; return the accepted-and-reported fields (Role, Description) to echo."""
    reported = {}
    for field, value in extras.items():
        if value in (None, "", [], {}) or _matches(value, fx_values.get(field, object())):
            continue
        if field in REPORTED:
            reported[field] = value
            log.info("%s %s: %s %r accepted, not used (%s)", action, function, field, value, REPORTED[field])
            continue
        why = WHY.get(field, f"fx has no counterpart for {field}")
        shown = f"; fx's is {fx_values[field]}" if field in fx_values else ""
        raise invalid(f"{field} cannot be honoured: {why}{shown}")
    return reported


class Request(BaseModel):
    """Lambda's field names; those fx has no setting for are kept as extras and judged by check_rest."""

    model_config = ConfigDict(extra="allow")

    @property
    def rest(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class CodeIn(Request):
    ZipFile: str | None = None  # base64, as botocore sends a blob


class EnvironmentIn(Request):
    Variables: dict[str, str] = Field(default_factory=dict)


class ConfigIn(Request):
    """What UpdateFunctionConfiguration sets; CreateFunction too."""

    Runtime: str | None = None
    Handler: str | None = None
    Timeout: int | None = None
    MemorySize: int | None = None
    Environment: EnvironmentIn | None = None
    RevisionId: str | None = None


class CreateFunctionIn(ConfigIn):
    FunctionName: str
    Code: CodeIn
    Publish: bool = False


class UpdateCodeIn(Request):
    ZipFile: str | None = None
    Publish: bool = False
    DryRun: bool = False
    RevisionId: str | None = None


class PublishIn(Request):
    CodeSha256: str | None = None
    RevisionId: str | None = None


class RoutingIn(Request):
    AdditionalVersionWeights: dict[str, float] = Field(default_factory=dict)


class AliasIn(Request):
    FunctionVersion: str | None = None
    RoutingConfig: RoutingIn | None = None
    RevisionId: str | None = None


class CreateAliasIn(AliasIn):
    Name: str
    FunctionVersion: str  # type: ignore[assignment]
