"""The gateway's start path stays on the wire library (fx.protocol is stdlib-only): no pydantic, no CLI."""

import subprocess
import sys

PROBE = """
import sys
import fx_gateway.__main__
from fx_gateway.config import parse
from fx_gateway.gateway import Gateway

Gateway(parse(["--listen", "127.0.0.1:1"]))
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "fx"))))
"""


def test_starting_the_gateway_imports_no_pydantic():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    loaded = out.strip().split(",")
    assert "fx.protocol" in loaded  # the probe saw the wire library load
    assert not [m for m in loaded if m.startswith("pydantic")]
    assert "fx.models" not in loaded
