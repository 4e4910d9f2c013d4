"""AWS Lambda Powertools event handlers: one set of routes behind an HTTP API (payload 2.0) resolver and a
REST API (payload 1.0) resolver, written as for AWS Lambda."""

import base64
import hashlib
from http.cookies import SimpleCookie

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    ApiGatewayResolver,
    CORSConfig,
    Response,
)
from aws_lambda_powertools.event_handler.exceptions import BadRequestError
from aws_lambda_powertools.shared.cookies import Cookie

cors = CORSConfig(
    allow_origin="https://app.example.com",
    allow_headers=["x-api-key"],
    expose_headers=["x-digest"],
    allow_credentials=True,
)
http_app = APIGatewayHttpResolver(cors=cors)
rest_app = ApiGatewayResolver(cors=cors)


def routes(app):
    @app.get("/items/<item_id>")
    def get_item(item_id: str):
        if not item_id.isdigit():
            raise BadRequestError(f"item_id {item_id!r} is not a number")
        tags = app.current_event.resolved_query_string_parameters.get("tag", [])
        return {"item_id": int(item_id), "tags": tags, "path": app.current_event.path}

    @app.get("/boom")
    def boom():
        raise RuntimeError("unhandled in the app")

    @app.get("/session")
    def session():
        event = app.current_event
        raw = getattr(event, "cookies", None) or [event.headers.get("cookie") or ""]
        jar = SimpleCookie("; ".join(raw))
        return Response(
            status_code=200,
            content_type="application/json",
            body={
                "user": jar["user"].value if "user" in jar else None,
                "theme": jar["theme"].value if "theme" in jar else None,
            },
            cookies=[Cookie(name="seen", value="yes", http_only=True), Cookie(name="visits", value="1", max_age=60)],
        )

    @app.put("/blobs")
    def upload():
        event = app.current_event
        data = base64.b64decode(event.body) if event.is_base64_encoded else (event.body or "").encode()
        return {
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "type": event.headers.get("content-type"),
        }

    @app.get("/blobs/<size>")
    def download(size: str):
        n = int(size)
        data = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
        return Response(
            status_code=200,
            content_type="application/octet-stream",
            body=data,
            headers={"x-digest": hashlib.sha256(data).hexdigest()},
        )


routes(http_app)
routes(rest_app)


def http_api(event, context):
    return http_app.resolve(event, context)


def rest_api(event, context):
    return rest_app.resolve(event, context)
