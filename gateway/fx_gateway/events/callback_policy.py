"""Where an async call's result may go: X-Fx-Callback-Subject and X-Callback-Url, as the operator allowed.

Checked when the call is accepted (a 400 naming the header and the fix, so nothing is stored that cannot be
delivered) and again when the result is delivered: a URL's host name is resolved then, every address it gives
is checked, and the connection goes to the address that passed (a DNS answer that changes in between cannot
move it). Whatever the allow-lists say, results never go to fx's own subjects (`fx.`, `$` — KV, JetStream,
system — and `_INBOX.`), to link-local or cloud metadata addresses, or to this platform's own listeners.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from fx.protocol import CALLBACK_SUBJECT, CALLBACK_URL, reserved_subject

if TYPE_CHECKING:
    from fx_gateway.config import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT_S = 5.0  # a callback host name's lookup, at delivery
URL_HEADER = CALLBACK_URL.lower().encode()  # as callers' headers are looked up: by lower-case name
SUBJECT_HEADER = CALLBACK_SUBJECT.lower().encode()
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never a callback target: link-local (and with it the 169.254.169.254 metadata service of most clouds),
# AWS's IPv6 metadata address, Alibaba's metadata address, and "this host" addresses that reach any listener.
NEVER = tuple(
    ipaddress.ip_network(n)
    for n in ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "100.100.100.200/32", "0.0.0.0/8", "::/128")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address reached through a NAT64 gateway
SUBJECT_FLAG = "--callback-subjects / FX_CALLBACK_SUBJECTS"
HOST_FLAG = "--callback-hosts / FX_CALLBACK_HOSTS"


class CallbackRefused(Exception):
    """A callback the policy does not allow; the message says which header, why, and the fix."""


def _address(text: str) -> Address:
    """`text` as an IP address, IPv4 when it is one in IPv6 clothing (mapped or NAT64), so the checks see it."""
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


@dataclass(frozen=True)
class HostRule:
    """One entry of --callback-hosts: a network (a CIDR or an IP) or a host name (`.example.com`: its
    subdomains), with a port or any."""

    network: Network | None
    name: str
    port: int | None

    @classmethod
    def parse(cls, entry: str) -> HostRule:
        host, port = entry, ""
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = rest.removeprefix(":")
        elif entry.count(":") == 1:
            host, _, port = entry.partition(":")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"{HOST_FLAG}: {entry!r} has no valid port after ':'")
        try:
            network: Network | None = ipaddress.ip_network(host, strict=False)
        except ValueError:
            network = None
        name = "" if network else host.lower().removeprefix("*").rstrip(".")
        if network is None and not _is_host_name(name.removeprefix(".")):
            raise ValueError(f"{HOST_FLAG}: {entry!r} is neither a CIDR, an IP address nor a host name")
        return cls(network, name, int(port) if port else None)

    def matches_name(self, host: str, port: int) -> bool:
        if not self.name or (self.port is not None and self.port != port):
            return False
        return host == self.name or (self.name.startswith(".") and host.endswith(self.name))

    def matches_address(self, ip: Address, port: int) -> bool:
        if self.network is None or (self.port is not None and self.port != port):
            return False
        return ip.version == self.network.version and ip in self.network


def _is_host_name(name: str) -> bool:
    labels = name.split(".")
    return (
        bool(name)
        and len(name) <= 253
        and all(label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii() for label in labels)
    )


def _subject_tokens(subject: str) -> list[str] | None:
    """The tokens of a syntactically valid NATS subject, or None."""
    tokens = subject.split(".")
    if not subject or any(not t or any(c.isspace() for c in t) for t in tokens):
        return None
    return tokens


def _subject_matches(pattern: list[str], tokens: list[str]) -> bool:
    for i, p in enumerate(pattern):
        if p == ">":
            return len(tokens) > i
        if i >= len(tokens) or (p != "*" and p != tokens[i]):
            return False
    return len(tokens) == len(pattern)


class CallbackPolicy:
    def __init__(self, hosts: list[HostRule], subjects: list[list[str]], own: set[tuple[str, int]]) -> None:
        self.hosts = hosts
        self.subjects = subjects
        self.own = own  # (host, port) of this platform's listeners: the gateway, the controller, NATS

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackPolicy:
        """The policy the flags describe; ValueError naming the flag and the entry when one is wrong."""
        hosts = [HostRule.parse(entry) for entry in settings.callback_hosts]
        subjects = []
        for entry in settings.callback_subjects:
            tokens = _subject_tokens(entry)
            if tokens is None or ">" in tokens[:-1]:
                raise ValueError(f"{SUBJECT_FLAG}: {entry!r} is not a NATS subject pattern")
            if reserved_subject(entry):
                raise ValueError(f"{SUBJECT_FLAG}: {entry!r} is one of fx's own subjects (fx.*, $*, _INBOX.*)")
            subjects.append(tokens)
        own = {(settings.host, settings.port), (settings.controller_host, settings.controller_port)}
        for server in settings.nats_url.split(","):
            nats = urlsplit(server.strip())
            if nats.hostname:
                own.add((nats.hostname, nats.port or 4222))
        return cls(hosts, subjects, own)

    # --- when a call is accepted ---

    def refusal(self, seen: dict[bytes, bytes]) -> str | None:
        """Why the callback headers of a call (by lower-case name) cannot be honoured, or None."""
        try:
            subject = seen.get(SUBJECT_HEADER)
            if subject is not None:
                self.check_subject(subject.decode("latin-1"))
            url = seen.get(URL_HEADER)
            if url is not None:
                self.check_url(url.decode("latin-1"))
        except CallbackRefused as exc:
            return str(exc)
        return None

    def check_subject(self, subject: str) -> None:
        tokens = _subject_tokens(subject)
        if tokens is None or "*" in tokens or ">" in tokens:
            raise CallbackRefused(f"X-Fx-Callback-Subject {subject!r} is not a NATS subject to publish to")
        if reserved_subject(subject):
            raise CallbackRefused(
                f"X-Fx-Callback-Subject {subject!r} is one of fx's own subjects (fx.*, $*, _INBOX.*);"
                " name a subject of your own"
            )
        if not any(_subject_matches(p, tokens) for p in self.subjects):
            allowed = ", ".join(".".join(p) for p in self.subjects) or "none"
            raise CallbackRefused(
                f"X-Fx-Callback-Subject {subject!r} is not allowed on this gateway (allowed: {allowed});"
                f" the operator allows subjects with {SUBJECT_FLAG}"
            )

    def check_url(self, url: str) -> None:
        """Everything that can be checked without DNS: the form, and the address when the host is one."""
        parts, port = self._parts(url)
        host = parts.hostname.rstrip(".")  # type: ignore[union-attr]
        try:
            ip = _address(host)
        except ValueError:
            if not any(rule.matches_name(host, port) for rule in self.hosts):
                raise CallbackRefused(self._not_allowed(url, f"host {host!r}")) from None
            return
        self.check_address(url, ip, port)

    def check_address(self, url: str, ip: Address, port: int, named: bool = False) -> None:
        """Refuse `ip`:`port` unless allowed; `named`: it is what an allowed host name resolved to, so only the
        never-allowed addresses and fx's own listeners are refused."""
        if any(ip.version == n.version and ip in n for n in NEVER):
            raise CallbackRefused(
                f"X-Callback-Url {url!r}: {ip} is link-local or a cloud metadata address, never allowed"
            )
        for host, own_port in self.own:
            if port == own_port and (ip.is_loopback or ip.is_unspecified or str(ip) == host):
                raise CallbackRefused(f"X-Callback-Url {url!r}: {ip}:{port} is one of fx's own listeners")
        if not named and not any(rule.matches_address(ip, port) for rule in self.hosts):
            raise CallbackRefused(self._not_allowed(url, f"{ip} port {port}"))

    def _parts(self, url: str) -> tuple[SplitResult, int]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackRefused(f"X-Callback-Url {url!r} is not an http:// or https:// URL")
        if "@" in parts.netloc:
            raise CallbackRefused(f"X-Callback-Url {url!r}: credentials in the URL are not supported")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise CallbackRefused(f"X-Callback-Url {url!r} has an invalid port") from None
        return parts, port

    def _not_allowed(self, url: str, what: str) -> str:
        return (
            f"X-Callback-Url {url!r}: {what} is not on this gateway's callback allow-list;"
            f" the operator allows hosts and networks with {HOST_FLAG}"
        )

    # --- when a result is delivered ---

    async def address(self, url: str) -> tuple[str, int]:
        """The (IP, port) to connect to for `url`: checked again, a host name resolved now and each of its
        addresses checked. Raises CallbackRefused."""
        self.check_url(url)
        parts, port = self._parts(url)
        host = parts.hostname.rstrip(".")  # type: ignore[union-attr]
        try:
            return str(_address(host)), port  # an address: checked above
        except ValueError:
            pass
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):  # a resolver that never answers must not hold a worker
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError) as exc:  # UnicodeError: a label IDNA refuses (over 63 bytes)
            raise CallbackRefused(f"X-Callback-Url {url!r}: {host} does not resolve ({exc or 'timed out'})") from None
        problem = f"X-Callback-Url {url!r}: {host} resolves to no address"
        for *_, sockaddr in infos:
            ip = _address(sockaddr[0])
            try:
                self.check_address(url, ip, port, named=True)
            except CallbackRefused as exc:
                problem = str(exc)
                continue
            return str(ip), port
        raise CallbackRefused(problem)
