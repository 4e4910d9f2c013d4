"""`fx graph --deployed` draws what runs: the signup chain, and a published subject reaching a stream through the
stream's own subjects, which fx.yaml alone does not know."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.integration.conftest import RunningPlatform

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def edges(dot: str) -> set[tuple[str, str]]:
    """The DOT output's edges by node label."""
    labels = dict(re.findall(r'^\s+(n\d+) \[label="([^"]*)"', dot, re.MULTILINE))
    return {(labels[a], labels[b]) for a, b in re.findall(r"^\s+(n\d+) -> (n\d+)", dot, re.MULTILINE)}


def test_graph_of_what_is_deployed(platform: RunningPlatform, tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "signup", tmp_path / "signup")
    assert platform.fx("deploy", cwd=tmp_path / "signup").returncode == 0
    assert platform.fx("stream", "create", "ORDERS", "orders.>").returncode == 0
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "handler.py").write_text("def handler(event, context):\n    return None\n")
    (shop / "fx.yaml").write_text(
        "functions:\n"
        "  checkout: {handler: handler.handler, nats: {publish: [orders.new]}}\n"
        "  fulfil: {handler: handler.handler, triggers: [{jetstream: {stream: ORDERS}}]}\n"
    )
    assert platform.fx("deploy", cwd=shop).returncode == 0

    drawn = platform.fx("graph", "--deployed", "--format", "dot")
    assert drawn.returncode == 0, drawn.stderr
    found = edges(drawn.stdout)
    assert {("create-user", "users.created"), ("users.created", "welcome-mail")} <= found
    assert {("checkout", "orders.new"), ("orders.new", "stream ORDERS"), ("stream ORDERS", "fulfil")} <= found
    assert ("fulfil", "DLQ fx.dlq.fulfil") in found
    assert drawn.stderr == ""  # nothing dangles: the stream's subjects take orders.new

    from_file = platform.fx("graph", "-f", str(shop / "fx.yaml"), "--format", "dot")
    assert ("orders.new", "stream ORDERS") not in edges(from_file.stdout)  # fx.yaml does not say what ORDERS holds
    assert "warning: subject orders.new: published by checkout, consumed by nobody" in from_file.stderr

    one = platform.fx("graph", "--deployed", "nope")
    assert one.returncode == 2 and "no deployed function named nope" in one.stderr
