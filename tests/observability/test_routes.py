"""``/api/ops/summary`` and ``/metrics`` in the real app, on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import make_settings, quote_body

OPERATOR_TOKEN = "operator-metrics-token-0123456789"


async def test_ops_summary_needs_an_admin(world: Any) -> None:
    agent = await world.actor()
    admin = await world.actor(agency_id=agent.agency_id, role="admin")

    anonymous = await world.client.get("/api/ops/summary")
    assert anonymous.status_code == 401
    assert anonymous.json()["errorCode"] == "AUTHENTICATION_FAILED"
    refused = await world.client.get("/api/ops/summary", headers=agent.headers)
    assert refused.status_code == 403
    assert refused.json()["errorCode"] == "AUTHORIZATION_FAILED"

    observer = world.app.state.observer
    async with observer.track("quote.update", agent_id=admin.agent_id):
        pass
    response = await world.client.get("/api/ops/summary", headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert set(body) == {
        "success",
        "window",
        "operations",
        "saves",
        "errorRateByCode",
        "errorRate",
        "conflictRate",
        "rollbackRate",
    }
    assert set(body["window"]) == {"size", "since", "until"}
    assert body["saves"]["count"] >= 1
    assert set(body["saves"]) == {"count", "avgMs", "p50Ms", "p95Ms", "p99Ms"}  # README: P50 too
    assert set(body["operations"]["quote.update"]) == {
        "count",
        "avgMs",
        "p50Ms",
        "p95Ms",
        "p99Ms",
        "maxMs",
    }
    # The two refusals above belong to no agency: only the operator sees them (below).
    assert "request" not in body["operations"]


async def test_metrics_endpoint_is_served_by_the_app(world: Any) -> None:
    response = await world.client.get("/metrics")
    assert response.status_code == 200
    assert "tripquote_operations_total" in response.text
    assert response.headers["x-correlation-id"].startswith("REQ-")


async def test_ops_summary_shows_an_admin_only_its_agency_and_the_operator_all(
    db_url: str, world_factory: Any, poison_item: str
) -> None:
    world = await world_factory(make_settings(db_url, metrics_token=OPERATOR_TOKEN))
    agent_a = await world.actor()
    admin_a = await world.actor(agency_id=agent_a.agency_id, role="admin")
    admin_b = await world.actor(role="admin")
    body_a = quote_body("iceland-ring-road-eur", agent_a.client_id)
    for _ in range(2):
        ok = await world.client.post("/api/agents/quotes", json=body_a, headers=agent_a.headers)
        assert ok.status_code == 201
    poisoned = json.loads(json.dumps(body_a))
    poisoned["items"][-1]["description"] = poison_item  # refused by the database: rolled back
    failed = await world.client.post("/api/agents/quotes", json=poisoned, headers=agent_a.headers)
    assert failed.status_code == 503
    body_b = quote_body("iceland-ring-road-eur", admin_b.client_id)
    ok = await world.client.post("/api/agents/quotes", json=body_b, headers=admin_b.headers)
    assert ok.status_code == 201
    invalid = await world.client.post(
        "/api/agents/quotes", json={**body_b, "travelers": 0}, headers=admin_b.headers
    )
    assert invalid.status_code == 400
    anonymous = await world.client.get("/api/agents/quotes")
    assert anonymous.status_code == 401

    async def summary(token: str) -> dict[str, Any]:
        response = await world.client.get(
            "/api/ops/summary", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    seen_a, seen_b, everything = (
        await summary(admin_a.token),
        await summary(admin_b.token),
        await summary(OPERATOR_TOKEN),
    )
    # Agency A: its agent's three saves, one refused and rolled back; nothing of B's.
    assert seen_a["saves"]["count"] == 3
    assert seen_a["errorRateByCode"] == {"QUOTE_PERSISTENCE_FAILED": round(1 / 3, 6)}
    assert seen_a["rollbackRate"] == round(1 / 3, 6)
    assert set(seen_a["operations"]) == {"quote.create"}
    # Agency B: its admin's own two saves, one invalid; no rollback, nothing of A's.
    assert seen_b["saves"]["count"] == 2
    assert seen_b["errorRateByCode"] == {"QUOTE_VALIDATION_FAILED": 0.5}
    assert seen_b["rollbackRate"] == 0.0
    assert set(seen_b["operations"]) == {"quote.create"}
    # The operator: every agency's, and the requests of no agency (the anonymous 401).
    assert everything["saves"]["count"] == 5
    assert everything["rollbackRate"] == 0.2
    assert everything["operations"]["quote.list"]["count"] == 1

    # A wrong operator token is no token at all; an agent is no admin.
    wrong = await world.client.get("/api/ops/summary", headers={"Authorization": "Bearer nope"})
    assert wrong.json()["errorCode"] == "AUTHENTICATION_FAILED"
    agent = await world.client.get("/api/ops/summary", headers=agent_a.headers)
    assert agent.json()["errorCode"] == "AUTHORIZATION_FAILED"
