"""The client's answer racing the agent: exactly one wins, the other gets its precise answer.
Each race runs 20 times with both requests in flight at once on real concurrent connections
(the app's pool) to one real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from tests.conftest import World
from tests.proposals.support import URL, accept, form_of, send_quote

RUNS = 20


async def _revisions(world: World, quote_id: str, operation: str) -> int:
    return await world.count(
        "quote_revisions", "quote_id = :id AND operation = :op", id=quote_id, op=operation
    )


async def test_accept_against_the_agents_reject(world: World) -> None:
    actor = await world.actor()
    outcomes: Counter[tuple[int, int]] = Counter()
    for _ in range(RUNS):
        sent = await send_quote(world, actor)
        form = form_of((await world.client.get(sent.path)).text)
        client, agent = await asyncio.gather(
            accept(world.client, sent.path, form),
            world.client.post(
                f"{URL}/{sent.quote_id}/reject", json={"version": sent.version},
                headers=actor.headers,
            ),
        )  # fmt: skip
        outcomes[(client.status_code, agent.status_code)] += 1
        status = (await world.client.get(f"{URL}/{sent.quote_id}", headers=actor.headers)).json()
        if client.status_code == 303:
            assert agent.json()["errorCode"] in ("QUOTE_STATE_INVALID", "QUOTE_CONFLICT_VERSION")
            assert status["quote"]["status"] == "ACCEPTED"
        else:
            assert (client.status_code, agent.status_code) == (409, 200)
            assert "has been declined: your travel agent recorded it" in client.text
            assert status["quote"]["status"] == "REJECTED"
        assert status["version"] == sent.version + 1  # one winner: one new version
    print("accept vs reject (client, agent):", dict(outcomes))


async def test_accept_against_revoke(world: World) -> None:
    actor = await world.actor()
    outcomes: Counter[tuple[int, int]] = Counter()
    for _ in range(RUNS):
        sent = await send_quote(world, actor)
        form = form_of((await world.client.get(sent.path)).text)
        client, agent = await asyncio.gather(
            accept(world.client, sent.path, form),
            world.client.post(f"{URL}/{sent.quote_id}/proposal/revoke", headers=actor.headers),
        )
        outcomes[(client.status_code, agent.status_code)] += 1
        proposal = (
            await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=actor.headers)
        ).json()["proposal"]
        quote = (await world.client.get(f"{URL}/{sent.quote_id}", headers=actor.headers)).json()
        if client.status_code == 303:
            assert agent.status_code == 409
            assert agent.json()["details"]["answer"] == "ACCEPTED"
            assert proposal["endedReason"] is None and quote["quote"]["status"] == "ACCEPTED"
        else:
            assert (client.status_code, agent.status_code) == (404, 200)
            assert proposal["endedReason"] == "REVOKED" and proposal["answer"] is None
            assert quote["quote"]["status"] == "SENT" and quote["version"] == sent.version
    print("accept vs revoke (client, agent):", dict(outcomes))


async def test_accept_against_the_expiry_sweep(world: World) -> None:
    actor = await world.actor()
    store = world.app.state.quotes.store
    outcomes: Counter[int] = Counter()
    for run in range(RUNS):
        sent = await send_quote(world, actor)
        form = form_of((await world.client.get(sent.path)).text)
        late = world.clock() + timedelta(days=30)  # the sweep's now: past this offer's end
        client, _ = await asyncio.gather(
            accept(world.client, sent.path, form),
            store.expire_due(now=late, batch_size=500, correlation_id=f"sweep-{run}"),
        )
        outcomes[client.status_code] += 1
        quote = (await world.client.get(f"{URL}/{sent.quote_id}", headers=actor.headers)).json()
        expected = {303: "ACCEPTED", 410: "EXPIRED"}[client.status_code]
        assert quote["quote"]["status"] == expected
        assert quote["version"] == sent.version + 1
    print("accept vs sweep (client):", dict(outcomes))


async def test_a_double_clicked_accept_is_one_acceptance(world: World) -> None:
    actor = await world.actor()
    for _ in range(RUNS):
        sent = await send_quote(world, actor)
        form = form_of((await world.client.get(sent.path)).text)
        first, second = await asyncio.gather(
            accept(world.client, sent.path, form), accept(world.client, sent.path, form)
        )
        assert (first.status_code, second.status_code) == (303, 303)
        assert await _revisions(world, sent.quote_id, "ACCEPT") == 1
        quote = (await world.client.get(f"{URL}/{sent.quote_id}", headers=actor.headers)).json()
        assert quote["version"] == sent.version + 1
