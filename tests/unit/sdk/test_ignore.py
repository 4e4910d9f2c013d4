from pathlib import Path

import pytest
from fx import ignore


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tree(
        tmp_path / "proj",
        {
            "handler.py": "",
            "fx.yaml": "",
            "tests/test_handler.py": "",
            "tests/data/x.json": "",
            "build/out.bin": "",
            "build/keep.txt": "",
            "notes.log": "",
            ".env": "SECRET=1",
            ".env.local": "SECRET=2",
            "conf/.env": "SECRET=3",
            ".git/HEAD": "",
            ".venv/lib/x.py": "",
            "__pycache__/h.pyc": "",
        },
    )


def test_without_rules_only_env_files_and_fixed_excludes_stay_behind(project):
    selection = ignore.select(project, top_excludes=frozenset({"fx.yaml"}))
    assert sorted(selection.files) == [
        "build/keep.txt",
        "build/out.bin",
        "handler.py",
        "notes.log",
        "tests/data/x.json",
        "tests/test_handler.py",
    ]
    assert selection.summary() == "3 files ignored (.env never shipped)"


def test_gitignore_and_fxignore_rules_leave_files_out_and_are_not_shipped(project):
    tree(project, {".gitignore": "*.log\nbuild/\n", ".fxignore": "tests/\n"})
    selection = ignore.select(project)
    assert sorted(selection.files) == ["fx.yaml", "handler.py"]
    assert selection.summary() == "8 files ignored (.fxignore, .gitignore; .env never shipped)"


def test_fxignore_negation_reincludes_what_gitignore_leaves_out(project):
    tree(project, {".gitignore": "*.log\n", ".fxignore": "!notes.log\n"})
    assert "notes.log" in ignore.select(project).files


def test_an_env_file_ships_only_when_an_fxignore_negation_lists_it(project):
    tree(project, {".fxignore": "!.env.local\n", ".gitignore": "!.env\n"})
    files = ignore.select(project).files
    assert ".env.local" in files
    assert ".env" not in files and "conf/.env" not in files  # a .gitignore negation is not a request to ship


def test_the_project_folder_rules_apply_to_a_function_in_a_subfolder(tmp_path):
    project = tree(tmp_path / "proj", {".gitignore": "src/generated/\n", "src/app.py": "", "src/generated/g.py": ""})
    selection = ignore.select(project / "src", project)
    assert list(selection.files) == ["app.py"]
    assert selection.summary() == "1 file ignored (.gitignore)"


def test_nothing_left_out_says_nothing(tmp_path):
    assert ignore.select(tree(tmp_path / "p", {"handler.py": ""})).summary() is None
