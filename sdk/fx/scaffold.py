"""`fx init`: a new function project that deploys and answers as it is."""

from __future__ import annotations

from pathlib import Path

from fx.errors import InputError
from fx.models import check_name

HANDLER = '''\
"""The {name} function: an AWS-Lambda-style handler, called for HTTP requests and raw invokes."""

import json


def handler(event, context):
    query = event.get("queryStringParameters") or {{}}
    who = query.get("name") or event.get("name") or "world"
    body = {{"message": f"hello, {{who}}!", "path": event.get("rawPath", "/"), "function": context.function_name}}
    return {{"statusCode": 200, "headers": {{"content-type": "application/json"}}, "body": json.dumps(body)}}
'''

REQUIREMENTS = """\
# Dependencies of the function, one per line (pip format); `fx deploy` installs them into the code zip.
"""

MANIFEST = """\
functions:
  {name}:
    handler: handler.handler     # module.function
    runtime: python3.11
    path: .                      # the code folder, relative to this file
    memory: 128                  # MB
    timeout: 3                   # seconds
    env: {{}}
    scale: {{min: 0, max: 10, idle_timeout: 300, concurrency: 1}}
    http: {{event: v2}}          # API Gateway HTTP API 2.0 events
"""


def init(name: str, parent: Path) -> Path:
    """Create parent/name with handler.py, requirements.txt and fx.yaml; return the folder."""
    try:
        check_name(name)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    project = parent / name
    if project.exists() and (not project.is_dir() or any(project.iterdir())):
        raise InputError(f"{project} already exists and is not empty; pick another name or --dir")
    project.mkdir(parents=True, exist_ok=True)
    (project / "handler.py").write_text(HANDLER.format(name=name))
    (project / "requirements.txt").write_text(REQUIREMENTS)
    (project / "fx.yaml").write_text(MANIFEST.format(name=name))
    return project
