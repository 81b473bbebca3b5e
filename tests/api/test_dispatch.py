"""The quote routes answered by QuoteDispatch and the ones it leaves to FastAPI: same
endpoints, same envelopes, whichever layer routes the request."""

from __future__ import annotations

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, quote_body
from tripquote.quotes import routes
from tripquote.quotes.dispatch import match

Q = "/api/agents/quotes"


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "args"),
    [
        ("POST", Q, routes.create_quote, ()),
        ("GET", f"{Q}/abc", routes.read_quote, ("abc",)),
        ("PATCH", f"{Q}/abc", routes.update_quote, ("abc",)),
        ("DELETE", f"{Q}/abc", routes.delete_quote, ("abc",)),
        ("POST", f"{Q}/abc/send", routes.send_quote, ("abc",)),
        ("POST", f"{Q}/abc/accept", routes.accept_quote, ("abc",)),
        ("POST", f"{Q}/abc/reject", routes.reject_quote, ("abc",)),
        ("GET", f"{Q}/abc/revisions", routes.list_revisions, ("abc",)),
    ],
)
def test_dispatched_routes(method: str, path: str, endpoint: object, args: tuple[str]) -> None:
    assert match(method, path) == (endpoint, args)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", Q),  # the list: query parameters, FastAPI's
        ("PUT", Q),
        ("POST", f"{Q}/"),
        ("PATCH", f"{Q}/"),
        ("POST", f"{Q}/abc"),
        ("HEAD", f"{Q}/abc"),
        ("GET", f"{Q}/abc/revisions/3"),  # one revision: its version is validated by FastAPI
        ("POST", f"{Q}/abc/archive"),
        ("GET", f"{Q}/abc/send"),
        ("GET", f"{Q}//revisions"),
        ("POST", f"{Q}x"),
        ("GET", "/api/agents/clients"),
    ],
)
def test_routes_left_to_fastapi(method: str, path: str) -> None:
    assert match(method, path) is None


async def test_near_misses_get_the_framework_envelopes(world: World) -> None:
    actor = await world.actor()
    created = await world.client.post(
        Q, json=quote_body("iceland-ring-road-eur", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201
    quote_id = created.json()["quoteId"]
    before = await world.snapshot(quote_id)
    client, headers = world.client, actor.headers
    assert_envelope(await client.post(f"{Q}/", json={}, headers=headers), "NOT_FOUND", 404)
    assert_envelope(await client.post(f"{Q}/{quote_id}/archive", headers=headers), "NOT_FOUND", 404)
    assert_envelope(
        await client.post(f"{Q}/{quote_id}", json={}, headers=headers), "METHOD_NOT_ALLOWED", 405
    )
    assert_envelope(
        await client.get(f"{Q}/{quote_id}/revisions/0", headers=headers),
        "QUOTE_VALIDATION_FAILED",
        400,
    )
    assert await world.snapshot(quote_id) == before
