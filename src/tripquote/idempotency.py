"""``Idempotency-Key`` (IETF draft-ietf-httpapi-idempotency-key-header; Stripe's behaviour
where the two agree): the same key and body replay the first response; the same key with
another body is IDEMPOTENCY_KEY_REUSED (422); a duplicate while the first is still running is
IDEMPOTENCY_KEY_IN_USE (409, retryable). Keys are scoped per agent (so per agency) and kept
24 h; a key names one request (method, path, body, If-Match), so the same key on another URL is
IDEMPOTENCY_KEY_REUSED too. ``idempotent`` runs any change (a create, a transition, a PATCH)
under it.

A key is claimed in its own short transaction (so a concurrent duplicate sees it at once), and
completed in the same transaction as the change it guards, so the stored response exists if and
only if the change committed. A failed request releases its claim; a claim left by a crashed
process is taken over once it is older than the abandon delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from tenacity import AsyncRetrying, stop_after_delay, wait_random_exponential

from tripquote.agents.auth import Caller, principal_of
from tripquote.db.tables import idempotency_keys
from tripquote.db.transaction import TransactionRunner, Tx, joined_tx
from tripquote.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    QuoteValidationFailed,
    SaveOutcomeUnknown,
    TripquoteError,
    field_error,
)
from tripquote.etags import field_value
from tripquote.json import dumps
from tripquote.validation import canonical_id

_logger = structlog.get_logger("tripquote.idempotency")

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # visible ASCII, as the draft's sf-string allows
KEY_PATTERN = '^"*[\\x21\\x23-\\x7e](?:[\\x21-\\x7e]*[\\x21\\x23-\\x7e])?"*$'
"""``parse_key``'s rule as a JSON Schema ``pattern`` (with ``maxLength`` 255): visible ASCII,
quotes around it dropped."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response recorded for replay."""

    status: int
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Claim:
    """A claimed key: complete it inside the change's transaction, or release it."""

    agent_id: str
    key: str
    claimed_at: datetime
    """The row's ``created_at`` this claim wrote: a later claim of the key (a takeover) has
    another, so releasing this one never frees that one."""


def parse_key(value: str | None) -> str | None:
    """The header's key, None if absent; QUOTE_VALIDATION_FAILED if not 1-255 visible ASCII."""
    if value is None:
        return None
    key = value.strip().strip('"')
    if not _KEY.match(key):
        raise QuoteValidationFailed(
            "Idempotency-Key must be 1-255 visible ASCII characters.",
            details={"errors": [field_error("Idempotency-Key", "invalid", "Use e.g. a UUID.")]},
        )
    return key


def request_fingerprint(method: str, path: str, body: Any, *, if_match: str | None = None) -> str:
    """SHA-256 hex of method, path (its ids as stored: ``validation.canonical_id``, so one URL
    in either case of a UUID's hex digits is one request), the canonical JSON of the parsed body
    and, when sent, the ``If-Match`` header (every line): it names the version edited, like a
    body's ``version``, so another version under the same key is another request
    (IDEMPOTENCY_KEY_REUSED), not a replay."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    path = "/".join(canonical_id(segment) for segment in path.split("/"))
    text = f"{method} {path}\n{canonical}"
    if if_match is not None:
        text += f"\nIf-Match: {if_match.strip()}"
    return hashlib.sha256(text.encode()).hexdigest()


_LOCAL_COMMIT = text("SET LOCAL synchronous_commit = local")
"""A claim or release commits without waiting for a synchronous standby: never an unanswered
COMMIT of its own (a claim left behind would hold the key for the abandon delay), and losing
it in a failover is harmless, as the save that completes the key commits after it and waits
for the standby: WAL is replicated in order, so a save that is kept keeps its claim."""

_CLAIM_ROUNDS = 5
"""Rounds of a claim before IDEMPOTENCY_KEY_IN_USE: each lost round means another request
claimed the key and released it between the claim's statements, or took it over first."""


PURGE_BATCH = 1000
"""Keys deleted per transaction by ``IdempotencyStore.purge``."""

_PURGE = """
DELETE FROM idempotency_keys
 WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_keys WHERE expires_at <= :now
                         ORDER BY expires_at LIMIT :batch_size FOR UPDATE SKIP LOCKED))
"""
"""One batch of the purge: the oldest expired keys, by their row address (a TID scan)."""


class IdempotencyStore:
    """Claims, completes, releases and replays keys through the transaction runner."""

    def __init__(self, *, runner: TransactionRunner, ttl: timedelta, abandon_after: timedelta):
        self.runner = runner
        self.ttl = ttl
        self.abandon_after = abandon_after
        self._releasing: set[asyncio.Task[None]] = set()

    async def claim(self, *, caller: Caller, key: str, fingerprint: str) -> Claim | StoredResponse:
        """Claim ``key`` for this request, or return the stored response to replay.

        Raises AUTHENTICATION_FAILED (token revoked) or AGENT_NOT_FOUND when the key is known
        (a new key's request meets them in its save), then IDEMPOTENCY_KEY_REUSED (other
        body) or IDEMPOTENCY_KEY_IN_USE (still running).
        """
        now = datetime.now(UTC)
        agent_id = caller.agent_id

        async def work(conn: AsyncConnection) -> Claim | StoredResponse:
            await conn.execute(_LOCAL_COMMIT)
            # INSERT … ON CONFLICT DO NOTHING: a concurrent duplicate waits for the first
            # claim to commit, then finds its row instead of failing on the primary key.
            # The row can be gone again when it reads it (the first request failed and
            # released the key in between): the key is free, so the insert is tried again.
            this_key = (idempotency_keys.c.agent_id == agent_id, idempotency_keys.c.key == key)
            for _ in range(_CLAIM_ROUNDS):
                inserted = await conn.execute(
                    pg_insert(idempotency_keys)
                    .values(
                        agent_id=agent_id,
                        key=key,
                        request_hash=fingerprint,
                        state="in_flight",
                        created_at=now,
                        expires_at=now + self.ttl,
                    )
                    .on_conflict_do_nothing()
                )
                if inserted.rowcount == 1:
                    return Claim(agent_id, key, now)
                row = (
                    (await conn.execute(select(idempotency_keys).where(*this_key)))
                    .mappings()
                    .first()
                )
                if row is None:
                    continue  # released in between: the key is free, insert again
                # Nothing is answered from a known key unless its caller may act now.
                await principal_of(conn, caller)
                # Taking a key over (expired, or abandoned by a crashed process) is conditional
                # on the row read: of two requests taking it over at once, the second finds it
                # changed (PostgreSQL re-checks the WHERE after the first commits), reads again
                # and answers IDEMPOTENCY_KEY_IN_USE instead of claiming it a second time.
                as_read = (
                    *this_key,
                    idempotency_keys.c.created_at == row["created_at"],
                    idempotency_keys.c.expires_at == row["expires_at"],
                    idempotency_keys.c.state == row["state"],
                )
                if row["expires_at"] <= now:  # an expired key is a new key
                    taken = await conn.execute(
                        update(idempotency_keys)
                        .where(*as_read)
                        .values(
                            request_hash=fingerprint,
                            state="in_flight",
                            created_at=now,
                            expires_at=now + self.ttl,
                            response_status=None,
                            response_body=None,
                            response_headers=None,
                        )
                    )
                    if taken.rowcount == 1:
                        return Claim(agent_id, key, now)
                    continue
                if row["request_hash"] != fingerprint:
                    raise IdempotencyKeyReused(details={"idempotencyKey": key})
                if row["state"] == "done":
                    return StoredResponse(
                        status=int(row["response_status"]),
                        body=str(row["response_body"]).encode(),
                        headers=dict(row["response_headers"] or {}),
                    )
                if now - row["created_at"] < self.abandon_after:
                    raise IdempotencyKeyInUse(details={"idempotencyKey": key})
                taken = await conn.execute(  # abandoned by a crashed process: take it over
                    update(idempotency_keys)
                    .where(*as_read)
                    .values(created_at=now, expires_at=now + self.ttl)
                )
                if taken.rowcount == 1:
                    return Claim(agent_id, key, now)
            # Claimed, released or taken over by others every round: still busy, retry later.
            raise IdempotencyKeyInUse(details={"idempotencyKey": key})

        return await self.runner.run(work)

    async def complete_alone(self, claim: Claim, response: StoredResponse) -> None:
        """Store the response of a request that changed nothing (so no change's transaction
        stored it), in a transaction of its own."""

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(_LOCAL_COMMIT)
            await complete(await joined_tx(conn), claim, response)

        await self.runner.run(work)

    async def release(self, claim: Claim) -> None:
        """Forget a claim whose request failed, so the key can be used again. A clean-up after
        the request's own unit failed, counted and logged as that failure already: its own
        failure is not counted again (``TransactionRunner.run``, ``accounted``)."""

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(_LOCAL_COMMIT)
            await conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.agent_id == claim.agent_id,
                    idempotency_keys.c.key == claim.key,
                    idempotency_keys.c.created_at == claim.claimed_at,
                    idempotency_keys.c.state == "in_flight",
                )
            )

        await self.runner.run(work, accounted=False)

    def release_later(self, claim: Claim) -> None:
        """Release ``claim`` in the background, tried again (backoff) until it succeeds or the
        abandon delay passes: for a save whose outcome was unknown when it was answered
        (SAVE_OUTCOME_UNKNOWN). Always safe: the release deletes the key only while it is
        ``in_flight``, and waits for the row lock of a save still committing it (which the
        save took to store its response before its COMMIT), so a save that commits keeps
        its key (``done``) and one that does not frees it, and the client's retry with the
        key runs again as soon as the database answers, not only once the key is abandoned."""
        task = asyncio.create_task(self._release_until_done(claim))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release_until_done(self, claim: Claim) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_delay(self.abandon_after.total_seconds()),
            wait=wait_random_exponential(multiplier=0.1, max=2.0),
            reraise=True,
        )
        with contextlib.suppress(Exception):  # the abandon delay frees it then
            async for attempt in retrying:
                with attempt:
                    await self.release(claim)

    async def stop(self) -> None:
        """Cancel the background releases still running (the abandon delay covers them)."""
        for task in list(self._releasing):
            task.cancel()
        await asyncio.gather(*self._releasing, return_exceptions=True)

    async def purge(self, *, now: datetime, batch_size: int = PURGE_BATCH) -> int:
        """Delete every key past its expiry, ``batch_size`` keys per transaction (oldest
        first, by ``ix_idempotency_keys_expires_at``; a key locked by a claim taking it over
        is skipped, then re-checked): short locks, no long transaction holding back VACUUM;
        returns how many."""

        async def work(conn: AsyncConnection) -> int:
            result = await conn.execute(text(_PURGE), {"now": now, "batch_size": batch_size})
            return int(result.rowcount or 0)

        total = 0
        while True:
            deleted = await self.runner.run(work)
            total += deleted
            if deleted < batch_size:
                return total


_COMPLETE = """
UPDATE idempotency_keys
   SET state = 'done', response_status = $3, response_body = $4, response_headers = $5::json
 WHERE agent_id = $1 AND key = $2 AND created_at = $6 AND state = 'in_flight'
"""
"""Fenced by the claim (its ``created_at``), as ``release`` is: a claim taken over (a retry
of a request that ran past the abandon delay) or released completes nothing."""


async def complete(tx: Tx, claim: Claim, response: StoredResponse) -> None:
    """Store the response for replay, in the transaction of the change it answers.

    Raises IDEMPOTENCY_KEY_IN_USE (retryable), rolling that change back, when the claim is no
    longer this request's: a retry under the key took it over once this request ran past the
    abandon delay (a pool or lock wait, a paused process) and made the change itself, so this
    one must not commit a second; the client's retry replays the retry's answer."""
    status = await tx.driver.execute(
        _COMPLETE,
        claim.agent_id,
        claim.key,
        response.status,
        response.body.decode(),
        dumps(response.headers).decode(),
        claim.claimed_at,
    )
    if status != "UPDATE 1":
        raise IdempotencyKeyInUse(
            "A retry under this Idempotency-Key took it over while this request ran; this one "
            "changed nothing. Retry with the same key to read the outcome.",
            details={"idempotencyKey": claim.key, "cause": "taken_over"},
        )


Record = Callable[[Tx, StoredResponse], Awaitable[None]]
"""Stores a change's response for replay, in the change's own transaction (``Tx``)."""


async def created(
    conn: AsyncConnection, record: Record | None, payload: dict[str, Any], *, location: str
) -> StoredResponse:
    """A create's answer, 201 with ``payload`` as JSON and ``Location: location`` (the new
    resource's path, RFC 9110 §10.2.2); for a keyed request (``record``), stored with its key
    in the transaction of ``conn`` (a ``TransactionRunner.run`` unit)."""
    response = StoredResponse(status=201, body=dumps(payload), headers={"Location": location})
    if record is not None:
        await record(await joined_tx(conn), response)
    return response


def to_response(stored: StoredResponse, *, replayed: bool = False) -> Response:
    """The HTTP response of a stored (or just built) one; ``Idempotent-Replayed: true`` on a
    replay."""
    headers = dict(stored.headers)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(
        content=stored.body,
        status_code=stored.status,
        media_type="application/json",
        headers=headers,
    )


async def idempotent(
    request: Request,
    *,
    key: str | None,
    caller: Caller,
    body: Any,
    run: Callable[[Record | None], Awaitable[StoredResponse]],
) -> Response:
    """Answer a change (a create, a transition, a PATCH) under its ``Idempotency-Key`` value
    ``key``: ``run(record)`` makes the change and returns its response, calling
    ``record(tx, response)`` inside the change's transaction when the request has a key
    (``record`` None without one; a response ``run`` did not record, having nothing to
    change, is stored with the key on its own). A known key replays its stored response (or raises
    IDEMPOTENCY_KEY_REUSED / IDEMPOTENCY_KEY_IN_USE, see ``IdempotencyStore.claim``); a key
    not 1-255 visible ASCII is QUOTE_VALIDATION_FAILED. A failed ``run`` releases the key (in the
    background after SAVE_OUTCOME_UNKNOWN: ``IdempotencyStore.release_later``)."""
    parsed = parse_key(key)
    if parsed is None:
        return to_response(await run(None))
    if_match = field_value(request.headers, "if-match")
    fingerprint = request_fingerprint(request.method, request.url.path, body, if_match=if_match)
    keys: IdempotencyStore = request.app.state.idempotency
    claimed = await keys.claim(caller=caller, key=parsed, fingerprint=fingerprint)
    if isinstance(claimed, StoredResponse):
        return to_response(claimed, replayed=True)
    claim: Claim = claimed
    recorded = False

    async def record(tx: Tx, response: StoredResponse) -> None:
        nonlocal recorded
        await complete(tx, claim, response)
        recorded = True

    try:
        response = await run(record)
        if not recorded:  # nothing to change (a PATCH of what is saved): stored alone
            await keys.complete_alone(claim, response)
    except SaveOutcomeUnknown:
        # Maybe committed, the key's response with it: released in the background once the
        # database answers (kept if the change committed), so a retry with the key replays
        # it or runs it again.
        keys.release_later(claim)
        raise
    except BaseException:
        # Certainly not committed: free the key so a retry runs again at once. A release
        # that fails too is tried again in the background; the change's error is the answer.
        try:
            await keys.release(claim)
        except TripquoteError as failed:
            _logger.warning("idempotency_release_deferred", error_code=failed.code)
            keys.release_later(claim)
        raise
    return to_response(response)
