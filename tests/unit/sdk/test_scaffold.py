import importlib.util
import json
from types import SimpleNamespace

import pytest
from fx import manifest, scaffold
from fx.errors import InputError


def test_the_scaffolded_handler_imports_and_greets(tmp_path):
    project = scaffold.init("greeter", tmp_path)
    spec = importlib.util.spec_from_file_location("scaffolded_handler", project / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    event = {"rawPath": "/hi", "queryStringParameters": {"name": "you"}}
    response = module.handler(event, SimpleNamespace(function_name="greeter"))
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["message"] == "hello, you!" and body["path"] == "/hi"


def test_the_scaffolded_manifest_is_valid(tmp_path):
    project = scaffold.init("greeter", tmp_path)
    [fn] = manifest.load(project / "fx.yaml")
    assert fn.name == "greeter" and fn.code_dir == project.resolve()
    assert (project / "requirements.txt").read_text().startswith("#")


def test_invalid_names_and_non_empty_folders_are_refused(tmp_path):
    with pytest.raises(InputError, match="DNS-1123"):
        scaffold.init("Bad_Name", tmp_path)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        scaffold.init("taken", tmp_path)
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
