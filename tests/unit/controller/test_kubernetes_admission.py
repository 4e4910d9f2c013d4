"""The admission webhook for Functions answers with the admin API's own dry-run deploy: what `fx deploy`
refuses is refused with the same code and message, a good spec is allowed, and nothing is applied."""

from __future__ import annotations

import httpx
from fx_controller.backends.kubernetes.admission import PATH, create_app, decide

from tests.unit.controller.conftest import make_zip

CODE = b"def handler(e, c):\n    return 1\n"


def review(name: str, spec: dict, uid: str = "u-1") -> dict:
    obj = {"apiVersion": "fx.dev/v1alpha1", "kind": "Function", "metadata": {"name": name}, "spec": spec}
    return {"uid": uid, "operation": "CREATE", "name": name, "object": obj}


async def test_the_webhook_refuses_what_fx_deploy_refuses_with_the_same_message(admin: httpx.AsyncClient) -> None:
    data, digest = make_zip({"handler.py": CODE})
    spec = {"handler": "handler.handler", "artifact": digest, "memory": 128}
    unknown = await decide(admin, review("hello", spec))
    dry = await admin.put("/system/functions/hello", params={"dry_run": "true"}, json={**spec, "name": "hello"})
    error = dry.json()["error"]
    assert unknown == {
        "uid": "u-1",
        "allowed": False,
        "status": {"code": 400, "reason": "ArtifactNotFound", "message": f"ArtifactNotFound: {error['message']}"},
    }
    assert (await admin.put(f"/system/artifacts/{digest}", content=data)).status_code == 200
    cases = {
        "InvalidSpec": {"triggers": [{"schedule": "cron(99 * * * ? *)"}]},
        "StreamNotFound": {"triggers": [{"jetstream": {"stream": "NOSUCH"}}]},
        "SecretNotFound": {"secrets": ["nosuch"]},
    }
    for code, fields in cases.items():
        answer = await decide(admin, review("hello", {**spec, **fields}))
        fx_says = (
            await admin.put(
                "/system/functions/hello", params={"dry_run": "1"}, json={**spec, **fields, "name": "hello"}
            )
        ).json()
        assert answer["allowed"] is False and answer["status"]["reason"] == code, answer
        assert answer["status"]["message"] == f"{code}: {fx_says['error']['message']}"
    assert await decide(admin, review("hello", spec, uid="u-2")) == {"uid": "u-2", "allowed": True}
    assert (await admin.get("/system/functions")).json() == []  # a review applies nothing


async def test_the_webhook_speaks_admission_review(admin: httpx.AsyncClient) -> None:
    transport = httpx.ASGITransport(app=create_app(admin))
    async with httpx.AsyncClient(transport=transport, base_url="https://webhook") as client:
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": review("x", {})}
        answer = (await client.post(PATH, json=body)).json()
        assert (answer["apiVersion"], answer["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
        assert answer["response"]["uid"] == "u-1" and answer["response"]["allowed"] is False
        assert answer["response"]["status"]["reason"] == "InvalidSpec"  # no handler
        assert (await client.post(PATH, content=b"nonsense")).status_code == 400
    # A function pod (known to the pod watch by its address) may not use it to probe digests or secrets.
    transport = httpx.ASGITransport(app=create_app(admin, lambda ip: True))
    async with httpx.AsyncClient(transport=transport, base_url="https://webhook") as client:
        assert (await client.post(PATH, json={"request": review("x", {})})).status_code == 403
