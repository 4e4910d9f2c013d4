"""POST a user as JSON; the function "creates" it and announces it on users.created."""

import asyncio
import json
import os
import uuid

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


def handler(event, context):
    try:
        user = json.loads(event.get("body") or "{}")
    except ValueError:
        return {"statusCode": 400, "body": json.dumps({"error": "send the user as JSON"})}
    if not isinstance(user, dict) or not user.get("email"):
        return {"statusCode": 400, "body": json.dumps({"error": 'an "email" is required'})}
    user = {"id": str(uuid.uuid4()), **user}
    asyncio.run(announce("users.created", json.dumps(user).encode()))
    return {"statusCode": 201, "headers": {"Content-Type": "application/json"}, "body": json.dumps(user)}
