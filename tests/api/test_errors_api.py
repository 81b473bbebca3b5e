"""Every error the core produces, through HTTP: code, status, envelope, database unchanged."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from tests.conftest import JWT_SECRET, World, make_settings, quote_body
from tripquote.agents import repository as agents_repo

ENVELOPE_KEYS = {
    "success",
    "errorCode",
    "message",
    "severity",
    "retryable",
    "correlationId",
    "details",
    "timestamp",
}


def assert_envelope(response: Any, code: str, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["success"] is False
    assert body["errorCode"] == code
    assert body["correlationId"] == response.headers["x-correlation-id"]
    assert isinstance(body["timestamp"], int)
    text_body = response.text.lower()
    for leak in ("traceback", "select ", "insert ", "sqlalchemy", "asyncpg"):
        assert leak not in text_body
    return body


async def _quote(world: World, actor: Any) -> str:
    response = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("zermatt-ski-chf", actor.client_id),
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["quoteId"])


def _token(agent_id: str, *, secret: str = JWT_SECRET, exp_offset: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": agent_id, "iss": "tripquote", "iat": now, "exp": now + exp_offset}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer not-a-jwt",
        "Bearer {expired}",
        "Bearer {forged}",
    ],
    ids=["missing", "basic", "empty", "malformed", "expired", "wrong-key"],
)
async def test_authentication_failed(world: World, authorization: str | None) -> None:
    actor = await world.actor()
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(
            expired=_token(actor.agent_id, exp_offset=-3600),
            forged=_token(actor.agent_id, secret="another-secret-0123456789abcdef0123"),
        )
    before = await world.table_counts()
    response = await world.client.post(
        "/api/agents/quotes", json=quote_body("zermatt-ski-chf", actor.client_id), headers=headers
    )
    body = assert_envelope(response, "AUTHENTICATION_FAILED", 401)
    assert body["severity"] == "HIGH" and body["retryable"] is False
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert await world.table_counts() == before


async def test_two_authorization_lines_are_refused_never_one_chosen(world: World) -> None:
    # Two lines are two credentials (RFC 9110 §5.3): the first was taken, the second ignored.
    actor, other = await world.actor(), await world.actor()
    headers = [
        ("Authorization", actor.headers["Authorization"]),
        ("Authorization", other.headers["Authorization"]),
    ]
    before = await world.table_counts()
    response = await world.client.post(
        "/api/agents/quotes", json=quote_body("zermatt-ski-chf", actor.client_id), headers=headers
    )
    assert_envelope(response, "AUTHENTICATION_FAILED", 401)
    assert await world.table_counts() == before


@pytest.mark.parametrize(("leeway", "accepted"), [(0, False), (30, True)])
async def test_a_token_expired_a_second_ago_is_refused_unless_a_leeway_is_set(
    db_url: str, world_factory: Any, leeway: int, accepted: bool
) -> None:
    world: World = await world_factory(make_settings(db_url, jwt_leeway_seconds=leeway))
    actor = await world.actor()
    headers = {"Authorization": f"Bearer {_token(actor.agent_id, exp_offset=-1)}"}
    response = await world.client.get("/api/agents/quotes", headers=headers)
    if accepted:
        assert response.status_code == 200, response.text
    else:
        body = assert_envelope(response, "AUTHENTICATION_FAILED", 401)
        assert body["message"] == "The bearer token has expired."


async def test_agent_not_found_for_disabled_or_unknown_agent(world: World) -> None:
    actor = await world.actor()
    async with world.engine.begin() as conn:
        await agents_repo.set_agent_active(conn, actor.agent_id, active=False)
    before = await world.table_counts()
    response = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("zermatt-ski-chf", actor.client_id),
        headers=actor.headers,
    )
    assert_envelope(response, "AGENT_NOT_FOUND", 404)
    ghost = {"Authorization": f"Bearer {_token('00000000-0000-0000-0000-000000000000')}"}
    response = await world.client.get("/api/agents/quotes/whatever", headers=ghost)
    assert_envelope(response, "AGENT_NOT_FOUND", 404)
    # A disabled agent learns nothing about its body either.
    response = await world.client.post("/api/agents/quotes", json={}, headers=actor.headers)
    assert_envelope(response, "AGENT_NOT_FOUND", 404)
    assert await world.table_counts() == before


async def test_other_agent_same_agency_is_forbidden_other_agency_sees_nothing(world: World) -> None:
    owner = await world.actor()
    colleague = await world.actor(agency_id=owner.agency_id)
    admin = await world.actor(agency_id=owner.agency_id, role="admin")
    stranger = await world.actor()
    quote_id = await _quote(world, owner)
    url = f"/api/agents/quotes/{quote_id}"

    assert_envelope(
        await world.client.get(url, headers=colleague.headers), "AUTHORIZATION_FAILED", 403
    )
    assert_envelope(await world.client.get(url, headers=stranger.headers), "QUOTE_NOT_FOUND", 404)
    before = await world.snapshot(quote_id)
    for who, code, status in (
        (colleague, "AUTHORIZATION_FAILED", 403),
        (stranger, "QUOTE_NOT_FOUND", 404),
    ):
        response = await world.client.patch(
            url, json={"version": 1, "tripName": "hijack"}, headers=who.headers
        )
        assert_envelope(response, code, status)
    assert await world.snapshot(quote_id) == before
    # The agency admin may read and edit it.
    assert (await world.client.get(url, headers=admin.headers)).status_code == 200
    edited = await world.client.patch(
        url, json={"version": 1, "travelers": 4}, headers=admin.headers
    )
    assert edited.status_code == 200
    assert edited.json()["quote"]["lastModifiedBy"] == admin.agent_id


async def test_client_must_belong_to_the_agent(world: World) -> None:
    owner = await world.actor()
    colleague = await world.actor(agency_id=owner.agency_id)
    stranger = await world.actor()
    before = await world.table_counts()
    cases = [
        (owner.client_id, colleague, "AUTHORIZATION_FAILED", 403),
        (owner.client_id, stranger, "CLIENT_NOT_FOUND", 404),
        ("no-such-client", owner, "CLIENT_NOT_FOUND", 404),
    ]
    for client_id, who, code, status in cases:
        response = await world.client.post(
            "/api/agents/quotes", json=quote_body("zermatt-ski-chf", client_id), headers=who.headers
        )
        assert_envelope(response, code, status)
    assert await world.table_counts() == before


async def test_client_check_comes_before_pricing(world: World) -> None:
    actor = await world.actor()
    body = quote_body("zermatt-ski-chf", "no-such-client")
    body["discount"] = "99999999.00"
    response = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
    assert_envelope(response, "CLIENT_NOT_FOUND", 404)


async def test_quote_not_found(world: World) -> None:
    actor = await world.actor()
    response = await world.client.get("/api/agents/quotes/nope", headers=actor.headers)
    assert_envelope(response, "QUOTE_NOT_FOUND", 404)
    response = await world.client.patch(
        "/api/agents/quotes/nope", json={"version": 1}, headers=actor.headers
    )
    assert_envelope(response, "QUOTE_NOT_FOUND", 404)


async def test_already_sent_quote_is_locked(world: World) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    async with world.engine.begin() as conn:
        await conn.execute(
            text("UPDATE quotes SET status = 'SENT' WHERE id = :id"), {"id": quote_id}
        )
    before = await world.snapshot(quote_id)
    response = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json={"version": 1, "tripName": "x"},
        headers=actor.headers,
    )
    body = assert_envelope(response, "QUOTE_ALREADY_SENT", 409)
    assert body["severity"] == "CRITICAL"
    assert body["details"]["currentStatus"] == "SENT"
    assert await world.snapshot(quote_id) == before


async def test_cancelled_quote_state_invalid(world: World) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    async with world.engine.begin() as conn:
        await conn.execute(
            text("UPDATE quotes SET status = 'CANCELLED' WHERE id = :id"), {"id": quote_id}
        )
    response = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json={"version": 1, "tripName": "x"},
        headers=actor.headers,
    )
    body = assert_envelope(response, "QUOTE_STATE_INVALID", 409)
    assert body["details"]["operation"] == "UPDATE"


async def test_items_quota(db_url: str, world_factory: Any) -> None:
    world: World = await world_factory(make_settings(db_url, max_items_per_quote=3))
    actor = await world.actor()
    before = await world.table_counts()
    response = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("iceland-ring-road-eur", actor.client_id),
        headers=actor.headers,
    )
    body = assert_envelope(response, "QUOTA_EXCEEDED", 403)
    assert body["details"]["limit"] == 3
    assert await world.table_counts() == before


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"tripName": ', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"a": NaN}', "application/json"),
    ],
    ids=["truncated", "not-utf8", "array", "nan"],
)
async def test_malformed_json_is_a_validation_error(
    world: World, raw: bytes, content_type: str
) -> None:
    actor = await world.actor()
    before = await world.table_counts()
    response = await world.client.post(
        "/api/agents/quotes", content=raw, headers={**actor.headers, "Content-Type": content_type}
    )
    assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert await world.table_counts() == before


async def test_http_level_errors_use_the_envelope(world: World) -> None:
    body = assert_envelope(await world.client.get("/no/such/route"), "NOT_FOUND", 404)
    assert body["severity"] == "LOW"
    refused = await world.client.put("/api/agents/quotes")
    body = assert_envelope(refused, "METHOD_NOT_ALLOWED", 405)
    assert body["retryable"] is False
    # Allow lists every method the path has (RFC 9110 §15.5.6), not only one route's.
    assert refused.headers["allow"] == "GET, HEAD, POST"
    one = await world.client.put("/api/agents/quotes/some-id")
    assert one.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert (await world.client.put("/api/agents/clients")).headers["allow"] == "GET, HEAD, POST"


async def test_payload_too_large(db_url: str, world_factory: Any) -> None:
    world: World = await world_factory(make_settings(db_url, max_body_bytes=2048))
    actor = await world.actor()
    body = quote_body("zermatt-ski-chf", actor.client_id)
    body["notes"] = "x" * 1900
    before = await world.table_counts()
    counted = _refusals("PAYLOAD_TOO_LARGE")
    response = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
    assert_envelope(response, "PAYLOAD_TOO_LARGE", 413)
    assert _refusals("PAYLOAD_TOO_LARGE") == counted + 1  # refused by its Content-Length

    async def chunks() -> Any:  # no Content-Length: the limit holds while streaming
        for _ in range(10):
            yield b" " * 512

    response = await world.client.post(
        "/api/agents/quotes",
        content=chunks(),
        headers={**actor.headers, "Content-Type": "application/json"},
    )
    assert_envelope(response, "PAYLOAD_TOO_LARGE", 413)
    assert _refusals("PAYLOAD_TOO_LARGE") == counted + 2
    assert await world.table_counts() == before


def _refusals(code: str) -> float:
    """tripquote_operations_total for ``code``, every operation label summed."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "tripquote_operations"
        for sample in metric.samples
        if sample.name == "tripquote_operations_total" and sample.labels.get("error_code") == code
    )


async def test_unhandled_exception_is_internal_error_without_details(world: World) -> None:
    async def boom() -> None:
        raise RuntimeError("secret internal detail: SELECT password FROM users")

    world.app.add_api_route("/test-only/boom", boom)
    response = await world.client.get("/test-only/boom")
    body = assert_envelope(response, "INTERNAL_ERROR", 500)
    assert "secret" not in response.text
    assert body["severity"] == "CRITICAL"


async def test_correlation_id_is_kept_when_well_formed(world: World) -> None:
    response = await world.client.get("/no/route", headers={"X-Correlation-ID": "agent-ui:42.a_b"})
    assert response.json()["correlationId"] == "agent-ui:42.a_b"
    response = await world.client.get("/no/route", headers={"X-Correlation-ID": "bad id <x>"})
    assert response.json()["correlationId"].startswith("REQ-")


@pytest.mark.parametrize("name", ["\u3164", "\uffa0\u2800", " \ufffc "])
async def test_a_name_of_characters_that_show_nothing_is_blank(world: World, name: str) -> None:
    # Hangul fillers (letters, Default_Ignorable), blank Braille, object replacement: a client
    # "named" so was created (201) and listed with no name one could read.
    actor = await world.actor()
    before = await world.count("clients")
    response = await world.client.post(
        "/api/agents/clients", json={"name": name}, headers=actor.headers
    )
    assert response.status_code == 400, response.text
    (error,) = response.json()["details"]["errors"]
    assert (error["path"], error["code"]) == ("name", "blank")
    assert await world.count("clients") == before
