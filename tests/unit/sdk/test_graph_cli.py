"""`fx graph` from fx.yaml: the signup chain in Mermaid and DOT, cycles and dangling subjects as warnings, an
SVG through Graphviz when it is installed, and bad input refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fx.cli import main
from fx.graph import overlaps

SIGNUP = Path(__file__).resolve().parents[3] / "examples" / "signup" / "fx.yaml"
LOOP = """\
functions:
  a:
    triggers: [{nats: x.in}, {jetstream: {stream: ORDERS, subject: orders.>}}]
    nats: {publish: [y.*]}
  b:
    triggers: [{nats: y.go}]
    nats: {publish: [x.in, orders.eu, lost.one]}
  c:
    triggers: [{schedule: rate(5 minutes)}, {nats: nobody.sends}]
"""


def test_signup_chain_in_mermaid(capsys) -> None:
    assert main(["graph", "-f", str(SIGNUP)]) == 0
    out, errors = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "flowchart LR"
    ids = {
        label: line.split("[")[0].split("(")[0].strip()
        for line in lines
        for label in ["create-user", "welcome-mail", "users.created"]
        if f'"{label}"' in line
    }
    assert f'  {ids["create-user"]} -->|"publishes"| {ids["users.created"]}' in lines
    assert f"  {ids['users.created']} --> {ids['welcome-mail']}" in lines
    assert errors == ""  # the chain is whole: nothing dangles, no cycle


def test_signup_chain_in_dot(capsys) -> None:
    assert main(["graph", "-f", str(SIGNUP), "--format", "dot"]) == 0
    out = capsys.readouterr().out
    node = {
        label: line.split()[0]
        for line in out.splitlines()
        for label in ["create-user", "welcome-mail", "users.created"]
        if f'label="{label}"' in line
    }
    assert f'  {node["create-user"]} -> {node["users.created"]} [label="publishes"];' in out
    assert f"  {node['users.created']} -> {node['welcome-mail']};" in out
    assert out.startswith("digraph fx {")


def test_cycles_and_dangling_subjects_are_warned(tmp_path: Path, capsys) -> None:
    (tmp_path / "fx.yaml").write_text(LOOP)
    assert main(["graph", "-f", str(tmp_path / "fx.yaml")]) == 0
    errors = capsys.readouterr().err.splitlines()
    assert "warning: cycle: a -> b -> a (each event triggers the next, without end)" in errors
    assert "warning: subject lost.one: published by b, consumed by nobody" in errors
    assert "warning: subject nobody.sends: consumed by c, published by no function" in errors
    assert len(errors) == 3  # orders.eu reaches stream ORDERS through a's filter: not dangling


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (Debian: apt-get install graphviz)")
def test_svg_through_graphviz(tmp_path: Path) -> None:
    out = tmp_path / "signup.svg"
    assert main(["graph", "-f", str(SIGNUP), "--format", "svg", "--out", str(out)]) == 0
    svg = out.read_text()
    assert "<svg" in svg and "users.created" in svg and "welcome&#45;mail" in svg


def test_a_bad_publish_subject_is_refused_at_its_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "fx.yaml").write_text("functions:\n  a:\n    nats: {publish: ['*.created']}\n")
    assert main(["graph", "-f", str(tmp_path / "fx.yaml")]) == 2
    assert "fx.yaml:3: functions.a.nats.publish: NATS subject '*.created' cannot be granted" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("users.created", "users.created", True),
        ("users.created", "users.*", True),
        ("users.>", "users.eu.new", True),
        ("users.>", "users", False),
        ("users.*", "users.eu.new", False),
        ("orders.eu", "users.*", False),
    ],
)
def test_subject_patterns_overlap(a: str, b: str, expected: bool) -> None:
    assert overlaps(a, b) is expected and overlaps(b, a) is expected


ROUTED = """\
functions:
  users: {}
  authz: {}
apis:
  shop:
    authorizers: {mine: {lambda: {function: authz, ttl: 0}}}
    routes:
      GET /users/{id}: {function: users@live, auth: mine}
      GET /health: {mock: {}}
      ANY /{proxy+}: {upstream: "http://legacy:8000"}
"""


def test_function_routes_are_edges_to_their_function_and_authorizer(tmp_path: Path, capsys) -> None:
    (tmp_path / "fx.yaml").write_text(ROUTED)
    assert main(["graph", "-f", str(tmp_path / "fx.yaml"), "--format", "dot"]) == 0
    out = capsys.readouterr().out
    ids = {}
    for line in out.splitlines():
        if "[label=" in line and "->" not in line:
            node, label = line.split(" [label=")
            ids[label.split('"')[1]] = node.strip()
    route = ids["shop: GET /users/{id}"]
    assert f'  {route} -> {ids["users"]} [label="live"];' in out
    assert f'  {route} -> {ids["authz"]} [label="authorizes"];' in out
    assert "GET /health" not in out and "proxy" not in out  # a mock or an upstream invokes no function
    assert main(["graph", "-f", str(tmp_path / "fx.yaml"), "--format", "dot", "authz"]) == 0
    assert "GET /users" not in capsys.readouterr().out  # only the routes to the functions asked for
