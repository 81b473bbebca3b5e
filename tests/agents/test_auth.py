"""Tokens: a bounded lifetime and revocation, through the real app and the real command."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import text

from tests.conftest import JWT_SECRET, Actor, World, make_settings, quote_body
from tests.test_config import run_cli
from tripquote.agents.auth import mint_token

URL = "/api/agents/quotes"
CLIENTS = "/api/agents/clients"


def _env(world: World) -> dict[str, str]:
    """The command's settings: the app's database and signing key."""
    return {
        "TRIPQUOTE_DATABASE_URL": str(world.settings.database_url),
        "TRIPQUOTE_JWT_SECRET": JWT_SECRET,
    }


async def _cli(world: World, *args: str) -> tuple[int, str]:
    return await asyncio.to_thread(run_cli, *args, env=_env(world))


async def test_the_api_refuses_a_token_that_lives_longer_than_the_maximum(world: World) -> None:
    actor = await world.actor()
    longest = world.settings.token_max_ttl_seconds
    now = int(time.time())
    for ttl, status in ((longest, 200), (longest + 1, 401), (99999999999999, 401)):
        claims = {"sub": actor.agent_id, "iss": "tripquote", "iat": now, "exp": now + ttl}
        token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")  # signed with the right key
        answer = await world.client.get(
            "/api/agents/quotes", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == status, (ttl, answer.text)
        if status == 401:
            assert answer.json()["errorCode"] == "AUTHENTICATION_FAILED"


async def test_token_ttl_above_the_maximum_is_one_usage_line(world: World) -> None:
    actor = await world.actor()
    status, output = await _cli(
        world, "token", "--agent", actor.agent_id, "--ttl", "99999999999999"
    )
    assert status == 2, output
    (line,) = output.strip().splitlines()
    event = json.loads(line)
    assert event["event"] == "usage_error"
    assert "--ttl" in event["error"] and "TRIPQUOTE_TOKEN_MAX_TTL_SECONDS" in event["error"]
    status, output = await _cli(world, "token", "--agent", actor.agent_id, "--ttl", "2592000")
    assert status == 0, output


async def test_token_revoke_refuses_every_earlier_token_of_the_agent_only(world: World) -> None:
    admin = await world.actor(role="admin")
    colleague = await world.actor(agency_id=admin.agency_id, role="admin")
    earlier = [admin.token, mint_token(world.settings, agent_id=admin.agent_id, ttl_seconds=60)]

    async def summary(token: str) -> tuple[int, str]:
        answer = await world.client.get(
            "/api/ops/summary", headers={"Authorization": f"Bearer {token}"}
        )
        return answer.status_code, answer.json().get("errorCode", "")

    assert [await summary(token) for token in earlier] == [(200, ""), (200, "")]
    # Another process revokes them: the app (this process) refuses them from then on.
    status, output = await _cli(world, "token", "revoke", "--agent", admin.agent_id, "--json")
    assert status == 0, output
    assert json.loads(output)["agentId"] == admin.agent_id
    for token in earlier:
        assert await summary(token) == (401, "AUTHENTICATION_FAILED")
    # Not disabled: a token minted afterwards works; the colleague's tokens were not touched.
    status, output = await _cli(world, "token", "--agent", admin.agent_id, "--json")
    assert status == 0, output
    assert await summary(json.loads(output)["token"]) == (200, "")
    assert await summary(colleague.token) == (200, "")


async def test_token_revoke_of_an_unknown_agent_is_one_json_line(world: World) -> None:
    status, output = await _cli(world, "token", "revoke", "--agent", "no-such-agent")
    assert status == 1, output
    (line,) = output.strip().splitlines()
    assert json.loads(line)["event"] == "token_refused"


async def _every_route(world: World, token: str, ids: dict[str, str]) -> list[tuple[str, int, str]]:
    """Call every authenticated route with ``token``: (route, status, error code) of each.
    ``ids``: DRAFT quotes (``draft``, ``doomed``), SENT ones (``accepted``, ``rejected``) and a
    client (``client``); with a valid token each call succeeds."""
    headers = {"Authorization": f"Bearer {token}"}
    draft, client = ids["draft"], ids["client"]
    full = {**quote_body("edinburgh-weekend-gbp", client), "version": 2}
    calls: list[tuple[str, str, str, Any]] = [
        ("create", "POST", URL, quote_body("zermatt-ski-chf", client)),
        ("list", "GET", URL, None),
        ("read", "GET", f"{URL}/{draft}", None),
        ("patch", "PATCH", f"{URL}/{draft}", {"version": 1, "travelers": 2}),
        ("patch full form", "PATCH", f"{URL}/{draft}", full),
        ("send", "POST", f"{URL}/{draft}/send", {"version": 3}),
        ("delete", "DELETE", f"{URL}/{ids['doomed']}", {"version": 1}),
        ("accept", "POST", f"{URL}/{ids['accepted']}/accept", {"version": 2}),
        ("reject", "POST", f"{URL}/{ids['rejected']}/reject", {"version": 2}),
        ("revisions", "GET", f"{URL}/{draft}/revisions", None),
        ("revision", "GET", f"{URL}/{draft}/revisions/1", None),
        ("client create", "POST", CLIENTS, {"name": "Another Client"}),
        ("client list", "GET", CLIENTS, None),
        ("client read", "GET", f"{CLIENTS}/{client}", None),
        ("ops summary", "GET", "/api/ops/summary", None),
    ]
    answers = []
    for name, method, path, body in calls:
        answer = await world.client.request(method, path, json=body, headers=headers)
        code = answer.json().get("errorCode", "") if answer.status_code >= 400 else ""
        if answer.status_code == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer"), name
        answers.append((name, answer.status_code, code))
    return answers


async def _quotes(world: World, actor: Actor, token: str) -> dict[str, str]:
    """Two DRAFT quotes at version 1, two SENT ones at version 2 and the actor's client, made
    with ``token``."""
    headers = {"Authorization": f"Bearer {token}"}
    ids = {"client": actor.client_id}
    for name in ("draft", "doomed", "accepted", "rejected"):
        created = await world.client.post(
            URL, json=quote_body("zermatt-ski-chf", actor.client_id), headers=headers
        )
        assert created.status_code == 201, created.text
        ids[name] = created.json()["quoteId"]
    for name in ("accepted", "rejected"):
        sent = await world.client.post(
            f"{URL}/{ids[name]}/send", json={"version": 1}, headers=headers
        )
        assert sent.status_code == 200, sent.text
    return ids


async def test_a_revoked_token_is_refused_on_every_route_and_changes_nothing(
    world: World,
) -> None:
    admin = await world.actor(role="admin")
    ids = await _quotes(world, admin, admin.token)
    # Another process revokes the admin's tokens while the app (this process) runs.
    status, output = await _cli(world, "token", "revoke", "--agent", admin.agent_id)
    assert status == 0, output
    before = await world.table_counts()
    quote_ids = [quote_id for key, quote_id in ids.items() if key != "client"]
    snapshots = [await world.snapshot(quote_id) for quote_id in quote_ids]
    answers = await _every_route(world, admin.token, ids)
    assert answers == [(name, 401, "AUTHENTICATION_FAILED") for name, _, _ in answers]
    assert len(answers) == 15
    assert await world.table_counts() == before
    assert [await world.snapshot(quote_id) for quote_id in quote_ids] == snapshots


async def test_a_revoked_token_gets_no_idempotent_replay(world: World) -> None:
    actor = await world.actor()
    body = quote_body("zermatt-ski-chf", actor.client_id)
    headers = {**actor.headers, "Idempotency-Key": "revoked-replay"}
    first = await world.client.post(URL, json=body, headers=headers)
    assert first.status_code == 201, first.text
    status, output = await _cli(world, "token", "revoke", "--agent", actor.agent_id)
    assert status == 0, output
    for sent in (body, {**body, "travelers": 2}):  # a replay, a reuse: the token comes first
        again = await world.client.post(URL, json=sent, headers=headers)
        assert (again.status_code, again.json()["errorCode"]) == (401, "AUTHENTICATION_FAILED")
        assert "idempotent-replayed" not in again.headers


async def test_after_a_revoke_new_tokens_and_colleagues_tokens_work_on_every_route(
    world: World,
) -> None:
    admin = await world.actor(role="admin")
    colleague = await world.actor(agency_id=admin.agency_id, role="admin")
    status, output = await _cli(world, "token", "revoke", "--agent", admin.agent_id)
    assert status == 0, output
    # Minted right after the revoke (the same second, maybe the same millisecond): valid.
    fresh = mint_token(world.settings, agent_id=admin.agent_id, ttl_seconds=60)
    for actor, token in ((admin, fresh), (colleague, colleague.token)):
        answers = await _every_route(world, token, await _quotes(world, actor, token))
        assert [status for _, status, _ in answers] == [201, *[200] * 10, 201, 200, 200, 200], (
            answers
        )


async def test_revocation_is_exact_to_the_microsecond(world: World) -> None:
    actor = await world.actor()
    issued = round(time.time() - 1, 6)  # as mint_token writes iat
    claims = {"sub": actor.agent_id, "iss": "tripquote", "iat": issued, "exp": int(issued) + 60}
    headers = {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}
    at = datetime.fromtimestamp(issued, UTC)
    body = quote_body("zermatt-ski-chf", actor.client_id)
    # Revoked at the token's very microsecond: still valid; one microsecond later: revoked.
    for valid_after, valid in ((at, True), (at + timedelta(microseconds=1), False)):
        async with world.engine.begin() as conn:
            await conn.execute(
                text("UPDATE agents SET tokens_valid_after = :at WHERE id = :id"),
                {"at": valid_after, "id": actor.agent_id},
            )
        created = await world.client.post(URL, json=body, headers=headers)
        listed = await world.client.get(URL, headers=headers)
        expected = (201, 200) if valid else (401, 401)
        assert (created.status_code, listed.status_code) == expected, created.text


async def test_a_revoked_token_is_found_by_the_database_after_the_request_is_parsed(
    world: World,
) -> None:
    """docs/errors.md: a token's signature and expiry are checked before anything else; its
    revocation by the request's database work, so a malformed request (query, path, headers,
    JSON) is refused 400 first, whatever its token; a well-formed one gets the 401."""
    admin = await world.actor(role="admin")
    status, output = await _cli(world, "token", "revoke", "--agent", admin.agent_id)
    assert status == 0, output
    malformed = [
        f"{URL}?limit=0",
        f"{URL}?cursor=bad",
        f"{URL}?status=FOO",
        f"{URL}?updatedSince=yesterday",
        f"{URL}/00000000-0000-0000-0000-000000000000/revisions?limit=0",
        f"{CLIENTS}?limit=0",
    ]
    garbage = {"Authorization": "Bearer not-a-token"}
    answers = []
    for path in malformed:
        revoked = await world.client.get(path, headers=admin.headers)
        unsigned = await world.client.get(path, headers=garbage)
        answers.append((path, revoked.json()["errorCode"], unsigned.status_code))
    assert answers == [(path, "QUOTE_VALIDATION_FAILED", 401) for path in malformed]
    well_formed = await world.client.get(f"{URL}?limit=5", headers=admin.headers)
    assert (well_formed.status_code, well_formed.json()["errorCode"]) == (
        401,
        "AUTHENTICATION_FAILED",
    )


async def test_a_revoked_token_cannot_use_up_its_agents_write_limit(
    world_factory: Any, db_url: str
) -> None:
    # Before: every request of the revoked token was counted before the database found it
    # revoked, so a leaked one, revoked, locked the agent's new tokens out (429) for good.
    world: World = await world_factory(make_settings(db_url, rate_limit="3/minute"))
    actor = await world.actor()
    status, output = await _cli(world, "token", "revoke", "--agent", actor.agent_id)
    assert status == 0, output
    fresh = mint_token(world.settings, agent_id=actor.agent_id, ttl_seconds=60)
    counts = await world.table_counts()
    answers = []
    for _ in range(6):
        refused = await world.client.post(CLIENTS, json={"name": "Aiko"}, headers=actor.headers)
        answers.append((refused.status_code, refused.json()["errorCode"]))
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert answers == [(401, "AUTHENTICATION_FAILED")] * 6  # never 429, retryable
    assert await world.table_counts() == counts
    headers = {"Authorization": f"Bearer {fresh}"}
    for _ in range(2):  # the limit's 3 writes, less the revoked token's first
        created = await world.client.post(CLIENTS, json={"name": "Aiko"}, headers=headers)
        assert created.status_code == 201, created.text


async def test_a_token_naming_no_storable_agent_id_is_a_401(world: World) -> None:
    # Before: a signed token whose sub held a NUL was a 400 from the database (22021).
    issued = round(time.time(), 6)
    for subject in ("agent\x00one", "a" * 37, "\ud800", "agënt"):
        claims = {"sub": subject, "iss": "tripquote", "iat": issued, "exp": int(issued) + 60}
        token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
        headers = {"Authorization": f"Bearer {token}"}
        for method, path in (("GET", URL), ("POST", CLIENTS)):
            answer = await world.client.request(method, path, json={"name": "A"}, headers=headers)
            assert (answer.status_code, answer.json()["errorCode"]) == (
                401,
                "AUTHENTICATION_FAILED",
            ), answer.text
