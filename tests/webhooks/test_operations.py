"""What an operator relies on: the address checked again at delivery (production), the outbox
figures on /metrics from the database, replay from the command line (the retention:
``tests/db/test_retention.py``)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.api.test_lifecycle import act, create
from tests.conftest import World, cli_error, make_settings
from tests.servers import metric_value, run_cli, server_env
from tests.webhooks.conftest import (
    Receiver,
    drain,
    forget_subscriptions,
    hang_resolver,
    insert_subscription,
    subscribe,
    worker_of,
)
from tripquote.quotes.lifecycle import Operation


async def deliveries_of(world: World, url: str) -> list[dict[str, Any]]:
    async with world.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT d.* FROM webhook_deliveries d JOIN webhook_subscriptions w"
                " ON w.id = d.subscription_id WHERE w.url = :u ORDER BY d.id"
            ),
            {"u": url},
        )
        return [dict(row._mapping) for row in rows]


async def test_production_checks_the_address_again_at_delivery_and_connects_nowhere(
    db_url: str, world_factory: Any
) -> None:
    world: World = await world_factory(make_settings(db_url, environment="production"))
    admin = await world.actor(role="admin")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        # A name that resolved to a public address when subscribed and to loopback now (DNS
        # rebinding): written directly, as the creation check would have passed it then.
        url = f"https://localhost:{listener.getsockname()[1]}/hooks"
        await insert_subscription(world, admin.agency_id, url)
        try:
            assert (await create(world, admin)).status_code == 201
            async with httpx.AsyncClient() as client:
                assert await drain(worker_of(world, client)) == 1
            [delivery] = await deliveries_of(world, url)
            assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
            assert (delivery["last_error"], delivery["last_status_code"]) == ("url_refused", None)
            with pytest.raises(BlockingIOError):
                listener.accept()
        finally:
            await forget_subscriptions(world, url)


async def test_metrics_show_the_outbox_from_the_database_and_the_attempts(
    world: World, receiver: Receiver
) -> None:
    admin = await world.actor(role="admin")
    _, receiver.secret = await subscribe(world, admin, receiver.url, "quote.created")
    before = (await world.client.get("/metrics")).text
    for _ in range(3):
        assert (await create(world, admin)).status_code == 201
    # Not fanned out yet (no worker ran): the events count, each for its subscription.
    waiting = (await world.client.get("/metrics")).text
    depth = metric_value(waiting, "tripquote_webhook_outbox_depth")
    assert depth >= 3
    assert metric_value(waiting, "tripquote_webhook_oldest_pending_age_seconds") > 0

    async with httpx.AsyncClient() as client:
        worker = worker_of(world, client)
        assert await worker.fan_out() >= 3
        async with world.engine.connect() as conn:
            pending = (
                await conn.execute(
                    text("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
                )
            ).scalar_one()
        fanned = (await world.client.get("/metrics")).text
        # Fanned out: the same deliveries, now rows of their own, counted once.
        assert metric_value(fanned, "tripquote_webhook_outbox_depth") == pending == depth
        await drain(worker)
    after = (await world.client.get("/metrics")).text
    delivered = {"result": "delivered"}
    for name in ("tripquote_webhook_attempts_total", "tripquote_webhook_deliveries_total"):
        assert metric_value(after, name, delivered) - metric_value(before, name, delivered) >= 3
    assert metric_value(after, "tripquote_webhook_delivery_lag_seconds_count") >= 3
    assert metric_value(after, "tripquote_webhook_outbox_depth") <= pending - 3


async def test_replay_from_the_command_line(
    world: World, receiver: Receiver, tmp_path: Path
) -> None:
    admin = await world.actor(role="admin")
    webhook_id, receiver.secret = await subscribe(world, admin, receiver.url, "quote.sent")
    quote_id = (await create(world, admin)).json()["quoteId"]
    await act(world, admin, quote_id, Operation.SEND, 1)
    async with httpx.AsyncClient() as client:
        await drain(worker_of(world, client))
    env = server_env(world.settings.require_database_url())
    args = ["webhooks", "replay", webhook_id, "--since", "2000-01-01T00:00:00Z", "--json"]
    assert run_cli(args, env, cwd=tmp_path) == {"webhookId": webhook_id, "replayed": 0}
    assert run_cli([*args, "--include-delivered"], env, cwd=tmp_path) == {
        "webhookId": webhook_id,
        "replayed": 1,
    }
    async with httpx.AsyncClient() as client:
        assert await drain(worker_of(world, client)) == 1
    assert len(receiver.ids()) == 2 and len(set(receiver.ids())) == 1

    missing = cli_error(
        world.settings.require_database_url(),
        "webhooks", "replay", "no-such-id", "--since", "2000-01-01T00:00:00Z",
    )  # fmt: skip
    assert missing["event"] == "webhook_not_found"


@pytest.mark.parametrize("until", ["2026-12-05T00:00:00Z", "2026-12-06T00:00:00Z"])
async def test_replay_refuses_an_until_not_after_since_as_the_api_does(
    world: World, tmp_path: Path, until: str
) -> None:
    # POST …/replay answers 400 date_order; the command said "replayed 0 deliveries", exit 0.
    import json
    import subprocess
    import sys

    admin = await world.actor(role="admin")
    url = "http://127.0.0.1:9/replay-order"
    webhook_id, _ = await subscribe(world, admin, url, "quote.sent")
    args = ["webhooks", "replay", webhook_id, "--since", "2026-12-06T00:00:00Z", "--until", until]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tripquote.cli", *args],
            env=server_env(world.settings.require_database_url()),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        await forget_subscriptions(world, url)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    event = json.loads(line)
    assert event["event"] == "usage_error"
    assert "--until: must be after --since" in event["error"]


async def test_a_slow_name_resolution_is_a_timed_out_attempt_not_a_stuck_batch(
    db_url: str, world_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Production resolves the host at each attempt (urls.target). A resolver that hangs (a DNS
    # server down) must count against the attempt's time like connect and send do: outside
    # it, the attempt outlived the batch's transaction, which timed out — nothing recorded
    # (no backoff, no dead letter, every other delivery of the batch sent again each pass).

    world: World = await world_factory(
        make_settings(
            db_url, environment="production", webhook_timeout_seconds=0.5, tx_timeout_seconds=2
        )
    )
    admin = await world.actor(role="admin")
    url = "https://localhost:9/slow-dns"  # resolves, after the wait, to loopback: refused
    await insert_subscription(world, admin.agency_id, url)
    try:
        assert (await create(world, admin)).status_code == 201
        # Longer than the batch's whole budget.
        hang_resolver(monkeypatch, world.settings.tx_timeout_seconds + 2)
        async with httpx.AsyncClient() as client:
            worker = worker_of(world, client)
            await worker.fan_out()
            assert await worker.deliver_batch() == 1
        [delivery] = await deliveries_of(world, url)
        assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
        assert delivery["last_error"] == "timeout"
        assert delivery["last_duration_ms"] < 2000
    finally:
        monkeypatch.undo()
        await forget_subscriptions(world, url)


@pytest.mark.parametrize(
    "body",
    [
        {"since": "0001-01-01T00:00:00+01:00"},  # before year 1 once in UTC
        {"since": "2026-01-01T00:00:00Z", "until": "9999-12-31T23:59:59-01:00"},  # after 9999
    ],
)
async def test_replay_takes_an_instant_outside_the_years_1_to_9999_in_utc_as_the_nearest(
    world: World, body: dict[str, str]
) -> None:
    # It was a 500 (OverflowError converting to UTC), logged CRITICAL. As the quote list's
    # updatedSince does, such a bound is the nearest instant inside: every delivery is on the
    # same side of it.
    admin = await world.actor(role="admin")
    url = "http://127.0.0.1:9/replay-range"
    webhook_id, _ = await subscribe(world, admin, url, "quote.sent")
    try:
        response = await world.client.post(
            f"/api/agents/webhooks/{webhook_id}/replay", json=body, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["replayed"] == 0  # nothing dead-lettered to send again
    finally:
        await forget_subscriptions(world, url)


async def test_a_scrape_answers_its_counters_while_the_outbox_tables_are_locked(
    db_url: str, world_factory: Any
) -> None:
    """The outbox gauges are read within a bound (``OUTBOX_READ_SECONDS``), never the
    transaction timeout (here 30 s, past Prometheus's 10 s scrape timeout): with the tables
    locked, the scrape answers the counters without the gauges (a tester's scrape waited
    past 12 s and lost every counter)."""
    world: World = await world_factory(make_settings(db_url, tx_timeout_seconds=30))
    admin = await world.actor(role="admin")
    assert (await create(world, admin)).status_code == 201
    async with world.engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text("LOCK TABLE webhook_deliveries, events IN ACCESS EXCLUSIVE MODE"))
        try:
            scrape = await asyncio.wait_for(world.client.get("/metrics"), timeout=8)
        finally:
            await transaction.rollback()
    assert scrape.status_code == 200
    assert metric_value(scrape.text, "tripquote_operations_total", {"operation": "quote.create"})
    assert "tripquote_webhook_outbox_depth" not in scrape.text
    again = (await world.client.get("/metrics")).text  # the lock gone, the gauges are back
    assert "tripquote_webhook_outbox_depth" in again
