"""The SSRF guard: outbound HTTP that cannot be pointed at the deployment's own network.

Used by `http_fetch`, and meant for every URL loomiq connects to on someone else's behalf (an agent's
``base_url`` registered over the API, say). The rule is applied to addresses, after DNS resolution,
at every connection (so on every redirect too), and the connection then goes to the very address
that was checked: a name that resolves to a public address when checked and to 127.0.0.1 a moment
later (DNS rebinding) cannot slip through, because nothing resolves it again.

Refused unless the `AddressPolicy` allows them: loopback, private (RFC 1918, ``fc00::/7``),
link-local (``169.254/16``, ``fe80::/10``), CGNAT (``100.64/10``), multicast, unspecified, reserved
and documentation ranges, and the cloud metadata addresses; IPv6 forms that embed an IPv4 address
(``::ffff:127.0.0.1``, NAT64, 6to4, Teredo) are judged by the IPv4 address inside. Numeric host
forms (``2130706433``, ``0177.0.0.1``, ``0x7f.1``) resolve to the address they denote and are judged
as such.

    policy = AddressPolicy.from_strings(allowed_networks=["127.0.0.0/8"])    # tests: loopback allowed
    async with guarded_client(policy, timeout_s=10) as client:
        response = await client.get(url)          # SSRFRefused (an httpx2.ConnectError) when refused
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore2
import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",   # AWS, GCP, Azure, OpenStack, DigitalOcean...
    "169.254.170.2",     # AWS ECS task metadata
    "100.100.100.200",   # Alibaba Cloud
    "192.0.0.192",       # Oracle Cloud
    "168.63.129.16",     # Azure wire server (a public address)
    "fd00:ec2::254",     # AWS over IPv6
))
"""Cloud instance-metadata endpoints, refused whatever the policy's networks say."""

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPAT = ipaddress.ip_network("::/96")

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``await resolver(host, port)`` -> the addresses (text) the host name resolves to."""


class SSRFRefused(httpx2.ConnectError):
    """A connection to a refused address; the message names the host, the address and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo, compatible), or None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _IPV4_COMPAT and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def classify(address: IPAddress) -> str | None:
    """Why `address` is not a public internet address (``"loopback"``, ``"private"``...), or None."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata"
    inner = embedded_ipv4(address)
    if inner is not None:
        why = classify(inner)
        return f"{why} (embedded in {address})" if why else None
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "CGNAT (shared address space)"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which non-public destinations are nevertheless allowed.

    Attributes:
        allowed_networks: networks whose addresses pass (``127.0.0.0/8`` lets tests reach loopback).
            Metadata addresses stay refused even inside them.
        allowed_hosts: host names (exact, lower case) whose resolved addresses are not checked, for
            internal services a deployment trusts by name.
    """

    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_strings(cls, allowed_networks: Iterable[str] = (), allowed_hosts: Iterable[str] = ()) -> AddressPolicy:
        """A policy from configuration text; `ValueError` names an invalid network."""
        networks = []
        for text in allowed_networks:
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ValueError(f"{text!r} is not a network (use CIDR notation such as 127.0.0.0/8)") from None
        return cls(tuple(networks), frozenset(h.lower().rstrip(".") for h in allowed_hosts))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to `address` (resolved from `host`) is refused, or None when it is allowed."""
        if address in METADATA_ADDRESSES:
            return f"{host!r} resolves to {address} (cloud metadata)"
        if host.lower().rstrip(".") in self.allowed_hosts:
            return None
        why = classify(address)
        if why is None:
            return None
        if any(address.version == net.version and address in net for net in self.allowed_networks):
            return None
        return f"{host!r} resolves to {address} ({why})"


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver (``getaddrinfo``, without blocking the loop)."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """An httpcore network backend that resolves, checks every address, and connects to a checked one.

    TLS still verifies the certificate against the host name (httpcore passes it as the server name).
    """

    def __init__(self, policy: AddressPolicy, resolver: Resolver | None = None) -> None:
        self.policy = policy
        self.resolver = resolver or system_resolver
        self._inner = httpcore2.AnyIOBackend()

    async def checked_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` resolves to, all allowed; `SSRFRefused` if any one is not."""
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            addresses = [ipaddress.ip_address(bare.split("%", 1)[0])]
        except ValueError:
            try:
                addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await self.resolver(bare, port)]
            except (OSError, socket.gaierror) as exc:
                raise httpx2.ConnectError(f"cannot resolve {bare!r}: {exc}") from None
        if not addresses:
            raise httpx2.ConnectError(f"{bare!r} has no address")
        # One refused address refuses the name: a resolver may answer differently at connect time.
        for address in addresses:
            why = self.policy.refusal(bare, address)
            if why:
                raise SSRFRefused(f"refused: {why}")
        return addresses

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109 (httpcore API)
                          local_address: str | None = None, socket_options: Iterable[Any] | None = None,
                          ) -> httpcore2.AsyncNetworkStream:
        """Connect to the first reachable checked address of `host` (never resolving it again)."""
        addresses = await self.checked_addresses(host, port)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(str(address), port, timeout=timeout,
                                                     local_address=local_address, socket_options=socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None) -> httpcore2.AsyncNetworkStream:
        """Refused: a guarded client only speaks TCP to checked addresses."""
        raise SSRFRefused("refused: unix sockets are not reachable through the SSRF guard")

    async def sleep(self, seconds: float) -> None:
        """Sleep (httpcore's retries use it)."""
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, backend: GuardedBackend) -> None:
        # No proxy from the environment: a proxy would make the connection, not the guard.
        context = _ssl_context()
        super().__init__(verify=context, trust_env=False)
        # httpx builds its pool without a backend argument: replace it by one on the guarded backend.
        # (The SSRF corpus test fails if a connection ever bypasses it.)
        self._pool = httpcore2.AsyncConnectionPool(ssl_context=context, network_backend=backend)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds: once per process, not per client.
    return ssl.create_default_context()


def guarded_client(policy: AddressPolicy | None = None, *, timeout_s: float = 30.0, max_redirects: int = 5,
                   resolver: Resolver | None = None, headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose every connection (redirects included) passes the guard.

    Redirects are followed (at most `max_redirects`); environment proxies are ignored.
    """
    backend = GuardedBackend(policy or AddressPolicy(), resolver)
    return httpx2.AsyncClient(
        transport=_GuardedTransport(backend), timeout=timeout_s, follow_redirects=True,
        max_redirects=max_redirects, trust_env=False, headers=headers,
    )


async def check_url(url: str, policy: AddressPolicy | None = None, resolver: Resolver | None = None,
                    schemes: Sequence[str] = ("http", "https")) -> list[IPAddress]:
    """Check a URL before storing it (an agent's ``base_url``): its scheme, host and every address it
    resolves to now. `SSRFRefused` or `ValueError` (bad URL) when refused. A connection made later
    must still go through `GuardedBackend`, since the name may resolve differently then."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in schemes:
        raise ValueError(f"URL scheme {parts.scheme!r} is not allowed (use {' or '.join(schemes)})")
    if not parts.hostname:
        raise ValueError(f"URL {url!r} has no host")
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    return await GuardedBackend(policy or AddressPolicy(), resolver).checked_addresses(parts.hostname, port)


__all__ = [
    "METADATA_ADDRESSES",
    "AddressPolicy",
    "GuardedBackend",
    "Resolver",
    "SSRFRefused",
    "check_url",
    "classify",
    "embedded_ipv4",
    "guarded_client",
    "system_resolver",
]
