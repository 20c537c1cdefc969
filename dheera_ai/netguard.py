"""Where a client-supplied address may lead: public internet only, unless the config allows more.

An `api_base` sent by a client (or in its `user_config`) must not turn the gateway into a proxy
into its own network: loopback, private, link-local (cloud metadata at 169.254.169.254),
shared and reserved addresses are refused. The check runs on every address the name resolves
to, once before the call (a clear 400) and again when the connection is made, against the very
address connected to, so a name that re-resolves elsewhere (DNS rebinding) is caught too.
Redirects are never followed (`dheera_ai.http`), so there is no third address to check.
`general_settings.allowed_client_api_base_hosts` names hosts, addresses or networks that may be
reached anyway.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from dheera_ai.errors import BadRequestError

# The same words whatever the reason (no such name, an internal address): no DNS oracle.
REFUSED = "clients may not reach this host"


class AddressRefused(OSError):
    """A client-supplied address that the gateway will not connect to."""


def parse_allowed(entries) -> tuple:
    """Config entries -> a tuple of lower-cased host names and ip networks."""
    parsed = []
    for entry in entries or ():
        text = str(entry).strip().lower()
        try:
            parsed.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            parsed.append(text)
    return tuple(parsed)


# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64's well-known prefix, RFC
# 6052) and the deprecated IPv4-compatible form (::a.b.c.d): such an address leads to that IPv4 one.
_EMBEDDING_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::/96"))
# NAT64 for a site's own networks (RFC 8215): never the public internet.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, if it embeds one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002:AABB:CCDD::/48 is the 6to4 relay of AABB:CCDD
        return ip.sixtofour
    if any(ip in network for network in _EMBEDDING_NETWORKS) and int(ip) > 1:  # not :: or ::1
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_allowed(address: str, allowed: tuple = ()) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return _listed(ip, allowed)
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return address_allowed(str(embedded), allowed) or _listed(ip, allowed)
    if ip.is_global and not ip.is_multicast:
        return True
    return _listed(ip, allowed)


def _listed(ip, allowed: tuple) -> bool:
    return any(not isinstance(a, str) and ip.version == a.version and ip in a for a in allowed)


def vetted_address(host: str, port: int, allowed: tuple = ()) -> str:
    """An address `host` resolves to that may be connected to; AddressRefused if it has none."""
    host = host.strip("[]").lower()
    if host in allowed:
        return host
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise AddressRefused(REFUSED) from None
    addresses = [info[4][0] for info in infos]
    if not addresses or not all(address_allowed(a, allowed) for a in addresses):
        # Every address must pass: otherwise which one is used is up to the resolver. The refusal
        # never says what the name resolved to, or whether it resolved: that would let a client
        # map the gateway's internal DNS through it.
        raise AddressRefused(REFUSED)
    return addresses[0]


def check_client_url(url, allowed: tuple = (), param: str = "api_base") -> None:
    """Refuse (400) a client-supplied base URL the gateway must not call."""
    if not isinstance(url, str):
        raise BadRequestError(f"'{param}' must be a string.", param=param, code="invalid_value")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequestError(f"'{param}' must be an http(s) URL.", param=param, code="api_base_not_allowed")
    try:
        vetted_address(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), allowed)
    except AddressRefused:
        raise BadRequestError(f"'{param}' is not allowed.", param=param, code="api_base_not_allowed") from None
    except ValueError:
        raise BadRequestError(f"'{param}' has an invalid port.", param=param, code="api_base_not_allowed") from None


class _Vetting:
    """Connect only to an address that passed the check just now, whatever DNS says later."""

    allowed: tuple = ()

    def _new_conn(self):
        address = vetted_address(self._dns_host, self.port, self.allowed)
        named = self._dns_host
        self._dns_host = address  # TLS still verifies against `self.host`, the name
        try:
            return super()._new_conn()
        finally:
            self._dns_host = named


def vetting(allowed: tuple) -> type:
    """A mixin for urllib3 connections that vets each address connected to against `allowed`."""
    return type("Vetting", (_Vetting,), {"allowed": allowed})
