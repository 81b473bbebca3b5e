"""Who may act: an active agent with a token not revoked, on its own records (an admin: on
its whole agency's)."""

from __future__ import annotations

from typing import Any

from tripquote.agents.repository import Principal
from tripquote.errors import (
    AgentNotFound,
    AuthorizationFailed,
    TokenRevoked,
    TripquoteError,
)


def caller_refusal(*, token_revoked: bool, agent_ok: bool) -> TripquoteError | None:
    """Every route's first refusals in order: AUTHENTICATION_FAILED, AGENT_NOT_FOUND, or None."""
    if token_revoked:
        return TokenRevoked()
    if not agent_ok:
        return AgentNotFound()
    return None


def check_access(
    principal: Principal,
    *,
    owner_agent_id: str,
    owner_agency_id: str,
    not_found: type[TripquoteError],
    details: dict[str, Any],
) -> None:
    """Allow the owner and its agency's admins. Another agency's record is invisible:
    ``not_found(details=details)``, exactly what a missing record gets (the same ``details``,
    naming the id asked for), so the answer does not tell it exists. Another agent's record
    in the same agency is AUTHORIZATION_FAILED."""
    if owner_agency_id != principal.agency_id:
        raise not_found(details=details)
    if not principal.is_admin and owner_agent_id != principal.agent_id:
        raise AuthorizationFailed("This record belongs to another agent of your agency.")
