"""The limit: the same save transaction sent straight through asyncpg, no HTTP at all.

Same operations as a burst (creates and version-carrying updates of distinct quotes), same
concurrency (every operation released at once, each waiting for one of ``pool_size``
connections, as a request waits for the service's pool), same SQL as the peer
(``bench/bare.py``). What is left is PostgreSQL + the driver on this machine: the floor under
any service's latency and the roof over its throughput.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench import bare
from bench.loadgen import Burst, Call, Meter, Outcome, fire, run_bounded
from bench.payloads import Fixture, bare_body, create_body, update_body
from bench.world import PlanItem, Quote, QuotePool, absorb, plan_burst


@dataclass(frozen=True, slots=True)
class BareWorld:
    """Synthetic owners for the bare tables (they have no agencies/agents/clients tables)."""

    agency_id: str
    agent_ids: tuple[str, ...]
    client_ids: tuple[str, ...]

    @classmethod
    def make(cls, agents: int) -> BareWorld:
        """One agency, ``agents`` agents with one client each."""
        return cls(
            agency_id=str(uuid.uuid4()),
            agent_ids=tuple(str(uuid.uuid4()) for _ in range(agents)),
            client_ids=tuple(str(uuid.uuid4()) for _ in range(agents)),
        )


def bare_request(world: BareWorld, fixtures: list[Fixture], item: PlanItem) -> dict[str, Any]:
    """The body the peer receives (and the limit converts) for one plan item."""
    fixture = fixtures[item.fixture]
    if item.kind == "update":
        body = update_body(fixture, version=item.version, seq=item.seq)
    else:
        body = create_body(fixture, client_id=world.client_ids[item.owner], seq=item.seq)
    return bare_body(fixture, body)


def _create_call(pool: asyncpg.Pool, world: BareWorld, owner: int, args: bare.SaveArgs) -> Call:
    async def call() -> Outcome:
        quote_id = str(uuid.uuid4())
        async with pool.acquire() as conn:
            await bare.create(
                conn,
                quote_id=quote_id,
                agency_id=world.agency_id,
                agent_id=world.agent_ids[owner],
                client_id=world.client_ids[owner],
                args=args,
            )
        return Outcome(201, body={"quoteId": quote_id, "version": 1})

    return call


def _update_call(pool: asyncpg.Pool, world: BareWorld, item: PlanItem, args: bare.SaveArgs) -> Call:
    assert item.quote is not None
    quote_id = item.quote.id

    async def call() -> Outcome:
        async with pool.acquire() as conn:
            version = await bare.update(
                conn,
                quote_id=quote_id,
                expected_version=item.version,
                actor_id=world.agent_ids[item.owner],
                args=args,
            )
        if version is None:
            return Outcome(409, "QUOTE_CONFLICT_VERSION")
        return Outcome(200, body={"quoteId": quote_id, "version": version})

    return call


def _calls(
    db: asyncpg.Pool, world: BareWorld, fixtures: list[Fixture], plan: list[PlanItem]
) -> list[tuple[str, Call]]:
    calls: list[tuple[str, Call]] = []
    for item in plan:
        args = bare.args_from_body(bare_request(world, fixtures, item))
        if item.kind == "update":
            calls.append((item.kind, _update_call(db, world, item, args)))
        else:
            calls.append((item.kind, _create_call(db, world, item.owner, args)))
    return calls


async def seed(
    dsn: str, world: BareWorld, fixtures: list[Fixture], pool: QuotePool, *, count: int
) -> None:
    """Create ``count`` quotes straight through the driver (set-up, not measured)."""
    agents = len(world.agent_ids)
    plan = [PlanItem("create", seq % agents, seq % len(fixtures), seq) for seq in range(count)]
    async with asyncpg.create_pool(dsn, min_size=1, max_size=8) as db:
        burst = await run_bounded(_calls(db, world, fixtures, plan), concurrency=8)
    failed = [r for r in burst.results if r.status != 201]
    if failed:
        raise RuntimeError(f"bare seed: {len(failed)} failed, first {failed[0].code}")
    absorb(pool, plan, burst)


async def run_limit(
    dsn: str,
    world: BareWorld,
    fixtures: list[Fixture],
    pool: QuotePool,
    *,
    size: int,
    pool_size: int,
    seq: int,
    meter: Meter | None = None,
) -> tuple[Burst, int]:
    """Fire ``size`` saves at once through an asyncpg pool of ``pool_size`` connections.

    The pool is warmed first (two unmeasured saves per connection, so every connection has
    prepared its statements), as a running service's pool would be.
    """
    agents = len(world.agent_ids)
    async with asyncpg.create_pool(dsn, min_size=pool_size, max_size=pool_size) as db:
        warm, seq = plan_burst(
            pool, size=2 * pool_size, agents=agents, fixtures=len(fixtures), seq=seq
        )
        absorb(
            pool, warm, await run_bounded(_calls(db, world, fixtures, warm), concurrency=pool_size)
        )
        plan, seq = plan_burst(pool, size=size, agents=agents, fixtures=len(fixtures), seq=seq)
        burst = await fire(_calls(db, world, fixtures, plan), meter=meter)
    absorb(pool, plan, burst)
    return burst, seq


__all__ = ["BareWorld", "Quote", "QuotePool", "bare_request", "run_limit", "seed"]
