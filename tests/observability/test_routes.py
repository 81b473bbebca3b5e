"""``/api/ops/summary`` and ``/metrics`` in the real app, on PostgreSQL."""

from __future__ import annotations

from typing import Any


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
    assert set(body["saves"]) == {"count", "avgMs", "p95Ms", "p99Ms"}
    assert set(body["operations"]["quote.update"]) == {
        "count",
        "avgMs",
        "p50Ms",
        "p95Ms",
        "p99Ms",
        "maxMs",
    }
    # The two refusals above were counted once each, under the untracked "request" operation.
    assert body["operations"]["request"]["count"] >= 2


async def test_metrics_endpoint_is_served_by_the_app(world: Any) -> None:
    response = await world.client.get("/metrics")
    assert response.status_code == 200
    assert "tripquote_operations_total" in response.text
    assert response.headers["x-correlation-id"].startswith("REQ-")
