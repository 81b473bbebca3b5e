"""A version conflict is the client's to resolve: the server answers it after ONE attempt,
never runs the save again (BRIEF "A version conflict is never retried by the server").

Seen from outside: ``tripquote_db_retries_total`` does not move, the conflict and its
rollback are counted once, and the database saw one attempt at the quote's UPDATE (counted by
a statement-level trigger, which fires even when no row matches, through a sequence, which a
rollback does not undo)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import text

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, quote_body
from tests.servers import metric_value

URL = "/api/agents/quotes"


async def _metrics(world: World) -> dict[str, float]:
    response = await world.client.get("/metrics")
    assert response.status_code == 200
    body = response.text
    return {
        "retries": metric_value(body, "tripquote_db_retries_total"),
        "conflicts": metric_value(body, "tripquote_version_conflicts_total"),
        "rollbacks": metric_value(
            body, "tripquote_db_rollbacks_total", {"reason": "QUOTE_CONFLICT_VERSION"}
        ),
        "aborted": metric_value(
            body, "tripquote_db_rollbacks_total", {"reason": "DATABASE_TRANSACTION_ABORTED"}
        ),
    }


@asynccontextmanager
async def _update_attempts(world: World) -> AsyncIterator[Callable[[], Any]]:
    """Yields an async function: how many UPDATE statements on ``quotes`` ran since entry."""
    name = f"pin_attempts_{uuid.uuid4().hex[:8]}"
    async with world.engine.begin() as conn:
        await conn.execute(text(f"CREATE SEQUENCE {name}"))
        await conn.execute(
            text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"PERFORM nextval('{name}'); RETURN NULL; END $$"
            )
        )
        await conn.execute(
            text(
                f"CREATE TRIGGER {name} BEFORE UPDATE ON quotes "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {name}()"
            )
        )

    async def count_pg() -> int:
        async with world.engine.connect() as conn:
            row = (await conn.execute(text(f"SELECT last_value, is_called FROM {name}"))).one()
        return int(row[0]) if row[1] else 0

    try:
        yield count_pg
    finally:
        async with world.engine.begin() as conn:
            await conn.execute(text(f"DROP TRIGGER {name} ON quotes"))
            await conn.execute(text(f"DROP FUNCTION {name}()"))
            await conn.execute(text(f"DROP SEQUENCE {name}"))


async def _quote(world: World, actor: Actor) -> str:
    created = await world.client.post(
        URL, json=quote_body("edinburgh-weekend-gbp", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201, created.text
    quote_id = str(created.json()["quoteId"])
    edited = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 1, "travelers": 2}, headers=actor.headers
    )
    assert edited.status_code == 200, edited.text  # version 2: version 1 is now stale
    return quote_id


def _stale_requests(actor: Actor) -> dict[str, tuple[str, str, dict[str, Any], dict[str, str]]]:
    """name -> (method, path suffix, body, extra headers), each naming stale version 1."""
    whole = {**quote_body("edinburgh-weekend-gbp", actor.client_id), "version": 1}
    whole["tripName"] = "Edinburgh, longer"
    return {
        "patch-body": ("PATCH", "", {"version": 1, "travelers": 4}, {}),
        "patch-whole-quote": ("PATCH", "", whole, {}),
        "patch-if-match": ("PATCH", "", {"travelers": 4}, {"If-Match": '"1"'}),
        "send": ("POST", "/send", {"version": 1}, {}),
        "send-if-match": ("POST", "/send", {}, {"If-Match": '"1"'}),
        "delete": ("DELETE", "", {"version": 1}, {}),
    }


NAMES = ["patch-body", "patch-whole-quote", "patch-if-match", "send", "send-if-match", "delete"]


@pytest.mark.parametrize("name", NAMES)
async def test_a_stale_version_is_answered_after_one_attempt(world: World, name: str) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    method, suffix, body, extra = _stale_requests(actor)[name]
    url = f"{URL}/{quote_id}{suffix}"
    before = await world.snapshot(quote_id)
    counts = await world.table_counts()
    metrics = await _metrics(world)
    async with _update_attempts(world) as attempts:
        response = await world.client.request(
            method, url, json=body, headers={**actor.headers, **extra}
        )
        ran = await attempts()
        status = 412 if "If-Match" in extra else 409
        error = assert_envelope(response, "QUOTE_CONFLICT_VERSION", status)
        assert error["retryable"] is True  # for the client, after it reloads
        assert error["details"]["expectedVersion"] == 1
        assert error["details"]["actualVersion"] == 2
        after = await _metrics(world)
        assert after["retries"] == metrics["retries"], "the server retried a version conflict"
        assert after["aborted"] == metrics["aborted"]
        assert after["conflicts"] == metrics["conflicts"] + 1
        # Each attempt of the unit that fails is rolled back once: one attempt, one rollback.
        assert after["rollbacks"] == metrics["rollbacks"] + 1
        assert ran <= 1, f"{ran} attempts at the quote's UPDATE"
        assert await world.snapshot(quote_id) == before
        assert await world.table_counts() == counts

        # The control: the counter sees the UPDATE of the same request at the current version.
        current = {**body, "version": 2} if "version" in body else body
        headers = {**actor.headers, **({"If-Match": '"2"'} if extra else {})}
        saved = await world.client.request(method, url, json=current, headers=headers)
        assert saved.status_code == 200, saved.text
        assert await attempts() == ran + 1
