"""Handler strings resolve like Lambda's, and every init failure carries Lambda's errorType."""

import sys
import uuid
from pathlib import Path

import pytest
from fx_runtime import loader
from fx_runtime.faults import Fault

from .conftest import write_code


@pytest.fixture
def task_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "task"
    root.mkdir()
    loader.add_task_root(str(root))
    return root


def unique() -> str:
    return f"m{uuid.uuid4().hex[:8]}"  # fresh module names: sys.modules outlives a test


def test_module_dot_function(task_root: Path):
    name = unique()
    write_code(task_root, {f"{name}.py": "def handler(e, c):\n    return 'hi'\n"})
    assert loader.load(f"{name}.handler")(None, None) == "hi"


@pytest.mark.parametrize("separator", [".", "/"])
def test_nested_package_paths(task_root: Path, separator: str):
    pkg = unique()
    write_code(task_root, {f"{pkg}/__init__.py": "", f"{pkg}/sub/__init__.py": "", f"{pkg}/sub/mod.py": "f = len\n"})
    assert loader.load(f"{pkg}{separator}sub{separator}mod.f") is len


def test_task_root_comes_first_and_pth_files_count(task_root: Path, tmp_path: Path):
    extra = tmp_path / "vendored"
    extra.mkdir()
    lib = unique()
    (extra / f"{lib}.py").write_text("VALUE = 42\n")
    (task_root / "deps.pth").write_text(str(extra) + "\n")
    loader.add_task_root(str(task_root))
    assert sys.path[0] == str(task_root)
    name = unique()
    write_code(task_root, {f"{name}.py": f"import {lib}\ndef h(e, c):\n    return {lib}.VALUE\n"})
    assert loader.load(f"{name}.h")(None, None) == 42


def test_the_dependency_layer_comes_right_after_the_task_root_whose_files_win(task_root: Path, tmp_path: Path):
    layer = tmp_path / "layer"
    shared, only_layer = unique(), unique()
    write_code(layer, {f"{shared}.py": "WHERE = 'layer'\n", f"{only_layer}.py": "WHERE = 'layer'\n"})
    write_code(task_root, {f"{shared}.py": "WHERE = 'code'\n"})
    loader.add_task_root(str(task_root), str(layer))
    assert sys.path[:2] == [str(task_root), str(layer)] and sys.path.count(str(layer)) == 1
    assert loader.load(f"{shared}.WHERE") == "code" and loader.load(f"{only_layer}.WHERE") == "layer"


def fault_of(handler: str) -> Fault:
    with pytest.raises(Fault) as info:
        loader.load(handler)
    return info.value


def test_malformed_handler_name(task_root: Path):
    fault = fault_of("handler")
    assert fault.error_type == "Runtime.MalformedHandlerName"
    assert fault.message.startswith("Bad handler 'handler'")


def test_missing_module_is_an_import_module_error(task_root: Path):
    fault = fault_of("nosuchmodule.handler")
    assert fault.error_type == "Runtime.ImportModuleError"
    assert fault.message == "Unable to import module 'nosuchmodule': No module named 'nosuchmodule'"


def test_missing_dependency_names_the_dependency(task_root: Path):
    name = unique()
    write_code(task_root, {f"{name}.py": "import requests_that_are_absent\n"})
    fault = fault_of(f"{name}.handler")
    assert fault.error_type == "Runtime.ImportModuleError"
    assert fault.message == f"Unable to import module '{name}': No module named 'requests_that_are_absent'"


def test_syntax_error(task_root: Path):
    name = unique()
    write_code(task_root, {f"{name}.py": "def handler(:\n"})
    fault = fault_of(f"{name}.handler")
    assert fault.error_type == "Runtime.UserCodeSyntaxError"
    assert fault.message.startswith(f"Syntax error in module '{name}'")
    assert "def handler(:" in fault.stack_trace[0]


def test_missing_function(task_root: Path):
    name = unique()
    write_code(task_root, {f"{name}.py": "x = 1\n"})
    fault = fault_of(f"{name}.missing")
    assert (fault.error_type, fault.message) == (
        "Runtime.HandlerNotFound",
        f"Handler 'missing' missing on module '{name}'",
    )


def test_builtin_module_conflict(task_root: Path):
    fault = fault_of("sys.handler")
    assert fault.error_type == "Runtime.BuiltInModuleConflict"


def test_exception_during_module_init_is_reported_by_its_class(task_root: Path):
    name = unique()
    write_code(task_root, {f"{name}.py": "raise KeyError('TABLE_NAME')\n"})
    fault = fault_of(f"{name}.handler")
    assert fault.error_type == "KeyError"
    assert "TABLE_NAME" in fault.message
    assert any(f"{name}.py" in frame for frame in fault.stack_trace)
    assert not any("fx_runtime" in frame for frame in fault.stack_trace)
