"""An ordinary Lambda handler, run by awslambdaric (not by fx's own loader) through fx's Runtime API."""

import os

invocations = 0  # module state survives between invocations of one sandbox


def handler(event, context):
    global invocations
    invocations += 1
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    if isinstance(event, dict) and "rawPath" in event:
        return {
            "statusCode": 200,
            "headers": {"x-runtime": "awslambdaric"},
            "cookies": ["ric=1"],
            "body": event["rawPath"],
        }
    return {
        "event": event,
        "invocations": invocations,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
        "client": context.client_context.custom if context.client_context else None,
    }
