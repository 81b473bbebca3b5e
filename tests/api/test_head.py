"""HEAD is answered wherever GET is (RFC 9110 §9.3.2: "the server MUST NOT send content in the
response"; its header fields are those of the GET), reads nothing more and writes nothing; a
path without GET keeps its 404 or 405 envelope status, without content."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import World, quote_body
from tests.servers import migrated_database, provision_actor, server_env, serving

Q = "/api/agents/quotes"
SAME_FIELDS = ("content-type", "content-length", "etag", "cache-control", "location")


async def _create(world: World) -> tuple[dict[str, str], str]:
    actor = await world.actor()
    created = await world.client.post(
        Q, json=quote_body("iceland-ring-road-eur", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201, created.text
    return actor.headers, created.json()["quoteId"]


@pytest.mark.parametrize(
    "path",
    [f"{Q}/{{id}}", f"{Q}/{{id}}/revisions", f"{Q}/{{id}}/revisions/1", Q, "/health/live"],
)
async def test_head_has_the_get_status_and_fields_without_content(world: World, path: str) -> None:
    headers, quote_id = await _create(world)
    url = path.format(id=quote_id)
    before = await world.table_counts()

    got = await world.client.get(url, headers=headers)
    head = await world.client.head(url, headers=headers)

    assert got.status_code == 200 and got.content
    assert head.status_code == 200
    assert head.content == b""
    for name in SAME_FIELDS:
        assert head.headers.get(name) == got.headers.get(name), name
    assert head.headers["x-correlation-id"]
    assert await world.table_counts() == before


async def test_head_of_a_missing_quote_is_a_404_without_content(world: World) -> None:
    headers, _ = await _create(world)
    got = await world.client.get(f"{Q}/no-such-quote", headers=headers)
    head = await world.client.head(f"{Q}/no-such-quote", headers=headers)
    assert (got.status_code, head.status_code) == (404, 404)
    assert got.json()["errorCode"] == "QUOTE_NOT_FOUND"
    assert head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]


async def test_head_needs_the_token_a_get_needs(world: World) -> None:
    _, quote_id = await _create(world)
    head = await world.client.head(f"{Q}/{quote_id}")
    assert head.status_code == 401
    assert head.content == b""


async def test_head_of_a_path_without_get_is_a_405_naming_its_methods(world: World) -> None:
    headers, quote_id = await _create(world)
    before = await world.snapshot(quote_id)
    head = await world.client.head(f"{Q}/{quote_id}/send", headers=headers)
    assert head.status_code == 405
    assert head.headers["allow"] == "POST"
    assert head.content == b""
    assert await world.snapshot(quote_id) == before


@pytest.mark.postgres
async def test_head_through_uvicorn_keeps_the_connection_and_logs_head(tmp_path: Path) -> None:
    """Over a real socket: the HEAD response announces the GET's length but sends nothing, so
    the next response on the same keep-alive connection is read whole; the access line says
    HEAD."""
    async with migrated_database("head") as database:
        actor = await provision_actor(database.url)
        async with serving(server_env(database.url), log_dir=tmp_path) as (server,):
            limits = httpx.Limits(max_connections=1)
            async with httpx.AsyncClient(base_url=server.base_url, limits=limits) as client:
                created = await client.post(
                    Q,
                    json=quote_body("iceland-ring-road-eur", actor.client_id),
                    headers=actor.headers,
                )
                assert created.status_code == 201, created.text
                url = f"{Q}/{created.json()['quoteId']}"
                head = await client.head(
                    url, headers={**actor.headers, "X-Correlation-ID": "head-check-1"}
                )
                got = await client.get(url, headers=actor.headers)
        assert head.status_code == 200 and head.content == b""
        assert got.status_code == 200 and got.json()["quoteId"] in url
        assert head.headers["content-length"] == str(len(got.content))
        # Read once the server has stopped: its log lines are flushed by then.
        lines = [json.loads(line) for line in server.log_path.read_text().splitlines()]
        logged = [line for line in lines if line.get("correlation_id") == "head-check-1"]
        assert [line["method"] for line in logged if "method" in line] == ["HEAD"]
