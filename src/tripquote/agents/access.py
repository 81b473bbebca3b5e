"""Who may see and change what: own records for agents, the whole agency for admins."""

from __future__ import annotations

from typing import Any

from tripquote.agents.repository import Principal
from tripquote.errors import AuthorizationFailed, TripquoteError


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
