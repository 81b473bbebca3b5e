"""The merged save (issue 17): a PATCH that asks for a merge (``Prefer: merge``, RFC 7240)
made on a version others have saved over since is merged with what they saved
(``merge.merge``), in the save's own transaction, and written by the edit's guarded statement
at the version it merged onto (``store.merged_edit``); a collision is QUOTE_CONFLICT_VERSION
with, for each colliding field or item, its base, current and requested values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tripquote.agents.auth import Caller
from tripquote.errors import QuoteConflictVersion, TripquoteError
from tripquote.quotes.lifecycle import Operation
from tripquote.quotes.merge import Merged, has_item_ids, input_form, merge
from tripquote.quotes.model import Quote, changes_between, price, with_item_ids
from tripquote.quotes.refusals import Verdict, explain, quota_exceeded
from tripquote.quotes.results import Edit, Loaded, Saved
from tripquote.quotes.rules import Limits, merge_patch, validate_quote
from tripquote.quotes.store import MergedThen, QuoteStore

ATTEMPTS = 4
"""Writes of one merged save: again after counting the quota bound exactly (a REJECTED quote
opened again), or when the write's facts explain nothing."""


@dataclass(frozen=True, slots=True)
class MergedSave:
    """A merged save's outcome: the quote in API form (None: nothing changed, ``current``
    is the quote as it is), and its merge record (None: the save was not stale)."""

    quote: dict[str, Any] | None
    current: Quote
    merge: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class MergeRequest:
    """A PATCH ``body`` made on ``base_version``, by ``caller``, at ``now``."""

    caller: Caller
    quote_id: str
    body: dict[str, Any]
    base_version: int
    conflict_status: int | None
    now: datetime
    correlation_id: str


def decide(request: MergeRequest, limits: Limits) -> Callable[[Loaded, Any], Edit]:
    """What the merged save writes on the quote read (``store.Decide``). Raises, in order:
    what refuses an update of the quote read (caller, access, status), QUOTE_CONFLICT_VERSION
    for a version the quote never had, whose snapshot has no item ids or whose status is not
    the quote's now (sent, answered or reopened since), the PATCH's own
    errors on the base version (QUOTE_VALIDATION_FAILED naming the fields...), then
    QUOTE_CONFLICT_VERSION with ``conflicts`` on a collision, then the merged quote's errors
    (validated and priced as a whole; a client-sent ``pricing``: ITEMS_INCONSISTENT against
    the merged totals)."""

    def edit(loaded: Loaded, base: dict[str, Any] | None) -> Edit:
        facts, current = loaded.facts, loaded.quote
        refusal = explain(
            facts, operation=Operation.UPDATE, quote_id=request.quote_id, expected=facts.version
        )
        if isinstance(refusal, TripquoteError):
            raise refusal
        assert current is not None
        stale = request.base_version != current.version
        current_form = current.to_api()
        if stale and (
            base is None or not has_item_ids(base) or base["status"] != current_form["status"]
        ):
            # No base to merge from; or the quote changed status since (sent, answered,
            # reopened): an edit made on a DRAFT, or on a SENT version no edit could be made
            # on, is not carried onto a quote the client has since rejected. Refused as the
            # same edit unmerged, its changedFields naming status.
            raise _conflict(request, current, base, None)
        base_form = base if base is not None and stale else current_form
        mine = {key: value for key, value in request.body.items() if key != "pricing"}
        # The PATCH's own faults, on the base it was made on; the rules between fields wait
        # for the merged quote, whose other fields may come from the current version.
        content = validate_quote(
            merge_patch(input_form(base_form), mine), limits=limits, whole=False
        )
        content = with_item_ids(content, [item["id"] for item in base_form["items"]])
        requested = {
            "clientId": content.client_id,
            **price(content, None, whole=False).content_api(),
        }
        merged = merge(base_form, current_form, requested)
        if not isinstance(merged, Merged):
            raise _conflict(request, current, base_form, [c.to_api() for c in merged])
        body = input_form(merged.content)
        if "pricing" in request.body:
            body["pricing"] = request.body["pricing"]
        whole = validate_quote(body, limits=limits)
        whole = with_item_ids(whole, [item["id"] for item in merged.content["items"]])
        record = (
            merged.record(base_version=request.base_version, onto_version=current.version)
            if stale
            else None
        )
        return Edit(price(whole, whole.client_id), current, record)

    return edit


def _conflict(
    request: MergeRequest,
    current: Quote,
    base: dict[str, Any] | None,
    conflicts: list[dict[str, Any]] | None,
) -> QuoteConflictVersion:
    """QUOTE_CONFLICT_VERSION as an unmerged save gets it (``refusals.explain``), its
    ``changedFields`` from the base's snapshot, and ``conflicts`` when the merge collided."""
    details: dict[str, Any] = {
        "quoteId": request.quote_id,
        "expectedVersion": request.base_version,
        "actualVersion": current.version,
        "lastModifiedBy": current.last_modified_by,
        "lastModifiedAt": current.to_api()["lastModifiedAt"],
        "changedFields": changes_between(base, current.to_api()) if base is not None else [],
    }
    if conflicts is not None:
        details["conflicts"] = conflicts
    return QuoteConflictVersion(details=details, http_status=request.conflict_status)


async def merged_save(
    store: QuoteStore,
    request: MergeRequest,
    limits: Limits,
    quote_of: Callable[[Saved, Edit], dict[str, Any]],
    then: MergedThen | None = None,
) -> MergedSave:
    """Run the merged save until written, unchanged or refused (its error raised; counted
    as a rolled-back unit by the store's runner when raised inside it, else here); ``then``
    runs in the transaction that wrote it."""
    for _ in range(ATTEMPTS):
        result, edit = await store.merged_edit(
            caller=request.caller, quote_id=request.quote_id, base_version=request.base_version,
            now=request.now, correlation_id=request.correlation_id,
            decide=decide(request, limits), then=then,
        )  # fmt: skip
        if isinstance(result, Saved):
            return MergedSave(quote_of(result, edit), edit.current, edit.merge)
        verdict = explain(
            result.facts, operation=Operation.UPDATE, quote_id=request.quote_id,
            expected=edit.current.version, conflict_status=request.conflict_status,
            client_id=edit.draft.client_id,
        )  # fmt: skip
        if isinstance(verdict, TripquoteError):
            store.refused(verdict.code)
            raise verdict
        if verdict is Verdict.UNCHANGED:
            return MergedSave(None, edit.current, None)
        if verdict is Verdict.AT_QUOTA_BOUND:
            owner = edit.current.agent_id
            count = await store.recount_open_quotes(agent_id=owner, now=request.now)
            if count >= store.open_limit:
                error = quota_exceeded(store.open_limit, count)
                store.refused(error.code)
                raise error
    raise RuntimeError("a merged save was refused without a reason on every attempt")
