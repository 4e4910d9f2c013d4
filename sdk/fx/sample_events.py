"""Sample events of every kind fx sends a handler (`fx event generate`), shaped as the platform shapes them.

The HTTP kinds are made by the runtime's own code (fx_runtime.http_events, what a replica runs on each request);
the trigger kinds follow the gateway's builders (fx_gateway.events: nats_triggers.event, durable_triggers.record
and kv_record, schedules.event), which tests/unit/sdk/test_sample_events.py holds them to.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fx.errors import InputError

# uuid, the runtime's event builder and fx.schedule (cronsim, zoneinfo) are imported where used: the fx CLI
# imports this module for KINDS at every start.

HTTP_KINDS = {"apigw-v2": "v2", "apigw-v1": "v1", "alb": "alb"}
KINDS = (*HTTP_KINDS, "nats", "jetstream", "kv", "schedule")
KV_OPERATIONS = ("PUT", "DEL", "PURGE")
REGION = "us-east-1"  # the runtime's default AWS_REGION, which the gateway's schedule events name too
PEER = "127.0.0.1"


@dataclass
class Options:
    """What `fx event generate` takes; each kind reads the fields it has."""

    function: str = "function"
    method: str = "GET"
    path: str = "/"
    query: str = ""
    body: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    subject: str = "orders.created"
    trigger: str | None = None  # the trigger's subject pattern / filter; default: the subject
    data: str = "{}"
    stream: str = "ORDERS"
    bucket: str = "users"
    key: str = "eu.ann"
    operation: str = "PUT"
    sequence: int = 1
    schedule: str = "rate(5 minutes)"
    timezone: str | None = None
    time: datetime | None = None


def generate(kind: str, opts: Options) -> dict:
    if kind in HTTP_KINDS:
        return http_event(HTTP_KINDS[kind], opts)
    if kind == "nats":
        return {"eventSource": "fx:nats", "trigger": opts.trigger or opts.subject, **_message(opts), "reply": None}
    if kind == "jetstream":
        key = f"{opts.stream}/{opts.trigger or '>'}"
        record = {"messageId": str(opts.sequence), **_message(opts), **_delivery(opts)}
        return {"eventSource": "fx:jetstream", "trigger": key, "stream": opts.stream, "Records": [record]}
    if kind == "kv":
        return kv_event(opts)
    if kind == "schedule":
        return schedule_event(opts)
    raise InputError(f"no event kind {kind!r}; the kinds are: {', '.join(KINDS)}")


def http_event(payload: str, opts: Options) -> dict:
    import uuid

    from fx_runtime.http_events import Request, build_event

    method = opts.method.upper()
    if not method.isalpha():
        raise InputError(f"--method {opts.method!r} is not an HTTP method (GET, POST, ...)")
    path = opts.path if opts.path.startswith("/") else f"/{opts.path}"
    headers = [("host", "localhost"), ("user-agent", "fx-local")]
    given = {name.lower() for name, _ in opts.headers}
    headers = [h for h in headers if h[0] not in given] + opts.headers
    if opts.body and "content-type" not in given:
        headers.append(("content-type", "application/json"))
    host = next(v for n, v in headers if n.lower() == "host")
    # What the gateway adds, spelt as it spells them (REST API and ALB events keep the case): the hop's
    # X-Forwarded-* and, on every request, the body's length.
    headers += [("X-Forwarded-For", PEER), ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", host)]
    headers.append(("Content-Length", str(len(opts.body.encode()))))
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    request = Request(method, path, opts.query.lstrip("?"), raw, opts.body.encode(), PEER, str(uuid.uuid4()))
    return build_event(payload, request, opts.function, REGION)


def kv_event(opts: Options) -> dict:
    operation = opts.operation.upper()
    if operation not in KV_OPERATIONS:
        raise InputError(f"--operation {opts.operation!r}: one of {', '.join(KV_OPERATIONS)}")
    value = _message(opts) if operation == "PUT" else {"data": "", "isBase64Encoded": False}
    record = {
        "messageId": str(opts.sequence),
        "key": opts.key,
        "operation": operation,
        "value": value["data"],
        "isBase64Encoded": value["isBase64Encoded"],
        "revision": opts.sequence,
        "deliveries": 1,
        "timestamp": _delivery(opts)["timestamp"],
    }
    trigger = f"kv:{opts.bucket}/{opts.trigger or '>'}"
    return {"eventSource": "fx:kv", "trigger": trigger, "bucket": opts.bucket, "Records": [record]}


def schedule_event(opts: Options) -> dict:
    import uuid

    from fx.schedule import parse as parse_schedule
    from fx.schedule import schedule_key

    try:
        schedule = parse_schedule(opts.schedule, opts.timezone)
    except ValueError as exc:
        raise InputError(
            f"--schedule {opts.schedule!r}{' --timezone ' + opts.timezone if opts.timezone else ''}: {exc}"
        ) from exc
    key = schedule_key(schedule.expression, opts.timezone)
    tick = (opts.time or schedule.next_after(datetime.now(UTC))).astimezone(UTC).replace(microsecond=0)
    when = tick.strftime("%Y-%m-%dT%H:%M:%SZ")
    # As the gateway names a tick's call: the same id on every gateway, from the tick's JetStream message id.
    event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{opts.function}/{key}/{when}"))
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "fx.schedule",
        "account": "",
        "time": when,
        "region": REGION,
        "resources": [key],
        "detail": {},
    }


def _message(opts: Options) -> dict:
    """A NATS message's fields as the gateway shows them: data as text, or base64 when given so."""
    data = opts.data
    is_base64 = False
    if data.startswith("base64:"):  # binary data, given as base64 on the command line
        try:
            base64.b64decode(data[7:], validate=True)
        except ValueError as exc:
            raise InputError(f"--data {data[:20]}...: not valid base64") from exc
        data, is_base64 = data[7:], True
    return {"subject": opts.subject, "data": data, "isBase64Encoded": is_base64, "headers": dict(opts.headers)}


def _delivery(opts: Options) -> dict:
    stored = (opts.time or datetime.now(UTC)).astimezone(UTC)
    return {"sequence": opts.sequence, "deliveries": 1, "timestamp": stored.isoformat()}
