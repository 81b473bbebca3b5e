"""The bare peer: a minimal FastAPI + asyncpg service doing the same save as tripquote.

No validation, pricing, auth, logging or metrics: it parses the JSON, runs the bare save
transaction (``bench/bare.py``) and answers. It shows what the framework + driver cost on
this machine, so tripquote's own overhead (validation, pricing, auth, observability) can be
read as the ratio tripquote / peer.

Run by the bench as ``uvicorn bench.peer:create_app --factory --workers N`` with
``BENCH_PEER_DSN`` (asyncpg DSN) and ``BENCH_PEER_POOL`` (connections per worker, default
15 = tripquote's default pool of 15, no overflow).

Routes: ``GET /ping`` (trivial, for the generator's ceiling), ``POST /quotes``,
``PATCH /quotes/{id}`` (body carries ``version``; stale → 409 QUOTE_CONFLICT_VERSION),
``GET /quotes/{id}``. The agent and agency come from ``X-Agent-Id`` / ``X-Agency-Id``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
from fastapi import FastAPI, Request, Response

from bench import bare

_PING = b'{"ok":true}'
_CONFLICT = orjson.dumps({"success": False, "errorCode": "QUOTE_CONFLICT_VERSION"})
_NOT_FOUND = orjson.dumps({"success": False, "errorCode": "QUOTE_NOT_FOUND"})


def _json(payload: object, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def create_app() -> FastAPI:
    """The peer app; its pool is opened in the lifespan, one per worker process."""
    dsn = os.environ["BENCH_PEER_DSN"]
    pool_size = int(os.environ.get("BENCH_PEER_POOL", "15"))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/ping")
    async def ping() -> Response:
        return Response(_PING, media_type="application/json")

    @app.post("/quotes")
    async def create_quote(request: Request) -> Response:
        body = orjson.loads(await request.body())
        quote_id = str(uuid.uuid4())
        agent_id = request.headers.get("x-agent-id", "peer-agent")
        async with request.app.state.pool.acquire() as conn:
            await bare.create(
                conn,
                quote_id=quote_id,
                agency_id=request.headers.get("x-agency-id", "peer-agency"),
                agent_id=agent_id,
                client_id=body["clientId"],
                args=bare.args_from_body(body),
            )
        return _json({"success": True, "quoteId": quote_id, "version": 1}, 201)

    @app.patch("/quotes/{quote_id}")
    async def update_quote(quote_id: str, request: Request) -> Response:
        body = orjson.loads(await request.body())
        async with request.app.state.pool.acquire() as conn:
            version = await bare.update(
                conn,
                quote_id=quote_id,
                expected_version=int(body["version"]),
                actor_id=request.headers.get("x-agent-id", "peer-agent"),
                args=bare.args_from_body(body),
            )
        if version is None:
            return Response(_CONFLICT, status_code=409, media_type="application/json")
        return _json({"success": True, "quoteId": quote_id, "version": version})

    @app.get("/quotes/{quote_id}")
    async def read_quote(quote_id: str, request: Request) -> Response:
        async with request.app.state.pool.acquire() as conn:
            row = await conn.fetchrow("SELECT version, notes FROM quotes WHERE id = $1", quote_id)
        if row is None:
            return Response(_NOT_FOUND, status_code=404, media_type="application/json")
        return _json(
            {
                "success": True,
                "quoteId": quote_id,
                "version": row["version"],
                "quote": {"notes": row["notes"]},
            }
        )

    return app
