"""Figures from raw measurements, the terminal table and the JSON document.

Percentiles are exact order statistics of the raw latencies (nearest-rank: the smallest
value with at least p% of the samples at or below it), never histogram approximations.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from bench.loadgen import Burst, Result


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_stats(latencies: Iterable[float]) -> dict[str, Any]:
    """count, mean, p50, p95, p99, max in milliseconds."""
    values = sorted(latencies)
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "mean_ms": round(1000 * sum(values) / len(values), 3),
        "p50_ms": round(1000 * percentile(values, 50), 3),
        "p95_ms": round(1000 * percentile(values, 95), 3),
        "p99_ms": round(1000 * percentile(values, 99), 3),
        "max_ms": round(1000 * values[-1], 3),
    }


def summarize(burst: Burst, *, ok_statuses: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
    """Throughput, latency per operation and overall, every status and error code counted."""
    results = burst.results
    ok = sum(1 for r in results if r.status in ok_statuses)
    by_op: dict[str, list[Result]] = {}
    for result in results:
        by_op.setdefault(result.op, []).append(result)
    return {
        "count": len(results),
        "wall_s": round(burst.wall, 4),
        "ok": ok,
        "ok_per_s": round(ok / burst.wall, 2) if burst.wall > 0 else None,
        "ops_per_s": round(len(results) / burst.wall, 2) if burst.wall > 0 else None,
        "latency": {
            "all": latency_stats(r.latency for r in results),
            "ok": latency_stats(r.latency for r in results if r.status in ok_statuses),
            **{op: latency_stats(r.latency for r in rs) for op, rs in sorted(by_op.items())},
        },
        "start_lag": latency_stats(r.lag for r in results),
        "status": count_statuses(results),
        "codes": dict(sorted(Counter(r.code for r in results if r.code).items())),
        "cpu": burst.cpu,
    }


def count_statuses(results: Iterable[Result]) -> dict[str, int]:
    """How many results had each status (``0`` = exception, see the codes)."""
    return {str(k): v for k, v in sorted(Counter(r.status for r in results).items())}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, None when either is missing or the denominator is 0."""
    if numerator is None or denominator in (None, 0) or math.isnan(denominator or math.nan):
        return None
    return round(numerator / denominator, 3)


HEADER = (
    f"{'workers':>7} {'target':<10} {'scenario':<18} {'n':>6} {'wall s':>8} {'ok':>6} "
    f"{'ok/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}  statuses / codes"
)


def row(workers: str, target: str, scenario: str, summary: dict[str, Any]) -> str:
    """One table line for a summary from :func:`summarize`."""
    lat = summary["latency"]["all"]
    codes = " ".join(f"{k}={v}" for k, v in summary["codes"].items())
    statuses = " ".join(f"{k}:{v}" for k, v in summary["status"].items())
    cpu = summary.get("cpu") or {}
    if cpu.get("machine_busy_s") is not None:
        codes += (
            f" | cpu s gen={cpu['generator_s']} srv={cpu.get('server_s')} "
            f"pg={cpu.get('postgres_s')} irq={cpu.get('kernel_irq_s')} "
            f"foreign={cpu.get('foreign_s')} "
            f"busy={cpu['machine_utilisation']:.0%}"
        )
    return (
        f"{workers:>7} {target:<10} {scenario:<18} {summary['count']:>6} "
        f"{summary['wall_s']:>8.3f} {summary['ok']:>6} {summary['ok_per_s'] or 0:>8.1f} "
        f"{lat.get('p50_ms', math.nan):>8.1f} {lat.get('p95_ms', math.nan):>8.1f} "
        f"{lat.get('p99_ms', math.nan):>8.1f} {lat.get('max_ms', math.nan):>8.1f}  "
        f"{statuses} {codes}".rstrip()
    )


def print_table(title: str, lines: Sequence[str]) -> None:
    """Print a titled block."""
    print()
    print(title)
    print("-" * len(HEADER))
    for line in lines:
        print(line)


def _bursts(runs: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int], dict[int, Any]]:
    """Burst summaries by (workers, target, size), then by round."""
    index: dict[tuple[str, str, int], dict[int, Any]] = {}
    for run in runs:
        if run["scenario"] == "burst":
            key = (run["workers"], run["target"], run["size"])
            index.setdefault(key, {})[run.get("round", 0)] = run["summary"]
    return index


def _p99(summary: dict[str, Any]) -> float | None:
    value: float | None = summary["latency"]["all"].get("p99_ms")
    return value


def _median(values: Sequence[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return round(statistics.median(known), 3) if known else None


def _rounds_text(values: Sequence[float | None]) -> str:
    return "" if len(values) < 2 else " (" + " ".join(f"x{v}" for v in values) + ")"


_BASES = {
    "tripquote": ("limit", "peer"),
    "tripquote-pgbouncer": ("tripquote",),
    "tripquote-webhooks": ("tripquote",),
}
"""What each target's throughput and P99 are compared with."""


def ratio_lines(runs: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """tripquote / limit and tripquote / peer for throughput and P99, per workers and size:
    one ratio per round (both sides measured back to back), and their median."""
    index = _bursts(runs)
    lines, records = [], []
    for (workers, target, size), rounds in sorted(index.items()):
        for other in _BASES.get(target, ()):
            base = index.get((workers, other, size))
            if base is None:
                continue
            paired = sorted(set(rounds) & set(base))
            t_ratios = [ratio(rounds[r]["ok_per_s"], base[r]["ok_per_s"]) for r in paired]
            p_ratios = [ratio(_p99(rounds[r]), _p99(base[r])) for r in paired]
            t_ratio, p_ratio = _median(t_ratios), _median(p_ratios)
            records.append(
                {
                    "workers": workers,
                    "size": size,
                    "target": target,
                    "versus": other,
                    "throughput_ratio": t_ratio,
                    "p99_ratio": p_ratio,
                    "rounds": [
                        {"round": r, "throughput_ratio": t, "p99_ratio": p}
                        for r, t, p in zip(paired, t_ratios, p_ratios, strict=True)
                    ],
                }
            )
            lines.append(
                f"workers={workers:<3} B={size:<6} {target}/{other:<6} "
                f"throughput x{t_ratio}{_rounds_text(t_ratios)}  "
                f"P99 x{p_ratio}{_rounds_text(p_ratios)}"
            )
    return lines, records


_PROPOSAL_RATIOS = (
    ("save_throughput_ratio", "saves beside the pages / alone"),
    ("control_ratio", "beside as many trivial requests / alone"),
    ("pages_over_control", "beside the pages / beside the trivial requests"),
)


def proposal_lines(runs: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """The proposal scenario's ratios (bench/proposals.py), per workers: one per round (each
    round its own alone, beside and control bursts, in the same server), and their median."""
    by_workers: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run["scenario"] == "proposal":
            by_workers.setdefault(run["workers"], []).append(run["summary"])
    lines, records = [], []
    for workers, summaries in sorted(by_workers.items()):
        record: dict[str, Any] = {"workers": workers, "rounds": len(summaries)}
        for key, label in _PROPOSAL_RATIOS:
            per_round = [summary.get(key) for summary in summaries]
            record[key] = {"median": _median(per_round), "rounds": per_round}
            lines.append(
                f"workers={workers:<3} {label}: x{_median(per_round)}{_rounds_text(per_round)}"
            )
        records.append(record)
    return lines, records


def scaling_lines(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Median ok saves/s and P99 over the rounds, per worker count, for each target and burst
    size; then each target's largest burst against its smallest (queueing collapse)."""
    index = _bursts(runs)
    table: dict[tuple[str, int], dict[str, dict[int, Any]]] = {}
    for (workers, target, size), rounds in index.items():
        table.setdefault((target, size), {})[workers] = rounds
    lines = []
    for (target, size), by_workers in sorted(table.items()):
        cells = "  ".join(
            f"w={w}: {_median([s['ok_per_s'] for s in rounds.values()])}/s "
            f"P99 {_median([_p99(s) for s in rounds.values()]) or math.nan:.0f} ms"
            for w, rounds in sorted(by_workers.items(), key=lambda kv: kv[0])
        )
        lines.append(f"{target:<10} B={size:<6} {cells}")
    sizes = sorted({size for (_, size) in table})
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        for target in sorted({target for (target, _) in table}):
            for w, rounds in sorted(table.get((target, large), {}).items()):
                smaller = table.get((target, small), {}).get(w, {})
                per_round = [
                    ratio(rounds[r]["ok_per_s"], smaller[r]["ok_per_s"])
                    for r in sorted(set(rounds) & set(smaller))
                ]
                lines.append(
                    f"{target:<10} w={w}: B={large} / B={small} throughput "
                    f"x{_median(per_round)}{_rounds_text(per_round)}"
                )
    return lines


def per_operation_line(summary: dict[str, Any]) -> str:
    """P50/P95/P99/max of each operation of a burst, and of the accepted saves only."""
    parts = []
    for op in ("create", "update", "ok"):
        lat = summary["latency"].get(op) or {}
        if lat.get("count"):
            parts.append(
                f"{op} n={lat['count']} {lat['p50_ms']:.0f}/{lat['p95_ms']:.0f}/"
                f"{lat['p99_ms']:.0f}/{lat['max_ms']:.0f}"
            )
    return "p50/p95/p99/max ms: " + "  ".join(parts)


def target_line(summary: dict[str, Any]) -> str:
    """The brief's targets for a burst: P95 < 500 ms, P99 < 1 s, every save accepted."""
    lat = summary["latency"]["all"]
    p95, p99 = lat.get("p95_ms", float("inf")), lat.get("p99_ms", float("inf"))
    errors = summary["count"] - summary["ok"]
    verdict = "MET" if p95 < 500 and p99 < 1000 and errors == 0 else "NOT MET"
    return (
        f"targets {verdict}: P95 {p95:.0f} ms (< 500), P99 {p99:.0f} ms (< 1000), "
        f"{errors} saves refused"
    )


def print_meta(meta: dict[str, Any]) -> None:
    """The facts first, so a reader sees the conditions before the numbers."""
    m, v, p = meta["machine"], meta["versions"], meta["postgres"]
    print(f"tripquote bench  {meta['date']}  commit {meta['git_commit']}")
    print(
        f"machine: {m['nproc']} cores, {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"load {m['loadavg_at_start']}"
    )
    print(
        f"postgres {p['server_version']}  synchronous_commit={p['synchronous_commit']} "
        f"fsync={p['fsync']} max_connections={p['max_connections']}"
    )
    print("versions: " + " ".join(f"{k}={val}" for k, val in v.items()))
    print(f"NOTE: {meta['note']}")
