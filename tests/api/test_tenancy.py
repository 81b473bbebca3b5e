"""Agencies are walled off from each other, admins included: another agency's quote is
QUOTE_NOT_FOUND on every route, another agency's client is CLIENT_NOT_FOUND, and nothing is
written. Same-agency admins are the control: they do see and change the quote."""

from __future__ import annotations

from typing import Any

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, quote_body

URL = "/api/agents/quotes"


async def _create(world: World, actor: Actor, client_id: str | None = None) -> dict[str, Any]:
    body = quote_body("edinburgh-weekend-gbp", client_id or actor.client_id)
    response = await world.client.post(URL, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _send(world: World, actor: Actor, quote_id: str) -> None:
    response = await world.client.post(
        f"{URL}/{quote_id}/send", json={"version": 1}, headers=actor.headers
    )
    assert response.status_code == 200, response.text


def _requests(quote_id: str, version: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route that names a quote: (method, path, JSON body)."""
    return [
        ("GET", f"{URL}/{quote_id}", None),
        ("PATCH", f"{URL}/{quote_id}", {"version": version, "travelers": 3}),
        ("DELETE", f"{URL}/{quote_id}", {"version": version}),
        ("POST", f"{URL}/{quote_id}/send", {"version": version}),
        ("POST", f"{URL}/{quote_id}/accept", {"version": version}),
        ("POST", f"{URL}/{quote_id}/reject", {"version": version}),
        ("GET", f"{URL}/{quote_id}/revisions", None),
        ("GET", f"{URL}/{quote_id}/revisions/1", None),
    ]


async def test_another_agencys_admin_finds_no_draft_quote(world: World) -> None:
    owner = await world.actor()
    stranger = await world.actor(agency_id=await world.agency(), role="admin")
    quote_id = (await _create(world, owner))["quoteId"]
    before = await world.snapshot(quote_id)
    counts = await world.table_counts()
    for method, path, body in _requests(quote_id, 1):
        response = await world.client.request(method, path, json=body, headers=stranger.headers)
        error = assert_envelope(response, "QUOTE_NOT_FOUND", 404)
        assert error["retryable"] is False, (method, path)
        assert owner.client_id not in response.text
    listed = await world.client.get(URL, headers=stranger.headers)
    assert listed.status_code == 200
    assert quote_id not in {q["id"] for q in listed.json()["quotes"]}
    assert await world.snapshot(quote_id) == before
    assert await world.table_counts() == counts


async def test_another_agencys_admin_finds_no_sent_quote(world: World) -> None:
    # On a SENT quote accept/reject would succeed if the wall leaked (a DRAFT answers 409).
    owner = await world.actor()
    stranger = await world.actor(agency_id=await world.agency(), role="admin")
    quote_id = (await _create(world, owner))["quoteId"]
    await _send(world, owner, quote_id)
    before = await world.snapshot(quote_id)
    for method, path, body in _requests(quote_id, 2):
        response = await world.client.request(method, path, json=body, headers=stranger.headers)
        assert_envelope(response, "QUOTE_NOT_FOUND", 404)
    assert await world.snapshot(quote_id) == before


async def test_an_admin_of_the_same_agency_reaches_the_quote(world: World) -> None:
    # The control: the wall is between agencies, not between an admin and its agents.
    owner = await world.actor()
    admin = await world.actor(agency_id=owner.agency_id, role="admin")
    quote_id = (await _create(world, owner))["quoteId"]
    read = await world.client.get(f"{URL}/{quote_id}", headers=admin.headers)
    assert read.status_code == 200, read.text
    patched = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 1, "travelers": 3}, headers=admin.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["quote"]["lastModifiedBy"] == admin.agent_id


async def test_an_admin_cannot_create_a_quote_for_another_agencys_client(world: World) -> None:
    foreign = await world.actor()
    admin = await world.actor(agency_id=await world.agency(), role="admin")
    before = await world.table_counts()
    response = await world.client.post(
        URL, json=quote_body("edinburgh-weekend-gbp", foreign.client_id), headers=admin.headers
    )
    error = assert_envelope(response, "CLIENT_NOT_FOUND", 404)
    assert error["retryable"] is False
    assert await world.table_counts() == before
    assert await world.count("quotes", "agent_id = :a", a=admin.agent_id) == 0
    assert await world.count("quotes", "client_id = :c", c=foreign.client_id) == 0


async def test_an_admin_may_create_for_a_client_of_its_own_agency(world: World) -> None:
    # The control of the test above.
    colleague = await world.actor()
    admin = await world.actor(agency_id=colleague.agency_id, role="admin")
    created = await _create(world, admin, colleague.client_id)
    assert created["quote"]["clientId"] == colleague.client_id


async def test_an_admin_cannot_move_a_quote_to_another_agencys_client(world: World) -> None:
    foreign = await world.actor()
    agent = await world.actor()
    admin = await world.actor(agency_id=agent.agency_id, role="admin")
    for actor in (admin, agent):  # the admin's own quote and its agent's quote
        quote_id = (await _create(world, actor))["quoteId"]
        before = await world.snapshot(quote_id)
        counts = await world.table_counts()
        response = await world.client.patch(
            f"{URL}/{quote_id}",
            json={"version": 1, "clientId": foreign.client_id},
            headers=admin.headers,
        )
        assert_envelope(response, "CLIENT_NOT_FOUND", 404)
        assert await world.snapshot(quote_id) == before
        assert await world.table_counts() == counts


async def test_an_admin_cannot_move_a_whole_quote_to_another_agencys_client(
    world: World,
) -> None:
    # The full-form PATCH (what an editor's Save sends) takes its own one-statement path.
    foreign = await world.actor()
    admin = await world.actor(agency_id=await world.agency(), role="admin")
    created = await _create(world, admin)
    quote_id = created["quoteId"]
    before = await world.snapshot(quote_id)
    body = {**quote_body("edinburgh-weekend-gbp", foreign.client_id), "version": 1}
    response = await world.client.patch(f"{URL}/{quote_id}", json=body, headers=admin.headers)
    assert_envelope(response, "CLIENT_NOT_FOUND", 404)
    assert await world.snapshot(quote_id) == before
