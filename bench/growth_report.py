"""The growth scenario's output: ratios (large / empty), sizes, and the plans of what slowed.

The plans come from the service itself, run in this process on the bench's database
(``bench/plans.py``): one request of each slow operation is sent to an in-process app (or the
command run in-process), every statement it sent is captured with its arguments and run again,
rolled back, with ``EXPLAIN (ANALYZE, BUFFERS)``'s figures (``auto_explain``), custom and
generic plan.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from bench import plans
from bench.loadgen import http_call
from bench.payloads import create_body
from bench.world import PlanItem

if TYPE_CHECKING:
    from bench.session import Bench


def ratios(
    results: dict[str, dict[str, Any]], *, threshold: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Per operation: throughput and P99 empty / large and throughput's large / empty; the
    operations whose ratio is below ``threshold``. Memory: the largest worker's RSS."""
    empty, large = results["empty"], results["large"]
    table, slow = [], []
    for name, before in empty.items():
        after = large.get(name)
        if name == "rss_kib" or not isinstance(after, dict) or not before.get("ok_per_s"):
            continue
        ratio = round(after["ok_per_s"] / before["ok_per_s"], 3) if after.get("ok_per_s") else 0
        table.append(
            {
                "operation": name,
                "empty_per_s": before["ok_per_s"],
                "large_per_s": after["ok_per_s"],
                "ratio": ratio,
                "empty_p99_ms": before["latency"]["all"].get("p99_ms"),
                "large_p99_ms": after["latency"]["all"].get("p99_ms"),
            }
        )
        if ratio < threshold:
            slow.append(name)
    rss_before, rss_after = max(empty["rss_kib"] or [0]), max(large["rss_kib"] or [0])
    table.append(
        {
            "operation": "rss per worker (KiB, max)",
            "empty_per_s": rss_before,
            "large_per_s": rss_after,
            "ratio": round(rss_after / rss_before, 3) if rss_before else None,
            "empty_p99_ms": None,
            "large_p99_ms": None,
        }
    )
    return table, slow


def history_line(results: dict[str, dict[str, Any]]) -> str:
    """Whether a long history makes an edit dearer: edits/s of the 500-version quote over
    those of a 1-version quote, in each phase (1.0: no dearer)."""
    parts = []
    for phase, out in results.items():
        long, short = out["edit long quote"]["ok_per_s"], out["edit short quote"]["ok_per_s"]
        parts.append(f"{phase} {long / short:.3f}")
    return "edits of the long quote / of a 1-version quote: " + ", ".join(parts)


def print_ratios(table: list[dict[str, Any]]) -> None:
    """The ratio table (throughput: large / empty, >= 0.8 wanted; RSS: <= 1.2 wanted)."""
    print("\ngrowth: large / empty (throughput in ok/s; RSS: large / empty)")
    print(
        f"{'operation':<28} {'empty/s':>10} {'large/s':>10} {'ratio':>7} "
        f"{'p99 ms empty':>13} {'p99 ms large':>13}"
    )
    for r in table:
        print(
            f"{r['operation']:<28} {r['empty_per_s']:>10} {r['large_per_s']:>10} "
            f"{r['ratio'] if r['ratio'] is not None else '-':>7} "
            f"{r['empty_p99_ms'] if r['empty_p99_ms'] is not None else '-':>13} "
            f"{r['large_p99_ms'] if r['large_p99_ms'] is not None else '-':>13}"
        )


SIZES = """
SELECT c.relname AS name, CASE c.relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind,
       coalesce(t.relname, '') AS of_table, pg_relation_size(c.oid) AS bytes,
       CASE WHEN c.relkind IN ('r', 'p') THEN pg_total_relation_size(c.oid) END AS total
  FROM pg_class c
  LEFT JOIN pg_index x ON x.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = x.indrelid
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'i')
 ORDER BY coalesce(t.relname, c.relname), c.relkind DESC, c.relname
"""


async def print_sizes(conn: Any) -> list[dict[str, Any]]:
    """The database's size, per table (with TOAST and indexes) and per index."""
    rows = [dict(r) for r in await conn.fetch(SIZES)]
    total = await conn.fetchval("SELECT pg_database_size(current_database())")
    print(f"\ndatabase size: {total / 1e6:,.1f} MB")
    for r in rows:
        if r["kind"] == "table":
            print(
                f"  {r['name']:<44} heap {r['bytes'] / 1e6:>10,.1f} MB   "
                f"total {(r['total'] or 0) / 1e6:>10,.1f} MB"
            )
        else:
            print(f"    index {r['name']:<38} {r['bytes'] / 1e6:>10,.1f} MB")
    return rows


class AsgiClient:
    """The bench's HTTP client surface over an in-process app (no socket)."""

    name = "asgi"

    def __init__(self, app: Any) -> None:
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), timeout=60)

    async def send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """One request to the app."""
        response = await self._client.request(method, url, content=body, headers=headers)
        return response.status_code, response.content

    async def aclose(self) -> None:
        """Close the client."""
        await self._client.aclose()


async def explain_slow(bench: Bench, conn: Any, ctx: dict[str, Any], slow: list[str]) -> None:
    """For each slow operation, the plans of the statements one of its requests sends."""
    if not slow:
        print(f"\nno operation below {bench.args.growth_threshold}x: no plan to show")
        return
    from asgi_lifespan import LifespanManager

    from tripquote.app import create_app
    from tripquote.config import Settings

    os.environ.update({k: v for k, v in bench.tq_env.items() if k.startswith("TRIPQUOTE_")})
    os.environ["TRIPQUOTE_LOG_LEVEL"] = "WARNING"
    for name in slow:
        with plans.capture() as seen:
            if name in ("expire", "idempotency purge"):
                await asyncio.to_thread(_command, name)
            else:
                app = create_app(Settings(_env_file=None))
                async with LifespanManager(app):
                    client = AsgiClient(app)
                    try:
                        await _probe(bench, ctx, name, client, seen)
                    finally:
                        await client.aclose()
            statements = list({s.text: s for s in reversed(seen)}.values())[::-1]
        print(f"\n=== {name}: {len(statements)} statement(s) ===")
        for statement in statements:
            print(f"--- statement:\n{statement.text.strip()}")
            for generic in (False, True):
                print(f"--- its {'generic' if generic else 'custom'} plan:")
                try:
                    text = await plans.analyzed(conn, statement, generic=generic)
                except asyncpg.PostgresError as exc:  # a create's id, written by the probe
                    print(f"(not run again: {type(exc).__name__})")
                    continue
                print(text)


def _command(name: str) -> None:
    from tripquote import cli

    if name == "expire":
        cli.expire(batch_size=500, as_json=True)
    else:
        cli.idempotency_purge(as_json=True)


async def _probe(
    bench: Bench, ctx: dict[str, Any], name: str, client: AsgiClient, seen: list[Any]
) -> None:
    """One request of operation ``name`` (its statements only are kept in ``seen``)."""
    from bench.growth import deep_cursor, read_requests
    from bench.tq_side import tq_target

    base = "http://app"
    world = bench.tq_world
    assert world is not None
    target = tq_target(bench, base)
    quote = bench.tq_pool.quotes[0]
    read = await target.read_call(client, quote, actor=None)()
    quote.version = int(read.body["version"])
    requests = read_requests(bench, ctx)
    head, _, page = name.rpartition(" p")
    if not (head and page.isdigit()):
        head, page = name, "1"
    if name == "burst":
        fixture = bench.fixtures[0]
        body = create_body(fixture, client_id=world.client_ids[0], seq=0)
        calls = [
            http_call(
                client, "POST", f"{base}/api/agents/quotes", json=body, token=world.tokens[0]
            ),
            target.save_call(
                client, PlanItem("update", quote.owner, quote.fixture, 0, quote, quote.version)
            ),
        ]
    elif name in ("hot", "edit long quote", "edit short quote"):
        quote_id = {"hot": quote.id, "edit long quote": ctx["long_id"]}.get(name, ctx["short_id"])
        url = f"{base}/api/agents/quotes/{quote_id}"
        token = world.tokens[quote.owner] if name == "hot" else world.tokens[0]
        got = await http_call(client, "GET", url, token=token, keep_body=True)()
        patch = {"version": got.body["version"], "notes": "probe"}
        calls = [http_call(client, "PATCH", url, json=patch, token=token)]
    elif head in requests:
        _, path, token = requests[head]
        url = base + path
        if page != "1":
            cursor, _ = await deep_cursor(client, url, token, int(page))
            url += f"&cursor={cursor}"
        calls = [http_call(client, "GET", url, token=token)]
    else:
        return
    seen.clear()
    for call in calls:
        await call()
