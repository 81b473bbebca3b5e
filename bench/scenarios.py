"""The HTTP scenarios: burst, hot quote, contention, and the generator's own ceiling."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import (
    Burst,
    Call,
    HttpClient,
    Meter,
    Outcome,
    Result,
    fire,
    http_call,
    run_bounded,
)
from bench.report import latency_stats, summarize
from bench.targets import Target, read_version_notes
from bench.world import PlanItem, Quote, QuotePool, absorb, plan_burst, unknown_quotes

CONFLICT = "QUOTE_CONFLICT_VERSION"


async def refresh_unknown(target: Target, client: HttpClient, pool: QuotePool) -> int:
    """Re-read the version of quotes whose last save had an unknown outcome."""
    stale = unknown_quotes(pool)
    if not stale:
        return 0
    burst = await run_bounded(
        [("read", target.read_call(client, q, actor=None)) for q in stale], concurrency=16
    )
    for quote, result in zip(stale, burst.results, strict=True):
        if result.status == 200:
            quote.version = int(result.body["version"])
    pool.quotes[:] = [q for q in pool.quotes if q.version > 0]
    return len(stale)


async def preload(
    target: Target,
    client: HttpClient,
    pool: QuotePool,
    *,
    count: int,
    agents: int,
    fixtures: int,
    seq: int,
    concurrency: int = 16,
) -> int:
    """Create ``count`` quotes through the target (set-up, not measured); returns next seq."""
    plan = [
        PlanItem("create", (seq + i) % agents, (seq + i) % fixtures, seq + i) for i in range(count)
    ]
    burst = await run_bounded(
        [("create", target.save_call(client, item)) for item in plan], concurrency=concurrency
    )
    failed = Counter(f"{r.status} {r.code}" for r in burst.results if r.status != 201)
    if failed:
        first = next(
            (item, r) for item, r in zip(plan, burst.results, strict=True) if r.status != 201
        )
        raise RuntimeError(
            f"preload on {target.name}: failures {dict(failed)}; first (fixture "
            f"#{first[0].fixture}): {str(first[1].body)[:1500]}"
        )
    absorb(pool, plan, burst)
    return seq + count


async def warm_up(
    target: Target,
    client: HttpClient,
    pool: QuotePool,
    *,
    workers: int,
    agents: int,
    fixtures: int,
    seq: int,
) -> int:
    """Unmeasured saves so every worker has imported, connected and filled its caches.

    About two saves per database connection (15 per worker by default), 20 in flight per
    worker, so the pools' connections have all been opened and have prepared statements.
    """
    size = min(40 * workers, 2 * len(pool.quotes))
    plan, seq = plan_burst(pool, size=size, agents=agents, fixtures=fixtures, seq=seq)
    result = await run_bounded(
        [(item.kind, target.save_call(client, item)) for item in plan], concurrency=20 * workers
    )
    absorb(pool, plan, result)
    return seq


async def burst(
    target: Target,
    client: HttpClient,
    pool: QuotePool,
    *,
    size: int,
    agents: int,
    fixtures: int,
    seq: int,
    meter: Meter | None = None,
) -> tuple[Burst, list[PlanItem], int]:
    """B saves released at once: half creates, half version-carrying full saves."""
    await refresh_unknown(target, client, pool)
    plan, seq = plan_burst(pool, size=size, agents=agents, fixtures=fixtures, seq=seq)
    calls = [(item.kind, target.save_call(client, item)) for item in plan]
    result = await fire(calls, meter=meter)
    absorb(pool, plan, result)
    return result, plan, seq


async def hot(
    target: Target, client: HttpClient, quote: Quote, *, n: int, meter: Meter | None = None
) -> tuple[Burst, dict[str, Any]]:
    """N PATCHes of one quote from the same version: exactly one may win."""
    start_version, _ = read_version_notes(await target.read_call(client, quote, actor=None)())
    calls = [
        (
            "update",
            target.notes_call(client, quote, version=start_version, notes=f"hot {i}", actor=None),
        )
        for i in range(n)
    ]
    result = await fire(calls, meter=meter)
    final_version, final_notes = read_version_notes(
        await target.read_call(client, quote, actor=None)()
    )
    winners = [i for i, r in enumerate(result.results) if r.status == 200]
    conflicts = sum(1 for r in result.results if r.code == CONFLICT)
    checks = {
        "start_version": start_version,
        "final_version": final_version,
        "successes": len(winners),
        "conflicts": conflicts,
        "exactly_one_success": len(winners) == 1,
        "all_others_conflict": conflicts == n - 1,
        "final_is_start_plus_one": final_version == start_version + 1,
        "final_notes_are_winners": bool(winners) and final_notes == f"hot {winners[0]}",
    }
    checks["passed"] = all(
        checks[k]
        for k in (
            "exactly_one_success",
            "all_others_conflict",
            "final_is_start_plus_one",
            "final_notes_are_winners",
        )
    )
    quote.version = final_version
    return result, checks


@dataclass
class _Tally:
    landed: dict[str, list[str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # definite non-conflict failures
    unknown: list[str] = field(default_factory=list)  # exception: may or may not have landed
    conflicts: int = 0
    attempts: int = 0
    reads: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    retries_per_save: list[int] = field(default_factory=list)
    save_latency: list[float] = field(default_factory=list)  # first read → landed
    patch_latency: list[float] = field(default_factory=list)  # each PATCH attempt
    notes_full: int = 0

    async def judge(
        self, outcome: Outcome, *, quote_id: str, marker: str, sent: float, began: float,
        conflicts: int,
    ) -> str:  # fmt: skip
        """Count one contention save's ``outcome`` (its PATCH sent at ``sent``, its first read
        at ``began``, after ``conflicts`` conflicts): ``done`` (landed, refused or unknown),
        ``conflict`` (read again and retry) or ``again`` (throttled: retry after a pause)."""
        self.patch_latency.append(time.perf_counter() - sent)
        self.attempts += 1
        if outcome.status == 200:
            self.landed[quote_id].append(marker)
            self.retries_per_save.append(conflicts)
            self.save_latency.append(time.perf_counter() - began)
            return "done"
        if outcome.code == CONFLICT:
            self.conflicts += 1
            return "conflict"
        self.errors[f"{outcome.status}:{outcome.code}"] += 1
        if outcome.status == 0:
            self.unknown.append(marker)
            return "done"
        if outcome.status in (429, 503):
            await asyncio.sleep(0.05)
            return "again"
        self.refused.append(marker)
        return "done"


async def contention(
    target: Target,
    client: HttpClient,
    quotes: list[Quote],
    *,
    agents: int,
    seconds: float,
    notes_limit: int = 2000,
    max_attempts: int = 500,
) -> dict[str, Any]:
    """K agents edit M shared quotes for T seconds, reloading and retrying on conflict.

    Each change appends a marker ``|k.n`` to ``notes``. At the end every acknowledged marker
    must be present exactly once (lost updates = 0) and each quote's version must have grown
    by exactly the number of changes acknowledged on it.
    """
    tally = _Tally(landed={q.id: [] for q in quotes})
    start_versions: dict[str, int] = {}
    for quote in quotes:
        start_versions[quote.id], _ = read_version_notes(
            await target.read_call(client, quote, actor=0)()
        )
    full: set[str] = set()
    deadline = time.monotonic() + seconds
    hard_deadline = deadline + max(30.0, seconds)

    async def one_change(k: int, quote: Quote, marker: str) -> None:
        began = time.perf_counter()
        conflicts_here = 0
        for _ in range(max_attempts):
            if time.monotonic() > hard_deadline:
                tally.unknown.append(marker)
                tally.errors["HARD_DEADLINE"] += 1
                return
            read = await _safe(target.read_call(client, quote, actor=k))
            tally.reads += 1
            if read.status != 200:
                tally.errors[f"read:{read.status}:{read.code}"] += 1
                await asyncio.sleep(0.05)
                continue
            version, notes = read_version_notes(read)
            if len(notes) + len(marker) > notes_limit:
                full.add(quote.id)
                tally.notes_full += 1
                return
            sent = time.perf_counter()
            outcome = await _safe(
                target.notes_call(client, quote, version=version, notes=notes + marker, actor=k)
            )
            verdict = await tally.judge(
                outcome, quote_id=quote.id, marker=marker, sent=sent, began=began,
                conflicts=conflicts_here,
            )  # fmt: skip
            if verdict == "done":
                return
            conflicts_here += verdict == "conflict"
        tally.errors["MAX_ATTEMPTS"] += 1
        tally.refused.append(marker)

    async def agent(k: int) -> None:
        rng = random.Random(k)
        n = 0
        while time.monotonic() < deadline:
            open_quotes = [q for q in quotes if q.id not in full]
            if not open_quotes:
                return
            await one_change(k, rng.choice(open_quotes), f"|{k}.{n}")
            n += 1

    began = time.perf_counter()
    await asyncio.gather(*(agent(k) for k in range(agents)))
    elapsed = time.perf_counter() - began
    return await _verify_contention(
        target,
        client,
        quotes,
        tally,
        start_versions,
        elapsed,
        agents=agents,
        seconds=seconds,
        full=full,
    )


async def _safe(call: Call) -> Outcome:
    try:
        return await call()
    except Exception as exc:  # a failed request is a data point
        return Outcome(0, type(exc).__name__)


async def _verify_contention(
    target: Target,
    client: HttpClient,
    quotes: list[Quote],
    tally: _Tally,
    start_versions: dict[str, int],
    elapsed: float,
    *,
    agents: int,
    seconds: float,
    full: set[str],
) -> dict[str, Any]:
    lost, duplicated, phantom, version_mismatch = [], [], [], []
    unknown = set(tally.unknown)
    for quote in quotes:
        version, notes = read_version_notes(await target.read_call(client, quote, actor=0)())
        present = Counter(notes.split("|")[1:])
        landed = tally.landed[quote.id]
        lost += [m for m in landed if present[m[1:]] == 0]
        duplicated += [m for m in landed if present[m[1:]] > 1]
        acknowledged = {m[1:] for m in landed}
        phantom += ["|" + m for m in present if m not in acknowledged and "|" + m not in unknown]
        if version - start_versions[quote.id] != len(landed):
            version_mismatch.append(
                {
                    "quote": quote.id,
                    "start": start_versions[quote.id],
                    "final": version,
                    "landed": len(landed),
                }
            )
        quote.version = version
    total_landed = sum(len(v) for v in tally.landed.values())
    retries = sorted(tally.retries_per_save)
    return {
        "agents": agents,
        "quotes": len(quotes),
        "seconds": seconds,
        "elapsed_s": round(elapsed, 3),
        "landed": total_landed,
        "landed_per_s": round(total_landed / elapsed, 2) if elapsed else None,
        "patch_attempts": tally.attempts,
        "reads": tally.reads,
        "conflicts": tally.conflicts,
        "conflict_rate": round(tally.conflicts / tally.attempts, 4) if tally.attempts else None,
        "retries_per_save_mean": round(sum(retries) / len(retries), 3) if retries else None,
        "retries_per_save_max": retries[-1] if retries else None,
        "errors": dict(tally.errors),
        "refused_markers": len(tally.refused),
        "unknown_markers": len(tally.unknown),
        "quotes_full": sorted(full),
        "lost_updates": len(lost),
        "duplicated_markers": len(duplicated),
        "phantom_markers": len(phantom),
        "version_mismatches": version_mismatch,
        "save_latency": latency_stats(tally.save_latency),
        "patch_latency": latency_stats(tally.patch_latency),
        "passed": not lost
        and not duplicated
        and not phantom
        and not version_mismatch
        and total_landed > 0,
        "examples": {"lost": lost[:5], "duplicated": duplicated[:5], "phantom": phantom[:5]},
    }


async def ceiling(
    client: HttpClient, url: str, *, size: int, meter: Meter | None = None
) -> dict[str, Any]:
    """B GETs of a trivial endpoint released at once: what the generator + HTTP can do."""
    calls = [("get", http_call(client, "GET", url)) for _ in range(size)]
    result = await fire(calls, meter=meter)
    return summarize(result, ok_statuses=(200,))


def results_ok(results: list[Result]) -> int:
    """Count 2xx results."""
    return sum(1 for r in results if 200 <= r.status < 300)
