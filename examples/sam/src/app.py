"""Two handlers of one SAM template: an HTTP API greeter and a scheduled report."""

import json
import os


def greet(event, context):
    who = (event.get("queryStringParameters") or {}).get("name", "world")
    return {"statusCode": 200, "body": json.dumps({"message": f"{os.environ['GREETING']}, {who}!"})}


def report(event, context):
    print("nightly report for", event["time"])
    return {"reported": event["time"]}
