import json
import stat

from fx import config


def test_flags_beat_env_beat_file_beat_defaults(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"gateway": "http://file:1", "token": "file-token"}))
    env = {"FX_CONFIG": str(cfg), "FX_GATEWAY": "http://env:2", "FX_TOKEN": "env-token"}
    assert config.resolve("http://flag:3/", "flag-token", env=env, cwd=tmp_path) == config.Settings(
        "http://flag:3", "flag-token"
    )
    assert config.resolve(env=env, cwd=tmp_path) == config.Settings("http://env:2", "env-token")
    assert config.resolve(env={"FX_CONFIG": str(cfg)}, cwd=tmp_path) == config.Settings("http://file:1", "file-token")


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


def test_each_setting_falls_back_on_its_own(tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"gateway": "http://file:1", "token": "file-token"}))
    settings = config.resolve(env={"FX_CONFIG": str(cfg), "FX_TOKEN": "env-token"}, cwd=tmp_path)
    assert settings == config.Settings("http://file:1", "env-token")


def test_written_config_is_private_and_read_back(tmp_path):
    env = {"FX_CONFIG": str(tmp_path / "sub" / "config.json")}
    path = config.write_config(config.Settings("http://127.0.0.1:9", "secret"), env=env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.resolve(env=env, cwd=tmp_path) == config.Settings("http://127.0.0.1:9", "secret")
