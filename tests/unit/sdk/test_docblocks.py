import pytest
from fx import docblocks

README = """\
# x

```sh
not marked
```

<!-- fx-doc-test -->
```sh
curl localhost:8080/function/a      # → hello
# a comment line

fx deploy --no-traffic \\
   --dir .                          # deploys it → version 2
```

<!-- fx-doc-test try -->
```bash
fx logs a   # a moment later → eventually: sent
```
"""


def test_marked_blocks_their_commands_lines_and_expected_text():
    plain, tried = docblocks.blocks(README)
    assert not plain.try_it and tried.try_it
    assert [(c.text, c.expect, c.line) for c in plain.commands] == [
        ("curl localhost:8080/function/a      # → hello", "hello", 9),
        ("fx deploy --no-traffic \\\n   --dir .                          # deploys it → version 2", "version 2", 12),
    ]
    assert tried.commands[0].expect == "eventually: sent"


def test_try_commands_come_from_the_folders_readme(tmp_path):
    assert docblocks.try_commands(tmp_path) == []
    (tmp_path / "README.md").write_text(README)
    assert docblocks.try_commands(tmp_path) == ["fx logs a   # a moment later → eventually: sent"]


@pytest.mark.parametrize("text", ["<!-- fx-doc-test -->\nplain text\n", "<!-- fx-doc-test -->\n```sh\nfx ls\n"])
def test_a_broken_marking_is_an_error_not_a_silently_skipped_block(text):
    with pytest.raises(ValueError, match="line"):
        docblocks.blocks(text)


@pytest.mark.parametrize(
    ("command", "local"),
    [
        ("curl http://127.0.0.1:8080/function/a", "curl http://127.0.0.1:9/function/a"),
        ("curl localhost:8080/function/a", "curl http://127.0.0.1:9/function/a"),
        ("fx login --gateway http://localhost:8080", "fx login --gateway http://127.0.0.1:9"),
        ("curl localhost:80801/x", "curl localhost:80801/x"),
    ],
)
def test_localize_points_the_readme_gateway_elsewhere(command, local):
    assert docblocks.localize(command, "http://127.0.0.1:9/") == local


def test_a_shell_block_is_marked_or_says_why_not():
    text = "```sh\na\n```\n<!-- fx-doc-test skip: needs a cluster -->\n```sh\nb\n```\n"
    text += "<!-- fx-doc-test skip: -->\n```bash\n"  # a skip without its reason does not count
    assert docblocks.unmarked(README) == [3]
    assert docblocks.unmarked(text) == [1, 9]
