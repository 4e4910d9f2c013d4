"""The validating admission webhook for Function resources: `kubectl apply` refuses what `fx deploy` refuses.

The API server checks the CRD's schema and CEL rules first (names, patterns, bounds, trigger shapes); what CEL
cannot know (an artifact digest never uploaded, a runtime with no image, a cron expression, a stream that does
not exist, a secret that does not exist) comes here. The spec goes to this controller's own admin API as
`fx deploy --dry-run` sends it (PUT /system/functions/NAME?dry_run=true), so the refusal is the same code and
the same message. Only the leader serves it (the Service selects the leader's pod). The chart's
ValidatingWebhookConfiguration leaves out the controller's own writes and updates that keep the spec (status,
finalizers, deletion), so a function whose spec no longer passes can still be deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .pod_access import PodAccess
from .side_server import SideServer

log = logging.getLogger("fx_controller.admission")

PATH = "/validate/functions"


async def decide(admin: httpx.AsyncClient, request: dict) -> dict:
    """The AdmissionReview response to one request for a Function."""
    obj = request.get("object") or {}
    name = obj.get("metadata", {}).get("name", "")
    body = {**(obj.get("spec") or {}), "name": name}
    try:
        answer = await admin.put(f"/system/functions/{name}", params={"dry_run": "true"}, json=body)
    except httpx.HTTPError as e:
        return _refused(request, 503, "ControllerUnavailable", f"the fx controller could not check the spec: {e}")
    if answer.status_code < 400:
        return {"uid": request["uid"], "allowed": True}
    try:
        error = answer.json()["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "DeployRefused", answer.text[:500]
    return _refused(request, answer.status_code, code, message)


def _refused(request: dict, status: int, code: str, message: str) -> dict:
    return {
        "uid": request["uid"],
        "allowed": False,
        "status": {"code": status, "reason": code, "message": f"{code}: {message}"},
    }


def create_app(admin: httpx.AsyncClient, is_function_pod: Callable[[str], bool] = lambda ip: False) -> Starlette:
    async def review(request: Request) -> JSONResponse:
        # The NetworkPolicy cannot tell the API server (no pod identity) from a pod: a function pod asking
        # whether a digest, stream or secret exists is refused here.
        if request.client is None or is_function_pod(request.client.host):
            return JSONResponse({"error": {"code": "Forbidden", "message": "the API server's webhook"}}, 403)
        try:
            asked = (await request.json())["request"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": {"code": "BadRequest", "message": "expected an AdmissionReview"}}, 400)
        answer = await decide(admin, asked)
        if not answer["allowed"]:
            log.info("refused %s of Function %s: %s", asked.get("operation"), asked.get("name"), answer["status"])
        return JSONResponse({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer})

    return Starlette(routes=[Route(PATH, review, methods=["POST"])])


class WebhookServer(SideServer):
    """HTTPS with the chart's certificate (tls.crt, tls.key in `cert_dir`), as the API server requires."""

    def __init__(self, admin: httpx.AsyncClient, listen: str, cert_dir: Path, access: PodAccess) -> None:
        tls = {"ssl_certfile": str(cert_dir / "tls.crt"), "ssl_keyfile": str(cert_dir / "tls.key")}
        super().__init__(create_app(admin, access.is_function_pod), listen, proxy_headers=False, **tls)
        self._admin = admin

    async def stop(self) -> None:
        await super().stop()
        await self._admin.aclose()
