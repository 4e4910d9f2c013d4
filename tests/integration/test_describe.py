"""`fx describe` and `fx versions` show what a function runs with: URL, memory, timeout, env (masked), triggers,
a config digest per version, and the keep-warm time only where it means something (versions without traffic)."""

import json

import yaml


def test_describe_shows_the_configuration_and_versions_differing_in_config_differ(platform, make_function):
    config = {
        "memory": 256,
        "timeout": 5,
        "env": {"API_KEY": "s3cret-value", "MODE": "a"},
        "triggers": [{"nats": "orders.*"}, {"schedule": "rate(1 hour)"}],
    }
    project = make_function("shown", body="return 1", config=config)
    assert platform.fx("deploy", cwd=project).returncode == 0

    out = platform.fx("describe", "shown").stdout
    assert f"url:      {platform.gateway_url}/function/shown/" in out
    assert "memory:   256 MB" in out and "timeout:  5 s" in out
    assert "env:      API_KEY=****, MODE=****" in out and "s3cret-value" not in out
    assert "triggers: nats orders.*; schedule rate(1 hour)" in out

    manifest = yaml.safe_load((project / "fx.yaml").read_text())
    manifest["functions"]["shown"]["env"]["MODE"] = "b"  # the same code, another config
    (project / "fx.yaml").write_text(yaml.safe_dump(manifest))
    assert platform.fx("deploy", cwd=project).returncode == 0
    v1, v2 = json.loads(platform.fx("versions", "shown", "-o", "json").stdout)
    assert v1["digest"] == v2["digest"] and v1["config_digest"] != v2["config_digest"]
    rows = [line.split() for line in platform.fx("versions", "shown").stdout.splitlines()[1:3]]
    assert rows[0][2] == rows[1][2] and rows[0][3] != rows[1][3]  # DIGEST alike, CONFIG not

    # Only the version without traffic shows how long it is kept warm.
    assert (v1["traffic"], v2["traffic"]) == (0, 100)
    assert v1["warm_until"] is not None and v2["warm_until"] is None
    assert rows[1][-1] == "-" and rows[0][-1] != "-"
    assert platform.fx("rollback", "shown").returncode == 0
    v1, v2 = json.loads(platform.fx("versions", "shown", "-o", "json").stdout)
    assert v1["warm_until"] is None and v2["warm_until"] is not None
