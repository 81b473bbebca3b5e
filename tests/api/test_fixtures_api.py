"""Every shared fixture through HTTP on both databases: exact pricing, exact error code and path,
and a database left unchanged by every refused request."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import World, load_fixture

GOOD = load_fixture("quotes.json")
BAD = load_fixture("bad-requests.json")
STATUS_OF = {
    "QUOTE_VALIDATION_FAILED": 400,
    "PRICING_VALIDATION_FAILED": 400,
    "CURRENCY_INVALID": 400,
    "ITEMS_INCONSISTENT": 400,
}


def _with_client(request: dict[str, Any], client_id: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(request).replace("$CLIENT_ID", client_id))
    return body


@pytest.mark.parametrize("case", GOOD, ids=[c["name"] for c in GOOD])
async def test_good_quote_saves_with_exact_pricing(world: World, case: dict[str, Any]) -> None:
    actor = await world.actor()
    response = await world.client.post(
        "/api/agents/quotes",
        json=_with_client(case["request"], actor.client_id),
        headers=actor.headers,
    )
    assert response.status_code == case["expect"]["status"], response.text
    body = response.json()
    assert body["success"] is True
    assert body["version"] == 1
    assert response.headers["etag"] == '"1"'
    quote = body["quote"]
    expected = case["expect"]["pricing"]
    assert [item["lineTotal"] for item in quote["items"]] == expected["lineTotals"]
    assert quote["pricing"] == {
        k: expected[k] for k in ("subtotal", "markupAmount", "discount", "total")
    }
    assert quote["status"] == "DRAFT"

    # What was stored reads back identically.
    read = await world.client.get(f"/api/agents/quotes/{body['quoteId']}", headers=actor.headers)
    assert read.status_code == 200
    assert read.json()["quote"] == quote
    assert await world.count("quote_revisions", "quote_id = :id", id=body["quoteId"]) == 1
    assert await world.count("quote_items", "quote_id = :id", id=body["quoteId"]) == len(
        expected["lineTotals"]
    )


@pytest.mark.parametrize("case", BAD, ids=[c["name"] for c in BAD])
async def test_bad_request_refused_with_code_and_path(world: World, case: dict[str, Any]) -> None:
    actor = await world.actor()
    before = await world.table_counts()
    response = await world.client.post(
        "/api/agents/quotes",
        json=_with_client(case["request"], actor.client_id),
        headers=actor.headers,
    )
    code = case["expect"]["errorCode"]
    assert response.status_code == STATUS_OF[code], response.text
    body = response.json()
    assert body["success"] is False
    assert body["errorCode"] == code
    paths = [error["path"] for error in body["details"]["errors"]]
    assert case["expect"]["path"] in paths
    assert body["correlationId"] == response.headers["x-correlation-id"]
    assert await world.table_counts() == before


@pytest.mark.parametrize("case", BAD, ids=[c["name"] for c in BAD])
async def test_bad_patch_refused_and_quote_unchanged(world: World, case: dict[str, Any]) -> None:
    """The same faults sent as a PATCH of a valid quote leave it exactly as it was."""
    actor = await world.actor()
    good = _with_client(GOOD[1]["request"], actor.client_id)
    created = await world.client.post("/api/agents/quotes", json=good, headers=actor.headers)
    assert created.status_code == 201
    quote_id = created.json()["quoteId"]
    before = await world.snapshot(quote_id)
    patch = {**_with_client(case["request"], actor.client_id), "version": 1}
    path = case["expect"]["path"]
    if path not in patch and "." not in path and "[" not in path:
        patch[path] = None  # a PATCH omitting a field keeps it; null is how it is cleared
    response = await world.client.patch(
        f"/api/agents/quotes/{quote_id}", json=patch, headers=actor.headers
    )
    code = case["expect"]["errorCode"]
    assert response.status_code == STATUS_OF[code], response.text
    assert response.json()["errorCode"] == code
    assert case["expect"]["path"] in [e["path"] for e in response.json()["details"]["errors"]]
    assert await world.snapshot(quote_id) == before
