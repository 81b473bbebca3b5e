"""Tokens: a bounded lifetime and revocation, through the real app and the real command."""

from __future__ import annotations

import asyncio
import json
import time

import jwt

from tests.conftest import JWT_SECRET, World
from tests.test_config import run_cli
from tripquote.agents.auth import mint_token


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
