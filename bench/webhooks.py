"""``--with-webhooks``: the cost of the outbox's deliveries, in the same run.

After each tripquote run of a round, the same bursts again with one subscription of the bench
agency (every event type) to a local receiver (``bench/receiver.py``) and a delivery worker
(``tripquote webhooks run``) running: reported as the target ``tripquote-webhooks`` against
``tripquote`` (throughput and P99 ratios per round, and their median), plus the delivery lag
(a change's commit, ``events.occurred_at``, to its 2xx, ``delivered_at``) P50/P95/P99/max
read from the database once every delivery of the run arrived.

Both sides run the same saves, each writing its event row (every save does: the outbox is not
optional; the deliveries are fanned out after the commit by the worker); what differs is the
worker's fan-out, claims, records and HTTP requests running beside the burst on the same
machine. The worker and the receiver (which
stands for the agency's systems, elsewhere in real life) run at ``--webhooks-nice`` (19 by
default: the priority an operator gives deliveries on a host shared with the service, so
they take the CPU the saves leave; 0 measures them competing as equals), their autogroups too
(``_autogroup_nice``: without it a server alone in its session competes as an equal whatever
its nice value).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from bench import pg, procs, service
from bench.tq_side import run_tripquote
from tripquote.webhooks.schemas import new_secret

if TYPE_CHECKING:
    from bench.session import Bench

WEBHOOKS_TARGET = "tripquote-webhooks"
EVENT_TYPES = [
    "quote.created",
    "quote.updated",
    "quote.sent",
    "quote.accepted",
    "quote.rejected",
    "quote.expired",
    "quote.cancelled",
]
DRAIN_SECONDS = 300.0
"""How long the bench waits, after the bursts, for every delivery to arrive."""

LAG = """
SELECT count(*) AS delivered,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY
           extract(epoch FROM d.delivered_at - e.occurred_at)::float8) AS lag,
       max(extract(epoch FROM d.delivered_at - e.occurred_at))::float8 AS lag_max,
       sum(d.attempts) AS attempts
  FROM webhook_deliveries d JOIN events e ON e.id = d.event_id AND e.occurred_at = d.created_at
 WHERE d.subscription_id = $1 AND d.status = 'delivered'
"""


UNFANNED = """
SELECT count(*) FROM webhook_subscriptions w
  JOIN events e ON e.agency_id = w.agency_id AND e.xact >= w.fanned_out_to
               AND e.type = ANY(w.event_types)
 WHERE w.id = $1"""
"""The subscription's events not fanned out yet (no delivery row: the worker yields to the
burst, so right after it most events may have none)."""

WAITING = f"""
SELECT (SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1
           AND status = 'pending') + ({UNFANNED})"""

NOT_DELIVERED = f"""
SELECT (SELECT count(*) FROM webhook_deliveries WHERE subscription_id = $1
           AND status <> 'delivered') + ({UNFANNED})"""


async def run_with_webhooks(bench: Bench, workers: int) -> None:
    """The bursts with a subscription and a delivery worker; the lag from the database."""
    world = bench.tq_world
    assert world is not None, "run_tripquote sets the world up first"
    dsn = pg.asyncpg_dsn_from_sqlalchemy(bench.tq_env["TRIPQUOTE_DATABASE_URL"])
    port = procs.free_port()
    nice = ["nice", "-n", str(bench.args.webhooks_nice)]
    receiver = procs.start(
        "webhook-receiver",
        [*nice, sys.executable, "-m", "bench.receiver", "--port", str(port)],
        env=bench.tq_env,
        port=port,
        log_dir=bench.log_dir,
    )
    exe = service.executable()
    assert exe is not None
    worker = procs.start(
        "webhooks-worker",
        [*nice, exe, "webhooks", "run"],
        env=bench.tq_env,
        port=0,
        log_dir=bench.log_dir,
    )
    for server in (receiver, worker):
        _autogroup_nice(server, bench.args.webhooks_nice)
    subscription = str(uuid.uuid4())
    conn = await asyncpg.connect(dsn)
    try:
        await procs.wait_ready(receiver, "/ping")
        await conn.execute(
            "INSERT INTO webhook_subscriptions (id, agency_id, url, event_types, enabled, secret,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, true, $5, now(), now())",
            subscription,
            world.agency_id,
            f"http://127.0.0.1:{port}/hooks",
            EVENT_TYPES,
            new_secret(),
        )
        bench.note(
            f"with webhooks: 1 subscription, a delivery worker ({worker.name}) and the receiver"
            f" at nice {bench.args.webhooks_nice}"
        )
        await run_tripquote(bench, workers, env=bench.tq_env, name=WEBHOOKS_TARGET)
        started = time.monotonic()
        await _drained(conn, subscription, worker, until=started + DRAIN_SECONDS)
        row = await conn.fetchrow(LAG, subscription)
        pending = await conn.fetchval(NOT_DELIVERED, subscription)
    finally:
        # Its deliveries too: no cascade (the partitioned outbox has no foreign key).
        await conn.execute(
            "DELETE FROM webhook_deliveries WHERE subscription_id = $1", subscription
        )
        await conn.execute("DELETE FROM webhook_subscriptions WHERE id = $1", subscription)
        await conn.close()
        worker.stop()
        receiver.stop()
    summary = _lag_summary(row, pending, drained_in=time.monotonic() - started)
    bench.runs.append(
        {
            "workers": str(workers),
            "target": WEBHOOKS_TARGET,
            "scenario": "delivery-lag",
            "round": bench.round,
            "summary": summary,
        }
    )
    bench.note(
        f"webhooks: {summary['delivered']} delivered ({summary['attempts']} attempts), "
        f"{summary['not_delivered']} not delivered; lag p50/p95/p99/max = "
        f"{summary['p50_ms']}/{summary['p95_ms']}/{summary['p99_ms']}/{summary['max_ms']} ms; "
        f"drained {summary['drained_after_bursts_s']} s after the bursts"
    )


def _autogroup_nice(server: procs.Server, nice: int) -> None:
    """Give ``server``'s autogroup the nice value its process has. With Linux's autogroup
    scheduling (``/proc/sys/kernel/sched_autogroup_enabled``), a nice value only ranks a
    process against the others of its session, and each server runs in a session of its own:
    ``nice -n 19`` alone changes nothing against the service and PostgreSQL. (Nothing to do
    where autogroups do not exist.)"""
    with contextlib.suppress(OSError):
        Path(f"/proc/{server.process.pid}/autogroup").write_text(str(nice))


async def _drained(
    conn: asyncpg.Connection, subscription: str, worker: procs.Server, *, until: float
) -> None:
    """Wait until no delivery of ``subscription`` is pending and no event waits to be fanned
    out to it (or the worker died, or time is up: what is left is reported as not
    delivered)."""
    while True:
        pending = await conn.fetchval(WAITING, subscription)
        if not pending or time.monotonic() > until or not worker.alive():
            return
        await asyncio.sleep(0.2)


def _lag_summary(row: Any, pending: int, *, drained_in: float) -> dict[str, Any]:
    lag = row["lag"] or [None, None, None]

    def ms(seconds: float | None) -> float | None:
        return round(seconds * 1000, 1) if seconds is not None else None

    return {
        "delivered": int(row["delivered"]),
        "attempts": int(row["attempts"] or 0),
        "not_delivered": int(pending),
        "p50_ms": ms(lag[0]),
        "p95_ms": ms(lag[1]),
        "p99_ms": ms(lag[2]),
        "max_ms": ms(row["lag_max"]),
        "drained_after_bursts_s": round(drained_in, 1),
    }
