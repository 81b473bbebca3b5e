"""The contention scenario's item modes (issue 17): K agents edit M shared quotes, each agent
its own item (or, ``overlap``, an item it shares with one other agent), with or without
``Prefer: merge``.

Each quote first gets one OTHER item per agent (a full save). A change appends a marker
``|k.n`` to the description of the agent's item and PATCHes the whole item list (ids sent
back) at the version read; a 409 is counted as a conflict and the change is redone from a
fresh read. At the end every acknowledged marker must be in its item exactly once (lost
updates 0), no marker that was not acknowledged may be there, and each quote's version must
have grown by the changes acknowledged on it. Without merge every stale save is a conflict;
with merge only a collision (``overlap``) is.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

from bench.loadgen import HttpClient, Outcome, http_call
from bench.report import latency_stats
from bench.scenarios import _safe, _Tally
from bench.targets import TripquoteTarget
from bench.world import Quote

MODES = ("items", "items-merge", "overlap-merge")
"""Own item without merge, own item with merge, an item shared by two agents with merge."""

DESCRIPTION_LIMIT = 500
"""An item description's length bound: an agent stops changing a quote whose item is full."""


def _item_of(mode: str, agent: int) -> int:
    return agent // 2 if mode == "overlap-merge" else agent


def _read(target: TripquoteTarget, client: HttpClient, quote: Quote, k: int) -> Any:
    return http_call(
        client,
        "GET",
        f"{target.base_url}/api/agents/quotes/{quote.id}",
        token=target.actor_tokens[k],
        keep_body=True,
    )


def _patch(
    target: TripquoteTarget, client: HttpClient, quote: Quote, k: int, body: Any, merge: bool
) -> Any:
    return http_call(
        client,
        "PATCH",
        f"{target.base_url}/api/agents/quotes/{quote.id}",
        json=body,
        token=target.actor_tokens[k],
        headers={"Prefer": "merge"} if merge else None,
        keep_body=True,
    )


def _sent(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "lineTotal"} for item in items]


async def _prepare(
    target: TripquoteTarget, client: HttpClient, quote: Quote, agents: int
) -> tuple[int, list[str]]:
    """Give ``quote`` one OTHER item per agent; its version and item ids after."""
    read: Outcome = await _read(target, client, quote, 0)()
    version = int(read.body["version"])
    items = [
        {"type": "OTHER", "description": f"item {n}:", "quantity": 1, "unitPrice": "1.00"}
        for n in range(agents)
    ]
    body = {"version": version, "items": items, "discount": "0"}
    saved: Outcome = await _patch(target, client, quote, 0, body, False)()
    if saved.status != 200:
        raise RuntimeError(f"preparing a contention quote failed: {saved.status} {saved.code}")
    return int(saved.body["version"]), [item["id"] for item in saved.body["quote"]["items"]]


async def contention_items(
    target: TripquoteTarget,
    client: HttpClient,
    quotes: list[Quote],
    *,
    mode: str,
    agents: int,
    seconds: float,
    max_attempts: int = 500,
) -> dict[str, Any]:
    """Run ``mode`` (``MODES``) for ``seconds``; the summary (``passed``: no lost update)."""
    merge = mode != "items"
    tally = _Tally(landed={q.id: [] for q in quotes})
    start_versions: dict[str, int] = {}
    item_ids: dict[str, list[str]] = {}
    for quote in quotes:
        start_versions[quote.id], item_ids[quote.id] = await _prepare(target, client, quote, agents)
    full: set[tuple[str, int]] = set()
    deadline = time.monotonic() + seconds

    async def one_change(k: int, quote: Quote, marker: str) -> None:
        began = time.perf_counter()
        conflicts_here = 0
        own = item_ids[quote.id][_item_of(mode, k)]
        for _ in range(max_attempts):
            read = await _safe(_read(target, client, quote, k))
            tally.reads += 1
            if read.status != 200:
                tally.errors[f"read:{read.status}:{read.code}"] += 1
                await asyncio.sleep(0.05)
                continue
            items = _sent(read.body["quote"]["items"])
            mine = next(item for item in items if item["id"] == own)
            if len(mine["description"]) + len(marker) > DESCRIPTION_LIMIT:
                full.add((quote.id, k))
                return
            mine["description"] += marker
            body = {"version": int(read.body["version"]), "items": items}
            sent = time.perf_counter()
            outcome = await _safe(_patch(target, client, quote, k, body, merge))
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
            open_quotes = [q for q in quotes if (q.id, k) not in full]
            if not open_quotes:
                return
            await one_change(k, rng.choice(open_quotes), f"|{k}.{n}")
            n += 1

    began = time.perf_counter()
    await asyncio.gather(*(agent(k) for k in range(agents)))
    elapsed = time.perf_counter() - began
    return await _verify(target, client, quotes, tally, start_versions, elapsed, mode, agents)


async def _verify(
    target: TripquoteTarget,
    client: HttpClient,
    quotes: list[Quote],
    tally: _Tally,
    start_versions: dict[str, int],
    elapsed: float,
    mode: str,
    agents: int,
) -> dict[str, Any]:
    lost, duplicated, phantom, version_mismatch = [], [], [], []
    unknown = set(tally.unknown)
    for quote in quotes:
        read: Outcome = await _read(target, client, quote, 0)()
        version = int(read.body["version"])
        present: Counter[str] = Counter()
        for item in read.body["quote"]["items"]:
            present.update(item["description"].split("|")[1:])
        landed = tally.landed[quote.id]
        lost += [m for m in landed if present[m[1:]] == 0]
        duplicated += [m for m in landed if present[m[1:]] > 1]
        acknowledged = {m[1:] for m in landed}
        phantom += ["|" + m for m in present if m not in acknowledged and "|" + m not in unknown]
        if version - start_versions[quote.id] != len(landed):
            version_mismatch.append({"quote": quote.id, "landed": len(landed), "final": version})
        quote.version = version
    total = sum(len(v) for v in tally.landed.values())
    retries = sorted(tally.retries_per_save)
    return {
        "mode": mode,
        "agents": agents,
        "quotes": len(quotes),
        "elapsed_s": round(elapsed, 3),
        "landed": total,
        "landed_per_s": round(total / elapsed, 2) if elapsed else None,
        "patch_attempts": tally.attempts,
        "conflicts": tally.conflicts,
        "conflict_rate": round(tally.conflicts / tally.attempts, 4) if tally.attempts else None,
        "retries_per_save_mean": round(sum(retries) / len(retries), 3) if retries else None,
        "retries_per_save_max": retries[-1] if retries else None,
        "errors": dict(tally.errors),
        "refused_markers": len(tally.refused),
        "unknown_markers": len(tally.unknown),
        "lost_updates": len(lost),
        "duplicated_markers": len(duplicated),
        "phantom_markers": len(phantom),
        "version_mismatches": version_mismatch,
        "save_latency": latency_stats(tally.save_latency),
        "passed": not (lost or duplicated or phantom or version_mismatch) and total > 0,
        "examples": {"lost": lost[:5], "duplicated": duplicated[:5], "phantom": phantom[:5]},
    }
