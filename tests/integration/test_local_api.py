"""`fx local api` with no platform: a FastAPI app behind Mangum served as the gateway serves it, restarted when
its code changes, the Invoke API beside it, and nothing left running after SIGTERM."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from pathlib import Path

import httpx

from tests.integration.conftest import FX
from tests.processes import alive, descendants
from tests.waiting import wait_for

APP = """\
from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/hello/{name}")
def hello(name: str):
    return {"message": f"hello, {name}"}


handler = Mangum(app, lifespan="off")
"""


def test_serves_a_mangum_fastapi_app_and_reloads_it(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(APP)
    (tmp_path / "requirements.txt").write_text("fastapi\nmangum\n")
    (tmp_path / "fx.yaml").write_text("functions:\n  web:\n    handler: main.handler\n")
    server = subprocess.Popen(
        [FX, "local", "api", "--port", "0"], cwd=tmp_path, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True)
    reader.start()
    try:
        url = wait_for(
            lambda: next((m[1] for line in lines if (m := re.search(r"serving .* on (http://\S+)", line))), None),
            240,
            "fx local api to serve (pip installs fastapi and mangum the first time)",
        )
        answer = httpx.get(f"{url}/function/web/hello/ann", timeout=30)
        assert answer.status_code == 200 and answer.json() == {"message": "hello, ann"}, (answer.text, lines)
        wait_for(lambda: any("REPORT RequestId:" in line for line in lines), 10, "the function's log on stderr")

        (tmp_path / "main.py").write_text(APP.replace("hello, ", "hi, "))
        wait_for(lambda: httpx.get(f"{url}/function/web/hello/ann", timeout=30).json() == {"message": "hi, ann"},
                 30, "the changed code to be served")  # fmt: skip

        missing = httpx.get(f"{url}/function/nope/", timeout=30)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "FunctionNotFound"
        runtimes = descendants(server.pid)
        assert len(runtimes) == 1  # one replica per function
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(30)
    assert code == 0
    assert not [pid for pid in runtimes if alive(pid)]
    assert not any("Traceback" in line for line in lines)
