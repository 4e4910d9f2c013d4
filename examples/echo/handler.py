"""Answers with the event it got, so you can see what an HTTP call or a raw invoke looks like to a handler."""

import json


def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event, indent=2)}
