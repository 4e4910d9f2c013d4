"""Triggered by users.created: "sends" the welcome mail by logging it."""

import json
import logging

log = logging.getLogger()
log.setLevel(logging.INFO)


def handler(event, context):
    user = json.loads(event["data"])
    log.info("welcome mail sent to %s (user %s)", user["email"], user["id"])
    return {"sent": user["email"]}
