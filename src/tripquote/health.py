"""``GET /health/live`` (the process answers) and ``GET /health/ready`` (the database answers)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from tripquote.errors import ServiceNotReady
from tripquote.http import json_response
from tripquote.openapi import ERROR_RESPONSES, HealthOut

router = APIRouter(prefix="/health", tags=["health"])

_READY_TIMEOUT_SECONDS = 2.0


@router.get("/live", responses={200: {"model": HealthOut}})
async def live() -> Response:
    """200 while the process serves requests."""
    return json_response({"status": "live"})


@router.get("/ready", responses={200: {"model": HealthOut}, 503: ERROR_RESPONSES[503]})
async def ready(request: Request) -> Response:
    """200 when a ``SELECT 1`` answers within 2 s; else 503 SERVICE_NOT_READY."""
    engine = request.app.state.engine
    try:
        async with asyncio.timeout(_READY_TIMEOUT_SECONDS):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise ServiceNotReady(details={"database": "unreachable"}) from exc
    return json_response({"status": "ready", "database": "ok"})
