"""Every API route goes through FastAPI's router and is one tracked operation, named once in its
decorator: the names are the metrics' and dashboards' labels. Near misses of a route get the
framework's envelopes; refusals made by the dependencies are recorded under the route's own
operation, with what was known when they happened."""

from __future__ import annotations

from typing import Any

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, make_settings, quote_body
from tripquote.app import create_app
from tripquote.observability.summary import OperationRecord

Q = "/api/agents/quotes"
C = "/api/agents/clients"
W = "/api/agents/webhooks"

OPERATIONS = {
    ("POST", Q): "quote.create",
    ("GET", Q): "quote.list",
    ("GET", Q + "/{quote_id}"): "quote.read",
    ("PATCH", Q + "/{quote_id}"): "quote.update",
    ("DELETE", Q + "/{quote_id}"): "quote.delete",
    ("POST", Q + "/{quote_id}/send"): "quote.send",
    ("POST", Q + "/{quote_id}/accept"): "quote.accept",
    ("POST", Q + "/{quote_id}/reject"): "quote.reject",
    ("GET", Q + "/{quote_id}/revisions"): "quote.revisions",
    ("GET", Q + "/{quote_id}/revisions/{version}"): "quote.revisions",
    ("GET", Q + "/{quote_id}/proposal"): "proposal.read",
    ("GET", Q + "/{quote_id}/proposal.pdf"): "proposal.pdf",
    ("POST", Q + "/{quote_id}/proposal/revoke"): "proposal.revoke",
    ("POST", C): "client.create",
    ("GET", C): "client.list",
    ("GET", C + "/{client_id}"): "client.read",
    ("POST", W): "webhook.create",
    ("GET", W): "webhook.list",
    ("GET", W + "/{webhook_id}"): "webhook.read",
    ("PATCH", W + "/{webhook_id}"): "webhook.update",
    ("DELETE", W + "/{webhook_id}"): "webhook.delete",
    ("POST", W + "/{webhook_id}/rotate-secret"): "webhook.rotate_secret",
    ("GET", W + "/{webhook_id}/deliveries"): "webhook.deliveries",
    ("POST", W + "/{webhook_id}/replay"): "webhook.replay",
}
"""Every tracked route of the document and its operation; the rest (health, metrics, the ops
summary, the document) is not an operation: its refusals count under ``request``. The client's
pages (``/p/…``, not in the document) are operations too: ``proposal.view``, ``.view_pdf``,
``.accept``, ``.decline``, ``.asset`` (tests/proposals)."""


def test_each_api_route_names_its_operation_once() -> None:
    app = create_app(make_settings("postgresql+asyncpg://postgres@127.0.0.1:5432/unused"))
    named = {
        (method.upper(), path): operation["x-operation"]
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if "x-operation" in operation
    }
    assert named == OPERATIONS


def _record(world: World, correlation_id: str) -> OperationRecord:
    window = world.app.state.observer.window._records
    [record] = [r for r in window if r.correlation_id == correlation_id]
    return record


async def test_each_route_records_its_operation_agent_quote_and_status(world: World) -> None:
    actor = await world.actor()
    calls = 0

    async def call(method: str, url: str, **kwargs: Any) -> tuple[Any, OperationRecord]:
        nonlocal calls
        calls += 1
        correlation_id = f"routing-{calls}"
        headers = {**actor.headers, "X-Correlation-ID": correlation_id}
        response = await world.client.request(method, url, headers=headers, **kwargs)
        assert response.status_code < 300, response.text
        return response, _record(world, correlation_id)

    body = quote_body("iceland-ring-road-eur", actor.client_id)
    created, record = await call("POST", Q, json=body)
    quote_id = created.json()["quoteId"]
    assert (record.operation, record.http_status) == ("quote.create", 201)
    assert (record.agent_id, record.quote_id, record.outcome) == (
        actor.agent_id,
        quote_id,
        "success",
    )

    expected = [
        ("GET", Q, {}, "quote.list", None),
        ("GET", f"{Q}/{quote_id}", {}, "quote.read", quote_id),
        (
            "PATCH",
            f"{Q}/{quote_id}",
            {"json": {"version": 1, "travelers": 3}},
            "quote.update",
            quote_id,
        ),
        ("GET", f"{Q}/{quote_id}/revisions", {}, "quote.revisions", quote_id),
        ("GET", f"{Q}/{quote_id}/revisions/1", {}, "quote.revisions", quote_id),
        ("POST", f"{Q}/{quote_id}/send", {"json": {"version": 2}}, "quote.send", quote_id),
        ("POST", f"{Q}/{quote_id}/reject", {"json": {"version": 3}}, "quote.reject", quote_id),
        ("DELETE", f"{Q}/{quote_id}", {"json": {"version": 4}}, "quote.delete", quote_id),
        ("GET", C, {}, "client.list", None),
        ("GET", f"{C}/{actor.client_id}", {}, "client.read", None),
        ("POST", C, {"json": {"name": "Aiko Tanaka"}}, "client.create", None),
    ]
    for method, url, kwargs, operation, expected_quote in expected:
        response, record = await call(method, url, **kwargs)
        assert record.operation == operation, (method, url)
        assert (record.agent_id, record.quote_id) == (actor.agent_id, expected_quote), url
        assert (record.outcome, record.http_status) == ("success", response.status_code), url

    second = await world.client.post(Q, json=body, headers=actor.headers)
    version = {"version": 1}
    await world.client.post(
        f"{Q}/{second.json()['quoteId']}/send", json=version, headers=actor.headers
    )
    _, record = await call("POST", f"{Q}/{second.json()['quoteId']}/accept", json={"version": 2})
    assert record.operation == "quote.accept"


async def test_refusals_by_dependencies_count_under_the_route_operation(world: World) -> None:
    actor = await world.actor()
    unknown = "01a24a93-c7c8-76d3-a632-000000000001"
    headers = {"X-Correlation-ID": "routing-401"}
    anonymous = await world.client.get(f"{Q}/{unknown}", headers=headers)
    assert_envelope(anonymous, "AUTHENTICATION_FAILED", 401)
    record = _record(world, "routing-401")
    assert (record.operation, record.agent_id, record.quote_id) == ("quote.read", None, unknown)
    assert (record.error_code, record.http_status) == ("AUTHENTICATION_FAILED", 401)
    # An id no quote can have (not a UUID: junk, or a link's token put there) is not noted.
    junk = await world.client.get(f"{Q}/some-id", headers={"X-Correlation-ID": "routing-junk"})
    assert_envelope(junk, "AUTHENTICATION_FAILED", 401)
    assert _record(world, "routing-junk").quote_id is None

    headers = {**actor.headers, "X-Correlation-ID": "routing-400"}
    bad_query = await world.client.get(Q, params={"limit": "many"}, headers=headers)
    assert_envelope(bad_query, "QUOTE_VALIDATION_FAILED", 400)
    record = _record(world, "routing-400")
    assert (record.operation, record.agent_id) == ("quote.list", actor.agent_id)
    assert (record.error_code, record.http_status) == ("QUOTE_VALIDATION_FAILED", 400)

    headers = {
        **actor.headers,
        "X-Correlation-ID": "routing-json",
        "Content-Type": "application/json",
    }
    malformed = await world.client.post(Q, content=b'{"tripName": ', headers=headers)
    assert_envelope(malformed, "QUOTE_VALIDATION_FAILED", 400)
    record = _record(world, "routing-json")
    assert (record.operation, record.agent_id) == ("quote.create", actor.agent_id)


async def test_near_misses_get_the_framework_envelopes(world: World) -> None:
    actor = await world.actor()
    created = await world.client.post(
        Q, json=quote_body("iceland-ring-road-eur", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201
    quote_id = created.json()["quoteId"]
    before = await world.snapshot(quote_id)
    client, headers = world.client, actor.headers
    assert_envelope(await client.post(f"{Q}/", json={}, headers=headers), "NOT_FOUND", 404)
    assert_envelope(await client.post(f"{Q}/{quote_id}/archive", headers=headers), "NOT_FOUND", 404)
    assert_envelope(await client.get(f"{Q}//revisions", headers=headers), "NOT_FOUND", 404)
    not_allowed = await client.post(f"{Q}/{quote_id}", json={}, headers=headers)
    assert_envelope(not_allowed, "METHOD_NOT_ALLOWED", 405)
    assert not_allowed.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    assert_envelope(
        await client.get(f"{Q}/{quote_id}/revisions/0", headers=headers),
        "QUOTE_VALIDATION_FAILED",
        400,
    )
    assert await world.snapshot(quote_id) == before
