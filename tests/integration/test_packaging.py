"""What `fx deploy` ships and uploads: ignore rules, the dependency layer apart from the code, nothing twice.

The functions report what they see from inside their replica (their /var/task, where a dependency was
imported from), so the assertions read the platform's answer, not the CLI's claims.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.wheels import make_wheel

LIST_TASK_ROOT = """
import os


def handler(event, context):
    root = os.environ["LAMBDA_TASK_ROOT"]
    found = []
    for folder, _, names in os.walk(root):
        found += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return {"root": root, "files": sorted(found)}
"""

USE_DEPENDENCY = """
import os
import tinydep


def handler(event, context):
    folder = os.path.dirname(tinydep.__file__)
    try:
        open(os.path.join(folder, "planted.py"), "w").close()
        writable = True
    except OSError:
        writable = False
    return {"value": tinydep.VALUE, "answer": ANSWER, "folder": folder, "writable": writable}
"""


def sandboxed(platform) -> bool:
    return "function sandbox: ON" in (platform.state_dir / "protections.txt").read_text()


def invoke(platform, name: str) -> dict:
    r = httpx.post(f"{platform.gateway_url}/2015-03-31/functions/{name}/invocations", json={}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_env_files_tests_and_ignored_files_are_not_deployed(platform, tmp_path):
    project = tmp_path / "lister"
    write(
        project,
        {
            "fx.yaml": "functions:\n  lister:\n    handler: handler.handler\n",
            "handler.py": LIST_TASK_ROOT,
            "lib/util.py": "X = 1\n",
            ".env": "API_KEY=secret\n",
            ".env.production": "MODE=prod\n",
            "tests/test_handler.py": "def test(): pass\n",
            "debug.log": "noise\n",
            "data/big.csv": "a,b\n",
            ".gitignore": "*.log\ndata/\n",
            ".fxignore": "tests/\n!.env.production\n",
        },
    )
    deployed = platform.fx("deploy", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    assert "lister: 4 files ignored (.fxignore, .gitignore; .env never shipped)" in deployed.stderr

    seen = invoke(platform, "lister")
    assert seen["files"] == [".env.production", "handler.py", "lib/util.py"]


def test_a_dependency_layer_is_importable_read_only_and_uploaded_only_when_it_changes(platform, tmp_path):
    wheel = make_wheel(tmp_path, "tinydep", "VALUE = 'from the layer'\n")
    project = tmp_path / "layered"
    write(
        project,
        {
            "fx.yaml": "functions:\n  layered:\n    handler: handler.handler\n",
            "handler.py": "ANSWER = 1\n" + USE_DEPENDENCY,
            "requirements.txt": f"{wheel}\n",
        },
    )
    env = {"PIP_NO_INDEX": "1", "FX_CACHE_DIR": str(tmp_path / "cache")}

    first = platform.fx("deploy", cwd=project, env=env)
    assert first.returncode == 0, first.stderr
    assert "layered: uploading code" in first.stderr and "layered: uploading dependencies" in first.stderr
    assert "layered: pip: Installing collected packages: tinydep" in first.stderr
    seen = invoke(platform, "layered")
    assert seen["value"] == "from the layer" and seen["answer"] == 1
    assert seen["writable"] is False
    if sandboxed(platform):  # the sandbox mounts the layer where Lambda has it
        assert seen["folder"] == "/opt/fx/python/tinydep"
    else:  # extracted by digest beside the code
        assert seen["folder"].startswith(str(platform.state_dir / "code")), seen["folder"]

    (project / "handler.py").write_text("ANSWER = 2\n" + USE_DEPENDENCY)
    code_only = platform.fx("deploy", cwd=project, env=env)
    assert code_only.returncode == 0, code_only.stderr
    assert "version 2" in code_only.stdout
    assert "layered: uploading code" in code_only.stderr
    assert "uploading dependencies" not in code_only.stderr
    assert "layered: dependencies sha256:" in code_only.stderr and "is stored already" in code_only.stderr
    assert "pip:" not in code_only.stderr  # nor installed again
    seen = invoke(platform, "layered")
    assert seen["value"] == "from the layer" and seen["answer"] == 2

    unchanged = platform.fx("deploy", cwd=project, env=env)
    assert unchanged.returncode == 0, unchanged.stderr
    assert "unchanged, still version 2" in unchanged.stdout
    assert "uploading" not in unchanged.stderr
