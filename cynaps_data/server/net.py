"""Outbound HTTP for webhooks, safe against SSRF by construction.

Every attempt resolves the endpoint's host, checks *every* address it resolves to, and connects
to one of those checked addresses itself (the socket is opened to the IP, never to the name, so
a DNS answer cannot change between the check and the connection). Refused: anything that is not
a globally routable unicast address — loopback, private (10/8, 172.16/12, 192.168/16), shared
(100.64/10), link-local (169.254/16, fe80::/10, which hold the cloud metadata addresses),
unique-local IPv6 (fc00::/7, e.g. fd00:ec2::254), multicast, unspecified, reserved and
documentation ranges; IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible, NAT64 and 6to4 IPv6
forms are judged by the IPv4 address they carry. IPv4 written as one decimal number, hex, octal
or short forms (``2130706433``, ``0x7f.1``, ``127.1``) is normalised first (as the C resolver
would) and judged the same. Loopback is allowed only with ``allow_loopback`` (the platform
setting ``webhook_allow_loopback``).

Requests never follow redirects (a 3xx is a failed attempt), have one deadline for connect,
send and answer, and read at most ``max_bytes`` of the answer.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The URL or an address it resolves to may not be called."""


def parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """``host`` as an IPv4 address if the C resolver would read it as one (inet_aton forms)."""
    if not host or any(c not in "0123456789abcdefABCDEFxX." for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def literal_address(host: str) -> Address | None:
    """The IP address ``host`` spells (any IPv4 form, or IPv6 with or without brackets)."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return parse_ipv4_loose(text)


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = address.packed
    if packed[:12] == bytes(12) and address not in (
        ipaddress.IPv6Address("::"),
        ipaddress.IPv6Address("::1"),
    ):
        return ipaddress.IPv4Address(packed[12:])  # IPv4-compatible ::a.b.c.d
    if address in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(packed[12:])
    return None


def check_address(address: Address, allow_loopback: bool, shown: str | None = None) -> None:
    """Raise :class:`Refused` unless ``address`` is public unicast (or allowed loopback).

    ``shown`` names the address in the message instead of the address itself: for an address a
    host *name* resolved to, which the caller must not learn (the platform's view of its own
    network, ``internal.corp`` → ``10.1.2.3``, would otherwise be readable in the delivery log).
    """
    inner = embedded_ipv4(address)
    if inner is not None:
        try:
            check_address(inner, allow_loopback, shown)
        except Refused as exc:
            raise Refused(str(exc) if shown else f"{address} carries {inner}: {exc}") from None
        return
    label = shown or str(address)
    if address.is_loopback:
        if allow_loopback:
            return
        raise Refused(
            f"{label} is a loopback address (allowed only with the platform setting "
            "webhook_allow_loopback)"
        )
    if address.is_unspecified:
        raise Refused(f"{label} is the unspecified address")
    if address.is_multicast:
        raise Refused(f"{label} is a multicast address")
    if address.is_link_local:
        raise Refused(f"{label} is link-local (where cloud metadata services live)")
    if not address.is_global:
        raise Refused(f"{label} is not a public address (private, shared or reserved range)")


@dataclass(frozen=True)
class Target:
    """A checked URL: scheme, host as written, port, and the request path with query."""

    scheme: str
    host: str
    port: int
    path: str


def check_url(url: str, *, https_only: bool, allow_loopback: bool) -> Target:
    """Validate an endpoint URL's form (and a literal address in it) without resolving it."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise Refused("url must be a string of at most 2048 characters")
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise Refused("url must not contain spaces or control characters")
    parts = urlsplit(url)
    schemes = ("https",) if https_only else ("https", "http")
    if parts.scheme not in schemes:
        raise Refused(
            "url must start with https:// (live mode)"
            if https_only
            else "url must start with https:// or http://"
        )
    if parts.username is not None or parts.password is not None:
        raise Refused("url must not contain credentials (user:password@)")
    if parts.fragment:
        raise Refused("url must not contain a #fragment")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise Refused(f"url has an invalid port: {exc}") from None
    if not host:
        raise Refused("url has no host")
    is_localhost = host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost")
    if is_localhost and not allow_loopback:
        raise Refused(
            "localhost is loopback (allowed only with the platform setting webhook_allow_loopback)"
        )
    address = literal_address(host)
    if address is not None:
        check_address(address, allow_loopback)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if not path.isascii():  # an HTTP request line is ASCII: send non-ASCII percent-encoded
        path = "".join(c if c.isascii() else quote(c, safe="") for c in path)
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path)


def resolve(target: Target, allow_loopback: bool) -> list[Address]:
    """Every address of the target's host, each checked; :class:`Refused` if any is refused."""
    literal = literal_address(target.host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectionError(f"cannot resolve {target.host}: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos))
    if not addresses:
        raise ConnectionError(f"{target.host} has no address")
    shown = None if literal is not None else f"an address of {target.host}"
    for address in addresses:
        check_address(address, allow_loopback, shown)
    return addresses


@dataclass
class Answer:
    status: int
    head: bytes  # the first bytes of the body (at most max_bytes)
    retry_after: str | None
    truncated: bool


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to a checked address (the Host header keeps the name)."""

    def __init__(self, target: Target, address: Address, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((str(self._address), self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(_PinnedHTTP):
    _context = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


class Sender:
    """Posts to checked addresses; keeps one idle connection per (host, port, address).

    Not thread-safe: one per worker thread.
    """

    def __init__(self, timeout: float, max_bytes: int, allow_loopback: bool) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_loopback = allow_loopback
        self._idle: dict[tuple, http.client.HTTPConnection] = {}

    def post(self, target: Target, body: bytes, headers: dict[str, str]) -> Answer:
        deadline = time.monotonic() + self.timeout
        addresses = resolve(target, self.allow_loopback)
        address = addresses[0]
        key = (target.scheme, target.host, target.port, address)
        conn = self._idle.pop(key, None)
        reused = conn is not None
        if conn is None:
            cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
            conn = cls(target, address, self.timeout)
        try:
            answer, keep = self._exchange(conn, target, body, headers, deadline)
        except (ConnectionError, http.client.RemoteDisconnected):
            conn.close()
            if reused and time.monotonic() < deadline:  # the idle connection had been closed
                return self.post(target, body, headers)
            raise
        except BaseException:
            conn.close()
            raise
        if keep:
            self._idle[key] = conn
        else:
            conn.close()
        return answer

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        target: Target,
        body: bytes,
        headers: dict[str, str],
        deadline: float,
    ) -> tuple[Answer, bool]:
        conn.request("POST", target.path, body=body, headers=headers)
        if conn.sock is not None:
            conn.sock.settimeout(max(0.05, deadline - time.monotonic()))
        response = conn.getresponse()
        chunks, size, truncated = [], 0, False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete answer within {self.timeout:g} s")
            if conn.sock is not None:
                conn.sock.settimeout(remaining)
            # read1: whatever has arrived (a trickling answer still meets the deadline)
            chunk = response.read1(min(65536, self.max_bytes + 1 - size))
            if not chunk:
                response.read()  # b"" here; marks the answer finished so the connection is reusable
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                truncated = True
                break
        keep = not truncated and not response.will_close
        return (
            Answer(
                response.status,
                b"".join(chunks)[: self.max_bytes],
                response.getheader("retry-after"),
                truncated,
            ),
            keep,
        )

    def close(self) -> None:
        for conn in self._idle.values():
            conn.close()
        self._idle.clear()
