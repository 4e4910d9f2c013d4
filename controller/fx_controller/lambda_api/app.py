"""The Lambda API (`/2015-03-31/functions...` but Invoke, `/2016-08-19/account-settings`) as its own FastAPI app
beside the admin API, behind its own body-size guard, with Lambda's error shape and Lambda's credentials: the
admin token as `Authorization: Bearer`, or a SigV4 signature made with a key `fx credentials create` issued.

The gateway forwards these paths here as it forwards /system/*."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request

from ..api.auth import AdminGuard, App, Receive, Scope, Send
from ..controller import Controller
from . import account, aliases, errors, functions, versions
from .catalog import Catalog
from .credentials import CredentialStore
from .sigv4 import ALGORITHM, MISSING, check_bearer, verify

PREFIXES = (functions.PREFIX, account.PATH)
JSON_SLACK = 1024 * 1024  # a request's fields besides its ZipFile (environment variables: at most 64 KiB)


def is_lambda_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in PREFIXES)


def guarded(controller: Controller, token: str) -> AdminGuard:
    """The Lambda app behind the body-size guard: a ZipFile at its limit, base64-encoded as botocore sends it,
    and the other fields. (The guard checks no token on these paths: `authorised` does.)"""
    zipped, knob = functions.zip_limit(Catalog(controller))
    limit = -(-zipped // 3) * 4 + JSON_SLACK
    hint = f"a ZipFile is limited to {zipped} bytes ({knob})"
    app = create(controller, token, controller.credentials)
    return AdminGuard(app, token, frozenset(), lambda *_: limit, errors.guard_error(hint))


def create(controller: Controller, token: str, credentials: CredentialStore) -> FastAPI:
    async def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer":
            check_bearer(given, token)
        elif scheme == ALGORITHM:
            raw_path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
            query = request.scope.get("query_string", b"").decode("latin-1")
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]}
            verify(request.method, raw_path, query, headers, await request.body(), credentials.secret)
        else:
            message = "Missing Authentication Token: sign with an fx access key (`fx credentials create`)"
            raise errors.forbidden(MISSING, message + " or send the admin token as Authorization: Bearer")

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, dependencies=[Depends(authorised)])
    errors.install(app)
    catalog = Catalog(controller)
    for module in (functions, versions, aliases, account):
        app.include_router(module.router(catalog))
    return app


class LambdaDispatch:
    """Lambda's paths to the Lambda app, everything else to the admin API."""

    def __init__(self, admin: App, lambda_app: App) -> None:
        self.admin = admin
        self.lambda_app = lambda_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_lambda_path(scope["path"]):
            await self.lambda_app(scope, receive, send)
        else:
            await self.admin(scope, receive, send)
