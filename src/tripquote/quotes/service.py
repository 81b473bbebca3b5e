"""Quote use cases: ``QuoteService`` validates and prices (``model``), asks the store for ONE
guarded statement per write, and turns a refusal's facts into the error (``refusals``).
Nothing here knows the HTTP layer or the connection kind; nothing here commits."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tripquote.agents.auth import Caller, require_principal
from tripquote.db.transaction import Tx
from tripquote.errors import (
    QuoteNotFound,
    QuoteValidationFailed,
    TripquoteError,
    field_error,
)
from tripquote.ids import new_id
from tripquote.json import loads
from tripquote.proposals.links import LinkKeys
from tripquote.quotes.lifecycle import Operation, QuoteStatus, target_of
from tripquote.quotes.merge_save import MergeRequest, merged_save
from tripquote.quotes.model import (
    Draft,
    Quote,
    apply_patch,
    changes_between,
    full_form,
    priced_or_error,
    transition,
    with_item_ids,
)
from tripquote.quotes.refusals import (
    Verdict,
    access_error,
    explain,
    quota_exceeded,
    version_conflict,
)
from tripquote.quotes.results import Edit, Facts, Filters, Refused, Revision, Saved
from tripquote.quotes.rules import Limits, expected_version, patch_version, validate_quote
from tripquote.quotes.serialize import fmt_instant
from tripquote.quotes.store import QuoteStore, Then


@dataclass(frozen=True, slots=True)
class SavedQuote:
    """A committed save: the quote in API form and when it was committed; ``merge``: a
    merged save's record (``merge.Merged.record``), None for any other."""

    quote: dict[str, Any]
    saved_at: datetime
    merge: dict[str, Any] | None = None

    @property
    def version(self) -> int:
        """The committed version."""
        return int(self.quote["version"])


OnSaved = Callable[[Tx, SavedQuote], Awaitable[None]]
"""Runs inside the save's transaction once the change is written (e.g. store the idempotent
response), so it commits or rolls back with the change."""

NoneMatch = Callable[[int], bool]
"""A write's If-None-Match: whether it names the ETag of a version (or is ``*``)."""

_ATTEMPTS = 4
"""Writes of one save: again after counting the quota bound exactly, or after a concurrent
commit made the facts the statement saw stale."""

_CACHE_MAX = 4096


def _utc_now() -> datetime:
    return datetime.now(UTC)


class QuoteService:
    """The quote use cases over a ``QuoteStore``; keyword-only methods."""

    def __init__(
        self, *, store: QuoteStore, limits: Limits, links: LinkKeys,
        clock: Callable[[], datetime] | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.links = links
        self.limits = limits
        self.clock = clock or _utc_now
        # changedFields of (quote, expected, actual): revisions are immutable, so the answer
        # never changes; N stale saves of one quote compare its snapshots once.
        self._changed: dict[tuple[str, int, int], list[str]] = {}
        # The agency time zone of an agent (a send's expiry), as its statements last saw it.
        self._zones: dict[str, str] = {}

    async def create(
        self, *, caller: Caller, body: Any, correlation_id: str, on_saved: OnSaved | None = None
    ) -> SavedQuote:
        """A DRAFT at version 1 with its items and first revision, atomically; raises
        AUTHENTICATION_FAILED (token revoked), QUOTE_VALIDATION_FAILED, CURRENCY_INVALID,
        QUOTA_EXCEEDED, AGENT_NOT_FOUND, CLIENT_NOT_FOUND, AUTHORIZATION_FAILED,
        PRICING_VALIDATION_FAILED, ITEMS_INCONSISTENT."""
        agent_id = caller.agent_id
        now = self.clock()
        try:
            content = with_item_ids(validate_quote(body, limits=self.limits), ())
        except TripquoteError:
            # A revoked token, then a missing agent first, then the body.
            require_principal(await self.store.caller_facts(caller=caller))
            raise
        draft = priced_or_error(content, content.client_id)
        if isinstance(draft, TripquoteError):
            loaded = await self.store.load(
                caller=caller, quote_id="", now=now, client_id=content.client_id
            )
            raise self._refused(explain(loaded.facts, operation=None, quote_id="", pending=draft))
        quote = Quote(
            id=new_id(),
            agent_id=agent_id,
            client_id=content.client_id,
            draft=draft,
            status=QuoteStatus.DRAFT,
            version=1,
            created_at=now,
            last_modified_by=agent_id,
            last_modified_at=now,
            sent_at=None,
            expires_at=None,
        ).to_api()

        async def write(then: Then | None) -> Saved | Refused:
            return await self.store.create(
                quote_id=quote["id"], caller=caller, draft=draft, quote=quote, now=now,
                correlation_id=correlation_id, then=then,
            )  # fmt: skip

        saved = await self._settle(
            write, lambda _: quote, on_saved, now=now, agent_id=agent_id, quote_id="",
            operation=None, client_id=content.client_id,
        )  # fmt: skip
        assert saved is not None  # a create always changes something
        return saved

    async def read(self, *, caller: Caller, quote_id: str) -> dict[str, Any]:
        """The quote in API form (a SENT quote past ``expiresAt`` is EXPIRED);
        AUTHENTICATION_FAILED, AGENT_NOT_FOUND, QUOTE_NOT_FOUND, AUTHORIZATION_FAILED."""
        return (await self._visible(caller, quote_id, self.clock())).to_api()

    async def update(
        self, *, caller: Caller, quote_id: str, body: Any, if_match: int | None,
        correlation_id: str, on_saved: OnSaved | None = None, merge: bool = False,
        none_match: NoneMatch | None = None,
    ) -> SavedQuote:  # fmt: skip
        """Apply a partial update checked against the client's version, atomically.

        Raises, in order: QUOTE_VALIDATION_FAILED (no version, or body and If-Match differ),
        AUTHENTICATION_FAILED (token revoked), AGENT_NOT_FOUND, QUOTE_NOT_FOUND,
        AUTHORIZATION_FAILED, QUOTE_ALREADY_SENT / QUOTE_STATE_INVALID, QUOTE_CONFLICT_VERSION
        (412 when the version came from If-Match), then the create's checks on the merged
        quote. Nothing changed: the quote as it is. ``merge`` (``Prefer: merge``): a stale
        version is merged with what was saved since (``merge_save``): its conflict comes
        after the PATCH's own validation and carries ``conflicts``. ``none_match``: the
        request's If-None-Match (``_unless_named``)."""
        if not isinstance(body, dict):
            raise QuoteValidationFailed(
                details={"errors": [field_error("", "type", "The body must be a JSON object.")]}
            )
        expected = expected_version(patch_version(body), if_match)
        conflict_status = 412 if if_match is not None else None
        now = self.clock()
        if none_match is not None and none_match(expected):
            await self._unless_named(
                caller, quote_id, Operation.UPDATE, expected, conflict_status, now
            )
        if merge:
            request = MergeRequest(
                caller, quote_id, body, expected, conflict_status, now, correlation_id
            )
            return await self._merged(request, on_saved)
        draft = full_form(body, self.limits)
        current: Quote | None = None
        if not isinstance(draft, Draft):
            # The merge needs the stored quote: read it (at the version expected: a stale
            # version's refusal needs only the facts), and say first what refuses the save.
            loaded = await self.store.load(
                caller=caller, quote_id=quote_id, now=now, version=expected
            )
            await self._raise_refusal(
                loaded.facts, operation=Operation.UPDATE, quote_id=quote_id,
                expected=expected, conflict_status=conflict_status,
            )  # fmt: skip
            assert loaded.quote is not None
            current = loaded.quote
            try:
                content = apply_patch(current, body, self.limits)
            except TripquoteError as invalid:
                raise self._refused(invalid) from None
            draft = priced_or_error(content, content.client_id)
            if isinstance(draft, TripquoteError):
                if content.client_id != current.client_id:
                    loaded = await self.store.load(
                        caller=caller, quote_id=quote_id, now=now, client_id=content.client_id
                    )
                raise self._refused(
                    explain(
                        loaded.facts, operation=Operation.UPDATE, quote_id=quote_id,
                        expected=expected, client_id=content.client_id, pending=draft,
                    )
                )  # fmt: skip
        edited = draft

        async def write(then: Then | None) -> Saved | Refused:
            return await self.store.edit(
                caller=caller, quote_id=quote_id, expected=expected, draft=edited, now=now,
                correlation_id=correlation_id, then=then,
            )  # fmt: skip

        def quote_of(saved: Saved) -> dict[str, Any]:
            return edited_quote(quote_id, saved, edited, expected + 1, caller.agent_id, now)

        saved = await self._settle(
            write, quote_of, on_saved, now=now, agent_id=caller.agent_id, quote_id=quote_id,
            operation=Operation.UPDATE, expected=expected, conflict_status=conflict_status,
            client_id=edited.client_id,
        )  # fmt: skip
        if saved is not None:
            return saved
        # Nothing changes: no new version, so no one else gets a conflict.
        if current is None:
            current = await self._visible(caller, quote_id, now)
        return SavedQuote(quote=current.to_api(), saved_at=now)

    async def _merged(self, request: MergeRequest, on_saved: OnSaved | None) -> SavedQuote:
        """``update`` with ``merge``: ``merge_save.merged_save``."""

        def quote_of(saved: Saved, edit: Edit) -> dict[str, Any]:
            return edited_quote(
                request.quote_id, saved, edit.draft, edit.current.version + 1,
                request.caller.agent_id, request.now,
            )  # fmt: skip

        async def then(tx: Tx, saved: Saved, edit: Edit) -> None:
            assert on_saved is not None
            merged = SavedQuote(quote_of(saved, edit), request.now, edit.merge)
            await on_saved(tx, merged)

        outcome = await merged_save(
            self.store, request, self.limits, quote_of, then if on_saved is not None else None
        )
        if outcome.quote is None:
            return SavedQuote(quote=outcome.current.to_api(), saved_at=request.now)
        return SavedQuote(quote=outcome.quote, saved_at=request.now, merge=outcome.merge)

    async def transition(
        self, *, caller: Caller, quote_id: str, operation: Operation, body: Any,
        if_match: int | None, correlation_id: str, on_saved: OnSaved | None = None,
        none_match: NoneMatch | None = None,
    ) -> SavedQuote:  # fmt: skip
        """SEND, ACCEPT, REJECT or DELETE (soft: CANCELLED), checked against the client's
        version, as one atomic, revisioned change. ``body`` is None or ``{"version": n}``.

        Raises QUOTE_VALIDATION_FAILED (version missing or ambiguous; sending without items),
        AUTHENTICATION_FAILED (token revoked), AGENT_NOT_FOUND, QUOTE_NOT_FOUND,
        AUTHORIZATION_FAILED, QUOTE_ALREADY_SENT, QUOTE_STATE_INVALID (currentStatus,
        operation, allowedOperations), QUOTE_CONFLICT_VERSION. ``none_match``: the request's
        If-None-Match (``_unless_named``)."""
        body = {} if body is None else body
        if not isinstance(body, dict) or set(body) - {"version"}:
            raise QuoteValidationFailed(
                details={
                    "errors": [
                        field_error(
                            ""
                            if not isinstance(body, dict)
                            else sorted(set(body) - {"version"})[0],
                            "unknown_field" if isinstance(body, dict) else "type",
                            "The body may only carry the quote's version.",
                        )
                    ]
                }
            )
        expected = expected_version(patch_version(body), if_match)
        conflict_status = 412 if if_match is not None else None
        now = self.clock()
        if none_match is not None and none_match(expected):
            await self._unless_named(caller, quote_id, operation, expected, conflict_status, now)
        agent_id = caller.agent_id
        if operation is Operation.SEND and agent_id not in self._zones:
            # The expiry instant needs the agency's time zone: read once per agent and process.
            loaded = await self.store.load(caller=caller, quote_id=quote_id, now=now)
            await self._raise_refusal(
                loaded.facts, operation=operation, quote_id=quote_id, expected=expected,
                conflict_status=conflict_status,
            )  # fmt: skip
            self._remember_zone(agent_id, loaded.facts)

        async def write(then: Then | None) -> Saved | Refused:
            zone = self._zones.get(agent_id) if operation is Operation.SEND else None
            # A send stores the proposal behind a new link (its token given by GET …/proposal)
            link = self.links.mint() if operation is Operation.SEND else None
            return await self.store.transition(
                caller=caller, quote_id=quote_id, expected=expected,
                change=transition(operation, now, zone), now=now, timezone=zone,
                correlation_id=correlation_id, then=then, link=link,
            )  # fmt: skip

        def quote_of(saved: Saved) -> dict[str, Any]:
            assert saved.snapshot is not None
            quote: dict[str, Any] = loads(saved.snapshot.encode())
            return quote

        saved = await self._settle(
            write, quote_of, on_saved, now=now, agent_id=agent_id, quote_id=quote_id,
            operation=operation, expected=expected, conflict_status=conflict_status,
        )  # fmt: skip
        assert saved is not None  # a transition always changes the status
        return saved

    async def list(
        self, *, caller: Caller, filters: Filters, before: tuple[datetime, str] | None, limit: int
    ) -> tuple[builtins.list[dict[str, Any]], tuple[datetime, str] | None]:
        """One page of the caller's quotes (an admin: the agency's), newest first, and the
        ``(createdAt, id)`` the next page starts before (None on the last);
        AUTHENTICATION_FAILED (token revoked), AGENT_NOT_FOUND."""
        facts, quotes = await self.store.list(
            caller=caller, filters=filters, before=before, limit=limit + 1, now=self.clock()
        )
        require_principal(facts)
        page = quotes[:limit]
        after = (page[-1].created_at, page[-1].id) if len(quotes) > limit else None
        return [quote.to_api() for quote in page], after

    async def revisions(
        self, *, caller: Caller, quote_id: str, after: int, limit: int
    ) -> tuple[builtins.list[dict[str, Any]], int | None]:
        """One page of a visible quote's history, oldest first: up to ``limit`` entries for the
        versions after ``after`` (0: from version 1), each without its snapshot and with the
        ``changedFields`` from the version before (``model.changes_between``: the 409's rule);
        and the version the next page starts after (None on the last). Raises
        AUTHENTICATION_FAILED (token revoked), AGENT_NOT_FOUND, QUOTE_NOT_FOUND,
        AUTHORIZATION_FAILED."""
        await self._visible(caller, quote_id, self.clock())
        rows = await self.store.revision_page(quote_id=quote_id, after=after, limit=limit + 1)
        page = rows[:limit]
        changes = await self._changes(quote_id, [(r.version - 1, r.version) for r in page])
        entries = [
            {**revision_entry(r), "changedFields": changes[(r.version - 1, r.version)]}
            for r in page
        ]
        return entries, page[-1].version if len(rows) > limit else None

    async def revision(self, *, caller: Caller, quote_id: str, version: int) -> dict[str, Any]:
        """One version of a visible quote's history with its snapshot (the quote's API form
        at that version); AUTHENTICATION_FAILED, AGENT_NOT_FOUND, QUOTE_NOT_FOUND (also when
        the version never existed), AUTHORIZATION_FAILED."""
        await self._visible(caller, quote_id, self.clock())
        revision = await self.store.revision(quote_id=quote_id, version=version)
        if revision is None:
            raise QuoteNotFound(
                f"The quote has no version {version}.",
                details={"quoteId": quote_id, "version": version},
            )
        return {**revision_entry(revision), "snapshot": revision.snapshot}

    async def expire_due(self, *, batch_size: int, correlation_id: str) -> int:
        """Expire every SENT quote past ``expiresAt`` (by the system actor); how many."""
        return await self.store.expire_due(
            now=self.clock(), batch_size=batch_size, correlation_id=correlation_id
        )

    # --- steps ---------------------------------------------------------------------------

    async def _visible(self, caller: Caller, quote_id: str, now: datetime) -> Quote:
        loaded = await self.store.load(caller=caller, quote_id=quote_id, now=now)
        error = access_error(loaded.facts, quote_id)
        if error is not None:
            raise error
        assert loaded.quote is not None
        return loaded.quote

    async def _settle(
        self,
        write: Callable[[Then | None], Awaitable[Saved | Refused]],
        quote_of: Callable[[Saved], dict[str, Any]],
        on_saved: OnSaved | None,
        *,
        now: datetime,
        agent_id: str,
        quote_id: str,
        operation: Operation | None,
        expected: int | None = None,
        conflict_status: int | None = None,
        client_id: str | None = None,
    ) -> SavedQuote | None:
        """Write until saved (the quote) or refused for good (its error raised; None when
        nothing changes). At the quota bound the owner's open quotes are counted exactly and
        the write runs again; so it does when its facts explain nothing (the statement waited
        for a concurrent commit its snapshot predates: run again, it sees that commit)."""
        done: builtins.list[SavedQuote] = []

        async def then(tx: Tx, saved: Saved) -> None:
            done.append(SavedQuote(quote=quote_of(saved), saved_at=now))
            assert on_saved is not None
            await on_saved(tx, done[-1])

        for _ in range(_ATTEMPTS):
            done.clear()
            result = await write(then if on_saved is not None else None)
            if isinstance(result, Saved):
                return done[-1] if done else SavedQuote(quote=quote_of(result), saved_at=now)
            facts = result.facts
            self._remember_zone(agent_id, facts)  # a send made for another zone runs again
            verdict = await self._verdict(
                facts, operation, quote_id, expected, conflict_status, client_id
            )
            if verdict is Verdict.UNCHANGED:
                return None
            if verdict is Verdict.AT_QUOTA_BOUND:
                owner = facts.owner_id if operation is not None else agent_id
                assert owner is not None
                count = await self.store.recount_open_quotes(agent_id=owner, now=now)
                if count >= self.store.open_limit:
                    raise quota_exceeded(self.store.open_limit, count)
        raise RuntimeError("a save was refused without a reason on every attempt")

    def _refused(self, verdict: TripquoteError | Verdict | None) -> TripquoteError:
        """The error that refuses a save once it reached the store, counted as its rolled
        back unit (``tripquote_db_rollbacks_total{reason}``), as an error inside it would be."""
        assert isinstance(verdict, TripquoteError)
        self.store.refused(verdict.code)
        return verdict

    def _remember_zone(self, agent_id: str, facts: Facts) -> None:
        """The caller's agency time zone, as the facts of a statement saw it."""
        if facts.timezone is not None and self._zones.get(agent_id) != facts.timezone:
            if len(self._zones) >= _CACHE_MAX:
                self._zones.clear()
            self._zones[agent_id] = facts.timezone

    async def _verdict(
        self,
        facts: Facts,
        operation: Operation | None,
        quote_id: str,
        expected: int | None,
        conflict_status: int | None,
        client_id: str | None,
    ) -> Verdict | None:
        """``explain``'s verdict; its error raised (a conflict with ``changedFields``)."""
        verdict = explain(
            facts, operation=operation, quote_id=quote_id, expected=expected,
            conflict_status=conflict_status, client_id=client_id,
        )  # fmt: skip
        if isinstance(verdict, TripquoteError):
            raise self._refused(await self._with_changed_fields(verdict))
        return verdict

    async def _unless_named(
        self, caller: Caller, quote_id: str, operation: Operation, expected: int,
        conflict_status: int | None, now: datetime,
    ) -> None:  # fmt: skip
        """A write whose If-None-Match names the version it acts on (or is ``*``) is never
        done (RFC 9110 §13.1.2, §13.2.2): the refusal it would meet without the header (the
        caller's, the quote's access, status or stale version), else 412
        QUOTE_CONFLICT_VERSION: the quote is at that version, which If-None-Match excludes."""
        loaded = await self.store.load(caller=caller, quote_id=quote_id, now=now)
        await self._raise_refusal(
            loaded.facts, operation=operation, quote_id=quote_id, expected=expected,
            conflict_status=conflict_status,
        )  # fmt: skip
        message = f'If-None-Match names the quote\'s current ETag "{expected}": nothing was done.'
        conflict = version_conflict(loaded.facts, quote_id, expected, 412, message)
        conflict.details.update(changedFields=[], precondition="If-None-Match")
        raise self._refused(conflict)

    async def _raise_refusal(
        self, facts: Facts, *, operation: Operation, quote_id: str, expected: int,
        conflict_status: int | None,
    ) -> None:  # fmt: skip
        """Raise what refuses ``operation`` on the quote read (caller, access, status,
        version) before the input is looked at."""
        verdict = explain(
            facts, operation=operation, quote_id=quote_id, expected=expected,
            conflict_status=conflict_status,
        )  # fmt: skip
        if isinstance(verdict, TripquoteError):
            raise self._refused(await self._with_changed_fields(verdict))

    async def _with_changed_fields(self, error: TripquoteError) -> TripquoteError:
        """A QUOTE_CONFLICT_VERSION completed with ``changedFields``: what changed from the
        client's version to the current one (``model.changes_between``; [] when the client's
        version never existed); any other error as it is."""
        details = error.details
        if error.code != "QUOTE_CONFLICT_VERSION" or "changedFields" in details:
            return error
        pair = (details["expectedVersion"], details["actualVersion"])
        details["changedFields"] = (await self._changes(details["quoteId"], [pair]))[pair]
        return error

    async def _changes(
        self, quote_id: str, pairs: builtins.list[tuple[int, int]]
    ) -> dict[tuple[int, int], builtins.list[str]]:
        """``changes_between`` the two versions of each ``(older, newer)`` pair of the quote
        ([] when either never existed): cached, since revisions never change, and the pairs
        not cached compared from ONE read of their snapshots."""
        found: dict[tuple[int, int], builtins.list[str]] = {}
        missing: builtins.list[tuple[int, int]] = []
        for pair in pairs:
            cached = self._changed.get((quote_id, *pair))
            if cached is None:
                missing.append(pair)
            else:
                found[pair] = cached
        if not missing:
            return found
        versions = sorted({version for pair in missing for version in pair})
        snapshots = await self.store.snapshots(quote_id=quote_id, versions=versions)
        for older, newer in missing:
            current = snapshots.get(newer)
            changed = [] if current is None else changes_between(snapshots.get(older), current)
            if len(self._changed) >= _CACHE_MAX:
                self._changed.clear()
            self._changed[(quote_id, older, newer)] = found[(older, newer)] = changed
        return found


def edited_quote(
    quote_id: str, saved: Saved, draft: Draft, version: int, actor: str, now: datetime
) -> dict[str, Any]:
    """The API form of an edit written as ``version`` (the row's values and the item ids
    from ``saved``)."""
    assert saved.created_at is not None and saved.item_ids is not None
    content = draft.content_api()
    for item, item_id in zip(content["items"], saved.item_ids, strict=True):
        item["id"] = item_id
    return {
        "id": quote_id,
        "agentId": saved.agent_id,
        "clientId": saved.client_id,
        **content,
        "status": target_of(Operation.UPDATE).value,
        "version": version,
        "createdAt": fmt_instant(saved.created_at),
        "lastModifiedBy": actor,
        "lastModifiedAt": fmt_instant(now),
        "sentAt": None,
        "expiresAt": None,
    }


def revision_entry(revision: Revision) -> dict[str, Any]:
    """One history entry: the version, what made it (operation, status after), who, under
    which correlation ID, and when (ISO 8601 UTC, milliseconds)."""
    return {
        "version": revision.version,
        "operation": revision.operation,
        "status": revision.status,
        "actorId": revision.actor_id,
        "correlationId": revision.correlation_id,
        "createdAt": fmt_instant(revision.created_at),
        "merge": revision.merge,
    }
