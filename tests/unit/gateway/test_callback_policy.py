"""Where async results may go: the callback allow-lists, what they can never allow, and their flags."""

from __future__ import annotations

import asyncio

import pytest
from fx_gateway.config import Settings, parse
from fx_gateway.events import callback_policy
from fx_gateway.events.callback_policy import CallbackPolicy, CallbackRefused, HostRule


def policy(hosts: tuple[str, ...] = ("127.0.0.0/8", "::1"), subjects: tuple[str, ...] = (), **settings):
    return CallbackPolicy.from_settings(Settings(callback_hosts=hosts, callback_subjects=subjects, **settings))


def refused(check, value: str) -> str:
    with pytest.raises(CallbackRefused) as exc:
        check(value)
    return str(exc.value)


def test_fx_own_subjects_are_never_allowed_whatever_the_list_says():
    p = policy(subjects=(">",))
    p.check_subject("results.hello")
    for subject in ("$KV.fx_routes.VICTIM", "$JS.API.STREAM.INFO.X", "fx.activate", "FX.load", "_INBOX.abc", "fx"):
        message = refused(p.check_subject, subject)
        assert "X-Fx-Callback-Subject" in message and "fx's own subjects" in message


def test_subjects_must_be_on_the_allow_list_and_publishable():
    p = policy(subjects=("results.*", "orders.>"))
    p.check_subject("results.hello")
    p.check_subject("orders.eu.created")
    assert "not allowed on this gateway (allowed: results.*, orders.>)" in refused(p.check_subject, "users.created")
    assert "FX_CALLBACK_SUBJECTS" in refused(p.check_subject, "results.a.b")
    for bad in ("results.*", "orders.>", "results..x", "results. x", ""):
        assert "not a NATS subject" in refused(p.check_subject, bad)
    assert "allowed: none" in refused(policy().check_subject, "results.hello")  # the default: no subject


def test_urls_go_only_to_allowed_networks_names_and_ports():
    p = policy(hosts=("127.0.0.0/8", "::1", "10.1.0.0/16:8443", "hooks.example.com", ".corp.example:443"))
    p.check_url("http://127.0.0.1:9000/done")
    p.check_url("http://127.3.4.5/x")
    p.check_url("http://[::1]:9000/done")
    p.check_url("https://10.1.2.3:8443/cb")
    p.check_url("https://hooks.example.com/cb")
    p.check_url("https://a.corp.example/cb")
    assert "10.1.2.3 port 9000 is not on this gateway's callback allow-list" in refused(
        p.check_url, "http://10.1.2.3:9000/"
    )
    assert "FX_CALLBACK_HOSTS" in refused(p.check_url, "http://192.0.2.1/")
    assert "host 'evil.example'" in refused(p.check_url, "http://evil.example/")
    assert "host 'corp.example'" in refused(p.check_url, "https://corp.example/")  # subdomains only
    refused(p.check_url, "http://a.corp.example/")  # port 80, rule says 443
    refused(p.check_url, "http://localhost:9000/")  # a name, and not on the list as one


def test_link_local_metadata_and_fx_own_listeners_are_never_allowed():
    p = policy(hosts=("0.0.0.0/0", "::/0", "metadata.google.internal"))
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://[fe80::1]/",
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64
        "http://0.0.0.0:9000/",
    ):
        assert "never allowed" in refused(p.check_url, url)
    for port in (8080, 8081, 4222):  # the gateway, the controller, NATS
        assert "fx's own listeners" in refused(p.check_url, f"http://127.0.0.1:{port}/system/functions")
        assert "fx's own listeners" in refused(p.check_url, f"http://127.9.9.9:{port}/")


def test_malformed_urls_are_refused():
    p = policy()
    for url, says in (
        ("ftp://127.0.0.1/x", "not an http"),
        ("127.0.0.1:9000", "not an http"),
        ("http://user:pw@127.0.0.1:9000/", "credentials"),
        ("http://127.0.0.1:99999/", "invalid port"),
    ):
        assert says in refused(p.check_url, url)


async def test_delivery_connects_to_the_checked_address_of_an_allowed_name():
    p = policy(hosts=("localhost",))
    ip, port = await p.address("http://localhost:9000/done")
    assert ip in ("127.0.0.1", "::1") and port == 9000
    with pytest.raises(CallbackRefused, match="fx's own listeners"):
        await p.address("http://localhost:8081/")  # what the name resolves to is checked too


async def test_a_name_whose_lookup_never_answers_is_refused_in_bounded_time(monkeypatch):
    async def hang(*args, **kwargs):
        await asyncio.sleep(3600)

    monkeypatch.setattr(callback_policy, "RESOLVE_TIMEOUT_S", 0.05)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", hang)
    with pytest.raises(CallbackRefused, match="does not resolve"):
        await policy(hosts=("slow.example",)).address("http://slow.example:9000/done")


async def test_an_allowed_name_idna_cannot_encode_is_refused_not_raised():
    host = "a" * 64 + ".example.com"  # allowed by the suffix, but a label over 63 bytes: no lookup can be made
    p = policy(hosts=(".example.com",))
    assert p.refusal({b"x-callback-url": f"http://{host}/done".encode()}) is None  # accepted with the call
    with pytest.raises(CallbackRefused, match="does not resolve"):  # and a failed callback at delivery
        await p.address(f"http://{host}/done")


def test_refusal_names_the_header():
    p = policy(subjects=("results.>",))
    assert p.refusal({b"x-fx-callback-subject": b"results.ok", b"x-callback-url": b"http://127.0.0.1:9000/"}) is None
    assert p.refusal({b"x-callback-url": b"http://169.254.169.254/"}).startswith("X-Callback-Url")
    assert p.refusal({b"x-fx-callback-subject": b"$KV.fx_routes.x"}).startswith("X-Fx-Callback-Subject")


def test_host_rules_parse_and_bad_flags_are_refused_naming_the_flag(capsys):
    assert HostRule.parse("[::1]:9000").port == 9000 and HostRule.parse("[::1]:9000").network is not None
    assert HostRule.parse("*.example.com").name == ".example.com"
    assert HostRule.parse("fd00::/8").port is None
    for argv, says in (
        (["--callback-hosts", "127.0.0.1:http"], "--callback-hosts"),
        (["--callback-hosts", "bad host!"], "neither a CIDR"),
        (["--callback-subjects", "fx.>"], "fx's own subjects"),
        (["--callback-subjects", "a.>.b"], "not a NATS subject pattern"),
    ):
        with pytest.raises(SystemExit):
            parse(argv)
        assert says in capsys.readouterr().err
    assert parse(["--callback-subjects", "results.>, orders.*"]).callback_subjects == ("results.>", "orders.*")
    assert parse(["--callback-hosts", ""]).callback_hosts == ()
