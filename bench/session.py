"""One benchmark run: settings, databases, servers, the bare side and the collected results."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from bench import bare, facts, pg, procs, scenarios, service
from bench.cpu import CpuMeter
from bench.limit import BareWorld, run_limit, seed
from bench.loadgen import HttpClient, available_clients, make_client
from bench.payloads import fixtures_path, load_fixtures
from bench.report import (
    HEADER,
    per_operation_line,
    print_meta,
    print_table,
    proposal_lines,
    ratio_lines,
    row,
    scaling_lines,
    summarize,
    target_line,
)
from bench.targets import PeerTarget, Target
from bench.tq_side import run_through_pgbouncer, run_tripquote
from bench.webhooks import run_with_webhooks
from bench.world import QuotePool

REPO = Path(__file__).resolve().parent.parent
TRIPQUOTE_SCENARIOS = {"burst", "hot", "contention", "proposal", "growth"}
ROUND_SCENARIOS = {"burst", "hot", "contention", "proposal"}


class Bench:
    """One run: its settings, databases, servers and collected results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scenarios = set(args.scenarios)
        self.fixtures = load_fixtures()
        self.client_name = args.client or available_clients()[0]
        ceiling = args.ceiling_clients.split(",") if args.ceiling_clients else available_clients()
        self.ceiling_clients = [c.strip() for c in ceiling if c.strip()]
        self.runs: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.skipped: list[str] = []
        self.stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.log_dir = REPO / "bench" / "results" / f"logs-{self.stamp}-{os.getpid()}"
        self.tq_db = f"tripquote_bench_{os.getpid()}"
        self.bare_db = f"tripquote_bench_{os.getpid()}_bare"
        self.databases: list[str] = []
        self.bare_world = BareWorld.make(args.agents)
        self.bare_pool = QuotePool()
        self.tq_pool = QuotePool()
        self.tq_env: dict[str, str] = {}
        self.tq_world: service.World | None = None
        self.seq = 0
        self.max_burst = max(args.burst)
        self.server_pgid: int | None = None  # the running server's process group, for CPU
        self.round = 0  # which of --rounds alternations is running
        self.db_tag = f"tripquote_bench_{os.getpid()}"  # in the title of our DB backends

    # --- bookkeeping -----------------------------------------------------------------------

    def record(
        self, workers: str, target: str, scenario: str, summary: dict[str, Any], **extra: Any
    ) -> None:
        """Keep a result and print its table line at once."""
        self.runs.append(
            {
                "workers": workers,
                "target": target,
                "scenario": scenario,
                "round": self.round,
                "summary": summary,
                **extra,
            }
        )
        label = scenario + (f" {extra['size']}" if "size" in extra else "")
        if self.args.rounds > 1 and scenario == "burst":
            label += f" r{self.round + 1}"
        line = row(workers, target, label, summary)
        self.lines.append(line)
        print(line, flush=True)

    def note(self, text: str) -> None:
        """Print and keep a remark."""
        self.lines.append("        " + text)
        print("        " + text, flush=True)

    def meter(self) -> CpuMeter:
        """A CPU meter for the running server and the bench's database backends."""
        return CpuMeter(self.server_pgid, self.db_tag)

    def client(self, name: str | None = None, connections: int | None = None) -> HttpClient:
        """A fresh HTTP client sized for the largest burst."""
        size = connections or max(self.max_burst, self.args.hot) + 64
        return make_client(name or self.client_name, connections=size, timeout=self.args.timeout)

    # --- the bare side: ceiling, peer, limit ------------------------------------------------

    async def bare_side(self, workers: int) -> None:
        """Ceiling and peer against the bare peer server, then the driver-direct limit."""
        w = str(workers)
        dsn = pg.dsn_for(self.args.pg, self.bare_db)
        if self.scenarios & {"peer", "ceiling"}:
            port = procs.free_port()
            env = {
                **os.environ,
                "BENCH_PEER_DSN": dsn,
                "BENCH_PEER_POOL": str(self.args.pool_per_worker),
                "PYTHONPATH": str(REPO),
            }
            argv = [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.peer:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                w,
                "--backlog",
                "4096",  # tripquote serve's default
                "--log-level",
                "warning",
                "--no-access-log",
            ]
            server = procs.start(f"peer-w{w}", argv, env=env, port=port, log_dir=self.log_dir)
            self.server_pgid = server.process.pid
            try:
                took = await procs.wait_ready(server, "/ping")
                self.note(f"peer --workers {workers} ready in {took:.1f}s")
                target = PeerTarget(server.base_url, self.fixtures, self.bare_world)
                if "peer" in self.scenarios:
                    await self.warm_up(target, self.bare_pool, workers)
                if "ceiling" in self.scenarios and self.round == 0:
                    # Client libraries are compared once (first worker count); later
                    # worker counts measure the save client only.
                    first = workers == self.args.workers[0]
                    await self.ceiling(
                        w,
                        "peer-ping",
                        f"{server.base_url}/ping",
                        self.ceiling_clients if first else [self.client_name],
                    )
                if "peer" in self.scenarios:
                    await self.bursts(w, target, self.bare_pool)
                    if self.round == 0:
                        await self.hot(w, target, self.bare_pool)
            finally:
                server.stop()
        if "limit" in self.scenarios:
            for size in self.args.burst:
                burst, self.seq = await run_limit(
                    dsn,
                    self.bare_world,
                    self.fixtures,
                    self.bare_pool,
                    size=size,
                    pool_size=workers * self.args.pool_per_worker,
                    seq=self.seq,
                    meter=CpuMeter(None, self.db_tag),
                )
                summary = summarize(burst)
                self.record(
                    w,
                    "limit",
                    "burst",
                    summary,
                    size=size,
                    db_connections=workers * self.args.pool_per_worker,
                )
                self.note(per_operation_line(summary))

    async def warm_up(self, target: Target, pool: QuotePool, workers: int) -> None:
        """A few unmeasured saves after a (re)start, so no burst meets a cold worker."""
        client = self.client(connections=24 * workers)
        try:
            self.seq = await scenarios.warm_up(
                target,
                client,
                pool,
                workers=workers,
                agents=self.args.agents,
                fixtures=len(self.fixtures),
                seq=self.seq,
            )
        finally:
            await client.aclose()

    async def ceiling(self, w: str, target: str, url: str, clients: list[str]) -> None:
        """The generator against a trivial endpoint, once per client library and size."""
        for name in clients:
            for size in self.args.burst:
                client = self.client(name)
                try:
                    summary = await scenarios.ceiling(client, url, size=size, meter=self.meter())
                finally:
                    await client.aclose()
                self.record(
                    w, f"{target}", f"ceiling/{name}", summary, size=size, client=name, url=url
                )

    async def bursts(self, w: str, target: Target, pool: QuotePool) -> None:
        """Every burst size against one target, each with a fresh client (cold connections)."""
        for size in self.args.burst:
            client = self.client()
            try:
                result, plan, self.seq = await scenarios.burst(
                    target,
                    client,
                    pool,
                    size=size,
                    agents=self.args.agents,
                    fixtures=len(self.fixtures),
                    seq=self.seq,
                    meter=self.meter(),
                )
            finally:
                await client.aclose()
            extra: dict[str, Any] = {"size": size, "client": self.client_name}
            if target.name.startswith("tripquote") and self.tq_env:
                extra["verify"] = await self.verify_burst(plan, result)
            summary = summarize(result)
            self.record(w, target.name, "burst", summary, **extra)
            self.note(per_operation_line(summary))
            if "verify" in extra:
                self.note(f"verify: {extra['verify']['summary']}")
                for kind, examples in (extra["verify"].get("examples") or {}).items():
                    for example in examples:
                        self.note(f"  {kind}: {example}")
            if target.name.startswith("tripquote"):
                self.note(target_line(summary))

    async def hot(self, w: str, target: Target, pool: QuotePool) -> None:
        """N concurrent PATCHes of one quote from the same version."""
        client = self.client()
        try:
            quote = pool.quotes[-1]
            result, checks = await scenarios.hot(
                target, client, quote, n=self.args.hot, meter=self.meter()
            )
        finally:
            await client.aclose()
        self.record(w, target.name, "hot", summarize(result), size=self.args.hot, checks=checks)
        self.note(
            f"hot: {'PASS' if checks['passed'] else 'FAIL'} successes="
            f"{checks['successes']} conflicts={checks['conflicts']} version "
            f"{checks['start_version']}->{checks['final_version']}"
        )

    async def verify_burst(self, plan: list[Any], result: Any) -> dict[str, Any]:
        """Check in tripquote's database that every save is whole: quote, items, revisions."""
        from bench.verify import verify_burst

        return await verify_burst(
            pg.asyncpg_dsn_from_sqlalchemy(self.tq_env["TRIPQUOTE_DATABASE_URL"]),
            plan,
            result,
            self.fixtures,
        )

    # --- the whole run ----------------------------------------------------------------------

    async def setup_databases(self) -> None:
        """Create the bench's databases: bare tables + seed; tripquote migrated."""
        if self.scenarios & {"limit", "peer", "ceiling"}:
            await pg.create_database(self.args.pg, self.bare_db)
            self.databases.append(self.bare_db)
            dsn = pg.dsn_for(self.args.pg, self.bare_db)
            conn = await asyncpg.connect(dsn)
            try:
                await bare.install_schema(conn)
            finally:
                await conn.close()
            if self.scenarios & {"limit", "peer"}:
                await seed(
                    dsn,
                    self.bare_world,
                    self.fixtures,
                    self.bare_pool,
                    count=self.max_burst // 2 + 1,
                )
        if self.scenarios & TRIPQUOTE_SCENARIOS:
            if self.args.url:
                self.tq_env = dict(os.environ)
                if "TRIPQUOTE_DATABASE_URL" not in self.tq_env:
                    raise SystemExit(
                        "--url needs TRIPQUOTE_DATABASE_URL (and the service's "
                        "TRIPQUOTE_JWT_SECRET) for set-up and verification"
                    )
                return
            reason = service.unavailable_reason()
            if reason:
                self.skipped.append(f"tripquote scenarios skipped: {reason}")
                self.scenarios -= TRIPQUOTE_SCENARIOS
                return
            await pg.create_database(self.args.pg, self.tq_db)
            self.databases.append(self.tq_db)
            extra = dict(kv.split("=", 1) for kv in self.args.service_env)
            self.tq_env = service.service_env(pg.sqlalchemy_url(self.args.pg, self.tq_db), extra)
            await service.upgrade(self.tq_env)

    def sides(self, workers: int) -> list[Callable[[], Awaitable[None]]]:
        """What one round runs, in its first order: the bare side, then tripquote and the
        ways beside it (through PgBouncer, with webhooks)."""
        sides: list[Callable[[], Awaitable[None]]] = [lambda: self.bare_side(workers)]
        if self.scenarios & ROUND_SCENARIOS:
            sides.append(lambda: run_tripquote(self, workers))
            if self.args.through_pgbouncer:
                sides.append(lambda: run_through_pgbouncer(self, workers))
            if self.args.with_webhooks:
                sides.append(lambda: run_with_webhooks(self, workers))
        return sides

    async def run(self) -> dict[str, Any]:
        """Everything, in order; servers stopped and databases dropped whatever happens."""
        facts.raise_open_files_limit(4 * max(self.max_burst, self.args.hot) + 1024)
        meta: dict[str, Any] = {
            "date": facts.now_iso(),
            "machine": facts.machine(),
            "versions": facts.versions(),
            "git_commit": facts.git_commit(REPO),
            "note": facts.SHARED_MACHINE_NOTE,
        }
        meta["postgres"] = await pg.server_facts(pg.dsn_for(self.args.pg, "postgres"))
        print_meta(meta)
        failure: BaseException | None = None
        try:
            await self.setup_databases()
            meta["settings"] = self.settings()
            print(HEADER, flush=True)
            if "growth" in self.scenarios:
                from bench import growth

                await growth.run(self)
            for workers in self.args.workers:
                # Alternated, so a drift of this shared machine hits both sides of a ratio;
                # and in the opposite order every other round (the first round sets the world
                # up), so that no side always runs after another's writes (its autovacuum,
                # its checkpoint) or always first.
                for number in range(self.args.rounds):
                    self.round = number
                    sides = self.sides(workers)
                    for side in sides if number % 2 == 0 else reversed(sides):
                        await side()
                self.round = 0
        except BaseException as exc:
            failure = exc
            raise
        finally:
            procs.stop_all()
            if not self.args.keep_db:
                for name in self.databases:
                    with contextlib.suppress(Exception):
                        await pg.drop_database(self.args.pg, name)
            meta["finished"] = facts.now_iso()
            meta["loadavg_at_end"] = list(os.getloadavg())
            meta["databases"] = {"created": list(self.databases), "dropped": not self.args.keep_db}
            meta["servers"] = list(procs.STARTED)
            if failure is not None:
                meta["aborted"] = f"{type(failure).__name__}: {failure}"
            self.document = {"meta": meta, "runs": self.runs, "skipped": self.skipped}
        ratio_text, ratios = ratio_lines(self.runs)
        self.document["ratios"] = ratios
        print_table(
            "tripquote / limit, tripquote / peer, tripquote-pgbouncer / tripquote, "
            "tripquote-webhooks / tripquote "
            "(throughput = ok saves/s; P99 over every save)",
            ratio_text or ["(no pair to compare)"],
        )
        proposal_text, proposal_ratios = proposal_lines(self.runs)
        if proposal_ratios:
            self.document["proposal_ratios"] = proposal_ratios
            print_table(
                "the client's pages beside a save burst (saves/s; the issue's bound: beside "
                "the pages / alone >= 0.9)",
                proposal_text,
            )
        print_table(
            "throughput by worker processes (ok saves/s, P99 over every save)",
            scaling_lines(self.runs) or ["(no burst)"],
        )
        for text in self.skipped:
            print(text)
        return self.document

    def settings(self) -> dict[str, Any]:
        """The knobs of this run, recorded in the JSON."""
        args = self.args
        return {
            "scenarios": sorted(self.scenarios),
            "burst_sizes": args.burst,
            "hot_n": args.hot,
            "workers": args.workers,
            "rounds": args.rounds,
            "through_pgbouncer": args.through_pgbouncer,
            "with_webhooks": args.with_webhooks,
            "url": args.url,
            "client": self.client_name,
            "ceiling_clients": self.ceiling_clients,
            "agents": args.agents,
            "contention": {
                "agents": args.contention_agents,
                "quotes": args.contention_quotes,
                "seconds": args.contention_seconds,
                "notes_limit": args.notes_limit,
                "modes": ["notes", *args.contention_modes],
            },
            "pool_per_worker": args.pool_per_worker,
            "request_timeout_s": args.timeout,
            "burst_mix": "B//2 version-carrying full saves of distinct quotes + the rest creates",
            "latency": "from the release of the start barrier to the end of the response",
            "percentiles": "nearest-rank on the raw latencies",
            "fixtures": [f.name for f in self.fixtures],
            "fixtures_path": str(fixtures_path()),
            "tripquote_env": {
                k: v
                for k, v in self.tq_env.items()
                if k.startswith("TRIPQUOTE_") and "SECRET" not in k
            },
            "event_loop": type(asyncio.get_running_loop()).__module__,
            "log_dir": str(self.log_dir),
        }
