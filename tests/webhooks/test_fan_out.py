"""The fan-out after the commit (``webhooks/sql.py`` ``FAN_OUT``): which events a subscription
gets, each once, in version order, whatever transactions are still running."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx

from tests.api.test_lifecycle import act, create
from tests.conftest import World
from tests.servers import wait_until
from tests.webhooks.conftest import Receiver, W, drain, subscribe, worker_of
from tripquote.quotes.lifecycle import Operation
from tripquote.webhooks.worker import DeliveryWorker


@asynccontextmanager
async def open_transaction(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction that has its transaction id and stays open (closed at the end: what it
    did not commit is rolled back)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("BEGIN")
        await conn.fetchval("SELECT pg_current_xact_id()")
        yield conn
    finally:
        await conn.close()


def quote_ids(receiver: Receiver) -> list[str]:
    return [r.payload["data"]["quoteId"] for r in receiver.received]


async def test_events_committed_before_a_subscription_existed_are_not_delivered_to_it(
    world: World, receiver: Receiver
) -> None:
    admin = await world.actor(role="admin")
    before = (await create(world, admin)).json()["quoteId"]
    _, receiver.secret = await subscribe(world, admin, receiver.url, "quote.created")
    after = (await create(world, admin)).json()["quoteId"]
    async with httpx.AsyncClient() as client:
        assert await drain(worker_of(world, client)) == 1
    assert quote_ids(receiver) == [after] and before != after


async def test_a_subscription_enabled_again_gets_the_changes_made_from_then_on(
    world: World, receiver: Receiver
) -> None:
    admin = await world.actor(role="admin")
    webhook_id, receiver.secret = await subscribe(world, admin, receiver.url, "quote.created")
    first = (await create(world, admin)).json()["quoteId"]
    async with httpx.AsyncClient() as client:
        worker = worker_of(world, client)
        await worker.fan_out()  # its delivery written while enabled: it waits, then goes
        patch = {"enabled": False}
        disabled = await world.client.patch(f"{W}/{webhook_id}", json=patch, headers=admin.headers)
        assert disabled.status_code == 200
        while_disabled = (await create(world, admin)).json()["quoteId"]
        assert await drain(worker) == 0
        patch = {"enabled": True}
        await world.client.patch(f"{W}/{webhook_id}", json=patch, headers=admin.headers)
        after = (await create(world, admin)).json()["quoteId"]
        assert await drain(worker) == 2
    assert sorted(quote_ids(receiver)) == sorted([first, after])  # one batch: either order
    assert while_disabled not in quote_ids(receiver)


async def test_four_workers_fanning_out_at_once_fan_each_event_out_once(
    world: World, receiver: Receiver
) -> None:
    admin = await world.actor(role="admin")
    _, receiver.secret = await subscribe(world, admin, receiver.url, "quote.created")
    saves = 120
    async with httpx.AsyncClient() as client:
        workers = [worker_of(world, client) for _ in range(4)]
        done = asyncio.Event()
        written: list[int] = []

        async def fan_out_until_done(worker: DeliveryWorker) -> None:
            while not done.is_set():
                written.append(await worker.fan_out())

        fanning = [asyncio.create_task(fan_out_until_done(w)) for w in workers]
        created = await asyncio.gather(*(create(world, admin) for _ in range(saves)))
        done.set()
        await asyncio.gather(*fanning)
        written.append(await workers[0].fan_out())  # what committed after the last pass
        assert [r.status_code for r in created] == [201] * saves
        assert sum(written) == saves  # each written once (a duplicate is never inserted)
        assert await drain(workers[0]) == saves
    assert sorted(quote_ids(receiver)) == sorted(r.json()["quoteId"] for r in created)
    assert len(set(receiver.ids())) == saves


async def test_a_later_version_with_the_lower_transaction_id_goes_after_the_earlier_one(
    world: World, receiver: Receiver
) -> None:
    """A transaction gets its id before it commits: a change of version 3 may hold a lower id
    than version 2's. With a transaction still running between them, a pass takes that
    version 3 event (below the horizon) and version 2's (above it, committed, since version 3
    was built on it): the receiver gets 2 before 3, and nothing twice."""
    admin = await world.actor(role="admin")
    types = ("quote.created", "quote.updated", "quote.sent")
    _, receiver.secret = await subscribe(world, admin, receiver.url, *types)
    quote_id = (await create(world, admin)).json()["quoteId"]
    async with httpx.AsyncClient() as client:
        worker = worker_of(world, client)
        assert await drain(worker) == 1  # version 1
        async with open_transaction(world.dsn) as late, open_transaction(world.dsn):
            # ``late`` took its id first; the other one, still open, sits above it; versions
            # 2 (updated) and 3 (sent) above both.
            assert (await act(world, admin, quote_id, Operation.UPDATE, 1)).is_success
            assert (await act(world, admin, quote_id, Operation.SEND, 2)).is_success
            # ``late`` commits an event of version 3 with the lowest id of the three.
            await late.execute(
                "INSERT INTO events (id, type, occurred_at, agency_id, quote_id, version, actor,"
                " correlation_id) VALUES ('evt_' || md5(random()::text), 'quote.updated', now(),"
                " $1, $2, 3, 'system', 'late')",
                admin.agency_id,
                quote_id,
            )
            await late.execute("COMMIT")
            assert await drain(worker) == 3
        assert await drain(worker) == 0  # the next passes find them written: none twice
    got = [(r.payload["data"]["version"], r.payload["type"]) for r in receiver.received]
    assert got == [
        (1, "quote.created"),
        (2, "quote.updated"),
        (3, "quote.updated"),  # the lower id first within a version
        (3, "quote.sent"),
    ]
    assert len(set(receiver.ids())) == 4


async def test_a_transaction_running_in_this_database_holds_the_fan_out_back_another_does_not(
    world: World, receiver: Receiver
) -> None:
    admin = await world.actor(role="admin")
    _, receiver.secret = await subscribe(world, admin, receiver.url, "quote.created")
    async with httpx.AsyncClient() as client:
        worker = worker_of(world, client)
        elsewhere = world.engine.url.set(drivername="postgresql", database="postgres")
        async with open_transaction(elsewhere.render_as_string(hide_password=False)):
            await create(world, admin)
            assert await drain(worker) == 1
        async with open_transaction(world.dsn):  # this one: it may still write an event
            await create(world, admin)
            assert await drain(worker) == 0
        assert await drain(worker) == 1


async def test_the_worker_yields_while_other_statements_run_then_delivers(
    world: World, receiver: Receiver
) -> None:
    """Two statements of other connections running: the database is busy, a worker waits (at
    most ``webhook_worker_yield_seconds`` in a row, then delivers beside them); once they
    end it is quiet again and nothing waits."""
    admin = await world.actor(role="admin")
    _, receiver.secret = await subscribe(world, admin, receiver.url, "quote.created")
    await create(world, admin)
    conns = [await asyncpg.connect(world.dsn) for _ in range(2)]
    sleeps = [asyncio.create_task(c.execute("SELECT pg_sleep(60)")) for c in conns]
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient() as client:
            worker = worker_of(world, client, webhook_worker_yield_seconds=0.3)
            await wait_until(lambda: worker._busy(), within=10, what="the database busy")
            await worker.yield_to_other_work(stop)  # returns once it waited 0.3 s
            assert worker._yielding_since is not None  # still busy: it goes on beside it
            assert await drain(worker) == 1
    finally:
        canceller = await asyncpg.connect(world.dsn)
        for conn in conns:
            await canceller.execute("SELECT pg_cancel_backend($1)", conn.get_server_pid())
        await canceller.close()
        await asyncio.gather(*sleeps, return_exceptions=True)
        for conn in conns:
            await conn.close(timeout=5)

    async def quiet() -> bool:
        return not await worker._busy()

    await wait_until(quiet, within=10, what="the database quiet")
    await worker.yield_to_other_work(stop)
    assert worker._yielding_since is None
