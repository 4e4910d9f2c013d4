"""POST a user (JSON or a form: `curl -d email=...`); the function "creates" it and announces it on users.created."""

import asyncio
import base64
import json
import os
import uuid
from urllib.parse import parse_qsl

import nats


async def announce(subject: str, data: bytes) -> None:
    # FX_NATS_*: given only to a function whose fx.yaml grants it NATS (see fx.yaml's `nats:`), and its
    # credentials allow only what the grant says (here: publishing on users.created).
    nc = await nats.connect(
        os.environ["FX_NATS_URL"],
        user_credentials=os.environ["FX_NATS_CREDS"],
        inbox_prefix=os.environ["FX_NATS_INBOX_PREFIX"],
        connect_timeout=2,
        allow_reconnect=False,
    )
    try:
        await nc.publish(subject, data)
        await nc.flush()  # the server has the event before the caller gets the answer
    finally:
        await nc.close()


def read_user(event: dict) -> object:
    """The user from an HTTP call's body, or the whole event of a raw invoke (`fx invoke create-user --data ...`)."""
    if "body" not in event and "requestContext" not in event:
        return event
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):  # how the gateway passes a body that is not JSON or text, e.g. a form
        body = base64.b64decode(body).decode()
    # `curl -d '{"email": ...}'` labels JSON as a form, so the body itself says which it is.
    if body.lstrip().startswith(("{", "[")) or not body:
        return json.loads(body or "{}")
    return dict(parse_qsl(body, strict_parsing=True))


def handler(event, context):
    try:
        user = read_user(event)
    except ValueError:
        return {"statusCode": 400, "body": json.dumps({"error": "send the user as JSON or as a form (email=...)"})}
    if not isinstance(user, dict) or not user.get("email"):
        return {"statusCode": 400, "body": json.dumps({"error": 'an "email" is required'})}
    user = {"id": str(uuid.uuid4()), **user}
    asyncio.run(announce("users.created", json.dumps(user).encode()))
    return {"statusCode": 201, "headers": {"Content-Type": "application/json"}, "body": json.dumps(user)}
