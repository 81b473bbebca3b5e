"""Input that only one database would refuse gets the same answer on both, before any query:
a NUL byte (PostgreSQL text cannot hold one) in a client's name, in an id taken from the URL
or in a query parameter; and a signed zero is stored and shown without its sign."""

from __future__ import annotations

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, quote_body

Q = "/api/agents/quotes"


async def test_control_characters_in_a_client_name_are_refused(world: World) -> None:
    actor = await world.actor()
    before = await world.table_counts()
    for name in ("a\u0000b", "tab\there", "mid\u0085dle"):
        response = await world.client.post(
            "/api/agents/clients", json={"name": name}, headers=actor.headers
        )
        body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
        assert [(e["path"], e["code"]) for e in body["details"]["errors"]] == [
            ("name", "invalid_character")
        ]
    assert await world.table_counts() == before


# "Trojan Source" (CVE-2021-42574): an override makes a name read in another order than typed.
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]


@pytest.mark.parametrize("control", BIDI, ids=[f"U+{ord(c):04X}" for c in BIDI])
async def test_bidirectional_overrides_are_refused_in_every_text_field(
    world: World, control: str
) -> None:
    # Before: only the signer's name on the proposal page refused them.
    actor = await world.actor()
    before = await world.table_counts()
    client = await world.client.post(
        "/api/agents/clients", json={"name": f"Aiko {control}Tanaka"}, headers=actor.headers
    )
    refused = assert_envelope(client, "QUOTE_VALIDATION_FAILED", 400)
    assert [(e["path"], e["code"]) for e in refused["details"]["errors"]] == [
        ("name", "invalid_character")
    ]
    body = quote_body("edinburgh-weekend-gbp", actor.client_id)
    body["tripName"] = f"Edinburgh {control}weekend"
    body["notes"] = f"line one\nline {control}two"
    body["items"][0]["description"] = f"{control}flight"
    quote = await world.client.post(Q, json=body, headers=actor.headers)
    refused = assert_envelope(quote, "QUOTE_VALIDATION_FAILED", 400)
    assert sorted((e["path"], e["code"]) for e in refused["details"]["errors"]) == [
        ("items[0].description", "invalid_character"),
        ("notes", "invalid_character"),
        ("tripName", "invalid_character"),
    ]
    assert await world.table_counts() == before


async def test_the_direction_marks_names_are_written_with_are_taken(world: World) -> None:
    actor = await world.actor()
    name = "\u05d3\u05e0\u05d4 \u200f(\u05d9\u05e9\u05e8\u05d0\u05dc)\u200e Cohen \u061c"
    created = await world.client.post(
        "/api/agents/clients", json={"name": name}, headers=actor.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["client"]["name"] == name


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", ""),
        ("PATCH", ""),
        ("DELETE", ""),
        ("POST", "/send"),
        ("POST", "/accept"),
        ("GET", "/revisions"),
        ("GET", "/revisions/1"),
    ],
)
async def test_a_nul_in_a_quote_id_is_not_found(world: World, method: str, suffix: str) -> None:
    actor = await world.actor()
    before = await world.table_counts()
    response = await world.client.request(
        method, f"{Q}/a%00b{suffix}", json={"version": 1}, headers=actor.headers
    )
    assert_envelope(response, "QUOTE_NOT_FOUND", 404)
    assert await world.table_counts() == before


async def test_an_upper_case_uuid_in_the_url_names_the_same_quote_and_client(world: World) -> None:
    """UUID hex digits are case-insensitive on input (RFC 9562 §4): the upper-case form of a
    quote's or a client's id reads and edits it, where it was a 404 (ids are lower-case text)."""
    actor = await world.actor()
    created = await world.client.post(
        Q, json=quote_body("iceland-ring-road-eur", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201, created.text
    quote_id = created.json()["quoteId"]
    read = await world.client.get(f"{Q}/{quote_id.upper()}", headers=actor.headers)
    assert read.status_code == 200, read.text
    assert read.json()["quoteId"] == quote_id
    edited = await world.client.patch(
        f"{Q}/{quote_id.upper()}", json={"version": 1, "travelers": 3}, headers=actor.headers
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2
    history = await world.client.get(f"{Q}/{quote_id.upper()}/revisions", headers=actor.headers)
    assert [r["version"] for r in history.json()["revisions"]] == [1, 2]
    client = await world.client.get(
        f"/api/agents/clients/{actor.client_id.upper()}", headers=actor.headers
    )
    assert client.status_code == 200, client.text
    # The body's clientId and the list's filter likewise (a 404 CLIENT_NOT_FOUND and an
    # empty page before).
    again = await world.client.post(
        Q, json=quote_body("iceland-ring-road-eur", actor.client_id.upper()), headers=actor.headers
    )
    assert again.status_code == 201, again.text
    assert again.json()["quote"]["clientId"] == actor.client_id
    listed = await world.client.get(
        Q, params={"clientId": actor.client_id.upper()}, headers=actor.headers
    )
    assert len(listed.json()["quotes"]) == 2


async def test_a_nul_in_a_client_id_or_filter(world: World) -> None:
    actor = await world.actor()
    missing = await world.client.get("/api/agents/clients/%00", headers=actor.headers)
    assert_envelope(missing, "CLIENT_NOT_FOUND", 404)
    listed = await world.client.get(Q, params={"clientId": "\u0000"}, headers=actor.headers)
    body = assert_envelope(listed, "QUOTE_VALIDATION_FAILED", 400)
    assert [e["path"] for e in body["details"]["errors"]] == ["clientId"]


async def test_negative_zero_is_stored_and_shown_as_zero(world: World) -> None:
    actor = await world.actor()
    body = {
        **quote_body("iceland-ring-road-eur", actor.client_id),
        "markupPercent": "-0",
        "discount": "-0.00",
    }
    created = await world.client.post(Q, json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    quote = created.json()["quote"]
    assert quote["markupPercent"] == "0.00"
    assert quote["discount"] == quote["pricing"]["discount"] == "0.00"
    assert quote["pricing"]["markupAmount"] == "0.00"
    stored = (await world.client.get(f"{Q}/{quote['id']}", headers=actor.headers)).json()
    assert stored["quote"]["markupPercent"] == "0.00"


async def test_a_backslash_before_u0000_in_details_is_text_not_a_nul(world: World) -> None:
    # An OTHER item's details holding the text \u0000 (a backslash, then "u0000"), sent again
    # with its keys in another order: nothing changed, so nothing is written. Only an unescaped
    # \u0000 in what is stored (which jsonb cannot compare) counts as a change unread.
    actor = await world.actor()
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    body.pop("pricing", None)
    text = "x\\u0000y"
    body["items"].append(
        {
            "type": "OTHER",
            "description": "Note",
            "quantity": 1,
            "unitPrice": "1.00",
            "details": {"a": text, "b": "z"},
        }
    )
    created = await world.client.post(Q, json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    quote = created.json()["quote"]
    before = await world.snapshot(quote["id"])
    items = [{k: v for k, v in item.items() if k != "lineTotal"} for item in quote["items"]]
    items[-1]["details"] = {"b": "z", "a": text}
    response = await world.client.patch(
        f"{Q}/{quote['id']}", json={"version": 1, "items": items}, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["quote"]["version"] == 1
    assert response.json()["quote"]["items"][-1]["details"] == {"a": text, "b": "z"}
    assert await world.snapshot(quote["id"]) == before
