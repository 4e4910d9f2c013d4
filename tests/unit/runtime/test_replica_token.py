"""FX_REPLICA_TOKEN: a replica given a token serves /_fx/invoke and /_fx/http only to requests carrying it."""

import httpx

HANDLER = {
    "handler.py": """
        import os

        def handler(event, context):
            headers = event.get("headers") or {}
            return {"echo": event, "seen": sorted(k.lower() for k in headers), "env": "FX_REPLICA_TOKEN" in os.environ}
    """
}
TOKEN = "a" * 64
HEADER = "X-Fx-Replica-Token"


def test_without_the_right_token_invoke_and_http_are_refused(start):
    replica = start(HANDLER, FX_REPLICA_TOKEN=TOKEN)
    with httpx.Client(base_url=replica.base) as client:
        for headers in ({}, {HEADER: "b" * 64}, {HEADER: TOKEN[:-1]}, {HEADER: ""}):
            for answer in (
                client.post("/_fx/invoke", content=b"{}", headers=headers),
                client.get("/_fx/http/x", headers=headers),
            ):
                assert answer.status_code == 403, headers
                assert "only the gateway" in answer.json()["message"]


def test_the_right_token_is_served_and_the_handler_never_sees_it(start):
    replica = start(HANDLER, FX_REPLICA_TOKEN=TOKEN)
    with httpx.Client(base_url=replica.base, headers={HEADER: TOKEN}) as client:
        answer = client.post("/_fx/invoke", content=b'{"a": 1}')
        assert answer.status_code == 200 and answer.json()["echo"] == {"a": 1}
        assert answer.json()["env"] is False  # read once, then removed with the other FX_* variables
        http = client.get("/_fx/http/path?q=1")
        assert http.status_code == 200
        assert "x-fx-replica-token" not in http.json()["seen"]


def test_a_token_is_checked_per_request_on_a_kept_alive_connection(start):
    replica = start(HANDLER, FX_REPLICA_TOKEN=TOKEN)
    with httpx.Client(base_url=replica.base) as client:
        assert client.post("/_fx/invoke", content=b"{}", headers={HEADER: TOKEN}).status_code == 200
        assert client.post("/_fx/invoke", content=b"{}").status_code == 403


def test_health_stays_open_for_probes(start):
    replica = start(HANDLER, FX_REPLICA_TOKEN=TOKEN)
    assert httpx.get(f"{replica.base}/_fx/health").status_code == 200


def test_no_token_configured_means_no_check(start):
    replica = start(HANDLER)
    assert httpx.post(f"{replica.base}/_fx/invoke", content=b"{}").status_code == 200


def test_the_token_is_checked_in_any_case_after_more_header_names_than_the_replica_remembers(start):
    replica = start(HANDLER, FX_REPLICA_TOKEN=TOKEN)
    made_up = {f"X-Made-Up-{i}": "v" for i in range(600)}  # past the 512 names remembered lower-cased
    with httpx.Client(base_url=replica.base) as client:
        assert client.get("/_fx/http/x", headers=made_up).status_code == 403
        for header in (HEADER, HEADER.upper(), HEADER.lower()):
            answer = client.get("/_fx/http/x", headers={**made_up, header: TOKEN})
            assert answer.status_code == 200 and "x-fx-replica-token" not in answer.json()["seen"]
        assert client.get("/_fx/http/x", headers={**made_up, HEADER.upper(): "b" * 64}).status_code == 403
