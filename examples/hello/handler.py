"""Greets the caller, echoing the path and query it was called with."""

import json
import os


def handler(event, context):
    query = event.get("queryStringParameters") or {}
    who = query.get("name") or event.get("name") or "world"
    body = {
        "message": f"{os.environ.get('GREETING', 'hello')}, {who}!",
        "path": event.get("rawPath", "/"),
        "query": query,
    }
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
