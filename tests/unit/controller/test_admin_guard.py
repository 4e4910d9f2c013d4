"""AdminGuard answers a body it began to read only once that body is read: uvicorn closes after the answer, and
a close with unread input resets the connection, which can reach the caller (the gateway) before the answer."""

from __future__ import annotations

from fx_controller.api.auth import AdminGuard

SCOPE = {"type": "http", "method": "PUT", "path": "/system/artifacts/x", "headers": [(b"authorization", b"Bearer t")]}


async def _run(app, chunks: list[bytes]) -> list[str]:
    """The events in order: `read <n>` for each body message handed out, `send <type>` for each message sent."""
    events: list[str] = []
    pending = list(chunks)

    async def receive():
        body = pending.pop(0)
        events.append(f"read {len(body)}")
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message):
        events.append(f"send {message['type']}")

    guard = AdminGuard(app, "t", frozenset(), lambda method, path: 1000)
    await guard(dict(SCOPE), receive, send)
    return events


async def _refuse_after_one_chunk(scope, receive, send):
    await receive()  # e.g. the first write of the upload fails: the disk is full
    await send({"type": "http.response.start", "status": 507, "headers": []})
    await send({"type": "http.response.body", "body": b"full"})


async def _refuse_from_the_head(scope, receive, send):
    await send({"type": "http.response.start", "status": 400, "headers": []})
    await send({"type": "http.response.body", "body": b"no"})


async def test_an_answer_to_a_body_begun_waits_for_the_rest_of_it():
    events = await _run(_refuse_after_one_chunk, [b"a" * 100, b"b" * 100, b"c" * 100])
    assert events == ["read 100", "read 100", "read 100", "send http.response.start", "send http.response.body"]


async def test_a_body_never_asked_for_is_not_read():
    events = await _run(_refuse_from_the_head, [b"a" * 100, b"b" * 100])
    assert events == ["send http.response.start", "send http.response.body"]


async def test_the_rest_is_read_only_up_to_the_limit():
    events = await _run(_refuse_after_one_chunk, [b"a" * 600, b"b" * 600, b"c" * 600])
    assert events == ["read 600", "read 600", "send http.response.start", "send http.response.body"]
