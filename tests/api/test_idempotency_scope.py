"""An Idempotency-Key names one request: the same key on another URL (another quote, another
route) is never answered with the first request's stored response. Today that second use is
refused with 422 IDEMPOTENCY_KEY_REUSED and writes nothing; the key's first answer still
replays on its own URL."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, quote_body

URL = "/api/agents/quotes"


async def _quote(world: World, actor: Actor, *, sent: bool = False) -> str:
    created = await world.client.post(
        URL, json=quote_body("edinburgh-weekend-gbp", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201, created.text
    quote_id = str(created.json()["quoteId"])
    if sent:
        response = await world.client.post(
            f"{URL}/{quote_id}/send", json={"version": 1}, headers=actor.headers
        )
        assert response.status_code == 200, response.text
    return quote_id


async def _transition(
    world: World, actor: Actor, quote_id: str, route: str, version: int, key: str
) -> Any:
    headers = {**actor.headers, "Idempotency-Key": key}
    if route == "delete":
        return await world.client.request(
            "DELETE", f"{URL}/{quote_id}", json={"version": version}, headers=headers
        )
    return await world.client.post(
        f"{URL}/{quote_id}/{route}", json={"version": version}, headers=headers
    )


def _refused(response: Any) -> None:
    """422 IDEMPOTENCY_KEY_REUSED, never a replay of another request's answer."""
    assert "idempotent-replayed" not in response.headers
    body = assert_envelope(response, "IDEMPOTENCY_KEY_REUSED", 422)
    assert body["retryable"] is False


# (route, status the quote must be in for it)
ROUTES = [("send", False), ("accept", True), ("reject", True), ("delete", False)]
RESULT = {"send": "SENT", "accept": "ACCEPTED", "reject": "REJECTED", "delete": "CANCELLED"}


@pytest.mark.parametrize(("route", "sent"), ROUTES, ids=[r for r, _ in ROUTES])
async def test_one_key_on_two_quotes_never_replays_the_first(
    world: World, route: str, sent: bool
) -> None:
    actor = await world.actor()
    first, second = await _quote(world, actor, sent=sent), await _quote(world, actor, sent=sent)
    version = 2 if sent else 1
    key = f"{route}-scope"
    answered = await _transition(world, actor, first, route, version, key)
    assert answered.status_code == 200, answered.text
    assert answered.json()["quote"]["status"] == RESULT[route]
    before = await world.snapshot(second)
    counts = await world.table_counts()

    # Same key, same body, another quote.
    other = await _transition(world, actor, second, route, version, key)
    _refused(other)
    assert first not in other.text
    assert await world.snapshot(second) == before
    assert await world.table_counts() == counts

    # The key still replays its own request, and the second quote takes a fresh key.
    replay = await _transition(world, actor, first, route, version, key)
    assert (replay.status_code, replay.headers["idempotent-replayed"]) == (200, "true")
    assert replay.content == answered.content
    fresh = await _transition(world, actor, second, route, version, f"{key}-2")
    assert fresh.status_code == 200, fresh.text
    assert (fresh.json()["quoteId"], fresh.json()["quote"]["status"]) == (second, RESULT[route])


async def test_a_create_key_is_not_replayed_on_a_transition(world: World) -> None:
    actor = await world.actor()
    key = "create-then-send"
    created = await world.client.post(
        URL,
        json=quote_body("edinburgh-weekend-gbp", actor.client_id),
        headers={**actor.headers, "Idempotency-Key": key},
    )
    assert created.status_code == 201, created.text
    quote_id = created.json()["quoteId"]
    before = await world.snapshot(quote_id)
    counts = await world.table_counts()
    sent = await _transition(world, actor, quote_id, "send", 1, key)
    _refused(sent)
    assert await world.snapshot(quote_id) == before
    assert await world.table_counts() == counts


async def test_a_transition_key_is_not_replayed_on_a_create(world: World) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    key = "send-then-create"
    sent = await _transition(world, actor, quote_id, "send", 1, key)
    assert sent.status_code == 200, sent.text
    counts = await world.table_counts()
    created = await world.client.post(
        URL,
        json=quote_body("edinburgh-weekend-gbp", actor.client_id),
        headers={**actor.headers, "Idempotency-Key": key},
    )
    _refused(created)
    assert await world.table_counts() == counts


@pytest.mark.parametrize(
    ("first_route", "then_route"),
    [("send", "delete"), ("accept", "reject"), ("reject", "accept")],
)
async def test_one_key_on_two_routes_of_one_quote(
    world: World, first_route: str, then_route: str
) -> None:
    actor = await world.actor()
    sent = first_route != "send"
    version = 2 if sent else 1
    quote_id = await _quote(world, actor, sent=sent)
    key = f"{first_route}-{then_route}"
    first = await _transition(world, actor, quote_id, first_route, version, key)
    assert first.status_code == 200, first.text
    before = await world.snapshot(quote_id)
    # The stale version would be a 409 if evaluated; a replay would be a 200: both wrong.
    then = await _transition(world, actor, quote_id, then_route, version, key)
    _refused(then)
    assert await world.snapshot(quote_id) == before


@pytest.mark.parametrize("route", ["create", "send", "client", "webhook"])
async def test_two_keys_on_two_lines_are_refused_never_one_chosen(world: World, route: str) -> None:
    # Two Idempotency-Key lines are one value of two keys (RFC 9110 §5.3): refused, where the
    # first line's key was taken and the second ignored.
    actor = await world.actor(role="admin")
    quote_id = await _quote(world, actor)
    before = await world.table_counts()
    requests = {
        "create": ("POST", URL, quote_body("edinburgh-weekend-gbp", actor.client_id)),
        "send": ("POST", f"{URL}/{quote_id}/send", {"version": 1}),
        "client": ("POST", "/api/agents/clients", {"name": "Aiko Tanaka"}),
        "webhook": (
            "POST",
            "/api/agents/webhooks",
            {"url": "http://127.0.0.1:9/hook", "eventTypes": ["quote.sent"]},
        ),
    }
    method, url, body = requests[route]
    headers = [*actor.headers.items(), ("Idempotency-Key", "key-1"), ("Idempotency-Key", "key-2")]
    response = await world.client.request(method, url, json=body, headers=headers)
    refused = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert [e["path"] for e in refused["details"]["errors"]] == ["Idempotency-Key"]
    assert await world.table_counts() == before
