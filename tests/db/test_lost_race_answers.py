"""A save that loses a race answers what the change that won makes true, whichever of its
statements met that change (PostgreSQL, where a save's read and its version-checked write can
straddle another commit).

The race is set up deterministically: the winner's change holds the quote's row lock, the
request reads the quote as it was and queues on the lock with its version-checked write, then
the winner commits. A request arriving after the winner gets the same answer (the status check
comes before the version check), so the answer no longer depends on timing: QUOTE_ALREADY_SENT
or QUOTE_STATE_INVALID when the quote's new status refuses the operation, QUOTE_CONFLICT_VERSION
when only its version moved.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, quote_body
from tests.servers import wait_until

URL = "/api/agents/quotes"


@pytest.mark.parametrize(
    ("method", "suffix", "body", "winner_status", "code", "status"),
    [
        ("PATCH", "", {"notes": "mine"}, "SENT", "QUOTE_ALREADY_SENT", 409),
        ("POST", "/send", None, "SENT", "QUOTE_ALREADY_SENT", 409),
        ("DELETE", "", None, "CANCELLED", "QUOTE_STATE_INVALID", 409),
        ("POST", "/send", None, "CANCELLED", "QUOTE_STATE_INVALID", 409),
        ("PATCH", "", {"notes": "mine"}, "DRAFT", "QUOTE_CONFLICT_VERSION", 412),
        ("DELETE", "", None, "DRAFT", "QUOTE_CONFLICT_VERSION", 412),
    ],
)
async def test_the_loser_of_a_race_gets_the_winners_state(
    world: World,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
    winner_status: str,
    code: str,
    status: int,
) -> None:
    actor = await world.actor()
    created = await world.client.post(
        URL, json=quote_body("iceland-ring-road-eur", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201, created.text
    quote_id = created.json()["quoteId"]
    winner = await asyncpg.connect(world.dsn)
    watcher = await asyncpg.connect(world.dsn)
    try:
        transaction = winner.transaction()
        await transaction.start()
        await winner.execute(
            "UPDATE quotes SET status = $2, version = version + 1 WHERE id = $1",
            quote_id,
            winner_status,
        )
        request = asyncio.create_task(
            world.client.request(
                method,
                f"{URL}/{quote_id}{suffix}",
                json=body,
                headers={**actor.headers, "If-Match": '"1"'},
            )
        )

        async def queued_on_the_lock() -> bool:
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"  # the save's write (its text is past the 1 kB shown)
            )
            return bool(waiting)

        await wait_until(queued_on_the_lock, within=10, what="the request queued on the lock")
        await transaction.commit()
        response = await request
    finally:
        await winner.close()
        await watcher.close()
    error = assert_envelope(response, code, status)
    if code != "QUOTE_CONFLICT_VERSION":
        assert error["details"]["currentStatus"] == winner_status
    stored = await world.snapshot(quote_id)
    assert (stored["quote"]["status"], stored["quote"]["version"]) == (winner_status, 2)
    assert len(stored["revisions"]) == 1  # the loser wrote nothing
