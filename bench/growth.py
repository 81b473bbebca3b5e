"""The growth scenario: the same operations on an empty and on a loaded database, in one run.

1. Set-up (``tripquote`` commands and HTTP, as the other scenarios): one agency, its agents,
   their clients and the burst's quotes; then, by ``COPY`` (``growth_load``), the working set
   the reads need: agent 0's listed quotes (DRAFT and SENT in turn, over two clients and
   ``--growth-pages`` pages of ``--growth-page-size``) and a quote with ``--growth-versions``
   versions. "Empty" is this database: nothing but what the measurements touch.
2. ``measure("empty")``: a fresh service; the burst (throughput, P99, verified whole), the
   workers' resident memory after it, the hot quote, ``GET`` one quote, the first and the
   last page of agent 0's list with each filter and of its admin's agency-wide list, the long
   quote's history (first and last page, one version, 20 edits); then ``tripquote expire``
   over ``--growth-due`` due quotes and ``tripquote idempotency purge`` over as many expired
   keys, each loaded just before.
3. The history (``--growth-quotes``, default 1,000,000) loaded by ``COPY``, the disk it needs
   checked first; ``VACUUM ANALYZE``.
4. ``measure("large")``, the same; then every ratio, the sizes, and the plans
   (``EXPLAIN (ANALYZE, BUFFERS)``, ``bench/plans.py``) of every operation slower than 0.8x.
"""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from bench import growth_load as gl
from bench import growth_sets as gs
from bench import pg, procs, scenarios, service
from bench.growth_report import explain_slow, history_line, print_ratios, print_sizes, ratios
from bench.loadgen import HttpClient, http_call, run_bounded
from bench.report import summarize
from bench.tq_side import tq_target

if TYPE_CHECKING:
    from bench.session import Bench

LONG_EDITS = 20


async def run(bench: Bench) -> None:
    """The whole scenario (databases made by ``Bench.setup_databases``)."""
    args = bench.args
    dsn = pg.asyncpg_dsn_from_sqlalchemy(bench.tq_env["TRIPQUOTE_DATABASE_URL"])
    size = gl.Size(args.growth_quotes)
    conn = await asyncpg.connect(dsn)
    try:
        await check_disk(bench, conn, size)
        ctx = await set_up(bench, conn)
        results = {"empty": await measure(bench, conn, ctx, "empty")}
        started = time.monotonic()

        shown = [0]

        def progress(done: int, total: int) -> None:
            tenth = done * 10 // (total or 1)
            if tenth > shown[0]:
                shown[0] = tenth
                bench.note(f"history: {done:,}/{total:,} quotes, {time.monotonic() - started:.0f}s")

        counts = await gl.load_history(
            conn,
            size,
            now=gl.utcnow(),
            progress=progress,
            dsn=dsn,
            parts=args.growth_load_processes,
        )
        await conn.execute("VACUUM ANALYZE")
        bench.note(f"history loaded in {time.monotonic() - started:.0f}s: {counts}")
        results["large"] = await measure(bench, conn, ctx, "large")
        table, slow = ratios(results, threshold=args.growth_threshold)
        passed = all(
            phase["burst"]["verify"]["passed"] and phase["hot"]["checks"]["passed"]
            for phase in results.values()
        )
        bench.runs.append(
            {
                "scenario": "growth",
                "round": 0,
                "workers": str(args.workers[0]),
                "target": "tripquote",
                "summary": {"results": results, "ratios": table, "history": counts},
                "checks": {"passed": passed},
            }
        )
        print_ratios(table)
        print(history_line(results))
        await print_sizes(conn)
        await explain_slow(bench, conn, ctx, slow)
    finally:
        await conn.close()


async def check_disk(bench: Bench, conn: Any, size: gl.Size) -> None:
    """Say what the history needs and what is free where PostgreSQL keeps its data; refuse
    to start a load that cannot fit (with room for the WAL: 1.5x)."""
    needed = size.disk_bytes
    try:
        folder = await conn.fetchval("SHOW data_directory")
        free: int | None = shutil.disk_usage(folder).free
    except (asyncpg.PostgresError, OSError):
        folder, free = "(not readable from here)", None
    bench.note(
        f"growth: {size.quotes:,} quotes, {size.agencies:,} agencies, {size.agents:,} agents, "
        f"~{size.revisions:,} revisions, {2 * size.quotes:,} operation records need "
        f"~{needed / 1e9:.1f} GB; free in {folder}: "
        + (f"{free / 1e9:.1f} GB" if free is not None else "unknown")
    )
    if free is not None and free < 1.5 * needed:
        raise RuntimeError(f"not enough disk: {needed * 1.5 / 1e9:.1f} GB wanted (x1.5 for WAL)")


async def set_up(bench: Bench, conn: Any) -> dict[str, Any]:
    """The agency, agents, clients, burst quotes (HTTP) and the working set (COPY)."""
    args = bench.args
    server = service.start(bench.tq_env, workers=1, log_dir=bench.log_dir)
    try:
        await procs.wait_ready(server, "/health/ready")
        client = bench.client(connections=64)
        try:
            bench.tq_world = await service.make_world(
                bench.tq_env,
                client,
                server.base_url,
                agents=args.agents,
                admins=1,
                tag=str(os.getpid()),
            )
            bench.seq = await scenarios.preload(
                tq_target(bench, server.base_url),
                client,
                bench.tq_pool,
                count=args.burst[0] // 2 + 1,
                agents=args.agents,
                fixtures=len(bench.fixtures),
                seq=bench.seq,
            )
        finally:
            await client.aclose()
    finally:
        server.stop()
    world = bench.tq_world
    now = gl.utcnow()
    second_client = await conn.fetchval(
        """INSERT INTO clients (id, agency_id, agent_id, name, created_at)
           VALUES (gen_random_uuid()::text, $1, $2, 'Second client', $3) RETURNING id""",
        world.agency_id,
        world.agent_ids[0],
        now,
    )
    owner = gl.Owner(world.agency_id, world.agent_ids[0], (world.client_ids[0], second_client))
    drafts = gl.templates()
    rows = 2 * args.growth_pages * args.growth_page_size + args.growth_page_size
    for chunk, _ in gs.owner_quotes(owner, rows, now=now, drafts=drafts, spread=_days(40)):
        await chunk.copy(conn)
    long_id = await gs.add_long_history(
        conn, owner, versions=args.growth_versions, now=now, draft=drafts[0]
    )
    short_id = await gs.add_long_history(conn, owner, versions=1, now=now, draft=drafts[0])
    await conn.execute(
        "UPDATE agents SET open_quote_bound = open_quote_bound + $2 WHERE id = $1",
        owner.agent_id,
        rows + 2,
    )
    await conn.execute("VACUUM ANALYZE")
    bench.note(f"working set: {rows} quotes of agent 0, one of {args.growth_versions} versions")
    owners = [
        gl.Owner(world.agency_id, a, (c,))
        for a, c in zip(world.agent_ids, world.client_ids, strict=True)
    ]
    return {
        "short_id": short_id,
        "owner": owner,
        "owners": owners,
        "long_id": long_id,
        "drafts": drafts,
        "since": now - _days(20),
    }


def _days(n: int) -> timedelta:
    return timedelta(days=n)


def read_requests(bench: Bench, ctx: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """Every measured read: name -> (method, path and query, token)."""
    world = bench.tq_world
    assert world is not None
    token, admin = world.tokens[0], world.admin_tokens[0]
    size = bench.args.growth_page_size
    since = ctx["since"].isoformat().replace("+00:00", "Z")
    lists = {
        "list": "",
        "list status": "&status=DRAFT",
        "list clientId": f"&clientId={world.client_ids[0]}",
        "list updatedSince": f"&updatedSince={since}",
    }
    read = bench.tq_pool.quotes[0]
    requests = {"get": ("GET", f"/api/agents/quotes/{read.id}", world.tokens[read.owner])}
    for name, query in lists.items():
        requests[name] = ("GET", f"/api/agents/quotes?limit={size}{query}", token)
    requests["admin list"] = ("GET", f"/api/agents/quotes?limit={size}", admin)
    long_id = ctx["long_id"]
    requests["revisions"] = ("GET", f"/api/agents/quotes/{long_id}/revisions?limit={size}", token)
    requests["revision"] = ("GET", f"/api/agents/quotes/{long_id}/revisions/2", token)
    return requests


async def deep_cursor(
    client: HttpClient, url: str, token: str, pages: int
) -> tuple[str | None, int]:
    """The cursor of page ``pages`` walked from the first, or of the last page when there
    are fewer; and that page's number (1: no cursor)."""
    cursor, page = None, 1
    while page < pages:
        outcome = await http_call(
            client,
            "GET",
            url + (f"&cursor={cursor}" if cursor else ""),
            token=token,
            keep_body=True,
        )()
        following = (outcome.body or {}).get("nextCursor") if outcome.status == 200 else None
        if following is None:
            break
        cursor, page = following, page + 1
    return cursor, page


async def reads(client: HttpClient, url: str, token: str, count: int) -> dict[str, Any]:
    """``count`` GETs of ``url``, 8 in flight: requests/s and latency."""
    burst = await run_bounded(
        [("read", http_call(client, "GET", url, token=token)) for _ in range(count)],
        concurrency=8,
    )
    return summarize(burst, ok_statuses=(200,))


def worker_rss(pgid: int) -> list[int]:
    """Resident memory (KiB) of each worker of the server's process group (the leader alone
    when it has no children)."""
    members: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pgid:
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        rss = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("VmRSS")), "0")
        members[int(entry)] = int(rss)
    workers = [kib for pid, kib in members.items() if pid != pgid]
    return sorted(workers or list(members.values()))


async def measure(bench: Bench, conn: Any, ctx: dict[str, Any], label: str) -> dict[str, Any]:
    """Every measured operation against a fresh service on the database as it is now."""
    args = bench.args
    workers = args.workers[0]
    out: dict[str, Any] = {}
    server = service.start(bench.tq_env, workers=workers, log_dir=bench.log_dir)
    bench.server_pgid = server.process.pid
    try:
        await procs.wait_ready(server, "/health/ready")
        target = tq_target(bench, server.base_url)
        await bench.warm_up(target, bench.tq_pool, workers)
        client = bench.client()
        try:
            result, plan, bench.seq = await scenarios.burst(
                target,
                client,
                bench.tq_pool,
                size=args.burst[0],
                agents=args.agents,
                fixtures=len(bench.fixtures),
                seq=bench.seq,
                meter=bench.meter(),
            )
            out["burst"] = summarize(result)
            verify = await bench.verify_burst(plan, result)
            out["burst"]["verify"] = {"passed": verify["passed"], "summary": verify["summary"]}
            out["rss_kib"] = worker_rss(server.process.pid)
            hot, checks = await scenarios.hot(
                target, client, bench.tq_pool.quotes[-1], n=args.hot, meter=bench.meter()
            )
            out["hot"] = {**summarize(hot, ok_statuses=(200, 409)), "checks": checks}
            base = server.base_url
            for name, (_, path, token) in read_requests(bench, ctx).items():
                out[name] = await reads(client, base + path, token, args.growth_reads)
                if "list" in name or name == "revisions":
                    cursor, page = await deep_cursor(client, base + path, token, args.growth_pages)
                    if cursor is not None:
                        deep = f"{base}{path}&cursor={cursor}"
                        out[f"{name} p{page}"] = await reads(client, deep, token, args.growth_reads)
            out["edit long quote"] = await edits(client, base, ctx["long_id"], bench)
            out["edit short quote"] = await edits(client, base, ctx["short_id"], bench)
        finally:
            await client.aclose()
    finally:
        server.stop()
    out["expire"] = await timed_command(bench, conn, "expire", ctx)
    out["idempotency purge"] = await timed_command(bench, conn, "purge", ctx)
    bench.note(f"{label}: measured ({', '.join(out)})")
    return out


async def edits(client: HttpClient, base: str, quote_id: str, bench: Bench) -> Any:
    """``LONG_EDITS`` PATCHes of a quote of agent 0, one after the other, each from its
    version (the long quote's against a 1-version quote's: does history make edits dearer?)."""
    world = bench.tq_world
    assert world is not None
    url = f"{base}/api/agents/quotes/{quote_id}"
    read = await http_call(client, "GET", url, token=world.tokens[0], keep_body=True)()
    version = int(read.body["version"])
    results = []
    started = time.perf_counter()
    for n in range(LONG_EDITS):
        call = http_call(
            client,
            "PATCH",
            url,
            json={"version": version, "notes": f"long {n} {time.time()}"},
            token=world.tokens[0],
            keep_body=True,
        )
        began = time.perf_counter()
        outcome = await call()
        results.append(time.perf_counter() - began)
        if outcome.status != 200:
            raise RuntimeError(f"edit of {quote_id}: {outcome.status} {outcome.code}")
        version = int(outcome.body["version"])
    wall = time.perf_counter() - started
    from bench.report import latency_stats

    return {
        "count": LONG_EDITS,
        "ok": LONG_EDITS,
        "wall_s": round(wall, 4),
        "ok_per_s": round(LONG_EDITS / wall, 2),
        "latency": {"all": latency_stats(results)},
    }


async def timed_command(bench: Bench, conn: Any, which: str, ctx: dict[str, Any]) -> Any:
    """``tripquote expire`` over ``--growth-due`` due quotes, or ``tripquote idempotency
    purge`` over as many expired keys, loaded just before: rows/s."""
    count = bench.args.growth_due
    now = gl.utcnow()
    argv: tuple[str, ...]
    if which == "expire":
        await gs.add_due(conn, ctx["owners"], count, now=now, drafts=ctx["drafts"])
        argv, key = ("expire", "--json"), "expired"
    else:
        await gs.add_expired_keys(conn, [o.agent_id for o in ctx["owners"]], count, now=now)
        argv, key = ("idempotency", "purge", "--json"), "purged"
    await conn.execute("ANALYZE quotes; ANALYZE idempotency_keys")
    started = time.perf_counter()
    answer = await service.cli(bench.tq_env, *argv, within=3600)
    wall = time.perf_counter() - started
    done = int(answer[key])
    if done < count:
        raise RuntimeError(f"tripquote {' '.join(argv)}: {done} of {count}")
    return {
        "count": done,
        "ok": done,
        "wall_s": round(wall, 3),
        "ok_per_s": round(done / wall, 1),
        "latency": {"all": {}},
    }
