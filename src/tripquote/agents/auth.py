"""Bearer JWT authentication (RFC 6750, RFC 7519; HS256 key from configuration)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request

from tripquote.agents.access import caller_refusal
from tripquote.agents.repository import CallerFacts, Principal, load_caller
from tripquote.config import Settings
from tripquote.db.tables import ID
from tripquote.db.transaction import TransactionRunner
from tripquote.errors import (
    AuthenticationFailed,
    AuthorizationFailed,
    TokenRevoked,
    TripquoteError,
)
from tripquote.etags import field_value

ISSUER = "tripquote"


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified token's agent and issue time (UTC, to the microsecond, as ``mint_token``)."""

    agent_id: str
    issued_at: datetime


def lifetime_allowed(settings: Settings, seconds: float) -> bool:
    """True if a token may live ``seconds`` (``exp - iat``): at most TOKEN_MAX_TTL_SECONDS."""
    return seconds <= settings.token_max_ttl_seconds


def mint_token(settings: Settings, *, agent_id: str, ttl_seconds: int) -> str:
    """A signed HS256 JWT naming ``agent_id`` (claim ``sub``), valid for ``ttl_seconds``;
    ValueError past ``lifetime_allowed``. ``iat`` keeps microseconds, so a revocation in the
    same second as a mint tells them apart."""
    if ttl_seconds < 1 or not lifetime_allowed(settings, ttl_seconds):
        raise ValueError(f"a token lives 1 to {settings.token_max_ttl_seconds} seconds")
    now = time.time()
    claims = {
        "sub": agent_id,
        "iss": ISSUER,
        "iat": round(now, 6),
        "exp": int(now) + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(
        claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm
    )


_VERIFIED: dict[tuple[str, str], tuple[Caller, float]] = {}
_VERIFIED_MAX = 10_000
_REVOKED: set[tuple[str, str]] = set()
"""Tokens this process found revoked (``remember_refusal``), as (secret, token); bounded by
``_VERIFIED_MAX``. Revocation is for good (``tokens_valid_after`` only moves on)."""


def verify_token(settings: Settings, token: str) -> Caller:
    """The claims of a valid token; AUTHENTICATION_FAILED if malformed, expired or forged.

    A verified token is remembered (bounded) until its ``exp``: the signature cannot change,
    so re-checking it on every request of an agent's session only burns CPU.
    """
    secret = settings.jwt_secret.get_secret_value()
    if (secret, token) in _REVOKED:
        raise TokenRevoked()
    cached = _VERIFIED.get((secret, token))
    if cached is not None:
        claims_, expires = cached
        if time.time() < expires + settings.jwt_leeway_seconds:
            return claims_
        del _VERIFIED[(secret, token)]
    verified, expires = _verify(settings, token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[(secret, token)] = (verified, expires)
    return verified


def remember_refusal(request: Request, error: TripquoteError) -> None:
    """After ``error`` answered ``request``: a token found revoked (``TokenRevoked``, by the
    request's database work) is refused by ``verify_token`` from then on, before the write
    rate limit counts it: a revoked token, leaked, cannot use up its agent's limit and lock
    the agent's new tokens out (only its first request in each process was counted)."""
    if not isinstance(error, TokenRevoked):
        return
    settings: Settings = request.app.state.settings
    try:
        token = bearer_token(request)
    except AuthenticationFailed:  # pragma: no cover - a revoked token was verified first
        return
    if len(_REVOKED) >= _VERIFIED_MAX:
        _REVOKED.clear()
    _REVOKED.add((settings.jwt_secret.get_secret_value(), token))


def _verify(settings: Settings, token: str) -> tuple[Caller, float]:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            issuer=ISSUER,
            leeway=settings.jwt_leeway_seconds,
            options={"require": ["sub", "exp", "iat", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthenticationFailed("The bearer token has expired.") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthenticationFailed("The bearer token is invalid.") from exc
    subject = claims.get("sub")
    # An id a stored agent can have (``validation.path_id``'s rule: PostgreSQL text holds no
    # NUL, no id is longer than the id columns), or the token names none: never a 400 from
    # the database refusing the value.
    if not isinstance(subject, str) or not subject or "\x00" in subject or len(subject) > ID:
        raise AuthenticationFailed("The bearer token names no agent.")
    if not subject.isascii():  # ids are ASCII; a lone surrogate is no text PostgreSQL holds
        raise AuthenticationFailed("The bearer token names no agent.")
    issued_at, expires = float(claims["iat"]), float(claims["exp"])
    if not lifetime_allowed(settings, expires - issued_at):
        raise AuthenticationFailed(
            "The bearer token lives longer than this service allows; ask for a new one."
        )
    try:  # to the nearest microsecond: exactly the instant mint_token rounded to
        issued = datetime.fromtimestamp(issued_at, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise AuthenticationFailed("The bearer token is invalid.") from exc
    return Caller(agent_id=subject, issued_at=issued), expires


def bearer_token(request: Request) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; AUTHENTICATION_FAILED if none,
    or if two lines send two (every line counts: ``etags.field_value``)."""
    header = field_value(request.headers, "authorization")
    if not header:
        raise AuthenticationFailed("A bearer token is required (Authorization: Bearer <token>).")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("The Authorization header must be 'Bearer <token>'.")
    return token.strip()


def authenticate(request: Request) -> Caller:
    """The request's verified bearer token (no database access: the use case checks the rest)."""
    settings: Settings = request.app.state.settings
    return verify_token(settings, bearer_token(request))


async def authenticate_admin(request: Request) -> Principal:
    """The calling agency admin; AUTHENTICATION_FAILED, AGENT_NOT_FOUND or AUTHORIZATION_FAILED."""
    caller = authenticate(request)
    runner: TransactionRunner = request.app.state.runner

    async def load(conn: AsyncConnection) -> Principal:
        return await principal_of(conn, caller)

    principal = await runner.run(load, write=False)
    if not principal.is_admin:
        raise AuthorizationFailed("This endpoint needs an agency admin.")
    return principal


async def principal_of(conn: AsyncConnection, caller: Caller) -> Principal:
    """The calling agent read on ``conn``; AUTHENTICATION_FAILED (revoked), AGENT_NOT_FOUND."""
    return require_principal(
        await load_caller(conn, agent_id=caller.agent_id, issued_at=caller.issued_at)
    )


def require_principal(facts: CallerFacts) -> Principal:
    """The calling agent of ``facts``, or its ``caller_refusal`` raised."""
    error = caller_refusal(token_revoked=facts.token_revoked, agent_ok=facts.principal is not None)
    if error is not None:
        raise error
    assert facts.principal is not None
    return facts.principal
