"""The tripquote benchmark: ``python -m bench.run`` (see bench/README.md).

Scenarios: ``burst``, ``hot``, ``contention``, ``proposal`` (tripquote over HTTP; ``proposal``:
the client's pages and accepts beside a save burst, bench/proposals.py), ``limit`` (the same save
straight through asyncpg), ``peer`` (a bare FastAPI + asyncpg service doing the same save)
and ``ceiling`` (the load generator against a trivial endpoint). Every server it starts runs
in its own process group and is stopped on exit, Ctrl-C or error; every database it creates
(``tripquote_bench_<pid>`` and ``tripquote_bench_<pid>_bare``) is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from bench import merge_mode, procs
from bench.session import Bench

REPO = Path(__file__).resolve().parent.parent
ALL_SCENARIOS = ("burst", "hot", "contention", "proposal", "limit", "peer", "ceiling")
OWN_RUN = ("growth",)
"""Scenarios run only when named (``--scenarios growth``): not part of the default run."""


def _ints(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(names) - set(ALL_SCENARIOS) - set(OWN_RUN)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {sorted(unknown)}")
    return names


def _modes(text: str) -> list[str]:
    modes = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(modes) - set(merge_mode.MODES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown contention mode(s) {sorted(unknown)}")
    return modes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (every option has a bounded default)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenarios", type=_names, default=list(ALL_SCENARIOS))
    parser.add_argument("--burst", type=_ints, default=[1000, 5000], help="burst sizes B")
    parser.add_argument("--hot", type=int, default=1000, help="N concurrent PATCHes of one quote")
    parser.add_argument("--workers", type=_ints, default=[2], help="e.g. 1,2,4")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="peer, limit and tripquote bursts repeated in alternation this many times per "
        "worker count; ratios are per round and their median (the machine drifts)",
    )
    parser.add_argument(
        "--url",
        help="target a running tripquote instead of starting one "
        "(set-up then uses the TRIPQUOTE_* environment of this shell)",
    )
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server for the bench's own databases",
    )
    parser.add_argument(
        "--json", dest="json_path", help="output file (default bench/results/bench-<UTC time>.json)"
    )
    parser.add_argument(
        "--client",
        choices=("aiohttp", "httpx"),
        default=None,
        help="HTTP client for the saves (default: aiohttp when installed)",
    )
    parser.add_argument(
        "--ceiling-clients",
        default=None,
        help="clients measured by the ceiling (default: every one installed)",
    )
    parser.add_argument("--agents", type=int, default=8, help="regular agents (burst)")
    parser.add_argument(
        "--proposal-views", type=int, default=1000, help="page views beside the proposal burst"
    )
    parser.add_argument(
        "--proposal-accepts", type=int, default=200, help="accepts (links) beside it"
    )
    parser.add_argument("--contention-agents", type=int, default=8, help="K")
    parser.add_argument("--contention-quotes", type=int, default=8, help="M")
    parser.add_argument("--contention-seconds", type=float, default=10.0, help="T")
    parser.add_argument(
        "--contention-modes",
        type=_modes,
        default=list(merge_mode.MODES),
        help="item modes run after the notes run (issue 17): "
        f"{','.join(merge_mode.MODES)}; empty for none",
    )
    parser.add_argument(
        "--notes-limit",
        type=int,
        default=2000,
        help="tripquote's notes length bound (contention stops a quote there)",
    )
    parser.add_argument(
        "--pool-per-worker",
        type=int,
        default=15,
        help="DB connections per worker for the peer, and x workers for the "
        "limit (tripquote's default pool: 15, no overflow)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, s")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the tripquote service (repeatable)",
    )
    growth = parser.add_argument_group("growth (--scenarios growth, see bench/growth.py)")
    growth.add_argument(
        "--growth-quotes",
        type=int,
        default=1_000_000,
        help="history quotes (agencies, agents, revisions, operation records in proportion)",
    )
    growth.add_argument("--growth-pages", type=int, default=100, help="deepest list page read")
    growth.add_argument("--growth-page-size", type=int, default=20, help="list limit")
    growth.add_argument("--growth-versions", type=int, default=500, help="the long quote")
    growth.add_argument(
        "--growth-due",
        type=int,
        default=None,
        help="due quotes for tripquote expire, expired keys for the purge (default quotes/10)",
    )
    growth.add_argument(
        "--growth-threshold",
        type=float,
        default=0.8,
        help="plans are shown for every operation whose large/empty ratio is below this",
    )
    growth.add_argument("--growth-reads", type=int, default=500, help="GETs per read measured")
    growth.add_argument(
        "--growth-load-processes",
        type=int,
        default=2,
        help="processes writing the history at once (each builds rows while another COPYs)",
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the databases")
    parser.add_argument(
        "--through-pgbouncer",
        action="store_true",
        help="after each tripquote run, the same bursts through a PgBouncer in transaction "
        "mode (TRIPQUOTE_DB_POOLER=transaction), reported as tripquote-pgbouncer against "
        "tripquote (needs the pgbouncer program)",
    )
    parser.add_argument(
        "--with-webhooks",
        action="store_true",
        help="after each tripquote run, the same bursts with one webhook subscription and a "
        "delivery worker running, reported as tripquote-webhooks against tripquote, and the "
        "delivery lag P50/P95/P99 (bench/webhooks.py)",
    )
    parser.add_argument(
        "--webhooks-nice",
        type=int,
        default=19,
        choices=range(0, 20),
        metavar="0..19",
        help="the delivery worker's and the receiver's nice value with --with-webhooks "
        "(19: deliveries take the CPU the saves leave, as an operator runs them on a shared "
        "host; 0: they compete as equals)",
    )
    args = parser.parse_args(argv)
    if args.growth_due is None:
        args.growth_due = max(1, args.growth_quotes // 10)
    return args


async def _run_cancellable(bench: Bench) -> dict[str, Any]:
    """bench.run() with SIGTERM/SIGHUP cancelling it like Ctrl-C (SIGINT) does."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    return await bench.run()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run, write the JSON (also after an error), return the exit status.

    0: every correctness check passed; 1: a check failed (hot quote, contention, burst
    verification); 2: the run aborted on an error; 130: interrupted.
    """
    args = parse_args(argv)
    bench = Bench(args)
    try:
        import uvloop

        loop_factory: Any = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    status = 0
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_run_cancellable(bench))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: servers stopped, databases dropped", file=sys.stderr)
        status = 130
    except Exception as exc:
        print(f"bench aborted: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 2
    finally:
        procs.stop_all()
    document = getattr(bench, "document", None)
    if document is not None:
        out = (
            Path(args.json_path)
            if args.json_path
            else (REPO / "bench" / "results" / f"bench-{bench.stamp}.json")
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        print(f"\nJSON: {out}")
    if status:
        return status
    failed = [
        r
        for r in bench.runs
        if (r.get("checks") or {}).get("passed") is False
        or (r["scenario"].startswith("contention") and not r["summary"].get("passed"))
        or (r.get("verify") or {}).get("passed") is False
    ]
    for run in failed:
        print(
            f"CHECK FAILED: workers={run['workers']} {run['target']} {run['scenario']}",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
