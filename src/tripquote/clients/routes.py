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
from tripquote.agents.auth import authenticate, require_principal
from tripquote.agents.repository import load_principal
from tripquote.clients import repository
from tripquote.clients.schemas import ClientIn
from tripquote.errors import ClientNotFound, QuoteValidationFailed
from tripquote.http import json_response, read_json, services
from tripquote.openapi import ClientEnvelope, ClientListEnvelope, ok
from tripquote.pagination import DEFAULT_LIMIT, check_limit, decode_cursor, encode_cursor
from tripquote.quotes.serialize import fmt_instant
from tripquote.validation import field_errors, path_id

router = APIRouter(prefix="/api/agents/clients", tags=["clients"])


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
    responses=ok(ClientEnvelope, 201),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ClientIn.model_json_schema()}},
        }
    },
)
async def create_client(request: Request) -> Response:
    """Create a client owned by the calling agent; 201 ``{success, clientId, client}``."""
    svc = services(request)
    async with svc.observer.track("client.create") as op:
        claims = authenticate(request)
        op.agent_id = claims.agent_id
        await svc.limiter.check(claims.agent_id)
        body = await read_json(request)
        try:
            client_in = ClientIn.model_validate(body)
        except ValidationError as exc:
            raise QuoteValidationFailed(
                "The client is invalid.", details={"errors": field_errors(exc)}
            ) from None

        async def work(conn: AsyncConnection) -> dict[str, Any]:
            principal = require_principal(await load_principal(conn, claims.agent_id))
            return await repository.insert_client(
                conn,
                principal=principal,
                name=client_in.name,
                email=client_in.email,
                phone=client_in.phone,
                now=datetime.now(UTC),
            )

        row = await svc.runner.run(work)
        op.http_status = 201
        return json_response(
            {"success": True, "clientId": row["id"], "client": client_to_api(row)}, status=201
        )


@router.get("", responses=ok(ClientListEnvelope))
async def list_clients(
    request: Request,
    limit: int = Query(DEFAULT_LIMIT),
    cursor: str | None = Query(None),
) -> Response:
    """The caller's clients (an admin: the agency's); ``{success, clients, nextCursor}``."""
    svc = services(request)
    async with svc.observer.track("client.list") as op:
        claims = authenticate(request)
        op.agent_id = claims.agent_id
        check_limit(limit)
        after = decode_cursor(cursor) if cursor else None

        async def work(conn: AsyncConnection) -> list[Any]:
            principal = require_principal(await load_principal(conn, claims.agent_id))
            return await repository.list_clients(
                conn, principal=principal, after=after, limit=limit + 1
            )

        rows = await svc.runner.run(work, write=False)
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


@router.get("/{client_id}", responses=ok(ClientEnvelope))
async def get_client(request: Request, client_id: str) -> Response:
    """One client; ``{success, clientId, client}``."""
    svc = services(request)
    async with svc.observer.track("client.read") as op:
        claims = authenticate(request)
        op.agent_id = claims.agent_id
        checked_id = path_id(client_id, ClientNotFound)

        async def work(conn: AsyncConnection) -> Any:
            principal = require_principal(await load_principal(conn, claims.agent_id))
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

        row = await svc.runner.run(work, write=False)
        return json_response({"success": True, "clientId": row["id"], "client": client_to_api(row)})
