"""A link's token is a bearer secret in a URL: no log line, operation record or metric of a
whole client session (view, PDF, refused and accepted forms, revoke) holds it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tests.conftest import World, make_settings
from tests.proposals.support import URL, accept, form_of, send_quote
from tripquote.observability.logging import flush_logs


async def test_no_log_line_record_or_metric_holds_a_token(
    pg_url: str, world_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    world: World = await world_factory(make_settings(pg_url, log_level="DEBUG"))
    actor = await world.actor()
    capsys.readouterr()
    sent = await send_quote(world, actor)
    revoked = await send_quote(world, actor)
    page = await world.client.get(sent.path)
    form = form_of(page.text)
    await world.client.get(f"{sent.path}/pdf")
    await world.client.post(f"{sent.path}/accept", data={**form, "signer_name": ""})
    await world.client.post(f"{sent.path}/accept", data={**form, "csrf": "x"})
    assert (await accept(world.client, sent.path, form)).status_code == 303
    await world.client.get(sent.path)
    await world.client.post(f"{URL}/{revoked.quote_id}/proposal/revoke", headers=actor.headers)
    assert (await world.client.get(revoked.path)).status_code == 404
    await world.client.get(f"{URL}/{sent.quote_id}/proposal", headers=actor.headers)
    metrics = (await world.client.get("/metrics")).text
    flush_logs()
    deadline = time.monotonic() + 10  # the records are written in batches, off the request
    while not await world.count("operation_records", "operation = 'proposal.accept'"):
        assert time.monotonic() < deadline, "the page's operation records never arrived"
        await asyncio.sleep(0.05)
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines() if line.strip()]
    assert any(line.get("path") == "/p/[link]/accept" for line in lines), "no page lines seen"
    async with world.engine.connect() as conn:
        records = json.dumps(
            [list(r) for r in (await conn.exec_driver_sql("SELECT * FROM operation_records"))],
            default=str,
        )
    for token in (sent.token, revoked.token):
        assert token not in out.out and token not in out.err
        assert token not in records
        assert token not in metrics
