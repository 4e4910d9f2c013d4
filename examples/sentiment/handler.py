"""Scores the sentiment of a text with a "model" that takes half a second to load: the init that `snap_start`
runs once per version, in a template that every later cold start forks."""

import json
import os
import time

from snapshot_restore_py import register_after_restore


def load_model() -> dict[str, int]:
    time.sleep(0.5)  # stands in for reading a model from disk: the cost a cold start would pay without snap_start
    return {"great": 2, "good": 1, "love": 2, "fast": 1, "bad": -1, "awful": -2, "slow": -1, "broken": -2}


MODEL = load_model()
REPLICA = os.urandom(4).hex()  # per process: set again in each replica forked from the template


@register_after_restore
def new_replica() -> None:
    """Runs in each replica forked from the template, before its first call: what must differ per replica."""
    global REPLICA
    REPLICA = os.urandom(4).hex()


def handler(event, context):
    query = event.get("queryStringParameters") or {}
    text = query.get("text") or event.get("text") or ""
    score = sum(MODEL.get(word, 0) for word in text.lower().split())
    label = "positive" if score > 0 else "negative" if score < 0 else "neutral"
    body = {"sentiment": label, "score": score, "replica": REPLICA}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
