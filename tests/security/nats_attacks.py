"""NATS attacks with some identity's connection, each reported "denied" or what happened instead.

Deployed as a function's handler.py (it needs nothing but nats-py: the attacks run with the replica's own
credentials) and imported by the tests that attack as the gateway's user."""

import asyncio
import json
import os

import nats

# (kind, subject, data): a publish carries a reply subject, as a request or an activation reply would.
FUNCTION_ATTACKS = [
    ("pub", "$JS.API.STREAM.MSG.GET.KV_fx_functions", b'{"last_by_subj": "$KV.fx_functions.victim"}'),
    ("pub", "$JS.API.DIRECT.GET.KV_fx_functions.$KV.fx_functions.victim", b""),
    ("pub", "$JS.API.STREAM.INFO.KV_fx_functions", b""),
    ("pub", "$JS.API.STREAM.MSG.GET.KV_fx_secrets", b'{"last_by_subj": "$KV.fx_secrets.db"}'),
    ("pub", "$JS.API.STREAM.MSG.GET.KV_fx_credentials", b'{"last_by_subj": "$KV.fx_credentials.>"}'),
    ("pub", "$JS.API.STREAM.CREATE.EVIL", b'{"name": "EVIL", "mirror": {"name": "KV_fx_functions"}}'),
    ("pub", "$KV.fx_routes.victim", b'{"function": "victim", "revision": 10000000000000}'),
    ("pub", "fx.activate", b"{}"),
    ("pub", "_INBOX.someone-elses-request", b'{"endpoint": "127.0.0.1:1"}'),
    ("sub", "fx.activate", b""),
    ("sub", "fx.load", b""),
    ("sub", "fx.async.>", b""),
    ("sub", "$KV.fx_routes.>", b""),
    ("sub", "_INBOX.fx-fn.victim.>", b""),
    ("sub", "_INBOX.>", b""),
    ("sub", ">", b""),
]


async def attempts(nc, errors: list[str], attacks) -> dict[str, str]:
    """`errors`: what the connection's error_cb collected (lower-cased), as nats-py reports violations."""
    results = {}
    for kind, subject, data in attacks:
        errors.clear()
        if kind == "pub":
            await nc.publish(subject, data, reply=nc.new_inbox())
        else:
            await nc.subscribe(subject)
        await nc.flush()
        await asyncio.sleep(0.1)
        verb = "publish to" if kind == "pub" else "subscription to"
        denied = any(f'permissions violation for {verb} "{subject.lower()}"' in e for e in errors)
        results[f"{kind} {subject}"] = "denied" if denied else f"not denied: {errors}"
    return results


async def attack() -> dict[str, str]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    nc = await nats.connect(
        os.environ["FX_NATS_URL"],
        user_credentials=os.environ["FX_NATS_CREDS"],
        inbox_prefix=os.environ["FX_NATS_INBOX_PREFIX"],
        error_cb=on_error,
        allow_reconnect=False,
    )
    results = await attempts(nc, errors, FUNCTION_ATTACKS)
    errors.clear()
    await nc.publish("users.created", b'{"email": "ann@example.com"}')  # the grant
    await nc.flush()
    await asyncio.sleep(0.1)
    results["pub users.created"] = "ok" if not errors else f"refused: {errors}"
    await nc.close()
    return results


def handler(event, context):
    return {"statusCode": 200, "body": json.dumps(asyncio.run(attack()))}
