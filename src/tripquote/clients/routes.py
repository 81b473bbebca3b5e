"""``POST /api/agents/clients``, ``GET /api/agents/clients``, ``GET /api/agents/clients/{id}``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from tripquote.agents.access import check_access
from tripquote.agents.auth import principal_of
from tripquote.clients import repository
from tripquote.clients.schemas import ClientIn
from tripquote.deps import ClientBody, CurrentAgent, IdempotencyKey, Runner, WritingAgent
from tripquote.errors import (
    AgentNotFound,
    AuthenticationFailed,
    AuthorizationFailed,
    ClientNotFound,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    QuoteValidationFailed,
    RateLimitExceeded,
    SaveOutcomeUnknown,
)
from tripquote.http import json_response
from tripquote.idempotency import Record, StoredResponse, created, idempotent
from tripquote.openapi import (
    BODY,
    DATABASE,
    LOCATION,
    REPLAYED,
    ClientEnvelope,
    ClientListEnvelope,
    responses,
)
from tripquote.pagination import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    LIMIT_BOUNDS,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from tripquote.quotes.serialize import fmt_instant
from tripquote.routing import TrackedRoute, operation
from tripquote.validation import field_errors, path_id

router = APIRouter(prefix="/api/agents/clients", tags=["clients"], route_class=TrackedRoute)

_AUTH = (AuthenticationFailed, AgentNotFound)


def client_to_api(row: Any) -> dict[str, Any]:
    """The API form of a client row."""
    return {
        "id": row["id"],
        "agentId": row["agent_id"],
        "name": row["name"],
        "email": row["email"],
        "phone": row["phone"],
        "createdAt": fmt_instant(row["created_at"]),  # like every instant of the API
    }


@router.post(
    "",
    status_code=201,
    openapi_extra=operation("client.create"),
    responses=responses(
        ClientEnvelope,
        201,
        headers={**LOCATION, **REPLAYED},
        errors=(
            *_AUTH,
            *BODY,
            RateLimitExceeded,
            IdempotencyKeyReused,
            IdempotencyKeyInUse,
            *DATABASE,
            SaveOutcomeUnknown,  # its COMMIT may go unanswered
        ),
    ),
)
async def create_client(
    request: Request,
    caller: WritingAgent,
    body: ClientBody,
    runner: Runner,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Create a client owned by the calling agent; 201 ``{success, clientId, client}``.
    Honours ``Idempotency-Key``."""

    async def run(record: Record | None) -> StoredResponse:
        try:
            client_in = ClientIn.model_validate(body)
        except ValidationError as exc:
            raise QuoteValidationFailed(
                "The client is invalid.", details={"errors": field_errors(exc)}
            ) from None

        async def work(conn: AsyncConnection) -> StoredResponse:
            principal = await principal_of(conn, caller)
            row = await repository.insert_client(
                conn,
                principal=principal,
                name=client_in.name,
                email=client_in.email,
                phone=client_in.phone,
                now=datetime.now(UTC),
            )
            answer = {"success": True, "clientId": row["id"], "client": client_to_api(row)}
            return await created(conn, record, answer, location=f"{router.prefix}/{row['id']}")

        return await runner.run(work)

    return await idempotent(request, key=idempotency_key, caller=caller, body=body, run=run)


@router.get(
    "",
    openapi_extra=operation("client.list"),
    responses=responses(ClientListEnvelope, errors=(*_AUTH, QuoteValidationFailed, *DATABASE)),
)
async def list_clients(
    caller: CurrentAgent,
    runner: Runner,
    limit: int = Query(DEFAULT_LIMIT, json_schema_extra=LIMIT_BOUNDS),
    cursor: str | None = Query(None, json_schema_extra={"pattern": CURSOR_PATTERN}),
) -> Response:
    """The caller's clients (an admin: the agency's); ``{success, clients, nextCursor}``."""
    check_limit(limit)
    after = decode_cursor(cursor) if cursor else None

    async def work(conn: AsyncConnection) -> list[Any]:
        principal = await principal_of(conn, caller)
        return await repository.list_clients(
            conn, principal=principal, after=after, limit=limit + 1
        )

    rows = await runner.run(work, write=False)
    page = [row._mapping for row in rows[:limit]]
    next_cursor = (
        encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None
    )
    return json_response(
        {
            "success": True,
            "clients": [client_to_api(r) for r in page],
            "nextCursor": next_cursor,
        }
    )


@router.get(
    "/{client_id}",
    openapi_extra=operation("client.read"),
    responses=responses(
        ClientEnvelope, errors=(*_AUTH, ClientNotFound, AuthorizationFailed, *DATABASE)
    ),
)
async def get_client(caller: CurrentAgent, client_id: str, runner: Runner) -> Response:
    """One client; ``{success, clientId, client}``."""
    checked_id = path_id(client_id, ClientNotFound)

    async def work(conn: AsyncConnection) -> Any:
        principal = await principal_of(conn, caller)
        row = await repository.get_client(conn, checked_id)
        if row is None:
            raise ClientNotFound(details={"clientId": checked_id})
        check_access(
            principal,
            owner_agent_id=row.agent_id,
            owner_agency_id=row.agency_id,
            not_found=ClientNotFound,
            details={"clientId": checked_id},
        )
        return row._mapping

    row = await runner.run(work, write=False)
    return json_response({"success": True, "clientId": row["id"], "client": client_to_api(row)})
