"""What a burst does, independent of the target: which quotes are updated, which are created.

A burst of size B is B // 2 version-carrying updates of distinct existing quotes (each from
its current version, so every one should succeed) interleaved with B - B // 2 creates,
spread over the agents and the fixtures. The same plan shape drives tripquote, the peer and
the limit, so their figures compare like for like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.loadgen import Burst


@dataclass(slots=True)
class Quote:
    """A quote the bench can update: id, owner (agent index), fixture index, current version."""

    id: str
    owner: int
    fixture: int
    version: int


@dataclass
class QuotePool:
    """Quotes available for updates; hands out distinct ones to each burst."""

    quotes: list[Quote] = field(default_factory=list)
    cursor: int = 0

    def take(self, count: int) -> list[Quote]:
        """``count`` distinct quotes, cycling through the pool."""
        if count > len(self.quotes):
            raise ValueError(f"pool holds {len(self.quotes)} quotes, {count} requested")
        size = len(self.quotes)
        picked = [self.quotes[(self.cursor + i) % size] for i in range(count)]
        self.cursor = (self.cursor + count) % size
        return picked


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One save of a burst: a create (quote None) or an update of ``quote`` from its version."""

    kind: str
    owner: int
    fixture: int
    seq: int
    quote: Quote | None = None
    version: int = 0


def plan_burst(
    pool: QuotePool, *, size: int, agents: int, fixtures: int, seq: int
) -> tuple[list[PlanItem], int]:
    """Half updates of distinct pooled quotes, half creates, interleaved; returns next seq."""
    updates = pool.take(size // 2)
    plan: list[PlanItem] = []
    for index in range(size):
        seq += 1
        if index % 2 == 0 and index // 2 < len(updates):
            quote = updates[index // 2]
            plan.append(PlanItem("update", quote.owner, quote.fixture, seq, quote, quote.version))
        else:
            plan.append(PlanItem("create", seq % agents, seq % fixtures, seq))
    return plan, seq


def absorb(pool: QuotePool, plan: list[PlanItem], burst: Burst) -> dict[str, int]:
    """Apply a burst's outcomes to the pool (new versions, new quotes); count unknown outcomes.

    An update that failed keeps its version; one whose outcome is unknown (exception) is
    marked with version -1 so :func:`unknown_quotes` can have it re-read before reuse.
    """
    unknown = 0
    for item, result in zip(plan, burst.results, strict=True):
        body: Any = result.body
        if item.kind == "update" and item.quote is not None:
            if result.status == 200 and isinstance(body, dict):
                item.quote.version = int(body["version"])
            elif result.status == 0 or result.status >= 500:
                item.quote.version = -1
                unknown += 1
        elif item.kind == "create" and result.status == 201 and isinstance(body, dict):
            pool.quotes.append(
                Quote(str(body["quoteId"]), item.owner, item.fixture, int(body["version"]))
            )
    return {"unknown": unknown}


def unknown_quotes(pool: QuotePool) -> list[Quote]:
    """Quotes whose version must be re-read before they can be updated again."""
    return [quote for quote in pool.quotes if quote.version < 0]
