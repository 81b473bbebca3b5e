"""Quote use cases. Each runs in one transaction owned by the TransactionRunner; nothing here
commits. Checks run in the note's order: validation (fields, items), client ownership,
pricing, consistency; then the version-checked write."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.agents.auth import require_principal
from tripquote.agents.repository import load_principal
from tripquote.db.transaction import DriverTx, UnitConnection
from tripquote.errors import (
    AgentNotFound,
    QuoteValidationFailed,
    TripquoteError,
    field_error,
)
from tripquote.http import Services
from tripquote.quotes import checks, pg, writes
from tripquote.quotes import repository as repo
from tripquote.quotes.lifecycle import (
    Operation,
    QuoteStatus,
    check_sendable,
    check_transition,
    compute_expires_at,
)
from tripquote.quotes.pricing import Pricing, check_client_pricing, price_quote
from tripquote.quotes.repository import RevisionRecord
from tripquote.quotes.rules import (
    Limits,
    QuoteDraft,
    merge_patch,
    patch_version,
    same_json,
    validate_quote,
)
from tripquote.quotes.serialize import INPUT_FIELDS, api_to_input, fmt_instant, quote_to_api


@dataclass(frozen=True, slots=True)
class Saved:
    """A committed save: the quote in API form and when it was committed."""

    quote: dict[str, Any]
    saved_at: datetime

    @property
    def version(self) -> int:
        """The committed version."""
        return int(self.quote["version"])


OnSaved = Callable[[UnitConnection, Saved], Awaitable[None]]
"""Runs inside the save's transaction once the change is written (e.g. store the idempotent
response), so it commits or rolls back with the change."""


def limits_of(svc: Services) -> Limits:
    """The validation limits configured for this service."""
    return Limits(
        currencies=frozenset(svc.settings.currencies), max_items=svc.settings.max_items_per_quote
    )


async def create_quote(
    svc: Services,
    *,
    agent_id: str,
    body: Any,
    correlation_id: str,
    on_saved: OnSaved | None = None,
) -> Saved:
    """Create a DRAFT quote at version 1 with its items and first revision, atomically.

    Raises QUOTE_VALIDATION_FAILED, CURRENCY_INVALID, QUOTA_EXCEEDED, AGENT_NOT_FOUND,
    CLIENT_NOT_FOUND, AUTHORIZATION_FAILED, PRICING_VALIDATION_FAILED, ITEMS_INCONSISTENT,
    or a database error (see ``TransactionRunner.run``).
    """
    draft = await _validate_or_explain(svc, agent_id=agent_id, data=body)
    pricing = _price(draft)
    now = datetime.now(UTC)
    quote_id = str(uuid.uuid4())
    limit = svc.settings.max_open_quotes_per_agent
    fast = _fast_pricing(draft, pricing)

    def quote_of(
        agency_id: str | None, priced: Pricing
    ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        values = {
            "id": quote_id,
            "agency_id": agency_id,
            "agent_id": agent_id,
            **_draft_values(draft, priced),
            "status": QuoteStatus.DRAFT.value,
            "version": 1,
            "created_at": now,
            "last_modified_by": agent_id,
            "last_modified_at": now,
            "sent_at": None,
            "expires_at": None,
        }
        items = _item_values(draft, priced)
        return values, items, quote_to_api(values, items)

    async def work(conn: UnitConnection) -> dict[str, Any]:
        if fast is not None and not writes.in_transaction(conn):
            # One statement that checks the agent, the client and the quota bound itself:
            # the usual create is one round trip. Written nothing: the checks below say why.
            values, items, quote = quote_of(None, fast)
            revision = _revision(quote, "CREATE", agent_id, correlation_id, now)
            if await writes.insert_quote(
                conn, values=values, items=items, revision=revision, open_quote_bound=None,
                open_limit=limit,
            ):  # fmt: skip
                return quote
        found, owner, bound = await writes.load_for_create(conn, agent_id, draft.client_id)
        principal = require_principal(found)
        checks.check_client_owner(principal, owner, draft.client_id)
        # Checked once already when it passed; else this raises its error, after the others.
        priced = fast if fast is not None else _checked_pricing(draft, pricing)
        # Statement by statement, passing every check means the one statement above found
        # the agent at its quota bound: that takes a transaction, where the bound is read
        # under the agent's row lock and, at the limit, the open quotes counted exactly.
        writes.require_transaction(conn)
        checked = await checks.open_one_more(svc, conn, principal.agent_id, bound, now)
        values, items, quote = quote_of(principal.agency_id, priced)
        written = await writes.insert_quote(
            conn,
            values=values,
            items=items,
            revision=_revision(quote, "CREATE", principal.agent_id, correlation_id, now),
            open_quote_bound=checked,
            open_limit=limit,
        )
        if not written:
            raise RuntimeError("a quota-checked create wrote nothing")  # its agent is locked
        if on_saved is not None:
            await on_saved(conn, Saved(quote=quote, saved_at=now))
        return quote

    # One statement below the quota bound: the change commits with it (no BEGIN/COMMIT and no
    # lock held across round trips); in a transaction with an idempotent response to store.
    quote = await svc.runner.run(work, driver=True, single_statement=on_saved is None)
    return Saved(quote=quote, saved_at=now)


async def read_quote(svc: Services, *, agent_id: str, quote_id: str) -> dict[str, Any]:
    """The quote in API form, with a SENT quote past ``expiresAt`` shown as EXPIRED."""
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        principal = require_principal(await load_principal(conn, agent_id))
        record = await checks.visible_quote(conn, principal, quote_id)
        return quote_to_api(record.row, record.items, status=checks.status_now(record.row, now))

    return await svc.runner.run(work, write=False)


async def update_quote(
    svc: Services,
    *,
    agent_id: str,
    quote_id: str,
    body: Any,
    if_match: int | None,
    correlation_id: str,
    on_saved: OnSaved | None = None,
) -> Saved:
    """Apply a partial update checked against the client's version, atomically.

    ``body`` is the PATCH object (``version`` optional when ``if_match`` is given). Raises, in
    order: QUOTE_VALIDATION_FAILED (no version, or body and If-Match differ), AGENT_NOT_FOUND,
    QUOTE_NOT_FOUND, AUTHORIZATION_FAILED, QUOTE_ALREADY_SENT / QUOTE_STATE_INVALID,
    QUOTE_CONFLICT_VERSION (409; 412 when the version came from If-Match), then the create
    checks on the merged quote.
    """
    if not isinstance(body, dict):
        raise QuoteValidationFailed(
            details={"errors": [field_error("", "type", "The body must be a JSON object.")]}
        )
    expected = expected_version(patch_version(body), if_match)
    conflict_status = 412 if if_match is not None else None
    limits = limits_of(svc)
    now = datetime.now(UTC)
    # Only PostgreSQL has the one statement that saves a full form (pg.UPDATE_OWN_DRAFT).
    full_form = _full_form(body, limits) if svc.runner.is_postgres else None

    async def work(conn: UnitConnection) -> dict[str, Any]:
        if full_form is not None and isinstance(conn, DriverTx) and not conn.in_transaction:
            # A PATCH carrying the whole quote (an editor's Save) does not depend on the
            # stored one: one statement saves it over the caller's own DRAFT and checks the
            # rest itself. Written nothing: the steps below say why, or find nothing changed.
            draft, priced = full_form
            values = _own_draft_values(quote_id, agent_id, draft, priced, expected, now)
            items = _item_values(draft, priced)
            quote = quote_to_api(values, items)
            saved = await pg.update_own_draft(
                conn,
                quote_id=quote_id,
                expected_version=expected,
                agent_id=agent_id,
                client_id=body.get("clientId"),
                values=values,
                items=items,
                snapshot=quote,
                correlation_id=correlation_id,
            )
            if saved is not None:
                quote["clientId"], quote["createdAt"] = saved[0], fmt_instant(saved[1])
                return quote
        found, record = await writes.load_for_write(conn, agent_id, quote_id)
        principal = require_principal(found)
        record = checks.check_visible(principal, record, quote_id)
        new_status = check_transition(checks.status_now(record.row, now), Operation.UPDATE)
        if record.row["version"] != expected:
            raise await checks.conflict(
                conn, quote_id, expected, conflict_status, operation=Operation.UPDATE, now=now
            )
        current = quote_to_api(record.row, record.items)
        current_input = api_to_input(current)
        draft = validate_quote(merge_patch(current_input, body), limits=limits)
        if draft.client_id != record.row["client_id"] or record.row["status"] != new_status:
            # More than the version to keep consistent with the write (the new client's
            # owner, the owner's quota): one statement alone is not enough.
            writes.require_transaction(conn)
        if draft.client_id != record.row["client_id"]:
            await checks.check_client(conn, principal, draft.client_id)
        priced = _checked_pricing(draft, _price(draft))
        values = {
            **record.row,
            **_draft_values(draft, priced),
            "status": new_status.value,
            "last_modified_by": principal.agent_id,
            "last_modified_at": now,
            "version": expected + 1,
        }
        if record.row["status"] != new_status:  # a REJECTED quote reopens as a DRAFT
            owner = record.row["agent_id"]
            bound, active = await writes.lock_agent(conn, owner)
            if owner == principal.agent_id and not active:  # disabled while it waited
                raise AgentNotFound()
            bound = await checks.open_one_more(svc, conn, owner, bound, now)
            await writes.set_open_quote_bound(conn, owner, bound)
            values.update(sent_at=None, expires_at=None)
        items = _item_values(draft, priced)
        quote = quote_to_api(values, items)
        if new_status == record.row["status"] and same_json(api_to_input(quote), current_input):
            return current  # nothing changes: no new version, so no one else gets a conflict
        new_version = await writes.update_quote(
            conn,
            quote_id=quote_id,
            expected_version=expected,
            values={k: v for k, v in values.items() if k in _UPDATABLE},
            items=items,
            revision=_revision(quote, "UPDATE", principal.agent_id, correlation_id, now),
        )
        if new_version is None:
            raise await checks.conflict(
                conn, quote_id, expected, conflict_status, operation=Operation.UPDATE, now=now
            )
        if on_saved is not None:
            await on_saved(conn, Saved(quote=quote, saved_at=now))
        return quote

    # Mostly one statement (a full form), or one read and one statement: the version-checked
    # CTE makes the whole change, so no BEGIN/COMMIT round trips unless the idempotent
    # response must commit with it.
    quote = await svc.runner.run(work, driver=True, single_statement=on_saved is None)
    return Saved(quote=quote, saved_at=now)


async def transition_quote(
    svc: Services,
    *,
    agent_id: str,
    quote_id: str,
    operation: Operation,
    body: Any,
    if_match: int | None,
    correlation_id: str,
    on_saved: OnSaved | None = None,
) -> Saved:
    """SEND, ACCEPT, REJECT or DELETE (soft: CANCELLED) a quote, checked against the client's
    version, as one atomic, revisioned change.

    ``body`` is None or ``{"version": n}``. Raises QUOTE_VALIDATION_FAILED (version missing or
    ambiguous; sending without items), AGENT_NOT_FOUND, QUOTE_NOT_FOUND, AUTHORIZATION_FAILED,
    QUOTE_ALREADY_SENT, QUOTE_STATE_INVALID (with currentStatus, operation, allowedOperations),
    QUOTE_CONFLICT_VERSION.
    """
    body = {} if body is None else body
    if not isinstance(body, dict) or set(body) - {"version"}:
        raise QuoteValidationFailed(
            details={
                "errors": [
                    field_error(
                        "" if not isinstance(body, dict) else sorted(set(body) - {"version"})[0],
                        "unknown_field" if isinstance(body, dict) else "type",
                        "The body may only carry the quote's version.",
                    )
                ]
            }
        )
    expected = expected_version(patch_version(body), if_match)
    conflict_status = 412 if if_match is not None else None
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        principal = require_principal(await load_principal(conn, agent_id))
        record = await checks.visible_quote(conn, principal, quote_id)
        new_status = check_transition(checks.status_now(record.row, now), operation)
        if record.row["version"] != expected:
            raise await checks.conflict(
                conn, quote_id, expected, conflict_status, operation=operation, now=now
            )
        values: dict[str, Any] = {
            "status": new_status.value,
            "last_modified_by": principal.agent_id,
            "last_modified_at": now,
        }
        if operation is Operation.SEND:
            check_sendable(len(record.items))
            values["sent_at"] = now
            values["expires_at"] = compute_expires_at(
                now, record.row["expires_in_days"], principal.timezone
            )
        new_version = await repo.update_quote_if_version(
            conn, quote_id=quote_id, expected_version=expected, values=values
        )
        if new_version is None:
            raise await checks.conflict(
                conn, quote_id, expected, conflict_status, operation=operation, now=now
            )
        quote = quote_to_api({**record.row, **values, "version": new_version}, record.items)
        await repo.insert_revision(
            conn, _revision(quote, operation.value, principal.agent_id, correlation_id, now)
        )
        if on_saved is not None:
            await on_saved(conn, Saved(quote=quote, saved_at=now))
        return quote

    quote = await svc.runner.run(work)
    return Saved(quote=quote, saved_at=now)


def expected_version(body_version: int | None, if_match: int | None) -> int:
    """The version the client edits: from the body or If-Match (RFC 9110 §13.1.1), which must
    agree; QUOTE_VALIDATION_FAILED at ``version`` when neither is given or they differ."""
    if body_version is None and if_match is None:
        raise QuoteValidationFailed(
            "A version is required: send the quote's version in the body or If-Match.",
            details={"errors": [field_error("version", "required", "version is required.")]},
        )
    if body_version is not None and if_match is not None and body_version != if_match:
        raise QuoteValidationFailed(
            "The body version and If-Match disagree.",
            details={
                "errors": [
                    field_error(
                        "version",
                        "mismatch",
                        f"body version {body_version} differs from If-Match {if_match}.",
                    )
                ]
            },
        )
    version = body_version if body_version is not None else if_match
    assert version is not None
    return version


# --- steps shared by the use cases -------------------------------------------------------


async def _validate_or_explain(svc: Services, *, agent_id: str, data: Any) -> QuoteDraft:
    """Validate before any I/O; on failure, report a missing agent before the body's faults."""
    try:
        return validate_quote(data, limits=limits_of(svc))
    except TripquoteError:

        async def check_agent(conn: AsyncConnection) -> None:
            require_principal(await load_principal(conn, agent_id))

        await svc.runner.run(check_agent, write=False)
        raise


def _price(draft: QuoteDraft) -> Pricing | TripquoteError:
    """Pricing computed outside the transaction; its error is raised after the client check."""
    try:
        return price_quote(draft)
    except TripquoteError as error:
        return error


def _fast_pricing(draft: QuoteDraft, pricing: Pricing | TripquoteError) -> Pricing | None:
    """The checked pricing, or None when checking it fails (its error then comes after the
    stored-state checks, in the note's order)."""
    try:
        return _checked_pricing(draft, pricing)
    except TripquoteError:
        return None


def _checked_pricing(draft: QuoteDraft, pricing: Pricing | TripquoteError) -> Pricing:
    if isinstance(pricing, TripquoteError):
        raise pricing
    check_client_pricing(draft, pricing)
    return pricing


_UPDATABLE = frozenset(
    {
        "client_id", "trip_name", "destination", "start_date", "end_date", "travelers",
        "currency", "markup_percent", "discount", "expires_in_days", "notes", "subtotal",
        "markup_amount", "total", "status", "last_modified_by", "last_modified_at", "sent_at",
        "expires_at",
    }
)  # fmt: skip
"""The columns an update writes; ``version`` is incremented by the statement itself."""


_FULL_FORM = tuple(name for name in INPUT_FIELDS if name != "clientId")
_ANY_CLIENT = "-"
"""Stands in for the stored client while a full-form PATCH is validated (a valid id; the
statement keeps the stored client and the draft's is never used)."""


def _full_form(body: dict[str, Any], limits: Limits) -> tuple[QuoteDraft, Pricing] | None:
    """The validated, priced draft of a PATCH that sets every client-settable field (the
    client may be left out), which is then the same whatever is stored; None for any other
    PATCH or one that fails a check (the step-by-step path reports it, in order)."""
    if any(name not in body for name in _FULL_FORM):
        return None
    try:
        draft = validate_quote(
            merge_patch({"clientId": body.get("clientId", _ANY_CLIENT)}, body), limits=limits
        )
        return draft, _checked_pricing(draft, _price(draft))
    except TripquoteError:
        return None


def _own_draft_values(
    quote_id: str, agent_id: str, draft: QuoteDraft, pricing: Pricing, expected: int, at: datetime
) -> dict[str, Any]:
    """The row of the caller's own DRAFT once saved, with ``client_id`` and ``created_at``
    (kept from the stored row, unknown here) None."""
    return {
        "id": quote_id,
        "agent_id": agent_id,
        **_draft_values(draft, pricing),
        "client_id": None,
        "status": QuoteStatus.DRAFT.value,
        "version": expected + 1,
        "created_at": None,
        "last_modified_by": agent_id,
        "last_modified_at": at,
        "sent_at": None,
        "expires_at": None,
    }


def _draft_values(draft: QuoteDraft, pricing: Pricing) -> dict[str, Any]:
    return {
        "client_id": draft.client_id,
        "trip_name": draft.trip_name,
        "destination": draft.destination,
        "start_date": draft.start_date,
        "end_date": draft.end_date,
        "travelers": draft.travelers,
        "currency": draft.currency,
        "markup_percent": draft.markup_percent,
        "discount": pricing.discount,
        "expires_in_days": draft.expires_in_days,
        "notes": draft.notes,
        "subtotal": pricing.subtotal,
        "markup_amount": pricing.markup_amount,
        "total": pricing.total,
    }


def _item_values(draft: QuoteDraft, pricing: Pricing) -> list[dict[str, Any]]:
    return [
        {
            "type": item.type,
            "description": item.description,
            "quantity": item.quantity,
            "unit_price": item.unit_price,
            "line_total": line_total,
            "details": item.details,
        }
        for item, line_total in zip(draft.items, pricing.line_totals, strict=True)
    ]


def _revision(
    quote: dict[str, Any], operation: str, actor_id: str, correlation_id: str, at: datetime
) -> RevisionRecord:
    return RevisionRecord(
        quote_id=quote["id"],
        version=quote["version"],
        operation=operation,
        status=quote["status"],
        actor_id=actor_id,
        correlation_id=correlation_id,
        created_at=at,
        snapshot=quote,
    )
