"""Optimistic locking through HTTP: versions, ETag / If-Match, conflicts, concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Actor, World, quote_body


async def _create(
    world: World, actor: Actor, name: str = "edinburgh-weekend-gbp"
) -> dict[str, Any]:
    response = await world.client.post(
        "/api/agents/quotes", json=quote_body(name, actor.client_id), headers=actor.headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_patch_increments_version_and_writes_revision(world: World) -> None:
    actor = await world.actor()
    created = await _create(world, actor)
    quote_id = created["quoteId"]
    response = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json={"version": 1, "tripName": "Edinburgh, two nights", "notes": None},
        headers=actor.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["version"] == 2
    assert response.headers["etag"] == '"2"'
    assert body["quote"]["tripName"] == "Edinburgh, two nights"
    assert body["quote"]["notes"] is None
    assert body["quote"]["destination"] == created["quote"]["destination"]  # untouched
    assert body["quote"]["lastModifiedBy"] == actor.agent_id
    assert body["savedAt"] == body["quote"]["lastModifiedAt"]
    assert await world.count("quote_revisions", "quote_id = :id", id=quote_id) == 2


async def test_a_version_written_as_a_whole_decimal_is_that_version(world: World) -> None:
    # 2.0 is the integer 2, as JSON Schema and every other integer field of the body count it.
    actor = await world.actor()
    quote_id = (await _create(world, actor))["quoteId"]
    headers = {**actor.headers, "Content-Type": "application/json"}
    edited = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        content=b'{"version": 1.0, "travelers": 3}',
        headers={**headers, "If-Match": '"1"'},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2
    sent = await world.client.post(
        f"/api/agents/quotes/{quote_id}/send", content=b'{"version": 2E0}', headers=headers
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["quote"]["status"] == "SENT"
    fraction = await world.client.post(
        f"/api/agents/quotes/{quote_id}/accept", content=b'{"version": 3.5}', headers=headers
    )
    assert fraction.status_code == 400, fraction.text
    assert [e["path"] for e in fraction.json()["details"]["errors"]] == ["version"]
    assert await world.count("quote_revisions", "quote_id = :id", id=quote_id) == 3


async def test_if_match_header_carries_the_version(world: World) -> None:
    actor = await world.actor()
    quote_id = (await _create(world, actor))["quoteId"]
    ok = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json={"travelers": 2},
        headers={**actor.headers, "If-Match": '"1"'},
    )
    assert ok.status_code == 200, ok.text
    stale = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json={"travelers": 3},
        headers={**actor.headers, "If-Match": '"1"'},
    )
    assert stale.status_code == 412  # RFC 9110 §13.1.1
    assert stale.json()["errorCode"] == "QUOTE_CONFLICT_VERSION"


async def test_stale_body_version_gets_409_with_both_versions(world: World) -> None:
    actor = await world.actor()
    quote_id = (await _create(world, actor))["quoteId"]
    first = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json={"version": 1, "destination": "Edinburgh, Scotland", "travelers": 2},
        headers=actor.headers,
    )
    assert first.status_code == 200
    before = await world.snapshot(quote_id)
    stale = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json={"version": 1, "tripName": "Lost update?"},
        headers=actor.headers,
    )
    assert stale.status_code == 409
    body = stale.json()
    assert body["errorCode"] == "QUOTE_CONFLICT_VERSION"
    assert body["retryable"] is True
    details = body["details"]
    assert details["quoteId"] == quote_id
    assert details["expectedVersion"] == 1
    assert details["actualVersion"] == 2
    assert details["lastModifiedBy"] == actor.agent_id
    assert details["lastModifiedAt"] == first.json()["quote"]["lastModifiedAt"]
    assert details["changedFields"] == ["destination", "travelers"]
    assert await world.snapshot(quote_id) == before


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"tripName": "no version"}, {}),
        ({"version": 1, "tripName": "disagree"}, {"If-Match": '"2"'}),
        ({"version": "1", "tripName": "string version"}, {}),
        ({"tripName": "any version"}, {"If-Match": "*"}),
        ({"tripName": "two versions"}, {"If-Match": '"1", "2"'}),
    ],
    ids=["missing", "body-and-if-match-differ", "string", "star-names-none", "two-versions"],
)
async def test_version_is_mandatory_and_unambiguous(
    world: World, body: dict[str, Any], headers: dict[str, str]
) -> None:
    actor = await world.actor()
    quote_id = (await _create(world, actor))["quoteId"]
    before = await world.snapshot(quote_id)
    response = await world.client.patch(
        f"/api/agents/quotes/{quote_id}", json=body, headers={**actor.headers, **headers}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errorCode"] == "QUOTE_VALIDATION_FAILED"
    paths = [e["path"] for e in response.json()["details"]["errors"]]
    assert "version" in paths or "If-Match" in paths
    assert await world.snapshot(quote_id) == before


async def test_200_concurrent_patches_from_one_version_have_one_winner(world: World) -> None:
    actor = await world.actor()
    quote_id = (await _create(world, actor))["quoteId"]

    async def patch(n: int) -> int:
        response = await world.client.patch(
            f"/api/agents/quotes/{quote_id}",
            json={"version": 1, "notes": f"writer {n}"},
            headers=actor.headers,
        )
        if response.status_code == 409:
            assert response.json()["errorCode"] == "QUOTE_CONFLICT_VERSION"
        return response.status_code

    statuses = await asyncio.gather(*(patch(n) for n in range(200)))
    assert statuses.count(200) == 1
    assert statuses.count(409) == 199
    read = await world.client.get(f"/api/agents/quotes/{quote_id}", headers=actor.headers)
    assert read.json()["version"] == 2
    assert await world.count("quote_revisions", "quote_id = :id", id=quote_id) == 2


async def test_50_read_modify_write_clients_lose_no_update(world: World) -> None:
    actor = await world.actor()
    quote_id = (await _create(world, actor))["quoteId"]
    url = f"/api/agents/quotes/{quote_id}"

    async def add_marker(n: int) -> int:
        attempts = 0
        while True:
            attempts += 1
            current = (await world.client.get(url, headers=actor.headers)).json()
            notes = current["quote"]["notes"] or ""
            response = await world.client.patch(
                url,
                json={"version": current["version"], "notes": f"{notes}[m{n}]"},
                headers=actor.headers,
            )
            if response.status_code == 200:
                return attempts
            assert response.status_code == 409, response.text
            assert attempts < 500

    await asyncio.gather(*(add_marker(n) for n in range(50)))
    final = (await world.client.get(url, headers=actor.headers)).json()
    for n in range(50):
        assert f"[m{n}]" in final["quote"]["notes"]
    assert final["version"] == 51
    assert await world.count("quote_revisions", "quote_id = :id", id=quote_id) == 51


async def test_if_match_on_two_lines_is_the_list_of_both(world: World) -> None:
    # RFC 9110 §5.3: a field sent on several lines is its lines joined by commas. The first
    # line alone was taken: If-Match "1" then "2" saved version 1.
    actor = await world.actor()
    quote_id = (await _create(world, actor))["quoteId"]
    before = await world.snapshot(quote_id)
    response = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json={"tripName": "two lines"},
        headers=[*actor.headers.items(), ("If-Match", '"1"'), ("If-Match", '"2"')],
    )
    assert response.status_code == 400, response.text
    assert response.json()["errorCode"] == "QUOTE_VALIDATION_FAILED"
    assert [e["path"] for e in response.json()["details"]["errors"]] == ["If-Match"]
    assert await world.snapshot(quote_id) == before
