"""Which endpoint URLs a subscription may name, and the address a delivery connects to.

In production an endpoint is ``https`` and every address its host resolves to is a global
unicast one: no loopback, link-local, private (RFC 1918, RFC 4193), shared (RFC 6598),
reserved or multicast address, so a subscription cannot make the service call into its own
network (server-side request forgery). Checked at creation, on every change of the URL, and
again at each delivery, which then connects to the address it checked (the host name still
sent as ``Host`` and as the TLS server name), so a name re-pointed meanwhile (DNS rebinding)
reaches nothing it should not. In development (the default) any ``http`` or ``https`` URL is
taken and nothing is resolved, so local receivers work.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

import httpx

from tripquote.errors import WebhookUrlRefused, field_error


@dataclass(frozen=True, slots=True)
class Target:
    """Where a delivery goes: ``url`` (the host replaced by a checked address in
    production), and the ``Host`` header and TLS server name to send (None: the URL's)."""

    url: str
    host_header: str | None = None
    sni_hostname: str | None = None


def _refused(code: str, message: str) -> WebhookUrlRefused:
    return WebhookUrlRefused(details={"errors": [field_error("url", code, message)]})


def parse(url: str, *, production: bool) -> httpx.URL:
    """``url`` if its form is allowed (absolute ``https``, ``http`` too in development, a host,
    no credentials); WEBHOOK_URL_REFUSED otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise _refused("invalid_url", "url must be an absolute http(s) URL.") from None
    schemes = ("https",) if production else ("http", "https")
    if parsed.scheme not in schemes:
        raise _refused(
            "scheme_not_allowed",
            "url must use https." if production else "url must use http or https.",
        )
    if not parsed.host:
        raise _refused("invalid_url", "url must name a host.")
    if parsed.userinfo:
        raise _refused("credentials_not_allowed", "url must not carry a user name or password.")
    return parsed


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def resolve_public(parsed: httpx.URL) -> str:
    """The first address ``parsed``'s host resolves to, once every one of them is public;
    WEBHOOK_URL_REFUSED if any is not, or if the name does not resolve."""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parsed.host, port, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        raise _refused("unresolvable", "url's host does not resolve.") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or not all(_public(address) for address in addresses):
        raise _refused(
            "address_not_allowed",
            "url's host resolves to a loopback, link-local, private or reserved address.",
        )
    return addresses[0]


async def check(url: str, *, production: bool, within: float) -> None:
    """WEBHOOK_URL_REFUSED unless ``url`` may be a subscription's endpoint (see the module);
    in production its host resolved within ``within`` seconds, else ``unresolvable`` (the
    request's database transaction waits on the lookup: a resolver that hangs must not hold
    its connection until the transaction times out)."""
    parsed = parse(url, production=production)
    if production:
        try:
            async with asyncio.timeout(within):
                await resolve_public(parsed)
        except TimeoutError:
            raise _refused("unresolvable", "url's host did not resolve in time.") from None


async def target(url: str, *, production: bool) -> Target:
    """Where to deliver to ``url`` now: in production the address checked now (see the
    module); WEBHOOK_URL_REFUSED if it is no longer allowed."""
    parsed = parse(url, production=production)
    if not production:
        return Target(url=url)
    address = await resolve_public(parsed)
    pinned = parsed.copy_with(host=address)
    return Target(
        url=str(pinned), host_header=parsed.netloc.decode("ascii"), sni_hostname=parsed.host
    )
