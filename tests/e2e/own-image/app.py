import os


def handler(event, context):
    print(f"own image says hello to {event.get('queryStringParameters', {}).get('who', 'nobody')}")
    return {"from": "own image", "task_root": os.environ["LAMBDA_TASK_ROOT"], "pod": os.uname().nodename}
