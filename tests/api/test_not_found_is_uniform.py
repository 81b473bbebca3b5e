"""Another agency's quote or client answers exactly as one that does not exist: same status,
code, message and details (the id asked for), on every route that names one. Both databases."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import World, quote_body


def _comparable(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    body = response.json()
    return response.status_code, {
        k: v for k, v in body.items() if k not in ("correlationId", "timestamp")
    }


def _expected(response: httpx.Response, key: str, asked: str) -> tuple[int, dict[str, Any]]:
    status, body = _comparable(response)
    return status, {**body, "details": {key: asked}}


async def test_another_agencys_records_look_missing(world: World) -> None:
    me = await world.actor()
    them = await world.actor()  # another agency
    theirs = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("kyoto-autumn-jpy", them.client_id),
        headers=them.headers,
    )
    quote_id = theirs.json()["quoteId"]
    missing = str(uuid.uuid4())
    before = await world.table_counts()

    calls: list[tuple[str, Any]] = [
        ("quoteId", lambda q: world.client.get(f"/api/agents/quotes/{q}", headers=me.headers)),
        (
            "quoteId",
            lambda q: world.client.patch(
                f"/api/agents/quotes/{q}", json={"version": 1, "notes": "x"}, headers=me.headers
            ),
        ),
        (
            "quoteId",
            lambda q: world.client.post(
                f"/api/agents/quotes/{q}/send", json={"version": 1}, headers=me.headers
            ),
        ),
        (
            "quoteId",
            lambda q: world.client.get(f"/api/agents/quotes/{q}/revisions", headers=me.headers),
        ),
        ("clientId", lambda c: world.client.get(f"/api/agents/clients/{c}", headers=me.headers)),
        (
            "clientId",
            lambda c: world.client.post(
                "/api/agents/quotes",
                json=quote_body("kyoto-autumn-jpy", c),
                headers=me.headers,
            ),
        ),
    ]
    for key, call in calls:
        existing = quote_id if key == "quoteId" else them.client_id
        answer, absent = await call(existing), await call(missing)
        assert answer.status_code == 404, answer.text
        assert _comparable(answer) == _expected(absent, key, existing), (answer.text, absent.text)
        assert _comparable(absent)[1]["details"] == {key: missing}
    assert await world.table_counts() == before


async def test_an_id_longer_than_any_is_not_found_without_echo(world: Any) -> None:
    actor = await world.actor()
    counts = await world.table_counts()
    long_id = "q" * 60_000
    for method in ("GET", "PATCH", "DELETE"):
        response = await world.client.request(
            method, f"/api/agents/quotes/{long_id}", headers=actor.headers, json={"version": 1}
        )
        assert response.status_code == 404, response.text
        assert response.json()["errorCode"] == "QUOTE_NOT_FOUND"
        assert len(response.content) < 2_000  # the id is not sent back
    response = await world.client.get(f"/api/agents/clients/{long_id}", headers=actor.headers)
    assert response.status_code == 404 and len(response.content) < 2_000
    assert await world.table_counts() == counts
