"""One failed save traced end to end through the real app: from the correlation ID of its
response to its log line, its operation record and its alerts (webhook and Telegram), with the
alert channel slow or failing never slowing the saves."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import World, make_settings, quote_body
from tests.observability.conftest import HttpRecorder
from tripquote.observability.logging import flush_logs

TELEGRAM_TOKEN = "123456789:AAE_trace-test-token-0123456789abcdefghij"


def _poisoned_body(client_id: str, marker: str) -> dict[str, Any]:
    """A create the database refuses (unique violation): 503 QUOTE_PERSISTENCE_FAILED."""
    body = quote_body("iceland-ring-road-eur", client_id)
    body["items"][-1]["description"] = marker
    return body


async def _wait(predicate: Any, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
def trace_settings(db_url: str, http_recorder: HttpRecorder) -> Any:
    return make_settings(
        db_url,
        alert_webhook_url=f"{http_recorder.url}/hook",
        alert_webhook_secret="trace-secret-0123456789",
        telegram_bot_token=TELEGRAM_TOKEN,
        telegram_chat_id="-1001",
        telegram_api_base=http_recorder.url,
        alert_dedup_window_seconds=0,
        log_level="INFO",
    )


async def test_failed_save_traced_to_logs_record_and_alerts(
    trace_settings: Any,
    world_factory: Any,
    http_recorder: HttpRecorder,
    capsys: Any,
    poison_item: str,
) -> None:
    world: World = await world_factory(trace_settings)
    actor = await world.actor()
    correlation_id = "trace-me:42"
    response = await world.client.post(
        "/api/agents/quotes",
        json=_poisoned_body(actor.client_id, poison_item),
        headers={**actor.headers, "X-Correlation-ID": correlation_id},
    )
    body = response.json()
    assert response.status_code == 503
    assert body["errorCode"] == "QUOTE_PERSISTENCE_FAILED" and body["severity"] == "CRITICAL"
    assert body["correlationId"] == correlation_id == response.headers["x-correlation-id"]

    async def record_stored() -> bool:
        stored = await world.count(
            "operation_records",
            "correlation_id = :c AND error_code = 'QUOTE_PERSISTENCE_FAILED' AND operation = :o",
            c=correlation_id,
            o="quote.create",
        )
        return stored == 1

    async def alerts_delivered() -> bool:
        paths = [r.path for r in http_recorder.requests]
        return "/hook" in paths and f"/bot{TELEGRAM_TOKEN}/sendMessage" in paths

    await _wait(record_stored)
    await _wait(alerts_delivered)

    flush_logs()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    mine = [line for line in lines if line.get("correlation_id") == correlation_id]
    operation = [line for line in mine if line["event"] == "operation"]
    assert len(operation) == 1
    assert operation[0]["error_code"] == "QUOTE_PERSISTENCE_FAILED"
    assert operation[0]["operation"] == "quote.create"
    assert operation[0]["agent_id"] == actor.agent_id
    assert actor.token not in json.dumps(lines)

    hook = next(r for r in http_recorder.requests if r.path == "/hook")
    alert = json.loads(hook.body)
    assert alert["errorCode"] == "QUOTE_PERSISTENCE_FAILED"
    assert alert["correlationId"] == correlation_id
    assert hook.headers["x-tripquote-signature"].startswith("sha256=")
    telegram = next(r for r in http_recorder.requests if "sendMessage" in r.path)
    assert correlation_id in json.loads(telegram.body)["text"]

    async with world.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT operation, agent_id, http_status FROM operation_records "
                    "WHERE correlation_id = :c AND operation <> 'db.rollback'"
                ),
                {"c": correlation_id},
            )
        ).one()
    assert tuple(row) == ("quote.create", actor.agent_id, 503)


async def test_failing_then_recovering_webhook_never_slows_saves(
    trace_settings: Any, world_factory: Any, http_recorder: HttpRecorder, poison_item: str
) -> None:
    http_recorder.gate = asyncio.Event()  # the channel hangs until released ...
    http_recorder.statuses = deque([500, 500])  # ... then fails twice, then accepts
    webhook_only = trace_settings.model_copy(update={"telegram_bot_token": None})
    world: World = await world_factory(webhook_only)
    actor = await world.actor()
    refused = await world.client.post(
        "/api/agents/quotes",
        json=_poisoned_body(actor.client_id, poison_item),
        headers={**actor.headers, "X-Correlation-ID": "while-down"},
    )
    assert refused.status_code == 503  # answered while the alert is still stuck
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    for _ in range(5):  # saves go through while the channel is stuck
        assert (
            await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
        ).status_code == 201
    http_recorder.gate.set()

    async def delivered() -> bool:
        hooks = [r for r in http_recorder.requests if r.path == "/hook"]
        return len(hooks) >= 3  # two 500s, then the accepted retry

    await _wait(delivered)
    hooks = [json.loads(r.body) for r in http_recorder.requests if r.path == "/hook"]
    assert {h["correlationId"] for h in hooks} == {"while-down"}
