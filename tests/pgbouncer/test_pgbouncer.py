"""Through a real PgBouncer 1.18 in transaction mode (conftest.py): a 300-save burst answered
2xx throughout, the transaction timeouts enforced in every kind of unit (a held row lock is a
DATABASE_TIMEOUT within the budget), and ``TRIPQUOTE_DB_POOLER=none`` behind a bouncer a clear
configuration error, never retryable 503s."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, make_settings, quote_body
from tests.servers import (
    Database,
    PgBouncer,
    free_port,
    server_env,
    wait_until,
)
from tripquote.db import migrate
from tripquote.db.engine import PoolerMisconfigured
from tripquote.db.retention import MAINTENANCE_LOCK
from tripquote.observability import metrics

pytestmark = pytest.mark.pgbouncer

URL = "/api/agents/quotes"
BURST = 300


async def _create(world: World, actor: Any, name: str = "edinburgh-weekend-gbp") -> Any:
    return await world.client.post(
        URL, json=quote_body(name, actor.client_id), headers=actor.headers
    )


async def test_a_300_save_burst_gets_no_non_2xx(world: World) -> None:
    actors = [await world.actor() for _ in range(3)]
    created = await asyncio.gather(
        *(_create(world, actors[i % 3], "iceland-ring-road-eur") for i in range(BURST))
    )
    assert [r.status_code for r in created if r.status_code != 201] == [], created[0].text
    patched = await asyncio.gather(
        *(
            world.client.patch(
                f"{URL}/{r.json()['quoteId']}",
                json={"version": 1, "travelers": 3},
                headers=actors[i % 3].headers,
            )
            for i, r in enumerate(created)
        )
    )
    failed = [(r.status_code, r.text[:200]) for r in patched if r.status_code != 200]
    assert failed == []
    ids = [r.json()["quoteId"] for r in created]
    assert await world.count("quotes", "id = ANY(:ids) AND version = 2", ids=ids) == BURST
    assert await world.count("quote_revisions", "quote_id = ANY(:ids)", ids=ids) == 2 * BURST

    # The operation records' writer (a binary COPY outside any transaction) works through it.
    async def recorded() -> bool:
        agents = [a.agent_id for a in actors]
        count = await world.count("operation_records", "agent_id = ANY(:a)", a=agents)
        return count >= 2 * BURST

    await wait_until(recorded, within=30, what="the burst's operation records")


async def test_every_kind_of_unit_runs_with_the_timeouts(db_url: str, world_factory: Any) -> None:
    # No startup parameter reaches PgBouncer, yet each transaction has the settings' timeouts
    # (tx_timeout_seconds=4: statement_timeout 4 s, lock_timeout 90 % of it).
    world: World = await world_factory(
        make_settings(db_url, db_pooler="transaction", tx_timeout_seconds=4)
    )
    runner = world.app.state.runner
    show = "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"

    async def on_sqlalchemy(conn: Any) -> tuple[str, str]:
        return tuple((await conn.exec_driver_sql(show)).one())  # type: ignore[return-value]

    async def on_driver(tx: Any) -> tuple[str, str]:
        return tuple(await tx.driver.fetchrow(show))  # type: ignore[return-value]

    expected = ("4s", "3600ms")
    assert await runner.run(on_sqlalchemy, write=False) == expected
    assert await runner.run_store(on_driver, atomic=True, write=False) == expected
    assert await runner.run_store(on_driver, atomic=False, write=False) == expected


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("PATCH", "", {"version": 1, "travelers": 2}), ("POST", "/send", {"version": 1})],
    ids=["patch", "send"],
)
async def test_a_held_row_lock_is_a_database_timeout_within_the_budget(
    db_url: str,
    bounced_database: Database,
    world_factory: Any,
    method: str,
    suffix: str,
    body: dict[str, Any],
) -> None:
    timeout = 2.0
    world: World = await world_factory(
        make_settings(db_url, db_pooler="transaction", tx_timeout_seconds=timeout)
    )
    actor = await world.actor()
    quote_id = (await _create(world, actor)).json()["quoteId"]
    before = await world.snapshot(quote_id)
    counts = await world.table_counts()
    holder = await asyncpg.connect(bounced_database.dsn)  # straight to PostgreSQL
    try:
        async with holder.transaction():
            await holder.execute("SELECT id FROM quotes WHERE id = $1 FOR UPDATE", quote_id)
            started = time.monotonic()
            response = await world.client.request(
                method, f"{URL}/{quote_id}{suffix}", json=body, headers=actor.headers
            )
            waited = time.monotonic() - started
    finally:
        await holder.close()
    error = assert_envelope(response, "DATABASE_TIMEOUT", 503)
    assert error["retryable"] is True
    # PostgreSQL's lock_timeout (SET LOCAL through the bouncer) answered, not the backstop.
    assert error["details"]["cause"] == "55P03"
    assert waited < timeout
    assert await world.snapshot(quote_id) == before
    assert await world.table_counts() == counts


async def test_pooler_none_behind_pgbouncer_refuses_to_start(
    db_url: str, world_factory: Any, tmp_path: Path
) -> None:
    # PgBouncer refuses the startup parameters (statement_timeout…) the none mode sends.
    with pytest.raises(PoolerMisconfigured, match="set TRIPQUOTE_DB_POOLER=transaction"):
        await world_factory(make_settings(db_url, db_pooler="none"))
    # `tripquote serve` says so in one configuration_error line on stderr and exits with 2
    # (a configuration error's status), never ready, whatever --workers.
    for workers in (1, 2):
        done = subprocess.run(
            [str(Path(sys.executable).with_name("tripquote")), "serve", "--workers", str(workers),
             "--port", str(free_port())],
            env=server_env(db_url, db_pooler="none"), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 2, (workers, done.stderr[-2000:], done.stdout[-2000:])
        (line,) = done.stderr.strip().splitlines()
        error = json.loads(line)
        assert error["event"] == "configuration_error"
        assert "set TRIPQUOTE_DB_POOLER=transaction" in error["error"]
        assert "Traceback" not in done.stdout + done.stderr
    # A command says what to set too, not to check the URL (an operator saw that hint).
    done = subprocess.run(
        [str(Path(sys.executable).with_name("tripquote")), "agencies", "create", "X"],
        env=server_env(db_url, db_pooler="none"), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, (done.stderr[-2000:], done.stdout[-2000:])
    (line,) = done.stderr.strip().splitlines()
    error = json.loads(line)
    assert error["event"] == "database_unavailable"
    assert "set TRIPQUOTE_DB_POOLER=transaction" in error["hint"]


async def test_pooler_none_behind_a_bouncer_ignoring_the_parameters_is_a_configuration_error(
    bounced_database: Database, world_factory: Any
) -> None:
    # A bouncer told to ignore the parameters lets the none mode start; its named prepared
    # statements then meet server connections that do not have them (26000) or already have
    # one of that name (42P05): each such save is a non-retryable configuration error at once,
    # never retried, never a "please retry" 503.
    ignoring = await PgBouncer(
        default_pool_size=2,
        ignore_startup_parameters=(
            "statement_timeout",
            "lock_timeout",
            "idle_in_transaction_session_timeout",
            "plan_cache_mode",
        ),
    ).start()
    try:
        world: World = await world_factory(
            make_settings(ignoring.url(bounced_database.name), db_pooler="none")
        )
        retries_before = metrics.DB_RETRIES._value.get()
        actor = await world.actor()
        answers = await asyncio.gather(*(_create(world, actor) for _ in range(60)))
        failures = [r for r in answers if r.status_code != 201]
        assert failures, "every save went through: the bouncer did not mix server connections"
        for response in failures:
            error = assert_envelope(response, "INTERNAL_ERROR", 500)
            assert error["retryable"] is False
            assert error["details"]["cause"] == "prepared_statements_unsupported"
        assert metrics.DB_RETRIES._value.get() == retries_before
        created = sum(1 for r in answers if r.status_code == 201)
        assert await world.count("quotes", "agent_id = :a", a=actor.agent_id) == created
    finally:
        ignoring.stop()


async def test_session_pooling_sets_the_timeouts_once_per_connection(
    bounced_database: Database, world_factory: Any
) -> None:
    # Session mode: named prepared statements are fine (a server connection is the client's
    # for its whole life), startup parameters are not; the timeouts are SET at connect.
    # The pool fits the bouncer's: DB_POOL_SIZE (3) x 1 process <= default_pool_size (3).
    session = await PgBouncer(pool_mode="session", default_pool_size=3).start()
    try:
        world: World = await world_factory(
            make_settings(
                session.url(bounced_database.name),
                db_pooler="session",
                db_pool_size=3,
                tx_timeout_seconds=4,
            )
        )
        runner = world.app.state.runner

        async def on_driver(tx: Any) -> tuple[str, ...]:
            return tuple(
                await tx.driver.fetchrow(
                    "SELECT current_setting('statement_timeout'),"
                    " current_setting('lock_timeout'), current_setting('plan_cache_mode')"
                )
            )

        expected = ("4s", "3600ms", "force_generic_plan")
        assert await runner.run_store(on_driver, atomic=False, write=False) == expected
        actor = await world.actor()
        answers = await asyncio.gather(*(_create(world, actor) for _ in range(30)))
        assert [r.status_code for r in answers if r.status_code != 201] == []
    finally:
        session.stop()


async def test_migrations_read_through_the_bouncer(db_url: str) -> None:
    head, _ = migrate.revisions()
    settings = make_settings(db_url, db_pooler="transaction")
    assert await asyncio.to_thread(migrate.current, settings) == (head,)


async def test_maintenance_through_a_transaction_pooler_is_refused(
    bounced_database: Database, db_url: str
) -> None:
    # Its one-run-at-a-time lock is a session advisory lock: through the bouncer two runs at
    # once (two hosts' cron) left it held by a pooled server connection, and every later run
    # printed {"skipped": ...} with exit status 0 (partitions never made: saves fail once the
    # days made ahead are used up). It is refused, and leaves no lock held.
    runs = [
        subprocess.Popen(
            [str(Path(sys.executable).with_name("tripquote")), "maintenance", "--json"],
            env=server_env(db_url, db_pooler="transaction"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 2, (out, err[-2000:])
        (line,) = err.strip().splitlines()
        assert json.loads(line)["event"] == "configuration_error"
        assert "TRIPQUOTE_DB_POOLER" in line
    conn = await asyncpg.connect(bounced_database.dsn)
    try:
        held = await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((classid::bigint << 32) | objid::bigint) = $1",
            MAINTENANCE_LOCK,
        )
    finally:
        await conn.close()
    assert held == 0
