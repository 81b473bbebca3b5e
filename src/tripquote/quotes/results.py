"""What the quote store returns: typed results, and the facts a refused write saw."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from tripquote.quotes.lifecycle import QuoteStatus
from tripquote.quotes.model import Draft, Quote


@dataclass(frozen=True, slots=True)
class Facts:
    """What a statement saw: the caller (active, or its token revoked; its agency's time
    zone), the quote (visible to it, may it act, status as of now, version, last change), the
    client named (visible, usable), and for an edit whether it changes anything, keeps the
    client, reopens the quote and whether the owner is at its open-quote bound; for a
    transition the quote's items, and for a send whether its trip has started (and when)."""

    agent_ok: bool
    token_revoked: bool
    timezone: str | None
    visible: bool
    may_act: bool
    status: QuoteStatus | None
    version: int | None
    last_modified_by: str | None
    last_modified_at: datetime | None
    owner_id: str | None
    client_kept: bool
    client_visible: bool
    client_may_use: bool
    changed: bool = True
    at_bound: bool = False
    item_count: int | None = None
    trip_started: bool = False
    start_date: date | None = None
    unknown_items: tuple[int, ...] = ()
    """The positions of an edit's items sent with an id the quote has no item of."""


@dataclass(frozen=True, slots=True)
class Saved:
    """A write that committed (or joined the unit's transaction): the row's values the caller
    did not send, and the revision's snapshot where the statement returns it."""

    agent_id: str | None = None
    client_id: str | None = None
    created_at: datetime | None = None
    snapshot: str | None = None
    item_ids: tuple[str, ...] | None = None
    """An edit's item ids, in order (the store completes those sent without one)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A write that wrote nothing, with the facts that say why (``refusals.explain``)."""

    facts: Facts


@dataclass(frozen=True, slots=True)
class Loaded:
    """A quote read with the facts about its caller; ``quote`` None when not found."""

    facts: Facts
    quote: Quote | None


@dataclass(frozen=True, slots=True)
class Revision:
    """One committed version of a quote's history (``snapshot``, its API form, when read)."""

    version: int
    operation: str
    status: str
    actor_id: str
    correlation_id: str
    created_at: datetime
    snapshot: dict[str, Any] | None = None
    merge: dict[str, Any] | None = None
    """A merged save's record (``merge.Merged.record``); None for any other write."""


@dataclass(frozen=True, slots=True)
class Edit:
    """What a merged save decided on the quote it read (``store.merged_edit``): the draft to
    write over ``current`` (its version the one the write is guarded by) and the merge's
    record (None when the save was not stale: nothing merged)."""

    draft: Draft
    current: Quote
    merge: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Filters:
    """List filters: status as of now, client, changed at or after ``updated_since`` (written, or
    read EXPIRED since: ``sql.changed_since``)."""

    status: str | None = None
    client_id: str | None = None
    updated_since: datetime | None = None


def facts_of(row: Any) -> Facts:
    """The facts columns of a statement's row (``sql.FACT_COLUMNS`` and the write's own)."""
    keys = set(row.keys())
    return Facts(
        agent_ok=row["agent_ok"],
        token_revoked=row["token_revoked"],
        timezone=row["agent_timezone"],
        visible=row["visible"],
        may_act=row["may_act"],
        status=QuoteStatus(row["fact_status"]) if row["fact_status"] is not None else None,
        version=row["fact_version"],
        last_modified_by=row["fact_by"],
        last_modified_at=row["fact_at"],
        owner_id=row["fact_owner"],
        client_kept=row["client_kept"],
        client_visible=row["client_visible"],
        client_may_use=row["client_may_use"],
        changed=row["changed"] if "changed" in keys else True,
        at_bound=bool(row["at_bound"]) if "at_bound" in keys else False,
        item_count=row["item_count"] if "item_count" in keys else None,
        trip_started=bool(row["trip_started"]) if "trip_started" in keys else False,
        start_date=row["fact_start"] if "fact_start" in keys else None,
        unknown_items=tuple(row["unknown_items"] or ()) if "unknown_items" in keys else (),
    )
