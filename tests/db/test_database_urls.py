"""TRIPQUOTE_DATABASE_URL's forms (db/url.py): both multi-host forms, read-write by default,
against two real PostgreSQL servers (the first one read-only: writes must go to the second);
asyncpg's query parameters with their types, through a real start-up and save."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import make_url, text

from tests.conftest import World, make_settings, quote_body
from tests.servers import (
    PG_ADMIN_DSN,
    PG_HOST,
    Database,
    TempCluster,
    dsn_for,
    migrated_database,
)
from tripquote.db import migrate
from tripquote.db.url import parse_database_url

pytestmark = pytest.mark.postgres

# --- parsing -------------------------------------------------------------------------------


def test_both_multi_host_forms_are_the_same_url_and_read_write_by_default() -> None:
    commas = parse_database_url("postgresql+asyncpg://u:pw@h1:5441,h2:5442/db")
    hosts = parse_database_url("postgresql+asyncpg://u:pw@/db?host=h1:5441&host=h2:5442")
    assert commas == hosts
    assert commas.url.query["host"] == ("h1:5441", "h2:5442")
    assert commas.connect_args == {"target_session_attrs": "read-write"}
    assert commas.several_hosts
    chosen = parse_database_url("postgresql+asyncpg://u@a:1,b:2/db?target_session_attrs=any")
    assert chosen.connect_args == {"target_session_attrs": "any"}
    single = parse_database_url("postgresql+asyncpg://u@h1:5441/db")
    assert (single.connect_args, single.several_hosts) == ({}, False)


def test_asyncpg_query_parameters_get_their_types() -> None:
    parsed = parse_database_url(
        "postgresql+asyncpg://u@h/db?statement_cache_size=0&command_timeout=2.5&ssl=require"
        "&direct_tls=false&timeout=4&prepared_statement_cache_size=0"
    )
    assert parsed.connect_args == {
        "statement_cache_size": 0,
        "command_timeout": 2.5,
        "ssl": "require",
        "direct_tls": False,
        "timeout": 4.0,
        "prepared_statement_cache_size": 0,
    }


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("postgresql+asyncpg://u:pw@127.0.0.1:notaport/x", "port must be a number"),
        ("postgresql+asyncpg://u:pw@127.0.0.1:99999/x", "port must be a number"),
        ("mysql://u:pw@127.0.0.1/x", "must be a PostgreSQL URL for asyncpg"),
        ("postgresql+asyncpg://u:pw@h1,h2:5442/db", "must each be host:port"),
        ("postgresql+asyncpg://u:pw@h1:5441,h2:70000/db", "port must be a number"),
        ("postgresql+asyncpg://u:pw@h/db?statement_cache_size=-1", "statement_cache_size"),
        ("postgresql+asyncpg://u:pw@h/db?command_timeout=soon", "command_timeout"),
        ("postgresql+asyncpg://u:pw@h/db?ssl=yes", "ssl"),
        ("postgresql+asyncpg://u:pw@h/db?target_session_attrs=leader", "target_session_attrs"),
        ("postgresql+asyncpg://u:pw@h/db?server_settings=x", "server_settings"),
        ("postgresql+asyncpg://u:pw@h/db?timeout=1&timeout=2", "timeout"),
    ],
)
def test_a_url_it_cannot_use_names_the_rule_never_the_password(url: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule) as refused:
        parse_database_url(url)
    assert "pw" not in str(refused.value)


def test_transaction_pooling_refuses_a_statement_cache_in_the_url() -> None:
    url = "postgresql+asyncpg://u@h/db?statement_cache_size=100"
    with pytest.raises(ValueError, match="TRIPQUOTE_DB_POOLER=transaction"):
        make_settings(url, db_pooler="transaction")
    make_settings(url.replace("100", "0"), db_pooler="transaction")


# --- a real start-up with typed parameters -------------------------------------------------


async def test_typed_query_parameters_reach_asyncpg(db_url: str, world_factory: Any) -> None:
    # "?statement_cache_size=0" crashed start-up: asyncpg got the string "0".
    url = f"{db_url}?statement_cache_size=0&command_timeout=30"
    world: World = await world_factory(make_settings(url))
    actor = await world.actor()
    created = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("edinburgh-weekend-gbp", actor.client_id),
        headers=actor.headers,
    )
    assert created.status_code == 201, created.text
    async with world.engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver._stmt_cache.get_max_size() == 0
        assert driver._config.command_timeout == 30.0


# --- two servers, the first one read-only -----------------------------------------------


@pytest_asyncio.fixture(scope="module")
async def read_only_server() -> AsyncIterator[TempCluster]:
    """A cluster of this module's own whose sessions are read-only
    (``default_transaction_read_only``), as asyncpg sees a standby or a demoted primary."""
    cluster = TempCluster()
    try:
        await asyncio.to_thread(cluster.init)
        await asyncio.to_thread(cluster.start)
        conn = await asyncpg.connect(dsn_for(cluster.dsn, "postgres"))
        try:
            await conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()
        yield cluster
    finally:
        await asyncio.to_thread(cluster.destroy)


@pytest_asyncio.fixture(scope="module")
async def two_servers(read_only_server: TempCluster) -> AsyncIterator[tuple[Database, int, int]]:
    """A migrated database on the tests' server (read-write) and the same name on the read-only
    one; (database, read-only port, read-write port)."""
    rw_port = make_url(PG_ADMIN_DSN).port
    if rw_port is None:
        pytest.skip("the tests' PostgreSQL listens on no TCP port (embedded)")
    async with migrated_database("multihost") as database:
        # Only its name: the cluster goes with its folder at the end of the module.
        await _create_database_on(read_only_server.dsn, database.name)
        yield database, read_only_server.port, rw_port


async def _create_database_on(dsn: str, name: str) -> None:
    """CREATE DATABASE on the read-only server (a session that says it may write)."""
    conn = await asyncpg.connect(dsn_for(dsn, "postgres"))
    try:
        await conn.execute("SET default_transaction_read_only = off")
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def _urls(name: str, ro: int, rw: int) -> dict[str, str]:
    return {
        "commas": f"postgresql+asyncpg://postgres@{PG_HOST}:{ro},{PG_HOST}:{rw}/{name}",
        "host-params": (
            f"postgresql+asyncpg://postgres@/{name}?host={PG_HOST}:{ro}&host={PG_HOST}:{rw}"
        ),
    }


@pytest.mark.parametrize("form", ["commas", "host-params"])
async def test_writes_go_to_the_read_write_server(
    two_servers: tuple[Database, int, int], world_factory: Any, form: str
) -> None:
    database, ro, rw = two_servers
    world: World = await world_factory(make_settings(_urls(database.name, ro, rw)[form]))
    async with world.engine.connect() as conn:
        assert (await conn.execute(text("SELECT inet_server_port()"))).scalar() == rw
    actor = await world.actor()
    created = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("edinburgh-weekend-gbp", actor.client_id),
        headers=actor.headers,
    )
    assert created.status_code == 201, created.text
    direct = await asyncpg.connect(database.dsn)  # the read-write server, straight
    try:
        stored = await direct.fetchval(
            "SELECT count(*) FROM quotes WHERE id = $1", created.json()["quoteId"]
        )
    finally:
        await direct.close()
    assert stored == 1


async def test_target_session_attrs_any_takes_the_first_host(
    two_servers: tuple[Database, int, int], world_factory: Any
) -> None:
    # What read-write, the default, protects from: the first host answers, read-only.
    database, ro, rw = two_servers
    url = _urls(database.name, ro, rw)["commas"] + "?target_session_attrs=any"
    world: World = await world_factory(make_settings(url))
    async with world.engine.connect() as conn:
        assert (await conn.execute(text("SELECT inet_server_port()"))).scalar() == ro
        assert (await conn.execute(text("SHOW transaction_read_only"))).scalar() == "on"


async def test_migrations_use_the_same_url_forms(two_servers: tuple[Database, int, int]) -> None:
    # `tripquote db upgrade|current` connect as the service does: read-write by default.
    database, ro, rw = two_servers
    head, _ = migrate.revisions()
    for url in _urls(database.name, ro, rw).values():
        assert await asyncio.to_thread(migrate.current, make_settings(url)) == (head,)
    first = _urls(database.name, ro, rw)["commas"] + "?target_session_attrs=any"
    assert await asyncio.to_thread(migrate.current, make_settings(first)) == ()
