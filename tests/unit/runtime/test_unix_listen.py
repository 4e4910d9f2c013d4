"""FX_LISTEN=unix:/abs/path: the replica serves on a Unix socket and reports it as its endpoint."""

import stat

import httpx

HANDLER = {"handler.py": "def handler(event, context):\n    return {'echo': event}\n"}


def test_replica_listens_on_a_unix_socket_and_reports_it(start, tmp_path):
    sock = tmp_path / "s" / "http.sock"
    sock.parent.mkdir()
    replica = start(HANDLER, FX_LISTEN=f"unix:{sock}")
    assert replica.endpoint == f"unix:{sock}"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://replica") as client:
        assert client.post("/_fx/invoke", content=b'{"a": 1}').json() == {"echo": {"a": 1}}
        assert client.get("/_fx/health").status_code == 200


def test_a_stale_socket_from_an_earlier_replica_is_replaced(start, tmp_path):
    sock = tmp_path / "http.sock"
    first = start(HANDLER, FX_LISTEN=f"unix:{sock}")
    first.proc.kill()  # no clean shutdown: the socket file stays behind
    first.wait_exit()
    assert sock.exists()
    second = start(HANDLER, FX_LISTEN=f"unix:{sock}")
    assert second.endpoint == f"unix:{sock}"


def test_a_clean_shutdown_removes_the_socket(start, tmp_path):
    sock = tmp_path / "http.sock"
    replica = start(HANDLER, FX_LISTEN=f"unix:{sock}")
    replica.proc.terminate()
    assert replica.wait_exit() == 0
    assert not sock.exists()


def test_a_relative_or_overlong_socket_path_is_refused_with_the_fix(start, tmp_path):
    for listen, says in (("unix:http.sock", "must be absolute"), ("unix:/" + "x" * 120, "at most 107 bytes")):
        replica = start(HANDLER, wait=False, FX_LISTEN=listen)
        assert replica.wait_exit() != 0
        log = replica.log_text(says)
        assert "FX_LISTEN" in log and says in log
