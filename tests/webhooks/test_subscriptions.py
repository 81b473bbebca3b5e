"""``/api/agents/webhooks``: an agency admin's subscriptions; every refusal with its code, its
status, and the database unchanged."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, make_settings
from tests.webhooks.conftest import hang_resolver, worker_of

W = "/api/agents/webhooks"


async def admin_of(world: World, agency_id: str | None = None) -> Actor:
    return await world.actor(agency_id=agency_id, role="admin")


async def subscribe(world: World, admin: Actor, **body: Any) -> Any:
    payload = {"url": "http://127.0.0.1:9/hook", "eventTypes": ["quote.sent"], **body}
    return await world.client.post(W, json=payload, headers=admin.headers)


async def rows(world: World) -> list[dict[str, Any]]:
    from sqlalchemy import text

    async with world.engine.connect() as conn:
        result = await conn.execute(text("SELECT * FROM webhook_subscriptions ORDER BY id"))
        return [dict(row._mapping) for row in result]


async def test_deleting_a_subscription_deletes_its_deliveries_and_no_other(world: World) -> None:
    # No cascade does it (the partitioned deliveries have no foreign key: migration 0012).
    from tests.api.test_lifecycle import create

    admin = await admin_of(world)
    ids = []
    for _ in range(2):
        created = await subscribe(world, admin, eventTypes=["quote.created"])
        ids.append(created.json()["webhook"]["id"])
    try:
        assert (await create(world, admin)).status_code == 201
        async with httpx.AsyncClient() as client:  # its deliveries, fanned out by a worker
            assert await worker_of(world, client).fan_out() == 2
        for webhook_id in ids:
            assert (
                await world.count("webhook_deliveries", "subscription_id = :s", s=webhook_id) == 1
            )
        deleted = await world.client.delete(f"{W}/{ids[0]}", headers=admin.headers)
        assert deleted.status_code == 200, deleted.text
        assert await world.count("webhook_deliveries", "subscription_id = :s", s=ids[0]) == 0
        assert await world.count("webhook_deliveries", "subscription_id = :s", s=ids[1]) == 1
    finally:
        await world.client.delete(f"{W}/{ids[1]}", headers=admin.headers)


async def test_an_admin_creates_reads_changes_rotates_and_deletes_a_subscription(
    world: World,
) -> None:
    admin = await admin_of(world)
    created = await subscribe(
        world, admin, eventTypes=["quote.sent", "quote.accepted", "quote.sent"]
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret, webhook = body["secret"], body["webhook"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert webhook["eventTypes"] == ["quote.sent", "quote.accepted"]
    assert webhook["enabled"] is True
    webhook_id = webhook["id"]

    assert created.headers["location"] == f"{W}/{webhook_id}"
    read = await world.client.get(created.headers["location"], headers=admin.headers)
    listed = await world.client.get(W, headers=admin.headers)
    assert read.json()["webhook"] == webhook
    assert [w["id"] for w in listed.json()["webhooks"]] == [webhook_id]
    assert secret not in read.text + listed.text

    changed = await world.client.patch(
        f"{W}/{webhook_id}", json={"enabled": False}, headers=admin.headers
    )
    assert changed.json()["webhook"]["enabled"] is False
    assert changed.json()["webhook"]["disabledReason"] == "disabled"

    rotated = await world.client.post(
        f"{W}/{webhook_id}/rotate-secret", json={"overlapSeconds": 60}, headers=admin.headers
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] != secret
    assert rotated.json()["webhook"]["previousSecretExpiresAt"] is not None
    stored = next(r for r in await rows(world) if r["id"] == webhook_id)
    assert (stored["secret"], stored["previous_secret"]) == (rotated.json()["secret"], secret)

    deleted = await world.client.delete(f"{W}/{webhook_id}", headers=admin.headers)
    assert deleted.json() == {"success": True, "webhookId": webhook_id}
    assert_envelope(
        await world.client.get(f"{W}/{webhook_id}", headers=admin.headers),
        "WEBHOOK_NOT_FOUND",
        404,
    )


async def test_an_agent_who_is_no_admin_is_refused(world: World) -> None:
    admin = await admin_of(world)
    webhook_id = (await subscribe(world, admin)).json()["webhook"]["id"]
    agent = await world.actor(agency_id=admin.agency_id)
    before = await rows(world)
    assert_envelope(await subscribe(world, agent), "AUTHORIZATION_FAILED", 403)
    assert_envelope(await world.client.get(W, headers=agent.headers), "AUTHORIZATION_FAILED", 403)
    assert_envelope(
        await world.client.delete(f"{W}/{webhook_id}", headers=agent.headers),
        "AUTHORIZATION_FAILED",
        403,
    )
    assert await rows(world) == before


async def test_another_agencys_subscription_is_not_found(world: World) -> None:
    admin = await admin_of(world)
    webhook_id = (await subscribe(world, admin)).json()["webhook"]["id"]
    stranger = await admin_of(world)
    before = await rows(world)
    for response in (
        await world.client.get(f"{W}/{webhook_id}", headers=stranger.headers),
        await world.client.patch(
            f"{W}/{webhook_id}", json={"enabled": False}, headers=stranger.headers
        ),
        await world.client.delete(f"{W}/{webhook_id}", headers=stranger.headers),
        await world.client.post(
            f"{W}/{webhook_id}/rotate-secret", json={}, headers=stranger.headers
        ),
        await world.client.get(f"{W}/{webhook_id}/deliveries", headers=stranger.headers),
    ):
        body = assert_envelope(response, "WEBHOOK_NOT_FOUND", 404)
        assert body["details"] == {"webhookId": webhook_id}
    assert await world.client.get(W, headers=stranger.headers) is not None
    assert (await world.client.get(W, headers=stranger.headers)).json()["webhooks"] == []
    assert await rows(world) == before


@pytest.mark.parametrize(
    ("body", "path", "code"),
    [
        ({"eventTypes": ["quote.sent"]}, "url", "required"),
        *(
            ({"url": url, "eventTypes": ["quote.sent"]}, "url", "string_pattern_mismatch")
            for url in (
                "not a url",
                "ftp://example.com/hook",
                "https://user:pw@example.com/hook",
                "https://[::1]/hook",
                "https://example.com:99999/hook",
                "https://example.com:0/hook",
                "https://example.com/\u00e4",
                # A host that is no IPv4 address and no host name (RFC 1123): each was stored
                # (or refused as WEBHOOK_URL_REFUSED invalid_url) before the pattern said so.
                "http://256.1.1.1/",
                "http://010.0.0.1/",
                "http://.com/",
                "http://-bad-.com/",
                "http://bad-.com/",
                "http://example.123/",
                "http://0x7f.1/",
            )
        ),
        (
            {"url": "http://127.0.0.1:9/", "eventTypes": ["quote.sent"], "enabled": 0},
            "enabled",
            None,
        ),
        ({"url": "http://127.0.0.1:9/", "eventTypes": []}, "eventTypes", "too_short"),
        ({"url": "http://127.0.0.1:9/", "eventTypes": ["quote.paid"]}, "eventTypes[0]", None),
        ({"url": "http://127.0.0.1:9/", "eventTypes": ["quote.sent"], "x": 1}, "x", None),
    ],
)
async def test_an_invalid_body_is_refused_and_nothing_is_written(
    world: World, body: dict[str, Any], path: str, code: str | None
) -> None:
    admin = await admin_of(world)
    before = await rows(world)
    refused = await world.client.post(W, json=body, headers=admin.headers)
    errors = assert_envelope(refused, "QUOTE_VALIDATION_FAILED", 400)["details"]["errors"]
    assert [e["path"] for e in errors] == [path]
    if code is not None:
        assert errors[0]["code"] == code
    assert await rows(world) == before


@pytest.mark.parametrize("field", ["url", "eventTypes", "enabled"])
async def test_a_patch_sending_null_is_refused_at_its_field_and_nothing_is_written(
    world: World, field: str
) -> None:
    # A null is no value of these fields: refused as the quotes' PATCH refuses it (not taken
    # for "not sent", which answered 200 and moved updatedAt).
    admin = await admin_of(world)
    created = await subscribe(world, admin, enabled=False)
    webhook_id = created.json()["webhook"]["id"]
    try:
        before = await rows(world)
        refused = await world.client.patch(
            f"{W}/{webhook_id}", json={field: None}, headers=admin.headers
        )
        errors = assert_envelope(refused, "QUOTE_VALIDATION_FAILED", 400)["details"]["errors"]
        assert [(e["path"], e["code"]) for e in errors] == [(field, "required")]
        assert errors[0]["message"] == f"{field} must not be null."
        assert await rows(world) == before
    finally:
        await world.client.delete(f"{W}/{webhook_id}", headers=admin.headers)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://127.0.0.1/hook", "scheme_not_allowed"),
        ("http://10.0.0.1/hook", "scheme_not_allowed"),
        ("http://localhost/hook", "scheme_not_allowed"),
        ("https://127.0.0.1:{port}/hook", "address_not_allowed"),
        ("https://localhost:{port}/hook", "address_not_allowed"),
        ("https://10.0.0.1/hook", "address_not_allowed"),
        ("https://169.254.169.254/latest", "address_not_allowed"),
        ("https://100.64.0.1/hook", "address_not_allowed"),
        ("https://0.0.0.0:{port}/hook", "address_not_allowed"),
    ],
)
async def test_production_refuses_urls_into_its_own_network_without_connecting(
    db_url: str, world_factory: Any, url: str, code: str
) -> None:
    world: World = await world_factory(make_settings(db_url, environment="production"))
    admin = await admin_of(world)
    with socket.socket() as listener:  # a loopback port the refused URL names: never called
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        before = await rows(world)
        refused = await subscribe(world, admin, url=url.format(port=listener.getsockname()[1]))
        errors = assert_envelope(refused, "WEBHOOK_URL_REFUSED", 422)["details"]["errors"]
        assert [(e["path"], e["code"]) for e in errors] == [("url", code)]
        assert await rows(world) == before
        with pytest.raises(BlockingIOError):
            listener.accept()


async def test_a_patch_to_a_refused_url_changes_nothing(db_url: str, world_factory: Any) -> None:
    world: World = await world_factory(make_settings(db_url, environment="production"))
    admin = await admin_of(world)
    async with world.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(
            text(
                "INSERT INTO webhook_subscriptions (id, agency_id, url, event_types, enabled,"
                " secret, created_at, updated_at) VALUES (gen_random_uuid()::text, :a,"
                " 'https://crm.example.com/hook', ARRAY['quote.sent'], true, 'whsec_AAAA',"
                " now(), now())"
            ),
            {"a": admin.agency_id},
        )
    webhook_id = (await world.client.get(W, headers=admin.headers)).json()["webhooks"][0]["id"]
    before = await rows(world)
    refused = await world.client.patch(
        f"{W}/{webhook_id}", json={"url": "https://127.0.0.1/x"}, headers=admin.headers
    )
    assert_envelope(refused, "WEBHOOK_URL_REFUSED", 422)
    assert await rows(world) == before


async def test_development_takes_loopback_urls(world: World) -> None:
    admin = await admin_of(world)
    for url in (
        "http://127.0.0.1:8080/hook",
        "http://localhost:8080/hook",
        "HTTP://LOCALHOST:8080/hook",  # a scheme is case-insensitive (RFC 3986 §3.1)
        "http://a-1.b2.example/x",
    ):
        assert (await subscribe(world, admin, url=url)).status_code == 201, url


async def test_who_may_act_is_decided_before_the_url(db_url: str, world_factory: Any) -> None:
    world: World = await world_factory(make_settings(db_url, environment="production"))
    agent = await world.actor()
    refused = await subscribe(world, agent, url="https://127.0.0.1/hook")
    assert_envelope(refused, "AUTHORIZATION_FAILED", 403)


async def test_a_host_that_does_not_resolve_in_time_is_refused_not_a_database_timeout(
    db_url: str, world_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Production resolves a new URL's host inside the request's transaction: a resolver that
    # hangs must not hold the connection until the transaction times out (DATABASE_TIMEOUT).
    world: World = await world_factory(
        make_settings(
            db_url, environment="production", webhook_timeout_seconds=0.2, tx_timeout_seconds=2
        )
    )
    admin = await admin_of(world)
    before = await rows(world)
    hang_resolver(monkeypatch, world.settings.tx_timeout_seconds + 2)  # past the transaction
    try:
        refused = await subscribe(world, admin, url="https://crm.example.com/hook")
    finally:
        monkeypatch.undo()
    errors = assert_envelope(refused, "WEBHOOK_URL_REFUSED", 422)["details"]["errors"]
    assert [(e["path"], e["code"]) for e in errors] == [("url", "unresolvable")]
    assert await rows(world) == before


async def test_a_patch_sending_no_field_changes_nothing(world: World) -> None:
    admin = await admin_of(world)
    created = (await subscribe(world, admin, url="http://127.0.0.1:8080/hook")).json()["webhook"]
    before = await rows(world)
    answer = await world.client.patch(f"{W}/{created['id']}", json={}, headers=admin.headers)
    assert answer.status_code == 200 and answer.json()["webhook"] == created
    assert await rows(world) == before


async def test_a_keyed_create_retried_makes_one_subscription_and_shows_its_secret_again(
    world: World,
) -> None:
    # Idempotency-Key as on every other create (``idempotency.idempotent``): a client whose
    # answer was lost retries and gets the same subscription and secret, not a second one.
    admin = await admin_of(world)
    keyed = {**admin.headers, "Idempotency-Key": "subscribe-1"}
    payload = {"url": "http://127.0.0.1:9/hook", "eventTypes": ["quote.sent"]}
    before = {row["id"] for row in await rows(world)}
    first = await world.client.post(W, json=payload, headers=keyed)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await world.client.post(W, json=payload, headers=keyed)
    assert (again.status_code, again.headers["idempotent-replayed"]) == (201, "true")
    assert again.content == first.content
    made_ids = {row["id"] for row in await rows(world)} - before
    assert made_ids == {first.json()["webhook"]["id"]}
    # Another body under the same key: refused, nothing written.
    counts = await world.table_counts()
    other = await world.client.post(
        W, json={**payload, "eventTypes": ["quote.accepted"]}, headers=keyed
    )
    body = assert_envelope(other, "IDEMPOTENCY_KEY_REUSED", 422)
    assert body["details"] == {"idempotencyKey": "subscribe-1"}
    assert await world.table_counts() == counts
    # A refused create releases its key: the same key with a valid body then subscribes.
    bad = {**admin.headers, "Idempotency-Key": "subscribe-2"}
    refused = await world.client.post(W, json={"url": "ftp://x", "eventTypes": []}, headers=bad)
    assert refused.status_code in (400, 422) and await world.table_counts() == counts
    made = await world.client.post(W, json=payload, headers=bad)
    assert made.status_code == 201 and "idempotent-replayed" not in made.headers
    assert len({row["id"] for row in await rows(world)} - before) == 2
