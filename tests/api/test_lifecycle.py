"""The whole lifecycle through HTTP on both databases: every (status, operation) pair of the
state table, expiry, history, idempotency and quotas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, make_settings, quote_body
from tripquote.quotes.lifecycle import Operation, QuoteStatus

URL = "/api/agents/quotes"


async def create(
    world: World, actor: Actor, name: str = "edinburgh-weekend-gbp", **headers: str
) -> Any:
    return await world.client.post(
        URL, json=quote_body(name, actor.client_id), headers={**actor.headers, **headers}
    )


async def act(world: World, actor: Actor, quote_id: str, operation: Operation, version: int) -> Any:
    if operation is Operation.UPDATE:
        return await world.client.patch(
            f"{URL}/{quote_id}", json={"version": version, "travelers": 2}, headers=actor.headers
        )
    if operation is Operation.DELETE:
        return await world.client.request(
            "DELETE", f"{URL}/{quote_id}", json={"version": version}, headers=actor.headers
        )
    return await world.client.post(
        f"{URL}/{quote_id}/{operation.value.lower()}",
        json={"version": version},
        headers=actor.headers,
    )


async def expire_in_db(world: World, quote_id: str) -> None:
    """Move a SENT quote's expiry into the past of the app's clock, as the passage of time
    would (no sweep)."""
    async with world.engine.begin() as conn:
        await conn.execute(
            text("UPDATE quotes SET expires_at = :at WHERE id = :id"),
            {"at": world.clock() - timedelta(seconds=1), "id": quote_id},
        )


async def quote_in(world: World, actor: Actor, status: QuoteStatus) -> tuple[str, int]:
    """A quote brought to ``status`` through the API; returns (id, version)."""
    response = await create(world, actor)
    quote_id, version = response.json()["quoteId"], 1
    path = {
        QuoteStatus.DRAFT: [],
        QuoteStatus.SENT: [Operation.SEND],
        QuoteStatus.ACCEPTED: [Operation.SEND, Operation.ACCEPT],
        QuoteStatus.REJECTED: [Operation.SEND, Operation.REJECT],
        QuoteStatus.CANCELLED: [Operation.DELETE],
        QuoteStatus.EXPIRED: [Operation.SEND],
    }[status]
    for operation in path:
        result = await act(world, actor, quote_id, operation, version)
        assert result.status_code == 200, result.text
        version = result.json()["version"]
    if status is QuoteStatus.EXPIRED:
        await expire_in_db(world, quote_id)
    return quote_id, version


# The README's lifecycle table, written out (never read from quotes/lifecycle.py, so a wrong
# row there fails here): status -> operation -> the resulting status, or the refusal's code.
DRAFT, SENT, ACCEPTED, REJECTED, EXPIRED, CANCELLED = (
    "DRAFT",
    "SENT",
    "ACCEPTED",
    "REJECTED",
    "EXPIRED",
    "CANCELLED",
)
ALREADY_SENT, STATE_INVALID = "QUOTE_ALREADY_SENT", "QUOTE_STATE_INVALID"
OPERATIONS = ("UPDATE", "DELETE", "SEND", "ACCEPT", "REJECT")
STATE_TABLE: dict[str, dict[str, str]] = {
    DRAFT: {
        "UPDATE": DRAFT,
        "DELETE": CANCELLED,
        "SEND": SENT,
        "ACCEPT": STATE_INVALID,
        "REJECT": STATE_INVALID,
    },
    SENT: {
        "UPDATE": ALREADY_SENT,
        "DELETE": ALREADY_SENT,
        "SEND": ALREADY_SENT,
        "ACCEPT": ACCEPTED,
        "REJECT": REJECTED,
    },
    ACCEPTED: dict.fromkeys(OPERATIONS, STATE_INVALID),
    REJECTED: {
        "UPDATE": DRAFT,
        "DELETE": CANCELLED,
        "SEND": STATE_INVALID,
        "ACCEPT": STATE_INVALID,
        "REJECT": STATE_INVALID,
    },
    # A SENT quote past its expiry: EXPIRED when acted on, before any sweep wrote it.
    EXPIRED: dict.fromkeys(OPERATIONS, STATE_INVALID),
    CANCELLED: dict.fromkeys(OPERATIONS, STATE_INVALID),
}
# What a refusal lists as allowed from each status (EXPIRE is the sweep's, from SENT).
ALLOWED: dict[str, list[str]] = {
    DRAFT: ["UPDATE", "DELETE", "SEND"],
    SENT: ["ACCEPT", "REJECT", "EXPIRE"],
    ACCEPTED: [],
    REJECTED: ["UPDATE", "DELETE"],
    EXPIRED: [],
    CANCELLED: [],
}
CASES = [(status, op) for status, row in STATE_TABLE.items() for op in row]


def test_the_state_table_covers_every_status_and_operation() -> None:
    assert len(CASES) == 6 * 5
    assert {status for status, _ in CASES} == {s.value for s in QuoteStatus}
    assert {op for _, op in CASES} == {o.value for o in Operation} - {"EXPIRE"}


@pytest.mark.parametrize(("status", "operation"), CASES, ids=[f"{s}-{o}" for s, o in CASES])
async def test_every_status_operation_pair(world: World, status: str, operation: str) -> None:
    actor = await world.actor()
    expected = STATE_TABLE[status][operation]
    quote_id, version = await quote_in(world, actor, QuoteStatus(status))
    revisions_before = await world.count("quote_revisions", "quote_id = :id", id=quote_id)
    before = await world.snapshot(quote_id)
    counts = await world.table_counts()
    response = await act(world, actor, quote_id, Operation(operation), version)
    if expected not in (ALREADY_SENT, STATE_INVALID):
        assert response.status_code == 200, (status, operation, response.text)
        quote = response.json()["quote"]
        assert quote["status"] == expected
        assert quote["version"] == version + 1
        assert quote["lastModifiedBy"] == actor.agent_id
        assert await world.count("quote_revisions", "quote_id = :id", id=quote_id) == (
            revisions_before + 1
        )
        history = (
            await world.client.get(f"{URL}/{quote_id}/revisions", headers=actor.headers)
        ).json()
        assert history["revisions"][-1]["operation"] == operation
        revision = await world.client.get(
            f"{URL}/{quote_id}/revisions/{quote['version']}", headers=actor.headers
        )
        assert revision.json()["revision"]["snapshot"] == quote
        read = await world.client.get(f"{URL}/{quote_id}", headers=actor.headers)
        assert read.json()["quote"]["status"] == expected
    else:
        body = assert_envelope(response, expected, 409)
        assert body["retryable"] is False
        assert body["details"]["currentStatus"] == status
        assert body["details"]["operation"] == operation
        assert body["details"]["allowedOperations"] == ALLOWED[status]
        assert await world.snapshot(quote_id) == before
        assert await world.table_counts() == counts


async def test_reject_then_revise_then_resend(world: World) -> None:
    actor = await world.actor()
    quote_id, version = await quote_in(world, actor, QuoteStatus.REJECTED)
    revised = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": version, "discount": "10.00"}, headers=actor.headers
    )
    assert revised.status_code == 200
    quote = revised.json()["quote"]
    assert quote["status"] == "DRAFT"
    assert quote["sentAt"] is None and quote["expiresAt"] is None
    resent = await act(world, actor, quote_id, Operation.SEND, quote["version"])
    assert resent.json()["quote"]["status"] == "SENT"
    ops = [
        r["operation"]
        for r in (
            await world.client.get(f"{URL}/{quote_id}/revisions", headers=actor.headers)
        ).json()["revisions"]
    ]
    assert ops == ["CREATE", "SEND", "REJECT", "UPDATE", "SEND"]


async def test_send_needs_an_item(world: World) -> None:
    actor = await world.actor()
    response = await create(world, actor, "banff-draft-cad")
    quote_id = response.json()["quoteId"]
    before = await world.snapshot(quote_id)
    body = assert_envelope(
        await act(world, actor, quote_id, Operation.SEND, 1), "QUOTE_VALIDATION_FAILED", 400
    )
    assert "items" in [e["path"] for e in body["details"]["errors"]]
    assert await world.snapshot(quote_id) == before


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"])
async def test_send_sets_expiry_at_end_of_last_valid_day_in_agency_zone(
    world: World, zone: str
) -> None:
    actor = await world.actor(agency_id=await world.agency(timezone=zone))
    quote_id = (await create(world, actor)).json()["quoteId"]  # expiresInDays 3 in this fixture
    sent = (await act(world, actor, quote_id, Operation.SEND, 1)).json()["quote"]
    sent_at = datetime.fromisoformat(sent["sentAt"])
    expires_at = datetime.fromisoformat(sent["expiresAt"])
    local = sent_at.astimezone(ZoneInfo(zone))
    last_day = local.date() + timedelta(days=sent["expiresInDays"])
    expected = datetime(
        last_day.year, last_day.month, last_day.day, tzinfo=ZoneInfo(zone)
    ) + timedelta(days=0)
    expected = datetime.combine(
        last_day + timedelta(days=1), datetime.min.time(), tzinfo=ZoneInfo(zone)
    )
    assert expires_at == expected
    assert expires_at.astimezone(ZoneInfo(zone)).hour == 0


async def test_expired_but_unswept_quote_reads_expired_and_cannot_be_accepted(world: World) -> None:
    actor = await world.actor()
    quote_id, version = await quote_in(world, actor, QuoteStatus.EXPIRED)
    read = await world.client.get(f"{URL}/{quote_id}", headers=actor.headers)
    assert read.json()["quote"]["status"] == "EXPIRED"
    before = await world.snapshot(quote_id)
    body = assert_envelope(
        await act(world, actor, quote_id, Operation.ACCEPT, version), "QUOTE_STATE_INVALID", 409
    )
    assert body["details"]["currentStatus"] == "EXPIRED"
    assert await world.snapshot(quote_id) == before
    listed = await world.client.get(URL, params={"status": "EXPIRED"}, headers=actor.headers)
    assert [q["id"] for q in listed.json()["quotes"]] == [quote_id]
    listed = await world.client.get(URL, params={"status": "SENT"}, headers=actor.headers)
    assert listed.json()["quotes"] == []


async def test_a_quote_read_expired_since_is_listed_by_updated_since(world: World) -> None:
    # Before: its offer ended with no write (the sweep not yet run), so a client syncing with
    # updatedSince from its last read never saw it go from SENT to EXPIRED.
    actor = await world.actor()
    quote_id, _ = await quote_in(world, actor, QuoteStatus.SENT)
    sent = (await world.client.get(f"{URL}/{quote_id}", headers=actor.headers)).json()["quote"]
    # The instants the API shows are to the millisecond: the next one is past the send.
    synced_at = datetime.fromisoformat(sent["lastModifiedAt"]) + timedelta(milliseconds=1)
    expires_at = datetime.fromisoformat(sent["expiresAt"])

    def since(at: datetime) -> dict[str, str]:
        return {"updatedSince": at.isoformat().replace("+00:00", "Z")}

    listed = await world.client.get(URL, params=since(synced_at), headers=actor.headers)
    assert listed.json()["quotes"] == []  # nothing changed since the client's last read
    world.clock.advance(expires_at - world.clock() + timedelta(seconds=1))  # the offer ends
    listed = await world.client.get(URL, params=since(synced_at), headers=actor.headers)
    assert [(q["id"], q["status"]) for q in listed.json()["quotes"]] == [(quote_id, "EXPIRED")]
    after = await world.client.get(
        URL, params=since(expires_at + timedelta(milliseconds=1)), headers=actor.headers
    )
    assert after.json()["quotes"] == []  # nothing since it ended
    assert (await world.snapshot(quote_id))["quote"]["status"] == "SENT"  # no write made it


async def test_expire_sweep_writes_each_quote_once_and_spares_others(world: World) -> None:
    actor = await world.actor()
    due = [(await quote_in(world, actor, QuoteStatus.EXPIRED))[0] for _ in range(3)]
    fresh, _ = await quote_in(world, actor, QuoteStatus.SENT)
    accepted, _ = await quote_in(world, actor, QuoteStatus.ACCEPTED)
    quotes = world.app.state.quotes
    results = await asyncio.gather(
        quotes.expire_due(batch_size=2, correlation_id="sweep-a"),
        quotes.expire_due(batch_size=2, correlation_id="sweep-b"),
    )
    assert (
        await world.count(
            "quote_revisions",
            "operation = 'EXPIRE' AND quote_id IN (:a, :b, :c)",
            a=due[0],
            b=due[1],
            c=due[2],
        )
        == 3
    )
    assert sum(results) >= 3
    for quote_id in due:
        stored = (await world.client.get(f"{URL}/{quote_id}", headers=actor.headers)).json()
        assert stored["quote"]["status"] == "EXPIRED"
        assert stored["quote"]["lastModifiedBy"] == "system"
    assert (await world.client.get(f"{URL}/{fresh}", headers=actor.headers)).json()["quote"][
        "status"
    ] == "SENT"
    assert (await world.client.get(f"{URL}/{accepted}", headers=actor.headers)).json()["quote"][
        "status"
    ] == "ACCEPTED"


async def test_list_filters_pagination_and_admin_scope(world: World) -> None:
    owner = await world.actor()
    colleague = await world.actor(agency_id=owner.agency_id)
    admin = await world.actor(agency_id=owner.agency_id, role="admin")
    mine = [(await create(world, owner)).json()["quoteId"] for _ in range(5)]
    theirs = (await create(world, colleague)).json()["quoteId"]
    await act(world, owner, mine[0], Operation.SEND, 1)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await world.client.get(URL, params=params, headers=owner.headers)).json()
        seen += [q["id"] for q in page["quotes"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(mine))  # newest first, no duplicates, nothing skipped

    sent = (await world.client.get(URL, params={"status": "SENT"}, headers=owner.headers)).json()
    assert [q["id"] for q in sent["quotes"]] == [mine[0]]
    by_client = (
        await world.client.get(URL, params={"clientId": colleague.client_id}, headers=owner.headers)
    ).json()
    assert by_client["quotes"] == []
    agency = (await world.client.get(URL, params={"limit": 200}, headers=admin.headers)).json()
    assert {*mine, theirs} == {q["id"] for q in agency["quotes"]}
    since = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    later = (
        await world.client.get(URL, params={"updatedSince": since}, headers=owner.headers)
    ).json()
    assert later["quotes"] == []
    bad = await world.client.get(URL, params={"cursor": "%%%"}, headers=owner.headers)
    assert_envelope(bad, "QUOTE_VALIDATION_FAILED", 400)
    bad = await world.client.get(URL, params={"status": "LOST"}, headers=owner.headers)
    assert_envelope(bad, "QUOTE_VALIDATION_FAILED", 400)


async def test_revision_by_version_and_conflict_names_changed_fields(world: World) -> None:
    actor = await world.actor()
    created = (await create(world, actor)).json()
    quote_id = created["quoteId"]
    await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 1, "notes": "v2"}, headers=actor.headers
    )
    first = (await world.client.get(f"{URL}/{quote_id}/revisions/1", headers=actor.headers)).json()
    assert first["revision"]["snapshot"] == created["quote"]
    assert first["revision"]["actorId"] == actor.agent_id
    assert first["revision"]["correlationId"]
    missing = await world.client.get(f"{URL}/{quote_id}/revisions/9", headers=actor.headers)
    assert_envelope(missing, "QUOTE_NOT_FOUND", 404)


async def test_idempotent_create_replays_and_refuses_reuse(world: World) -> None:
    actor = await world.actor()
    key = {"Idempotency-Key": "create-7f3a"}
    first = await create(world, actor, **key)
    assert first.status_code == 201
    replay = await create(world, actor, **key)
    assert replay.status_code == 201
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"
    assert await world.count("quotes", "agent_id = :a", a=actor.agent_id) == 1
    other = await create(world, actor, "zermatt-ski-chf", **key)
    assert_envelope(other, "IDEMPOTENCY_KEY_REUSED", 422)
    assert await world.count("quotes", "agent_id = :a", a=actor.agent_id) == 1
    # Keys are per agent: another agent's identical key is its own.
    stranger = await world.actor()
    assert (await create(world, stranger, **key)).status_code == 201


async def test_a_key_reused_with_another_if_match_is_refused(world: World) -> None:
    # If-Match names the version like a body "version" does: same key, other version, other
    # request (before, the body-less transition replayed the first answer).
    actor = await world.actor()
    quote_id = (await create(world, actor)).json()["quoteId"]
    url = f"{URL}/{quote_id}/send"
    headers = {**actor.headers, "Idempotency-Key": "send-1"}
    sent = await world.client.post(url, headers={**headers, "If-Match": '"1"'})
    assert sent.status_code == 200, sent.text
    replay = await world.client.post(url, headers={**headers, "If-Match": '"1"'})
    assert (replay.status_code, replay.headers["idempotent-replayed"]) == (200, "true")
    other = await world.client.post(url, headers={**headers, "If-Match": '"2"'})
    assert_envelope(other, "IDEMPOTENCY_KEY_REUSED", 422)


async def test_failed_request_releases_its_key(world: World) -> None:
    actor = await world.actor()
    body = quote_body("edinburgh-weekend-gbp", actor.client_id)
    bad = {**body, "travelers": 0}
    key = {**actor.headers, "Idempotency-Key": "retry-after-fix"}
    assert (await world.client.post(URL, json=bad, headers=key)).status_code == 400
    # Same key, same (bad) body again: evaluated again, not replayed from a failed attempt.
    assert (await world.client.post(URL, json=bad, headers=key)).status_code == 400


async def test_50_concurrent_creates_with_one_key_make_one_quote(world: World) -> None:
    actor = await world.actor()
    headers = {**actor.headers, "Idempotency-Key": "burst-1"}
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    responses = await asyncio.gather(
        *(world.client.post(URL, json=body, headers=headers) for _ in range(50))
    )
    ids = set()
    for response in responses:
        if response.status_code == 201:
            ids.add(response.json()["quoteId"])
        else:
            body_ = assert_envelope(response, "IDEMPOTENCY_KEY_IN_USE", 409)
            assert body_["retryable"] is True
    assert len(ids) == 1
    assert await world.count("quotes", "agent_id = :a", a=actor.agent_id) == 1
    replay = await world.client.post(URL, json=body, headers=headers)
    assert replay.json()["quoteId"] in ids


async def test_idempotent_transition(world: World) -> None:
    actor = await world.actor()
    quote_id = (await create(world, actor)).json()["quoteId"]
    headers = {**actor.headers, "Idempotency-Key": "send-once"}
    first = await world.client.post(f"{URL}/{quote_id}/send", json={"version": 1}, headers=headers)
    again = await world.client.post(f"{URL}/{quote_id}/send", json={"version": 1}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert await world.count("quote_revisions", "quote_id = :id", id=quote_id) == 2
    # The same URL with the id's hex digits in upper case (RFC 9562 §4) is the same request.
    upper = await world.client.post(
        f"{URL}/{quote_id.upper()}/send", json={"version": 1}, headers=headers
    )
    assert (upper.status_code, upper.headers.get("idempotent-replayed")) == (200, "true")
    assert upper.content == first.content


async def test_an_idempotent_transition_counts_every_line_of_if_match(world: World) -> None:
    """The version named on If-Match's second line is part of the request a key names: another
    version there is another request (422), not a replay of the first (RFC 9110 §5.3)."""
    actor = await world.actor()
    quote_id = (await create(world, actor)).json()["quoteId"]
    edited = await act(world, actor, quote_id, Operation.UPDATE, 1)
    assert edited.status_code == 200, edited.text
    key = [*actor.headers.items(), ("Idempotency-Key", "send-two-lines")]
    url = f"{URL}/{quote_id}/send"
    first = await world.client.post(url, headers=[*key, ("If-Match", '"abc"'), ("If-Match", '"2"')])
    assert first.status_code == 200, first.text
    other = await world.client.post(url, headers=[*key, ("If-Match", '"abc"'), ("If-Match", '"3"')])
    assert_envelope(other, "IDEMPOTENCY_KEY_REUSED", 422)


async def test_open_quote_quota_holds_under_concurrency(db_url: str, world_factory: Any) -> None:
    limit = 5
    world: World = await world_factory(make_settings(db_url, max_open_quotes_per_agent=limit))
    actor = await world.actor()
    for _ in range(limit - 1):
        assert (await create(world, actor)).status_code == 201
    responses = await asyncio.gather(*(create(world, actor) for _ in range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1
    for response in responses:
        if response.status_code != 201:
            body = assert_envelope(response, "QUOTA_EXCEEDED", 403)
            assert body["details"] == {"resource": "openQuotes", "limit": limit, "current": limit}
    assert (
        await world.count("quotes", "agent_id = :a AND status = 'DRAFT'", a=actor.agent_id) == limit
    )
    # A cancelled quote frees its place.
    first = (await world.client.get(URL, params={"limit": 1}, headers=actor.headers)).json()[
        "quotes"
    ][0]
    await act(world, actor, first["id"], Operation.DELETE, first["version"])
    # The agent's open_quote_bound is still at the limit (closing a quote never lowers it), so
    # this create counts exactly, finds limit - 1 and re-sets the bound.
    assert await world.count(
        "agents", "id = :a AND open_quote_bound = :n", a=actor.agent_id, n=limit
    )
    assert (await create(world, actor)).status_code == 201
    assert await world.count(
        "agents", "id = :a AND open_quote_bound = :n", a=actor.agent_id, n=limit
    )
    refused = await create(world, actor)
    assert assert_envelope(refused, "QUOTA_EXCEEDED", 403)["details"]["current"] == limit


async def test_open_quote_bound_grows_with_each_create_and_reopen(
    db_url: str, world_factory: Any
) -> None:
    world: World = await world_factory(make_settings(db_url, max_open_quotes_per_agent=100))
    actor = await world.actor()

    async def bound() -> int:
        for n in range(200):
            if await world.count(
                "agents", "id = :a AND open_quote_bound = :n", a=actor.agent_id, n=n
            ):
                return n
        raise AssertionError("bound out of range")

    ids = [(await create(world, actor)).json()["quoteId"] for _ in range(3)]
    assert await bound() == 3
    await act(world, actor, ids[0], Operation.SEND, 1)
    await act(world, actor, ids[0], Operation.REJECT, 2)
    assert await bound() == 3  # what closes a quote leaves the bound alone
    reopened = await world.client.patch(
        f"{URL}/{ids[0]}", json={"version": 3, "travelers": 2}, headers=actor.headers
    )
    assert reopened.status_code == 200 and reopened.json()["quote"]["status"] == "DRAFT"
    assert await bound() == 4  # reopening counts like a create


async def test_write_rate_limit_per_agent(db_url: str, world_factory: Any) -> None:
    world: World = await world_factory(make_settings(db_url, rate_limit="5/minute"))
    actor = await world.actor()
    other = await world.actor()
    for _ in range(5):
        assert (await create(world, actor)).status_code == 201
    before = await world.table_counts()
    refused = await create(world, actor)
    body = assert_envelope(refused, "RATE_LIMIT_EXCEEDED", 429)
    assert body["retryable"] is True
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-policy"] == "5;w=60"
    assert "remaining=0" in refused.headers["ratelimit"]
    assert await world.table_counts() == before
    assert (await create(world, other)).status_code == 201
    # Reads are not limited.
    assert (await world.client.get(URL, headers=actor.headers)).status_code == 200


async def test_concurrent_duplicates_of_a_failing_request_never_get_a_500(world: World) -> None:
    # The first claim fails (unknown client) and releases its key while duplicates read it.
    actor = await world.actor()
    body = quote_body("iceland-ring-road-eur", "no-such-client")
    before = await world.table_counts()
    for round_ in range(5):
        headers = {**actor.headers, "Idempotency-Key": f"failing-{round_}"}
        responses = await asyncio.gather(
            *(world.client.post(URL, json=body, headers=headers) for _ in range(30))
        )
        codes = {
            assert_envelope(r, r.json().get("errorCode", "?"), r.status_code)["errorCode"]
            for r in responses
        }
        assert codes <= {"CLIENT_NOT_FOUND", "IDEMPOTENCY_KEY_IN_USE"}, codes
    assert await world.table_counts() == before
    assert await world.count("idempotency_keys", "agent_id = :a", a=actor.agent_id) == 0


@pytest.mark.parametrize("every_round", [False, True])
async def test_a_key_released_between_the_claims_two_statements(
    world: World, every_round: bool
) -> None:
    """PostgreSQL, READ COMMITTED: the claim's INSERT … ON CONFLICT DO NOTHING meets another
    request's row, which that request deletes (it failed) before the claim's SELECT reads it.
    The gap is opened deterministically: the other request's DELETE runs, committed, right
    after the claim's INSERT found the conflict. Released once: the key is free, the request
    claims it and is served. Claimed again by yet another request every time: after its
    rounds the claim answers IDEMPOTENCY_KEY_IN_USE (retryable) and writes nothing."""
    import asyncpg
    from sqlalchemy.util import await_only

    actor = await world.actor()
    key = "released-in-between"
    other = await asyncpg.connect(world.dsn)
    claim_as_another = (
        "INSERT INTO idempotency_keys (agent_id, key, request_hash, state, created_at, "
        "expires_at) VALUES ($1, $2, 'another', 'in_flight', now(), now() + interval '1 day')"
    )
    await other.execute(claim_as_another, actor.agent_id, key)
    releases: list[str] = []

    def interleave(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO idempotency_keys") and cursor.rowcount == 0:
            if every_round or not releases:
                releases.append(key)
                await_only(other.execute("DELETE FROM idempotency_keys WHERE key = $1", key))
        elif every_round and statement.startswith("SELECT") and "idempotency_keys" in statement:
            await_only(other.execute(claim_as_another, actor.agent_id, key))

    body = quote_body("iceland-ring-road-eur", actor.client_id)
    headers = {**actor.headers, "Idempotency-Key": key}
    before = await world.table_counts()
    try:
        with world.after_each_statement(interleave):
            response = await world.client.post(URL, json=body, headers=headers)
    finally:
        await other.close()
    if every_round:
        assert len(releases) == 5  # _CLAIM_ROUNDS
        error = assert_envelope(response, "IDEMPOTENCY_KEY_IN_USE", 409)
        assert error["retryable"] is True
        assert await world.table_counts() == before
        return
    assert releases == [key]
    assert response.status_code == 201, response.text
    assert await world.count("quotes", "agent_id = :a", a=actor.agent_id) == 1
    replay = await world.client.post(URL, json=body, headers=headers)
    assert replay.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("stale", ["expired", "abandoned"])
async def test_a_key_taken_over_by_another_request_first_is_not_claimed_twice(
    world: World, stale: str
) -> None:
    """Two requests find the same expired (or abandoned) key and both take it over: the second
    must see the first's takeover, not overwrite it. The first one's takeover is committed,
    deterministically, right after this request read the key."""
    import asyncpg
    from sqlalchemy.util import await_only

    actor = await world.actor()
    key = f"taken-over-{stale}"
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    headers = {**actor.headers, "Idempotency-Key": key}
    assert (await world.client.post(URL, json=body, headers=headers)).status_code == 201
    other = await asyncpg.connect(world.dsn)
    if stale == "expired":
        await other.execute(
            "UPDATE idempotency_keys SET expires_at = now() - interval '1 minute' WHERE key = $1",
            key,
        )
    else:
        await other.execute(
            "UPDATE idempotency_keys SET state = 'in_flight', created_at = now() - interval "
            "'1 hour', response_status = NULL, response_body = NULL WHERE key = $1",
            key,
        )
    taken: list[str] = []

    def first_takes_it_over(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT") and "idempotency_keys" in statement and not taken:
            taken.append(key)
            await_only(
                other.execute(
                    "UPDATE idempotency_keys SET state = 'in_flight', created_at = now(), "
                    "expires_at = now() + interval '1 day' WHERE key = $1",
                    key,
                )
            )

    quotes_before = await world.count("quotes", "agent_id = :a", a=actor.agent_id)
    try:
        with world.after_each_statement(first_takes_it_over):
            response = await world.client.post(URL, json=body, headers=headers)
    finally:
        await other.close()
    assert taken == [key]
    error = assert_envelope(response, "IDEMPOTENCY_KEY_IN_USE", 409)
    assert error["retryable"] is True
    assert await world.count("quotes", "agent_id = :a", a=actor.agent_id) == quotes_before


@pytest.mark.parametrize("then", ["taken over", "released"])
async def test_a_claim_no_longer_held_completes_nothing_and_saves_nothing(
    world: World, then: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that ran past the abandon delay (a pool or lock wait, a paused process) while
    a retry under its key took the key over and saved: its own save must not commit a second
    quote. Before, completing the key matched the agent and key only, so both committed and
    the first overwrote the retry's stored answer."""
    import asyncpg

    actor = await world.actor()
    key = f"claim-{then.replace(' ', '-')}"
    other = await asyncpg.connect(world.dsn)
    retry = {
        "taken over": "UPDATE idempotency_keys SET created_at = now() + interval '1 second' "
        "WHERE key = $1",
        "released": "DELETE FROM idempotency_keys WHERE key = $1",
    }[then]
    store = world.app.state.quotes.store
    create_quote = store.create

    async def after_the_retry(**arguments: Any) -> Any:
        await other.execute(retry, key)  # the claim committed, the save not yet sent
        return await create_quote(**arguments)

    monkeypatch.setattr(store, "create", after_the_retry)
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    headers = {**actor.headers, "Idempotency-Key": key}
    before = await world.table_counts()
    try:
        response = await world.client.post(URL, json=body, headers=headers)
        held = await other.fetch("SELECT state FROM idempotency_keys WHERE key = $1", key)
    finally:
        await other.close()
    error = assert_envelope(response, "IDEMPOTENCY_KEY_IN_USE", 409)
    assert (error["retryable"], error["details"]["cause"]) == (True, "taken_over")
    assert await world.count("quotes", "agent_id = :a", a=actor.agent_id) == 0
    if then == "taken over":
        assert [row["state"] for row in held] == ["in_flight"]  # the retry's claim, untouched
    else:
        assert held == []
        assert await world.table_counts() == before
