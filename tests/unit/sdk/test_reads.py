"""fx.reads, the CLI's light GET: the same answers and the same errors as fx.Client's, over a plain socket."""

import threading

import pytest
from fx import errors, reads
from fx.cli import main
from fx.client import Client

from tests.unit.sdk.conftest import TOKEN

pytestmark = pytest.mark.usefixtures("isolated")


@pytest.mark.parametrize("chunked", [False, True])
def test_the_answer_is_the_json_sent_with_the_token_under_the_gateway_s_path(scripted, chunked):
    handler, url = scripted
    answer = [{"name": "hello", "latest": 3, "traffic": {"3": 100}, "note": "é" * 50}]
    handler.answer, handler.chunked = (200, answer), chunked
    assert reads.get_json(f"{url}/prefix/", TOKEN, "/system/dlq", {"function": "a b", "limit": 5}) == answer
    assert handler.seen == [("/prefix/system/dlq?function=a+b&limit=5", f"Bearer {TOKEN}")]


@pytest.mark.parametrize(
    "answer",
    [
        (404, {"error": {"code": "FunctionNotFound", "message": "no function nope", "function": "nope"}}),
        (401, {"error": {"code": "Unauthorized", "message": "missing bearer"}}),
        (502, {"errorType": "Runtime.ReplicaLost", "errorMessage": "the replica went away"}),
        (500, "Internal Server Error"),
        (409, {"error": {"code": "X", "message": "m", "extra": 1}}),  # not an ErrorDetail: shown as text
    ],
)
def test_an_error_is_the_one_fx_client_raises(scripted, answer):
    handler, url = scripted
    handler.answer = answer
    with pytest.raises(errors.FxError) as light:
        reads.get_json(url, TOKEN, "/system/functions")
    with Client(url, TOKEN) as client, pytest.raises(errors.FxError) as full:
        client.list_functions()
    assert (type(light.value), str(light.value), light.value.function) == (
        type(full.value),
        str(full.value),
        full.value.function,
    )
    assert light.value.status == answer[0]


def test_an_unreachable_gateway_is_the_error_fx_client_raises():
    url = "http://127.0.0.1:9"
    with pytest.raises(errors.FxError) as light:
        reads.get_json(url, None, "/system/functions")
    with Client(url, None) as client, pytest.raises(errors.FxError) as full:
        client.list_functions()
    assert (type(light.value), str(light.value)) == (type(full.value), str(full.value))
    assert light.value.code == "Unreachable" and "fx up" in light.value.message


def test_what_is_not_an_http_answer_is_unreachable(scripted):
    def garbage(self) -> None:
        self.wfile.write(b"SSH-2.0-OpenSSH\r\n\r\n")

    handler, url = scripted
    handler.do_GET = garbage
    with pytest.raises(errors.FxError, match=r"not reachable.*not an HTTP answer"):
        reads.get_json(url, None, "/system/functions")


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100_000, "head is over"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 100_000, "size line of the answer is over"),
    ],
)
def test_an_answer_that_never_ends_its_line_is_refused_not_held(scripted, answer, why):
    def endless(self) -> None:
        self.wfile.write(answer)
        self.wfile.flush()
        threading.Event().wait(1)  # the connection stays open: only the bound ends the read

    handler, url = scripted
    handler.do_GET = endless
    with pytest.raises(errors.FxError, match=f"not reachable.*{why}"):
        reads.get_json(url, None, "/system/functions")


@pytest.mark.parametrize(
    ("gateway", "env", "usable"),
    [
        ("http://127.0.0.1:8080", {}, True),
        ("https://fx.example.com/base", {}, True),
        ("https://fx.example.com", {"HTTPS_PROXY": "http://proxy:3128"}, False),
        ("http://127.0.0.1:8080", {"all_proxy": "socks5://proxy"}, False),
        ("http://user:pw@127.0.0.1:8080", {}, False),
        ("unix:///run/fx.sock", {}, False),
    ],
)
def test_a_proxy_or_an_unusual_url_is_left_to_fx_client(monkeypatch, gateway, env, usable):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert reads.usable(gateway) is usable


def test_fx_ls_through_a_proxy_setting_still_lists(gateway, monkeypatch, capsys):
    """With a proxy variable set the command reads through httpx, which honours it (here: NO_PROXY for loopback)."""
    gateway.functions["hello"] = [{"artifact": "sha256:" + "0" * 64}]
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert main(["ls"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["hello", "1", "v1:100%", "0", "Ready"]


def test_a_followed_answer_s_lines_come_as_they_come(scripted):
    """`fx logs -f`: a line is there before the answer ends (the server holds the rest until it has been read)."""
    read = threading.Event()
    waited_out = []

    def held(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"6\r\nfirst\n\r\n")
        self.wfile.flush()
        waited_out.append(not read.wait(10))
        self.wfile.write(b"7\r\nsecond\n\r\n0\r\n\r\n")

    handler, url = scripted
    handler.do_GET = held
    _, lines = reads.get_lines(url, TOKEN, "/system/functions/f/logs", {"follow": "true"}, follow=True)
    assert next(lines) == "first"
    read.set()
    assert list(lines) == ["second"]
    assert waited_out == [False]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64])
def test_lines_are_split_as_httpx_splits_them(size):
    """str.splitlines' line ends, a "\\r\\n" or a character cut between two pieces."""
    text = "a\r\nb\rc\n\nd\x85e\u2028é ü\r\n\rlast"
    data = text.encode()
    pieces = iter([data[at : at + size] for at in range(0, len(data), size)])
    assert list(reads._lines(pieces)) == text.splitlines()
