"""``GET /health/live`` (the process answers) and ``GET /health/ready`` (the database answers
and its schema is migrated for this release)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from functools import cache
from typing import Any, TypeVar

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from tripquote.db import migrate
from tripquote.db.errors import sqlstate_of
from tripquote.errors import ServiceNotReady
from tripquote.http import json_response
from tripquote.openapi import HealthOut, responses

router = APIRouter(prefix="/health", tags=["health"])

_READY_TIMEOUT_SECONDS = 2.0

T = TypeVar("T")


@router.get("/live", responses=responses(HealthOut, errors=()))
async def live() -> Response:
    """200 while the process serves requests."""
    return json_response({"status": "live"})


_revisions = cache(migrate.revisions)


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve what an abandoned check ended with (else asyncio logs it as never retrieved)."""
    if not task.cancelled():
        task.exception()


async def within(seconds: float, check: Coroutine[Any, Any, T]) -> T:
    """``check``'s result, or TimeoutError after ``seconds``: a probe answers in time even when
    the database hangs. A cancelled check may need longer to give its connection back (the
    rollback waits on the same database), so it finishes in the background instead of
    holding the answer."""
    task = asyncio.create_task(check)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(_consume)
        raise TimeoutError
    return task.result()


@router.get("/ready", responses=responses(HealthOut, errors=(ServiceNotReady,)))
async def ready(request: Request) -> Response:
    """200 when the database answers within 2 s and is migrated to this release's newest
    revision (or one this release does not know: a newer schema kept after a code rollback,
    docs/rollback.md), on a primary; else 503 SERVICE_NOT_READY with ``details.database`` =
    ``unreachable``, ``standby`` (``pg_is_in_recovery()``: a node demoted by a failover, or a
    replica the URL named), ``not migrated``, ``migration pending`` (with ``revision`` and
    ``expected``), ``schema unreadable`` or ``schema check timed out`` (``alembic_version``
    locked, e.g. by a migration in progress)."""
    engine = request.app.state.probe_engine  # a connection of its own: not the busy pool's
    head, known = _revisions()
    answered = False

    async def check() -> str | None:
        nonlocal answered
        async with engine.connect() as conn:
            standby = (await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar()
            answered = True
            if standby:
                raise ServiceNotReady(
                    "The database is a standby (in recovery): it refuses writes.",
                    details={"database": "standby"},
                )
            try:
                return (  # type: ignore[no-any-return]
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                ).scalar()
            except SQLAlchemyError as exc:
                if sqlstate_of(exc) != "42P01":  # undefined_table
                    raise ServiceNotReady(
                        "The database schema cannot be read.",
                        details={"database": "schema unreadable", "expected": head},
                    ) from exc
                return None  # no alembic_version table: never migrated

    try:
        revision = await within(_READY_TIMEOUT_SECONDS, check())
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        if answered:  # e.g. alembic_version locked by a migration in progress
            raise ServiceNotReady(
                "The database answers but its schema version could not be read in time.",
                details={"database": "schema check timed out", "expected": head},
            ) from exc
        raise ServiceNotReady(details={"database": "unreachable"}) from exc
    if revision is None:
        raise ServiceNotReady(
            "The database has no schema yet: run `tripquote db upgrade`.",
            details={"database": "not migrated", "expected": head},
        )
    if revision != head and revision in known:
        raise ServiceNotReady(
            "The database schema is older than this release: run `tripquote db upgrade`.",
            details={"database": "migration pending", "revision": revision, "expected": head},
        )
    return json_response({"status": "ready", "database": "ok"})
