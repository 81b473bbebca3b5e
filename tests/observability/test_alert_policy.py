"""Which errors page the on-call one by one, through the real app and a real webhook receiver:
CRITICAL errors the system caused do; CRITICAL errors any caller can cause at will
(QUOTE_ALREADY_SENT, ITEMS_INCONSISTENT) keep their severity but only alert by rate."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import World, make_settings, quote_body
from tests.observability.conftest import HttpRecorder, mismatch_body, wait_until
from tripquote.errors import ERROR_CLASSES, Severity


@pytest.fixture
def alerting(db_url: str, http_recorder: HttpRecorder) -> Any:
    # No de-duplication: every error the app submits reaches the receiver.
    return make_settings(
        db_url, alert_webhook_url=f"{http_recorder.url}/hook", alert_dedup_window_seconds=0
    )


def _codes(recorder: HttpRecorder) -> list[str]:
    return [json.loads(request.body)["errorCode"] for request in recorder.requests]


async def test_only_system_caused_critical_errors_alert_one_by_one(
    alerting: Any, world_factory: Any, http_recorder: HttpRecorder, poison_item: str
) -> None:
    world: World = await world_factory(alerting)
    actor = await world.actor()
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    created = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
    quote_id = created.json()["quoteId"]
    sent = await world.client.post(
        f"/api/agents/quotes/{quote_id}/send", json={"version": 1}, headers=actor.headers
    )
    assert sent.status_code == 200

    # Any agent can produce these two at will: a losing edit of a sent quote, wrong totals.
    already_sent = await world.client.patch(
        f"/api/agents/quotes/{quote_id}", json={"version": 2, "notes": "x"}, headers=actor.headers
    )
    inconsistent = await world.client.post(
        "/api/agents/quotes", json=mismatch_body(actor.client_id), headers=actor.headers
    )
    # The database refuses the write: the system failed.
    body["items"][-1]["description"] = poison_item
    persistence = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)

    answers = [already_sent.json(), inconsistent.json(), persistence.json()]
    assert [(a["errorCode"], a["severity"]) for a in answers] == [
        ("QUOTE_ALREADY_SENT", "CRITICAL"),
        ("ITEMS_INCONSISTENT", "CRITICAL"),
        ("QUOTE_PERSISTENCE_FAILED", "CRITICAL"),
    ]
    await wait_until(lambda: len(http_recorder.requests) >= 1)
    # Stopping the dispatcher delivers whatever is still queued: nothing else is pending.
    await world.app.state.observer.alerts.stop()
    assert _codes(http_recorder) == ["QUOTE_PERSISTENCE_FAILED"]
    assert (
        json.loads(http_recorder.requests[0].body)["correlationId"]
        == (persistence.headers["x-correlation-id"])
    )


def test_critical_codes_split_into_system_and_caller_caused() -> None:
    critical = {cls.code: cls for cls in ERROR_CLASSES if cls.severity == Severity.CRITICAL}
    assert {code for code, cls in critical.items() if cls.alerts_each()} == {
        "QUOTE_PERSISTENCE_FAILED",
        "DATABASE_TRANSACTION_ABORTED",
        "SAVE_OUTCOME_UNKNOWN",
        "INTERNAL_ERROR",
    }
    assert {code for code, cls in critical.items() if cls.caused_by == "caller"} == {
        "QUOTE_ALREADY_SENT",
        "ITEMS_INCONSISTENT",
    }
    assert not any(cls.alerts_each() for cls in ERROR_CLASSES if cls.code not in critical)
