"""An empty query parameter is an absent one, on every route and for every parameter
(``middleware.EmptyQueryMiddleware``): ``?x=`` and a bare ``?x`` answer exactly as no ``x``.
Before, ``?status=``, ``?limit=`` and ``?updatedSince=`` were 400 while ``?cursor=`` and
``?clientId=`` were ignored. The routes and parameters come from the OpenAPI document, so a
list route or parameter added later is covered without editing this file."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, make_settings, quote_body
from tripquote.app import create_app


def _query_parameters() -> list[tuple[str, str]]:
    document = create_app(
        make_settings("postgresql+asyncpg://postgres@127.0.0.1:5432/unused")
    ).openapi()
    return [
        (path, parameter["name"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if method == "get"
        for parameter in operation.get("parameters", ())
        if parameter["in"] == "query"
    ]


PARAMETERS = _query_parameters()


def test_the_list_routes_and_their_parameters_are_all_found() -> None:
    assert {
        ("/api/agents/quotes", "status"),
        ("/api/agents/quotes", "clientId"),
        ("/api/agents/quotes", "updatedSince"),
        ("/api/agents/quotes", "limit"),
        ("/api/agents/quotes", "cursor"),
        ("/api/agents/clients", "limit"),
        ("/api/agents/clients", "cursor"),
    } <= set(PARAMETERS)


LISTS = ["/api/agents/quotes", "/api/agents/clients", "/api/agents/quotes/{quote_id}/revisions"]


async def _world_with_data(world: World) -> tuple[Actor, dict[str, str]]:
    actor = await world.actor(role="admin")  # an admin: the webhook routes are theirs
    ids: dict[str, str] = {"client_id": actor.client_id}
    for fixture in ("edinburgh-weekend-gbp", "iceland-ring-road-eur"):
        created = await world.client.post(
            "/api/agents/quotes", json=quote_body(fixture, actor.client_id), headers=actor.headers
        )
        assert created.status_code == 201, created.text
        ids["quote_id"] = created.json()["quoteId"]
    edited = await world.client.patch(
        f"/api/agents/quotes/{ids['quote_id']}", json={"version": 1, "travelers": 3},
        headers=actor.headers,
    )  # fmt: skip
    assert edited.status_code == 200, edited.text
    ids["version"] = "1"
    subscribed = await world.client.post(
        "/api/agents/webhooks",
        json={"url": "http://127.0.0.1:9/hooks", "eventTypes": ["quote.sent"]},
        headers=actor.headers,
    )
    assert subscribed.status_code == 201, subscribed.text
    ids["webhook_id"] = subscribed.json()["webhook"]["id"]
    return actor, ids


def _same_answer(got: Any, expected: Any) -> None:
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())
    assert expected.status_code == 200, expected.text


@pytest.mark.parametrize(("path", "name"), PARAMETERS, ids=[f"{p}?{n}" for p, n in PARAMETERS])
@pytest.mark.parametrize("empty", ["{name}=", "{name}", "{name}=&&"])
async def test_an_empty_parameter_is_an_absent_one(
    world: World, path: str, name: str, empty: str
) -> None:
    actor, ids = await _world_with_data(world)
    url = path.format(**ids)
    counts = await world.table_counts()
    without = await world.client.get(url, headers=actor.headers)
    with_empty = await world.client.get(f"{url}?{empty.format(name=name)}", headers=actor.headers)
    _same_answer(with_empty, without)
    assert await world.table_counts() == counts


@pytest.mark.parametrize("path", LISTS)
async def test_every_list_takes_every_empty_parameter_at_once(world: World, path: str) -> None:
    actor, ids = await _world_with_data(world)
    url = path.format(**ids)
    without = await world.client.get(url, headers=actor.headers)
    everything = "&".join(
        f"{name}=" for name in ("status", "clientId", "updatedSince", "limit", "cursor")
    )
    _same_answer(await world.client.get(f"{url}?{everything}", headers=actor.headers), without)


async def test_an_empty_value_beside_a_real_one_leaves_the_real_one(world: World) -> None:
    actor, _ = await _world_with_data(world)
    url = "/api/agents/quotes"
    one = await world.client.get(f"{url}?limit=1", headers=actor.headers)
    assert len(one.json()["quotes"]) == 1
    _same_answer(await world.client.get(f"{url}?limit=&limit=1", headers=actor.headers), one)
    cursor = one.json()["nextCursor"]
    assert cursor
    after = await world.client.get(f"{url}?limit=1&cursor={cursor}", headers=actor.headers)
    _same_answer(
        await world.client.get(f"{url}?limit=1&cursor={cursor}&status=", headers=actor.headers),
        after,
    )


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("status=%20", "status"),
        ("limit=%20", "limit"),
        ("updatedSince=%20", "updatedSince"),
        ("status=SOLD&status=", "status"),
        ("limit=0&cursor=", "limit"),
    ],
)
async def test_a_value_that_is_not_empty_is_still_checked(
    world: World, query: str, path: str
) -> None:
    actor, _ = await _world_with_data(world)
    counts = await world.table_counts()
    response = await world.client.get(f"/api/agents/quotes?{query}", headers=actor.headers)
    body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert [e["path"] for e in body["details"]["errors"]] == [path]
    assert await world.table_counts() == counts


@pytest.mark.parametrize(
    ("query", "kept"),
    [
        (b"", b""),
        (b"a=1", b"a=1"),
        (b"a=&b=2", b"b=2"),
        (b"a&b=%20&c=", b"b=%20"),
        (b"&&a=1&&", b"a=1"),
        (b"a==&b=+", b"a==&b=+"),  # "=" and " " are values
    ],
)
def test_only_empty_parameters_are_dropped(query: bytes, kept: bytes) -> None:
    from tripquote.middleware import drop_empty_parameters

    assert drop_empty_parameters(query) == kept


@pytest.mark.parametrize(("path", "name"), PARAMETERS, ids=[f"{p}?{n}" for p, n in PARAMETERS])
async def test_a_parameter_given_twice_is_refused_at_its_name(
    world: World, path: str, name: str
) -> None:
    """Every parameter takes one value: two (``?status=SENT&status=DRAFT``) are a 400 at its
    name, not the last one silently (a tester's list showed the DRAFT quotes only)."""
    actor, ids = await _world_with_data(world)
    url = path.format(**ids)
    counts = await world.table_counts()
    response = await world.client.get(f"{url}?{name}=1&{name}=2", headers=actor.headers)
    body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    message = f"{name} is given more than once: give it once."
    assert body["details"]["errors"] == [{"path": name, "code": "repeated", "message": message}]
    assert await world.table_counts() == counts


async def test_a_parameter_repeated_in_another_spelling_is_refused(world: World) -> None:
    actor, _ = await _world_with_data(world)
    response = await world.client.get(
        "/api/agents/quotes?st%61tus=SENT&status=DRAFT&limit=5", headers=actor.headers
    )
    body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert [e["path"] for e in body["details"]["errors"]] == ["status"]
