"""Private proposal links: the token, its stored hash, and the CSRF token bound to it.

A link's token is ``HMAC-SHA256(key, nonce)`` (RFC 2104), base64url without padding (RFC 4648
§5, 43 characters), where ``nonce`` is 256 bits from ``secrets``. The database keeps the
token's SHA-256 (the lookup, like an API key's) and the nonce, never the token: the database
alone cannot give a working link, yet the agent's ``GET …/proposal`` can give the same link
again (the service holds the key) without a GET that changes anything. The key is derived from
``TRIPQUOTE_JWT_SECRET``: changing that secret ends every link (and every agent token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
"""A well-formed token: 256 bits in base64url, no padding."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def token_hash(token: str) -> str:
    """The stored form of ``token``: its SHA-256, hex (64 characters)."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


@dataclass(frozen=True, slots=True)
class NewLink:
    """A link just minted: the nonce and hash to store, the token to give once."""

    nonce: str
    token: str
    hash: str


class LinkKeys:
    """Derives tokens and CSRF tokens with the service's key (one per process, from settings)."""

    def __init__(self, secret: str) -> None:
        self._key = hmac.new(secret.encode(), b"tripquote proposal links v1", "sha256").digest()

    def token(self, nonce: str) -> str:
        """The token of the link whose nonce is ``nonce``."""
        return _b64(hmac.new(self._key, nonce.encode("ascii"), "sha256").digest())

    def mint(self) -> NewLink:
        """A new link: 256 random bits (``secrets``), its token and the token's hash."""
        nonce = secrets.token_urlsafe(32)
        token = self.token(nonce)
        return NewLink(nonce=nonce, token=token, hash=token_hash(token))

    def csrf(self, link_hash: str) -> str:
        """The form token of the link whose hash is ``link_hash`` (bound to that link only)."""
        return _b64(hmac.new(self._key, b"csrf:" + link_hash.encode(), "sha256").digest())

    def csrf_ok(self, link_hash: str, given: str) -> bool:
        """Whether ``given`` is that link's form token (constant-time comparison)."""
        return hmac.compare_digest(self.csrf(link_hash).encode(), given.encode("utf-8", "replace"))
