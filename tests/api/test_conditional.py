"""Conditional requests (RFC 9110 §13): one entity-tag grammar (§8.8.3) for If-Match and
If-None-Match. A GET or HEAD whose If-None-Match names the current ETag (weak comparison, or
``*``) answers 304 with the ETag and no content; an edit whose If-Match is well-formed but not
the current version's strong ETag (``"abc"``, ``"0"``, ``W/"1"``) is a failed precondition,
412 with the conflict's details, like a stale one; only a malformed value is a 400."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_errors_api import assert_envelope
from tests.api.test_lifecycle import expire_in_db
from tests.conftest import Actor, World, quote_body
from tests.servers import migrated_database, provision_actor, server_env, serving

URL = "/api/agents/quotes"


async def _quote(world: World, actor: Actor) -> str:
    created = await world.client.post(
        URL, json=quote_body("edinburgh-weekend-gbp", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["quoteId"])


async def _edited(world: World, actor: Actor) -> str:
    """A quote at version 2."""
    quote_id = await _quote(world, actor)
    edited = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 1, "travelers": 3}, headers=actor.headers
    )
    assert edited.status_code == 200, edited.text
    return quote_id


@pytest.mark.parametrize(
    "if_none_match",
    ['"2"', 'W/"2"', "*", '"1", "2"', '"abc", W/"2"', ' , "2" ,'],
    ids=["current", "weak", "star", "list", "list-weak", "empty-elements"],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_a_current_copy_is_not_sent_again(
    world: World, method: str, if_none_match: str
) -> None:
    actor = await world.actor()
    quote_id = await _edited(world, actor)
    counts = await world.table_counts()
    response = await world.client.request(
        method, f"{URL}/{quote_id}", headers={**actor.headers, "If-None-Match": if_none_match}
    )
    assert response.status_code == 304, response.text
    assert response.headers["etag"] == '"2"'
    assert response.content == b""
    assert "content-type" not in response.headers
    assert response.headers["x-correlation-id"]
    assert await world.table_counts() == counts


@pytest.mark.parametrize("if_none_match", ['"1"', 'W/"1"', '"abc"', '"02"', '"1", "3"'])
async def test_another_copy_gets_the_quote(world: World, if_none_match: str) -> None:
    actor = await world.actor()
    quote_id = await _edited(world, actor)
    plain = await world.client.get(f"{URL}/{quote_id}", headers=actor.headers)
    response = await world.client.get(
        f"{URL}/{quote_id}", headers={**actor.headers, "If-None-Match": if_none_match}
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    assert response.json()["quote"] == plain.json()["quote"]


@pytest.mark.parametrize("if_none_match", ["2", "W/2", '"2', '"2" "3"', ""])
async def test_a_malformed_if_none_match_is_refused(world: World, if_none_match: str) -> None:
    actor = await world.actor()
    quote_id = await _edited(world, actor)
    counts = await world.table_counts()
    response = await world.client.get(
        f"{URL}/{quote_id}", headers={**actor.headers, "If-None-Match": if_none_match}
    )
    body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert [e["path"] for e in body["details"]["errors"]] == ["If-None-Match"]
    assert await world.table_counts() == counts


async def test_if_none_match_never_reveals_a_quote_the_caller_cannot_see(world: World) -> None:
    owner, stranger = await world.actor(), await world.actor()
    quote_id = await _quote(world, owner)
    response = await world.client.get(
        f"{URL}/{quote_id}", headers={**stranger.headers, "If-None-Match": "*"}
    )
    assert_envelope(response, "QUOTE_NOT_FOUND", 404)
    missing = await world.client.get(
        f"{URL}/no-such-quote", headers={**owner.headers, "If-None-Match": "*"}
    )
    assert_envelope(missing, "QUOTE_NOT_FOUND", 404)


async def _act(
    world: World, actor: Actor, quote_id: str, route: str, if_match: str, body: Any = None
) -> Any:
    headers = {**actor.headers, "If-Match": if_match}
    if route == "patch":
        return await world.client.patch(
            f"{URL}/{quote_id}", json=body or {"travelers": 4}, headers=headers
        )
    if route == "delete":
        return await world.client.request("DELETE", f"{URL}/{quote_id}", headers=headers)
    return await world.client.post(f"{URL}/{quote_id}/{route}", headers=headers)


@pytest.mark.parametrize(
    "if_match",
    ['"abc"', '"0"', '"02"', 'W/"2"', '"99999999999"', '"abc", W/"2"', '"a,b"'],
    ids=["text", "zero", "leading-zero", "weak", "past-max", "list", "comma-inside"],
)
@pytest.mark.parametrize("route", ["patch", "send", "delete"])
async def test_a_well_formed_if_match_naming_no_version_is_a_failed_precondition(
    world: World, route: str, if_match: str
) -> None:
    actor = await world.actor()
    quote_id = await _edited(world, actor)
    before = await world.snapshot(quote_id)
    counts = await world.table_counts()
    response = await _act(world, actor, quote_id, route, if_match)
    body = assert_envelope(response, "QUOTE_CONFLICT_VERSION", 412)
    details = body["details"]
    assert (details["quoteId"], details["expectedVersion"], details["actualVersion"]) == (
        quote_id,
        0,
        2,
    )
    assert details["lastModifiedBy"] == actor.agent_id
    assert details["changedFields"] == []  # the client's copy is no version of the quote
    assert body["retryable"] is True
    assert await world.snapshot(quote_id) == before
    assert await world.table_counts() == counts


async def test_a_list_naming_the_current_version_among_others_passes(world: World) -> None:
    actor = await world.actor()
    quote_id = await _edited(world, actor)
    response = await _act(world, actor, quote_id, "patch", '"abc", "2", W/"1"')
    assert response.status_code == 200, response.text
    assert response.json()["version"] == 3


@pytest.mark.postgres
async def test_a_304_through_uvicorn_keeps_the_connection(tmp_path: Path) -> None:
    """Over a real keep-alive socket: a 304 (GET and HEAD) sends no content, so the next
    response on the same connection is read whole; the operation line records the 304."""
    async with migrated_database("notmodified") as database:
        actor = await provision_actor(database.url)
        async with serving(server_env(database.url), log_dir=tmp_path) as (server,):
            limits = httpx.Limits(max_connections=1)
            async with httpx.AsyncClient(base_url=server.base_url, limits=limits) as client:
                created = await client.post(
                    URL,
                    json=quote_body("iceland-ring-road-eur", actor.client_id),
                    headers=actor.headers,
                )
                assert created.status_code == 201, created.text
                url = f"{URL}/{created.json()['quoteId']}"
                cached = {**actor.headers, "If-None-Match": created.headers["etag"]}
                got = await client.get(url, headers={**cached, "X-Correlation-ID": "inm-1"})
                head = await client.head(url, headers=cached)
                whole = await client.get(url, headers=actor.headers)
        assert (got.status_code, got.content, got.headers["etag"]) == (304, b"", '"1"')
        assert (head.status_code, head.content) == (304, b"")
        assert whole.status_code == 200 and whole.json()["quoteId"] in url
        lines = [json.loads(line) for line in server.log_path.read_text().splitlines()]
        logged = [line for line in lines if line.get("correlation_id") == "inm-1"]
        assert [line["status"] for line in logged if "status" in line] == [304]


async def test_if_none_match_on_two_lines_is_the_list_of_both(world: World) -> None:
    # RFC 9110 §5.3: the current tag on the second line counts as in '"1", "2"'.
    actor = await world.actor()
    quote_id = await _edited(world, actor)
    response = await world.client.get(
        f"{URL}/{quote_id}",
        headers=[*actor.headers.items(), ("If-None-Match", '"1"'), ("If-None-Match", '"2"')],
    )
    assert response.status_code == 304, response.text


@pytest.mark.parametrize("if_none_match", ['"2"', 'W/"2"', "*", '"1", "2"'])
@pytest.mark.parametrize("write", ["patch", "patch-if-match", "send", "delete"])
async def test_a_write_whose_if_none_match_names_the_version_is_not_done(
    world: World, write: str, if_none_match: str
) -> None:
    """RFC 9110 §13.1.2: If-None-Match false on a write (it names the current ETag, weakly,
    or is ``*``) is 412, and nothing is written, the edit's and the transitions' alike."""
    actor = await world.actor()
    quote_id = await _edited(world, actor)
    before = await world.snapshot(quote_id)
    counts = await world.table_counts()
    headers = {**actor.headers, "If-None-Match": if_none_match}
    if write == "patch-if-match":
        response = await world.client.patch(
            f"{URL}/{quote_id}", json={"travelers": 4}, headers={**headers, "If-Match": '"2"'}
        )
    elif write == "patch":
        response = await world.client.patch(
            f"{URL}/{quote_id}", json={"version": 2, "travelers": 4}, headers=headers
        )
    elif write == "send":
        response = await world.client.post(
            f"{URL}/{quote_id}/send", json={"version": 2}, headers=headers
        )
    else:
        response = await world.client.request(
            "DELETE", f"{URL}/{quote_id}", json={"version": 2}, headers=headers
        )
    body = assert_envelope(response, "QUOTE_CONFLICT_VERSION", 412)
    assert body["details"]["precondition"] == "If-None-Match"
    assert (body["details"]["expectedVersion"], body["details"]["actualVersion"]) == (2, 2)
    assert await world.snapshot(quote_id) == before
    assert await world.table_counts() == counts


async def test_a_write_whose_if_none_match_names_another_version_is_done(world: World) -> None:
    actor = await world.actor()
    quote_id = await _edited(world, actor)
    headers = {**actor.headers, "If-None-Match": '"1", W/"7"'}
    edited = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 2, "travelers": 4}, headers=headers
    )
    assert (edited.status_code, edited.headers["etag"]) == (200, '"3"'), edited.text
    sent = await world.client.post(f"{URL}/{quote_id}/send", json={"version": 3}, headers=headers)
    assert (sent.status_code, sent.json()["quote"]["status"]) == (200, "SENT"), sent.text


async def test_if_none_match_on_a_write_keeps_the_refusals_before_it(world: World) -> None:
    """A quote the caller cannot see stays a 404 and a stale version its conflict (RFC 9110
    §13.2.1: preconditions come after what would refuse the request without them)."""
    actor, stranger = await world.actor(), await world.actor()
    quote_id = await _edited(world, actor)
    counts = await world.table_counts()
    star = {"If-None-Match": "*"}
    hidden = await world.client.patch(
        f"{URL}/{quote_id}",
        json={"version": 2, "travelers": 4},
        headers={**stranger.headers, **star},
    )
    assert hidden.status_code in (403, 404), hidden.text
    stale = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 1, "travelers": 4}, headers={**actor.headers, **star}
    )
    body = assert_envelope(stale, "QUOTE_CONFLICT_VERSION", 409)
    assert "precondition" not in body["details"]
    malformed = await world.client.patch(
        f"{URL}/{quote_id}",
        json={"version": 2, "travelers": 4},
        headers={**actor.headers, "If-None-Match": "2"},
    )
    assert "If-None-Match" in [
        e["path"]
        for e in assert_envelope(malformed, "QUOTE_VALIDATION_FAILED", 400)["details"]["errors"]
    ]
    assert await world.table_counts() == counts


async def test_a_quote_read_expired_has_another_etag_than_the_sent_one(world: World) -> None:
    """A SENT quote past its expiry reads EXPIRED at the same version until the sweep writes
    the next: its ETag changes with it (RFC 9110 §8.8.3), so a copy of the SENT quote is not
    revalidated (200, not 304); the EXPIRED copy is; the tag still names its version in
    If-Match (the write is then refused for the status)."""
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    sent = await world.client.post(
        f"{URL}/{quote_id}/send", json={"version": 1}, headers=actor.headers
    )
    assert sent.headers["etag"] == '"2"'
    await expire_in_db(world, quote_id)
    read = await world.client.get(
        f"{URL}/{quote_id}", headers={**actor.headers, "If-None-Match": '"2"'}
    )
    assert (read.status_code, read.json()["quote"]["status"]) == (200, "EXPIRED")
    assert read.headers["etag"] == '"2-expired"'
    cached = {**actor.headers, "If-None-Match": read.headers["etag"]}
    assert (await world.client.get(f"{URL}/{quote_id}", headers=cached)).status_code == 304
    before = await world.snapshot(quote_id)
    accept = await world.client.post(
        f"{URL}/{quote_id}/accept", json={}, headers={**actor.headers, "If-Match": '"2-expired"'}
    )
    assert (
        assert_envelope(accept, "QUOTE_STATE_INVALID", 409)["details"]["currentStatus"] == "EXPIRED"
    )
    assert await world.snapshot(quote_id) == before


@pytest.mark.parametrize(
    ("if_match", "status"),
    [('"1"', 412), ('W/"2"', 412), ('"abc"', 412), ('"2"', 200), ("*", 200), ('"1", "2"', 200)],
)
async def test_a_read_whose_if_match_names_not_the_current_etag_is_412(
    world: World, if_match: str, status: int
) -> None:
    """RFC 9110 §13.1.1: If-Match (strong comparison) on a read too; false, 412 with the
    quote's current version, never its content."""
    actor = await world.actor()
    quote_id = await _edited(world, actor)
    response = await world.client.get(
        f"{URL}/{quote_id}", headers={**actor.headers, "If-Match": if_match}
    )
    if status == 200:
        assert (response.status_code, response.headers["etag"]) == (200, '"2"'), response.text
        return
    body = assert_envelope(response, "QUOTE_CONFLICT_VERSION", 412)
    assert (body["details"]["precondition"], body["details"]["actualVersion"]) == ("If-Match", 2)
    assert "quote" not in body
    malformed = await world.client.get(
        f"{URL}/{quote_id}", headers={**actor.headers, "If-Match": "2"}
    )
    assert_envelope(malformed, "QUOTE_VALIDATION_FAILED", 400)
