"""The tripquote side of a run: start the service, set up agents and quotes, run its scenarios."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from typing import TYPE_CHECKING

from bench import merge_mode, procs, scenarios, service
from bench.loadgen import HttpClient
from bench.targets import TripquoteTarget
from bench.world import QuotePool

if TYPE_CHECKING:
    from bench.session import Bench


PGBOUNCER_TARGET = "tripquote-pgbouncer"


async def run_through_pgbouncer(bench: Bench, workers: int) -> None:
    """``--through-pgbouncer``: the same service, database and bursts, through a PgBouncer in
    transaction mode (``TRIPQUOTE_DB_POOLER=transaction``) with as many server connections
    as the direct run's pools (workers x pool per worker); reported as its own target."""
    from bench import pgbouncer
    from bench.pg import sqlalchemy_url

    pool = workers * bench.args.pool_per_worker
    bouncer, port, folder = await pgbouncer.start(
        bench.args.pg, pool_size=pool, log_dir=bench.log_dir
    )
    try:
        database = bench.tq_env["TRIPQUOTE_DATABASE_URL"].rsplit("/", 1)[1]
        env = {
            **bench.tq_env,
            "TRIPQUOTE_DATABASE_URL": sqlalchemy_url(
                f"postgresql://postgres@127.0.0.1:{port}", database
            ),
            "TRIPQUOTE_DB_POOLER": "transaction",
        }
        bench.note(f"through pgbouncer (transaction mode, {pool} server connections)")
        await run_tripquote(bench, workers, env=env, name=PGBOUNCER_TARGET)
    finally:
        bouncer.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def run_tripquote(
    bench: Bench, workers: int, *, env: dict[str, str] | None = None, name: str = "tripquote"
) -> None:
    """Start tripquote (or use --url), set up the world once, run its scenarios; with ``env``
    (another route to the same database: run_through_pgbouncer) its bursts only, as ``name``."""
    server = None
    if bench.args.url:
        base_url, w = bench.args.url.rstrip("/"), "ext"
    else:
        server = service.start(env or bench.tq_env, workers=workers, log_dir=bench.log_dir)
        base_url, w = server.base_url, str(workers)
        bench.server_pgid = server.process.pid
    try:
        if server is not None:
            took = await procs.wait_ready(server, "/health/ready")
            bench.note(f"tripquote --workers {workers} ready in {took:.1f}s")
        setup_client = bench.client(connections=64)
        try:
            if bench.tq_world is None:
                started = time.monotonic()
                bench.tq_world = await service.make_world(
                    bench.tq_env,
                    setup_client,
                    base_url,
                    agents=bench.args.agents,
                    admins=bench.args.contention_agents,
                    tag=str(os.getpid()),
                )
                target = tq_target(bench, base_url)
                bench.seq = await scenarios.preload(
                    target,
                    setup_client,
                    bench.tq_pool,
                    count=bench.max_burst // 2 + 1,
                    agents=bench.args.agents,
                    fixtures=len(bench.fixtures),
                    seq=bench.seq,
                )
                bench.note(
                    f"tripquote set-up: {bench.args.agents} agents, "
                    f"{len(bench.tq_pool.quotes)} quotes in "
                    f"{time.monotonic() - started:.1f}s"
                )
        finally:
            await setup_client.aclose()
        target = dataclasses.replace(tq_target(bench, base_url), name=name)
        await bench.warm_up(target, bench.tq_pool, workers)
        if env is not None:
            if "burst" in bench.scenarios:
                await bench.bursts(w, target, bench.tq_pool)
            return
        first = bench.round == 0  # later rounds repeat the bursts only
        if "ceiling" in bench.scenarios and first:
            await bench.ceiling(w, "tq-live", f"{base_url}/health/live", [bench.client_name])
        if "burst" in bench.scenarios:
            await bench.bursts(w, target, bench.tq_pool)
        if "hot" in bench.scenarios and first:
            await bench.hot(w, target, bench.tq_pool)
        if "contention" in bench.scenarios and first:
            await contention(bench, w, base_url)
        if "proposal" in bench.scenarios:  # every round: its ratio is one round's
            await proposal(bench, w, base_url)
    finally:
        if server is not None:
            server.stop()


async def contention_items(
    bench: Bench, w: str, target: TripquoteTarget, client: HttpClient, mode: str
) -> None:
    """The contention run in an item mode (``merge_mode.MODES``) on M fresh quotes."""
    pool = QuotePool()
    bench.seq = await scenarios.preload(
        target, client, pool, count=bench.args.contention_quotes, agents=1,
        fixtures=len(bench.fixtures), seq=bench.seq,
    )  # fmt: skip
    outcome = await merge_mode.contention_items(
        target, client, pool.quotes, mode=mode, agents=bench.args.contention_agents,
        seconds=bench.args.contention_seconds,
    )  # fmt: skip
    bench.runs.append(
        {
            "workers": w,
            "target": "tripquote",
            "scenario": f"contention-{mode}",
            "round": bench.round,
            "summary": outcome,
        }
    )
    bench.note(
        f"contention {mode} w={w}: {'PASS' if outcome['passed'] else 'FAIL'} "
        f"K={outcome['agents']} M={outcome['quotes']} landed={outcome['landed']} "
        f"({outcome['landed_per_s']}/s) conflict rate={outcome['conflict_rate']} "
        f"retries/save={outcome['retries_per_save_mean']} (max "
        f"{outcome['retries_per_save_max']}) lost={outcome['lost_updates']} "
        f"dup={outcome['duplicated_markers']} phantom={outcome['phantom_markers']} "
        f"version mismatches={len(outcome['version_mismatches'])} errors={outcome['errors']}"
    )


def tq_target(bench: Bench, base_url: str, *, admin: bool = False) -> TripquoteTarget:
    """The tripquote target; ``admin`` makes admin 0 the owner (contention quotes)."""
    world = bench.tq_world
    assert world is not None
    if admin:
        return TripquoteTarget(
            base_url,
            bench.fixtures,
            [world.admin_tokens[0]],
            [world.admin_client_id],
            world.admin_tokens,
        )
    return TripquoteTarget(
        base_url, bench.fixtures, world.tokens, world.client_ids, world.admin_tokens
    )


async def contention(bench: Bench, w: str, base_url: str) -> None:
    """K admin agents editing M shared quotes for T seconds; lost updates must be 0."""
    target = tq_target(bench, base_url, admin=True)
    client = bench.client(connections=bench.args.contention_agents * 2 + 16)
    try:
        pool = QuotePool()
        bench.seq = await scenarios.preload(
            target,
            client,
            pool,
            count=bench.args.contention_quotes,
            agents=1,
            fixtures=len(bench.fixtures),
            seq=bench.seq,
        )
        outcome = await scenarios.contention(
            target,
            client,
            pool.quotes,
            agents=bench.args.contention_agents,
            seconds=bench.args.contention_seconds,
            notes_limit=bench.args.notes_limit,
        )
        for mode in bench.args.contention_modes:
            await contention_items(bench, w, target, client, mode)
    finally:
        await client.aclose()
    bench.runs.append(
        {
            "workers": w,
            "target": "tripquote",
            "scenario": "contention",
            "round": bench.round,
            "summary": outcome,
        }
    )
    lat = outcome["save_latency"]
    bench.note(
        f"contention w={w}: {'PASS' if outcome['passed'] else 'FAIL'} K={outcome['agents']} "
        f"M={outcome['quotes']} T={outcome['seconds']}s landed={outcome['landed']} "
        f"({outcome['landed_per_s']}/s) conflict rate={outcome['conflict_rate']} "
        f"retries/save={outcome['retries_per_save_mean']} (max "
        f"{outcome['retries_per_save_max']}) lost={outcome['lost_updates']} "
        f"dup={outcome['duplicated_markers']} phantom={outcome['phantom_markers']} "
        f"version mismatches={len(outcome['version_mismatches'])} "
        f"save p50/p99={lat.get('p50_ms')}/{lat.get('p99_ms')} ms errors={outcome['errors']}"
    )


async def proposal(bench: Bench, w: str, base_url: str) -> None:
    """The client's pages (views, accepts) released with a save burst; the saves' throughput
    beside them over alone (bench/proposals.py)."""
    from bench import proposals

    target = tq_target(bench, base_url)
    size = bench.max_burst
    client = bench.client(connections=size + bench.args.proposal_views + 64)
    try:
        sendable = [i for i, f in enumerate(bench.fixtures) if f.request.get("items")]
        pool = QuotePool()
        bench.seq = await scenarios.preload(
            target,
            client,
            pool,
            # fixtures are taken in turn: enough rounds for ``proposal_accepts`` sendable ones
            count=-(-bench.args.proposal_accepts * len(bench.fixtures) // len(sendable))
            + len(bench.fixtures),
            agents=bench.args.agents,
            fixtures=len(bench.fixtures),
            seq=bench.seq,
        )
        pool.quotes[:] = [q for q in pool.quotes if q.fixture in sendable][
            : bench.args.proposal_accepts
        ]
        pages = await proposals.links(target, client, pool, base_url=base_url)
        outcome, bench.seq = await proposals.scenario(
            target,
            lambda: bench.client(connections=size + bench.args.proposal_views + 64),
            bench.tq_pool,
            pages,
            views=bench.args.proposal_views,
            burst_size=size,
            agents=bench.args.agents,
            fixtures=len(bench.fixtures),
            seq=bench.seq,
            meter=bench.meter,
        )
    finally:
        await client.aclose()
    bench.runs.append(
        {"workers": w, "target": "tripquote", "scenario": "proposal", "round": bench.round,
         "summary": outcome}
    )  # fmt: skip
    views, accepts = outcome["view_latency"], outcome["accept_latency"]
    bench.note(
        f"proposal w={w}: {'PASS' if outcome['passed'] else 'FAIL'} {outcome['views']} views "
        f"p50/p95/p99={views.get('p50_ms')}/{views.get('p95_ms')}/{views.get('p99_ms')} ms, "
        f"{outcome['accepts']} accepts p50/p95/p99={accepts.get('p50_ms')}/"
        f"{accepts.get('p95_ms')}/{accepts.get('p99_ms')} ms, pages "
        f"{outcome['pages']['ok_per_s']}/s, {outcome['pages_during_burst']} answered before "
        f"the burst's last save; saves beside/alone "
        f"{outcome['saves_per_s_beside_pages']}/{outcome['saves_per_s_alone']} per s "
        f"(alone before/after: {outcome['saves_per_s_alone_before_after']}) = "
        f"x{outcome['save_throughput_ratio']}; beside as many trivial requests "
        f"{outcome['saves_per_s_beside_control']} per s = x{outcome['control_ratio']} of "
        f"alone; beside the pages / beside the trivial requests "
        f"x{outcome['pages_over_control']}"
    )
    for name in ("alone", "beside", "control"):
        cpu = outcome.get(f"cpu_{name}") or {}
        if cpu.get("machine_busy_s") is not None:
            bench.note(
                f"proposal w={w} cpu s ({name}): gen={cpu['generator_s']} "
                f"srv={cpu.get('server_s')} pg={cpu.get('postgres_s')} "
                f"irq={cpu.get('kernel_irq_s')} foreign={cpu.get('foreign_s')} "
                f"busy={cpu['machine_utilisation']:.0%}"
            )
