"""The clients endpoints: create, read, list; instants in the API's one format (ISO 8601 UTC,
milliseconds, ``Z``), the same on both databases; bad input refused with nothing written."""

from __future__ import annotations

import re

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World
from tripquote.errors import QUERY_INVALID

URL = "/api/agents/clients"
INSTANT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_create_read_and_list_give_one_representation(world: World) -> None:
    actor = await world.actor()
    body = {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0018"}
    created = await world.client.post(URL, json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    client = created.json()["client"]
    assert created.json()["clientId"] == client["id"]
    assert (client["name"], client["email"], client["phone"]) == (
        body["name"],
        body["email"],
        body["phone"],
    )
    assert client["agentId"] == actor.agent_id
    assert INSTANT.match(client["createdAt"]), client["createdAt"]

    assert created.headers["location"] == f"{URL}/{client['id']}"
    read = await world.client.get(created.headers["location"], headers=actor.headers)
    assert read.status_code == 200
    assert read.json()["client"] == client
    listed = await world.client.get(URL, headers=actor.headers)
    assert client in listed.json()["clients"]
    assert all(INSTANT.match(c["createdAt"]) for c in listed.json()["clients"])


async def test_a_bad_client_is_refused_and_nothing_is_written(world: World) -> None:
    actor = await world.actor()
    before = await world.table_counts()
    response = await world.client.post(
        URL, json={"name": "", "email": "not-an-email"}, headers=actor.headers
    )
    body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert body["message"] == "The client is invalid."
    assert {e["path"] for e in body["details"]["errors"]} >= {"name", "email"}
    assert await world.table_counts() == before


@pytest.mark.parametrize(
    "email",
    [
        "Aiko Tanaka <aiko@example.com>",  # the parser would keep the address, drop the name
        "<aiko@example.com>",
        "a" * 65 + "@example.com",  # RFC 5321 §4.5.3.1.1: 64 octets before the @
    ],
)
async def test_an_email_stored_other_than_sent_is_refused(world: World, email: str) -> None:
    actor = await world.actor()
    before = await world.table_counts()
    response = await world.client.post(
        URL, json={"name": "Aiko Tanaka", "email": email}, headers=actor.headers
    )
    body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert [e["path"] for e in body["details"]["errors"]] == ["email"]
    assert await world.table_counts() == before
    longest = "a" * 64 + "@example.com"
    taken = await world.client.post(
        URL, json={"name": "Aiko Tanaka", "email": longest}, headers=actor.headers
    )
    assert (taken.status_code, taken.json()["client"]["email"]) == (201, longest)


async def test_a_bad_query_parameter_is_named_as_such(world: World) -> None:
    actor = await world.actor()
    for url, path in [
        (f"{URL}?limit=0", "limit"),
        ("/api/agents/quotes?limit=0", "limit"),
        ("/api/agents/quotes?limit=abc", "limit"),
        ("/api/agents/quotes?updatedSince=2026-01-01T00:00:00", "updatedSince"),
        ("/api/agents/quotes?status=SOLD", "status"),
    ]:
        response = await world.client.get(url, headers=actor.headers)
        body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
        assert body["message"] == QUERY_INVALID, url
        assert [e["path"] for e in body["details"]["errors"]] == [path], url
