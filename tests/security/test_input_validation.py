"""Names, aliases, env keys, handlers, subjects and time zones are matched whole: a trailing newline, a folder
of the zone database or an over-long name is a 400 naming the field (exit 2 from the CLI), and nothing is
stored. Before, `hello\\n` as a name gave 500 and `beta\\n`, `FOO\\n`, `handler.handler\\n` were stored."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
import yaml

from tests.integration.conftest import RunningPlatform
from tests.waiting import wait_for

NL = "\n"
ZONES = [
    "America",  # a folder of the zone database: IsADirectoryError
    "Etc",
    "x" * 300,  # ENAMETOOLONG
    "Europe/" + "x" * 250,
    "../../etc/passwd",
    "/etc/localtime",
    "Europe/../Europe/Berlin",
    "Europe/Berlin\n",
    "zone.tab",  # a file of the database that is no zone
    "",
]


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[RunningPlatform]:
    root = tmp_path_factory.mktemp("validation")
    platform = RunningPlatform(root / "state", root / "fx-config.json")
    try:
        yield platform
    finally:
        platform.stop()


@pytest.fixture(scope="module")
def api(running) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {running.token}"}
    with httpx.Client(base_url=f"{running.gateway_url}/system", headers=headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def digest(api) -> str:
    """An uploaded code zip, so that a spec's only fault is the one under test."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return 'ok'\n")
    data = buf.getvalue()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert api.put(f"/artifacts/{digest}", content=data).status_code == 200
    return digest


@pytest.fixture(scope="module")
def deployed(api, digest) -> dict:
    """A function that every bad request below must leave exactly as it is."""
    assert api.put("/functions/good", json={"name": "good", "artifact": digest}).status_code == 200
    wait_for(lambda: api.get("/functions/good/versions/1").json()["state"] == "Ready", 30, "the readiness gate")
    return api.get("/functions").json()


def _refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == field and field in error["message"], error


def _unchanged(api: httpx.Client, before: list) -> None:
    after = api.get("/functions").json()
    for fn in (*before, *after):  # the counts and the autoscaler's decision are live: compare what was configured
        for v in fn["versions"]:
            v.update(requests=0, errors=0, replicas_ready=0, replicas_starting=0, replicas_desired=0, panic=False)
    assert after == before


BAD_SPECS = [
    ({"handler": "handler.handler\n"}, "handler"),
    ({"env": {"FOO\n": "1"}}, "env"),
    ({"env": {"FOO BAR": "1"}}, "env"),
    ({"env": {"FOO": "a\x00b"}}, "env"),  # no process can be given it: the replica could never start
    ({"env": {"FOO": "x" * (64 * 1024 + 1)}}, "env"),
    ({"triggers": [{"nats": "orders.created\n"}]}, "triggers.0.nats"),
    ({"triggers": [{"nats": "orders\n.created"}]}, "triggers.0.nats"),
    ({"triggers": [{"nats": "orders." * 1000 + "x"}]}, "triggers.0.nats"),  # over NATS's protocol line
    ({"triggers": [{"jetstream": {"stream": "ORDERS\n"}}]}, "triggers.0.jetstream.stream"),
    ({"triggers": [{"kv": {"bucket": "users\n"}}]}, "triggers.0.kv.bucket"),
    ({"triggers": [{"kv": {"bucket": "users", "keys": "users.*\n"}}]}, "triggers.0.kv.keys"),
    *[({"triggers": [{"schedule": "cron(0 9 * * ? *)", "timezone": zone}]}, "triggers.0.timezone") for zone in ZONES],
]


@pytest.mark.parametrize(("change", "field"), BAD_SPECS, ids=[repr(c)[:60] for c, _ in BAD_SPECS])
def test_a_bad_field_of_a_deploy_is_a_400_naming_it_and_nothing_changes(api, digest, deployed, change, field):
    _refused(api.put("/functions/good", json={"name": "good", "artifact": digest, **change}), field)
    _unchanged(api, deployed)


def test_a_name_digest_or_image_with_a_trailing_newline_is_refused(api, digest, deployed):
    _refused(api.put(f"/functions/{quote('hello' + NL)}", json={"name": "hello\n", "artifact": digest}), "name")
    _refused(api.put("/functions/hello", json={"name": "hello\n", "artifact": digest}), "name")
    _refused(api.put("/functions/hello", json={"name": "hello", "artifact": digest + "\n"}), "artifact")
    _refused(api.put("/functions/hello", json={"name": "hello", "image": "hello:1\n"}), "image")
    assert api.get(f"/functions/{quote('good' + NL)}").status_code == 400
    upload = api.put(f"/artifacts/{quote(digest + NL)}", content=b"zip")
    assert upload.status_code == 400 and upload.json()["error"]["code"] == "InvalidDigest"
    assert api.head(f"/artifacts/{quote(digest + NL)}").status_code == 400
    _unchanged(api, deployed)


def test_a_bad_alias_or_sticky_key_is_refused_and_nothing_changes(api, deployed):
    _refused(api.put(f"/functions/good/aliases/{quote('beta' + NL)}", json={"version": 1}), "alias")
    _refused(api.put("/functions/good/traffic", json={"traffic": {"1": 100}, "sticky": "header:x-user\n"}), "sticky")
    _unchanged(api, deployed)


MANIFESTS = [
    ({"hello\n": {"handler": "handler.handler"}}, "DNS-1123"),
    ({"good": {"handler": "handler.handler\n"}}, "handler"),
    ({"good": {"env": {"FOO\n": "1"}}}, "env"),
    ({"good": {"triggers": [{"schedule": "rate(1 hour)", "timezone": "America"}]}}, "timezone"),
    ({"good": {"triggers": [{"schedule": "rate(1 hour)", "timezone": "x" * 300}]}}, "timezone"),
]


@pytest.mark.parametrize(("functions", "told"), MANIFESTS, ids=[repr(f)[:50] for f, _ in MANIFESTS])
def test_fx_deploy_of_a_bad_manifest_exits_2_naming_the_field(running, api, deployed, tmp_path, functions, told):
    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return 'ok'\n")
    (tmp_path / "fx.yaml").write_text(yaml.safe_dump({"functions": functions}))
    result = running.fx("deploy", cwd=tmp_path)
    assert result.returncode == 2 and told in result.stderr and "Traceback" not in result.stderr, result.stderr
    _unchanged(api, deployed)


def test_fx_alias_with_a_trailing_newline_exits_2(running, api, deployed):
    result = running.fx("alias", "good", "beta\n", "1")
    assert result.returncode == 2 and "alias" in result.stderr
    _unchanged(api, deployed)
    assert json.loads(running.fx("ls", "-o", "json").stdout)[0]["aliases"] == {}


def test_a_valid_zone_still_deploys(api, digest, deployed):
    spec = {"name": "zoned", "artifact": digest}
    spec["triggers"] = [{"schedule": "cron(0 9 * * ? *)", "timezone": "America/Argentina/Buenos_Aires"}]
    assert api.put("/functions/zoned", json=spec).status_code == 200
    assert api.delete("/functions/zoned").status_code == 204
    _unchanged(api, deployed)


def test_the_gateway_matches_names_and_qualifiers_whole(running, deployed):
    """The gateway parses no pattern: a name or qualifier is looked up as is, so a newline matches nothing."""
    gateway = running.gateway_url
    assert httpx.get(f"{gateway}/function/good", timeout=30).status_code == 200
    for path in ("/function/good%0A", "/2015-03-31/functions/good%0A/invocations"):
        r = httpx.post(f"{gateway}{path}", content=b"{}", timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"] == "FunctionNotFound", (path, r.text)
    for pinned in ("/function/good@1%0A", "/function/good@%241%0A"):
        r = httpx.get(f"{gateway}{pinned}", timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"] == "VersionNotFound", (pinned, r.text)
