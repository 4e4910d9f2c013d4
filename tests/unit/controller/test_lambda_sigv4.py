"""The Lambda API's SigV4 check against botocore's own signer: what it accepts and what it refuses, and why."""

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fx_controller.lambda_api.errors import LambdaError
from fx_controller.lambda_api.sigv4 import verify

KEY, SECRET = "FXAKTESTTESTTESTTEST", "s3cret"
URL = "http://127.0.0.1:8090/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Ahi/aliases"


def signed(body: bytes = b'{"Name": "live"}', secret: str = SECRET, service: str = "lambda", query: str = ""):
    request = AWSRequest(method="POST", url=URL + (f"?{query}" if query else ""), data=body)
    request.headers["Content-Type"] = "application/json"
    SigV4Auth(Credentials(KEY, secret), service, "eu-west-1").add_auth(request)
    headers = {k.lower(): v for k, v in request.headers.items()} | {"host": "127.0.0.1:8090"}
    path = URL.removeprefix("http://127.0.0.1:8090")
    return path, query, headers, body


def check(path, query, headers, body, now=None):
    return verify("POST", path, query, headers, body, {KEY: SECRET}.get, now)


def refusal(*args, **kwargs) -> LambdaError:
    with pytest.raises(LambdaError) as caught:
        check(*args, **kwargs)
    assert caught.value.status == 403
    return caught.value


def test_a_request_botocore_signed_is_accepted_with_its_query_and_encoded_path():
    assert check(*signed()) == KEY
    assert check(*signed(query="Marker=a%3Ab&MaxItems=2")) == KEY


def test_a_changed_body_a_wrong_secret_or_another_service_is_refused():
    path, query, headers, _ = signed()
    assert refusal(path, query, headers, b'{"Name": "evil"}').kind == "InvalidSignatureException"
    assert refusal(*signed(secret="other")).kind == "InvalidSignatureException"
    assert "'lambda'" in str(refusal(*signed(service="s3")))


def test_an_unknown_key_is_unrecognized_and_a_stale_date_expired():
    path, query, headers, body = signed()
    unknown = headers | {"authorization": headers["authorization"].replace(KEY, "FXAKOTHER")}
    assert refusal(path, query, unknown, body).kind == "UnrecognizedClientException"
    later = datetime.now(UTC) + timedelta(minutes=6)
    assert "expired" in str(refusal(path, query, headers, body, now=later))
    assert check(path, query, headers, body, now=datetime.now(UTC) + timedelta(minutes=4)) == KEY
