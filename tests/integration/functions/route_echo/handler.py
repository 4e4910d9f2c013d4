"""Echoes what an API route told it: which route took the request, and the event's route fields."""

import json


def handler(event, context):
    request = event["requestContext"]
    echo = {
        "version": event.get("version"),
        "routeKey": event.get("routeKey", request.get("routeKey")),
        "resource": event.get("resource"),
        "resourcePath": request.get("resourcePath"),
        "pathParameters": event.get("pathParameters"),
        "stageVariables": event.get("stageVariables"),
        "stage": request.get("stage"),
        "apiId": request.get("apiId"),
        "function": context.function_name,
        "fxRoute": [k for k in event.get("headers") or {} if k.lower() == "x-fx-route"],
    }
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(echo)}
