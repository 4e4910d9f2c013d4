"""Who is calling the Lambda API: the admin token as `Authorization: Bearer`, or an AWS SigV4 signature made
with an access key `fx credentials create` issued.

The signature is recomputed with botocore's own SigV4 code (the reference the AWS CLI and boto3 sign with) over
the request as it arrived: its method, raw path and query, the headers it names as signed, and its body. Not
the hot path: the controller answers control-plane calls only."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .errors import forbidden

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "lambda"
MAX_SKEW_S = 300  # a signature's date may be this far from the controller's clock, as AWS allows
MISSING = "MissingAuthenticationTokenException"
UNRECOGNIZED = "UnrecognizedClientException"
INVALID = "InvalidSignatureException"


def check_bearer(given: str, token: str) -> None:
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise forbidden(UNRECOGNIZED, "the admin token given as Bearer is wrong: use the one `fx login` stored")


def _fields(header: str) -> dict[str, str]:
    """`Credential=..., SignedHeaders=..., Signature=...` as a dict."""
    fields = {}
    for part in header.removeprefix(ALGORITHM).split(","):
        key, _, value = part.strip().partition("=")
        fields[key] = value
    return fields


def verify(
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    secret_of: Callable[[str], str | None],
    now: datetime | None = None,
) -> str:
    """The access key id of a correctly signed request; else LambdaError 403 naming what is wrong.
    `headers`: lower-case name -> value, as received."""
    fields = _fields(headers.get("authorization", ""))
    try:
        key_id, date, region, service, terminal = fields["Credential"].split("/")
        signed = fields["SignedHeaders"].split(";")
        signature = fields["Signature"]
    except (KeyError, ValueError):
        message = "the Authorization header is not a SigV4 signature (Credential=, SignedHeaders=, Signature=)"
        raise forbidden(INVALID, message) from None
    secret = secret_of(key_id)
    if secret is None:
        raise forbidden(UNRECOGNIZED, f"the access key id {key_id!r} is not one fx issued: see `fx credentials ls`")
    if service != SERVICE or terminal != "aws4_request":
        raise forbidden(INVALID, f"the credential scope names service {service!r}; fx's Lambda API signs as 'lambda'")
    stamp = headers.get("x-amz-date", "")
    try:
        when = datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise forbidden(INVALID, "X-Amz-Date is missing or not a SigV4 timestamp (YYYYMMDDTHHMMSSZ)") from None
    skew = abs(((now or datetime.now(UTC)) - when).total_seconds())
    if skew > MAX_SKEW_S or not stamp.startswith(date):
        raise forbidden(INVALID, f"Signature expired: X-Amz-Date {stamp} is {skew:.0f} s from the server's time")
    missing = [name for name in signed if name not in headers]
    if "host" not in signed or missing:
        raise forbidden(INVALID, f"signed headers missing from the request: {', '.join(missing) or 'host'}")
    url = f"http://{headers['host']}{raw_path}" + (f"?{query}" if query else "")
    request = AWSRequest(method=method, url=url, headers={n: headers[n] for n in signed}, data=body)
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(key_id, secret), SERVICE, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise forbidden(
            INVALID,
            "The request signature we calculated does not match the signature you provided: check the secret"
            " access key of the profile",
        )
    return key_id
