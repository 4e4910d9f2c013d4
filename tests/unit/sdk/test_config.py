import json
import re
import stat

import pytest
from fx import config
from fx.errors import InputError


def _write(path, contexts: dict, current: str | None) -> None:
    body = {n: {"gateway": g, "token": t} for n, (g, t) in contexts.items()}
    path.write_text(json.dumps({"current": current, "contexts": body}))


@pytest.fixture
def two_contexts(tmp_path):
    cfg = tmp_path / "config.json"
    _write(cfg, {"prod": ("http://prod:1", "prod-token"), "local": ("http://local:2", "local-token")}, "prod")
    return cfg


def test_flags_beat_env_beat_the_current_context_beat_defaults(two_contexts, tmp_path):
    env = {"FX_CONFIG": str(two_contexts), "FX_GATEWAY": "http://env:2", "FX_TOKEN": "env-token"}
    assert config.resolve("http://flag:3/", "flag-token", env=env, cwd=tmp_path) == config.Settings(
        "http://flag:3", "flag-token"
    )
    assert config.resolve(env=env, cwd=tmp_path) == config.Settings("http://env:2", "env-token")
    only_file = {"FX_CONFIG": str(two_contexts)}
    assert config.resolve(env=only_file, cwd=tmp_path) == config.Settings("http://prod:1", "prod-token")


def test_the_context_flag_beats_the_environment_and_fx_context_does_not(two_contexts, tmp_path):
    env = {"FX_CONFIG": str(two_contexts), "FX_GATEWAY": "http://env:2", "FX_TOKEN": "env-token"}
    assert config.resolve(context="local", env=env, cwd=tmp_path) == config.Settings("http://local:2", "local-token")
    assert config.resolve("http://flag:3", context="local", env=env, cwd=tmp_path).gateway == "http://flag:3"
    by_env = {**env, "FX_CONTEXT": "local"}
    assert config.resolve(env=by_env, cwd=tmp_path) == config.Settings("http://env:2", "env-token")
    del by_env["FX_GATEWAY"], by_env["FX_TOKEN"]
    assert config.resolve(env=by_env, cwd=tmp_path) == config.Settings("http://local:2", "local-token")


def test_an_unknown_context_is_bad_input_naming_the_known_ones(two_contexts, tmp_path):
    env = {"FX_CONFIG": str(two_contexts)}
    with pytest.raises(InputError, match=r"no context 'nosuch'.*local, prod"):
        config.resolve(context="nosuch", env=env, cwd=tmp_path)
    with pytest.raises(InputError, match="no context 'typo'"):
        config.resolve(env={**env, "FX_CONTEXT": "typo"}, cwd=tmp_path)


def test_defaults_are_the_local_gateway_and_the_token_fx_up_left_here(tmp_path):
    env = {"FX_CONFIG": str(tmp_path / "missing.json")}
    assert config.resolve(env=env, cwd=tmp_path) == config.Settings(config.DEFAULT_GATEWAY, None)
    (tmp_path / ".fx").mkdir()
    (tmp_path / ".fx" / "admin-token").write_text("local-token\n")
    assert config.resolve(env=env, cwd=tmp_path).token == "local-token"


def test_a_gateway_without_a_scheme_is_http(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"gateway": "fx.internal:8080"}))
    env = {"FX_CONFIG": str(cfg)}
    assert config.resolve("127.0.0.1:18085", env=env, cwd=tmp_path).gateway == "http://127.0.0.1:18085"
    assert config.resolve(env={**env, "FX_GATEWAY": "localhost:1/"}, cwd=tmp_path).gateway == "http://localhost:1"
    assert config.resolve(env=env, cwd=tmp_path).gateway == "http://fx.internal:8080"
    assert config.resolve("https://fx.example:443", env=env, cwd=tmp_path).gateway == "https://fx.example:443"


def test_no_current_context_falls_to_the_defaults(tmp_path):
    cfg = tmp_path / "config.json"
    _write(cfg, {"prod": ("http://prod:1", "prod-token")}, None)
    assert config.resolve(env={"FX_CONFIG": str(cfg)}, cwd=tmp_path) == config.Settings(config.DEFAULT_GATEWAY, None)


def test_each_setting_falls_back_on_its_own(two_contexts, tmp_path):
    settings = config.resolve(env={"FX_CONFIG": str(two_contexts), "FX_TOKEN": "env-token"}, cwd=tmp_path)
    assert settings == config.Settings("http://prod:1", "env-token")


def test_an_old_single_gateway_file_is_one_current_context_until_rewritten(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"gateway": "http://old:1", "token": "old-token"}))
    env = {"FX_CONFIG": str(cfg)}
    assert config.resolve(env=env, cwd=tmp_path) == config.Settings("http://old:1", "old-token")
    assert config.load(cfg) == config.Config({"default": config.Settings("http://old:1", "old-token")}, "default")
    with config.update(env) as (file, _):
        file.put("local", config.Settings("http://local:2", "local-token"))
    migrated = json.loads(cfg.read_text())
    assert migrated == {
        "current": "default",
        "contexts": {
            "default": {"gateway": "http://old:1", "token": "old-token"},
            "local": {"gateway": "http://local:2", "token": "local-token"},
        },
    }


def test_written_config_is_private_replaced_whole_and_read_back(tmp_path):
    env = {"FX_CONFIG": str(tmp_path / "sub" / "config.json")}
    with config.update(env) as (file, path):
        file.put("lab", config.Settings("http://127.0.0.1:9", "secret"))
        file.use("lab", path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [".config.json.lock", "config.json"]  # no temp file left
    assert config.resolve(env=env, cwd=tmp_path) == config.Settings("http://127.0.0.1:9", "secret")


def test_a_failed_change_leaves_the_file_as_it_was(two_contexts):
    before = two_contexts.read_text()
    with pytest.raises(InputError), config.update({"FX_CONFIG": str(two_contexts)}) as (file, path):
        file.remove("prod", path)
        file.use("nosuch", path)
    assert two_contexts.read_text() == before


def test_removing_the_current_context_leaves_none_current(two_contexts):
    file = config.load(two_contexts)
    file.remove("prod", two_contexts)
    assert file.current is None and list(file.contexts) == ["local"]


@pytest.mark.parametrize(
    ("gateway", "name"),
    [
        ("https://fx.example.com", "fx.example.com"),
        ("http://127.0.0.1:8080", "127.0.0.1:8080"),
        ("http://[::1]:8080", "default"),
    ],
)
def test_login_names_a_context_after_the_gateway_host(gateway, name):
    assert config.context_name_for(gateway) == name


def test_a_context_name_must_be_a_plain_word():
    with pytest.raises(InputError, match="context name"):
        config.check_name("has space")


def test_an_unwritable_config_is_bad_input_naming_the_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {"FX_CONFIG": str(blocker / "config.json")}  # its folder is a file
    with pytest.raises(InputError, match="cannot write the fx config"), config.update(env):
        pass


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"current": [1], "contexts": {}}, "'current' must be a context name"),
        ({"current": "a", "contexts": {"a": {"gateway": 5}}}, "context 'a': 'gateway' must be a string, not int"),
        ({"current": "a", "contexts": {"a": {"gateway": "http://x", "token": 5}}}, "'token' must be a string"),
        ({"contexts": {"a": "http://x"}}, "context 'a' must be"),
        ({"contexts": {"a": {"token": "t"}}}, "context 'a' must be"),
        ({"gateway": ["http://x"]}, "the file: 'gateway' must be a string, not list"),
    ],
)
def test_a_config_another_tool_wrote_with_wrong_types_is_bad_input_naming_the_file(tmp_path, body, complaint):
    """Refused, not a traceback, and not dropped: `fx login` would otherwise write the file back without it."""
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps(body))
    with pytest.raises(InputError, match=re.escape(complaint)) as caught:
        config.resolve(env={"FX_CONFIG": str(cfg)}, cwd=tmp_path)
    assert str(cfg) in str(caught.value)
    with pytest.raises(InputError), config.update({"FX_CONFIG": str(cfg)}):
        pass
    assert json.loads(cfg.read_text()) == body  # left as it was


@pytest.mark.parametrize("token", ["a\nb", "é", "two words", "\x1b[2J"])
def test_a_token_no_http_header_can_carry_is_bad_input_not_a_traceback(tmp_path, token):
    env = {"FX_CONFIG": str(tmp_path / "config.json"), "FX_TOKEN": token}
    with pytest.raises(InputError, match="the admin token has a character no token has"):
        config.resolve(env=env, cwd=tmp_path)


def test_a_binary_token_file_is_bad_input_not_a_traceback(tmp_path):
    (tmp_path / ".fx").mkdir()
    (tmp_path / ".fx" / "admin-token").write_bytes(b"\xff\xfe\n")
    with pytest.raises(InputError, match="admin token"):
        config.resolve(env={"FX_CONFIG": str(tmp_path / "config.json")}, cwd=tmp_path)
    (tmp_path / ".fx" / "admin-token").write_text("Abc-_123\n")
    assert config.resolve(env={"FX_CONFIG": str(tmp_path / "config.json")}, cwd=tmp_path).token == "Abc-_123"
