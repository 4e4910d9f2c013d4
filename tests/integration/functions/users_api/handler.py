"""The one route moved out of the legacy service: GET /users/{id}."""

import json


def handler(event, context):
    user = event["pathParameters"]["id"]
    return {"statusCode": 200, "body": json.dumps({"served_by": "function", "id": user})}
