"""A two-node Patroni cluster (``synchronous_mode: true``) under the service (issue 13):

- the ambiguous commit reproduced on purpose: the synchronous standby's WAL receiver paused
  (SIGSTOP), a save whose COMMIT waits on SyncRep, its backend terminated: the answer is the
  truth (201) and a retry with the same Idempotency-Key replays it without a duplicate;
- 20 clients writing through a switchover, then through the loss of the leader's node (Patroni
  and PostgreSQL killed): no acknowledged write lost, every error the documented retryable
  envelope, the service recovering without a restart; the outage seconds are printed (and
  written to ``failover.json`` in the test's folder).

Run alone with ``pytest -m patroni`` (needs ``etcd``: Debian's etcd-server, which .ci/run
installs; Patroni comes with the dev dependencies). Skipped without etcd, except in CI.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, quote_body
from tests.patroni.cluster import ETCD, PatroniCluster
from tests.servers import (
    Server,
    migrate_with_cli,
    provision_actor,
    server_env,
    serving,
    wait_until,
)

pytestmark = [
    pytest.mark.patroni,
    pytest.mark.skipif(
        not shutil.which(ETCD) and not os.environ.get("CI"),
        reason="etcd is not installed (apt-get install etcd-server)",
    ),
]

Q = "/api/agents/quotes"
DB = "tripquote_patroni"
CLIENTS = 20
RETRYABLE = {
    "QUOTE_PERSISTENCE_FAILED",
    "DATABASE_TIMEOUT",
    "DATABASE_TRANSACTION_ABORTED",
    "SAVE_OUTCOME_UNKNOWN",
    "IDEMPOTENCY_KEY_IN_USE",
}
"""The answers a client may get while the primary changes: each retryable, each documented."""


@dataclass
class Stack:
    cluster: PatroniCluster
    url: str
    server: Server
    actors: list[Actor]


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    cluster = PatroniCluster()
    folder = tmp_path_factory.mktemp("patroni")
    try:
        await asyncio.to_thread(cluster.start)
        leader = cluster.leader()
        assert leader is not None
        admin = await asyncpg.connect(leader.dsn + "/postgres")
        try:
            await admin.execute(f"CREATE DATABASE {DB}")
        finally:
            await admin.close()
        url = f"postgresql+asyncpg://postgres@/{DB}?{cluster.url_hosts}"
        url += "&target_session_attrs=read-write"
        await asyncio.to_thread(migrate_with_cli, url, cwd=folder)
        actors = [await provision_actor(url) for _ in range(CLIENTS)]
        env = server_env(
            url,
            tx_timeout_seconds=5,
            db_pool_timeout_seconds=5,
            db_pool_size=25,
            save_outcome_timeout_seconds=30,
        )
        async with serving(env, log_dir=folder) as [server]:
            yield Stack(cluster, url, server, actors)
    finally:
        await asyncio.to_thread(cluster.destroy)


async def _primary_conn(cluster: PatroniCluster) -> asyncpg.Connection:
    leader = cluster.leader()
    assert leader is not None
    return await asyncpg.connect(
        f"{leader.dsn}/{DB}", server_settings={"synchronous_commit": "local"}
    )


async def test_ambiguous_commit_on_the_cluster_answers_the_truth(stack: Stack) -> None:
    cluster = stack.cluster
    standby = cluster.sync_standby()
    assert standby is not None
    actor = stack.actors[0]
    headers = {**actor.headers, "Idempotency-Key": f"ambiguous-{uuid.uuid4()}"}
    body = quote_body("kyoto-autumn-jpy", actor.client_id)
    replica = await asyncpg.connect(f"{standby.dsn}/{DB}")
    try:
        receiver = await replica.fetchval("SELECT pid FROM pg_stat_wal_receiver")
    finally:
        await replica.close()
    assert receiver, "the standby has no WAL receiver"
    primary = await _primary_conn(cluster)
    async with httpx.AsyncClient(base_url=stack.server.base_url, timeout=60) as client:
        os.kill(receiver, signal.SIGSTOP)  # the standby stops confirming: COMMITs wait
        try:
            saving = asyncio.create_task(client.post(Q, json=body, headers=headers))
            waiting = await wait_until(
                lambda: primary.fetchval(
                    "SELECT a.pid FROM pg_stat_activity a WHERE a.wait_event = 'SyncRep'"
                    " AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid"
                    "             AND l.relation = 'quotes'::regclass)"
                ),
                within=20,
                what="the save waiting for the synchronous standby",
            )
            assert await primary.fetchval("SELECT pg_terminate_backend($1)", waiting)
            response = await asyncio.wait_for(saving, 40)
        finally:
            os.kill(receiver, signal.SIGCONT)
        assert response.status_code == 201, response.text
        saved = response.json()
        again = await client.post(Q, json=body, headers=headers)
        assert again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == saved
    try:
        count = await primary.fetchval(
            "SELECT count(*) FROM quotes WHERE agent_id = $1", actor.agent_id
        )
    finally:
        await primary.close()
    assert count == 1


@dataclass
class Load:
    """``CLIENTS`` clients, each creating a quote and sending it, again and again, with an
    Idempotency-Key per request, retrying a retryable answer with the same key."""

    client: httpx.AsyncClient
    actors: list[Actor]
    acknowledged: list[tuple[str, int]] = field(default_factory=list)
    create_keys: int = 0
    errors: list[tuple[float, httpx.Response]] = field(default_factory=list)
    successes: list[float] = field(default_factory=list)
    stopping: bool = False

    async def _until_answered(self, method: str, path: str, body: Any, actor: Actor) -> Any:
        headers = {**actor.headers, "Idempotency-Key": str(uuid.uuid4())}
        self.create_keys += method == "POST" and path == Q
        while True:
            response = await self.client.request(method, path, json=body, headers=headers)
            if response.status_code < 300:
                self.successes.append(time.monotonic())
                return response.json()
            self.errors.append((time.monotonic(), response))
            if self.stopping or response.json().get("errorCode") not in RETRYABLE:
                return None
            await asyncio.sleep(0.1)

    async def _client(self, actor: Actor) -> None:
        body = quote_body("kyoto-autumn-jpy", actor.client_id)
        while not self.stopping:
            created = await self._until_answered("POST", Q, body, actor)
            if created is None:
                continue
            self.acknowledged.append((created["quoteId"], created["version"]))
            sent = await self._until_answered(
                "POST", f"{Q}/{created['quoteId']}/send", {"version": 1}, actor
            )
            if sent is not None:
                self.acknowledged.append((sent["quoteId"], sent["version"]))

    async def run(self) -> None:
        await asyncio.gather(*(self._client(actor) for actor in self.actors))

    async def wait_for_successes(self, count: int, *, after: float, within: float) -> float:
        """When the ``count``-th success after ``after`` came (monotonic seconds)."""

        async def enough() -> float | None:
            later = [at for at in self.successes if at > after]
            return later[count - 1] if len(later) >= count else None

        return await wait_until(enough, within=within, what=f"{count} saves", every=0.1)

    def outage(self, start: float, end: float) -> float:
        """Seconds from the first to the last failed request in [start, end] (0: none)."""
        failed = [at for at, _ in self.errors if start <= at <= end]
        return max(failed) - min(failed) if failed else 0.0


async def test_switchover_then_node_loss_loses_no_acknowledged_write(
    stack: Stack, tmp_path: Path
) -> None:
    cluster = stack.cluster
    limits = httpx.Limits(max_connections=CLIENTS + 5)
    async with httpx.AsyncClient(
        base_url=stack.server.base_url, timeout=90, limits=limits
    ) as client:
        load = Load(client, stack.actors)
        running = asyncio.create_task(load.run())
        try:
            await load.wait_for_successes(60, after=0, within=60)

            # 1. switchover: the leader hands over to the synchronous standby.
            old, new = cluster.leader(), cluster.sync_standby()
            assert old is not None and new is not None and old is not new
            switched_at = time.monotonic()
            await asyncio.to_thread(cluster.switchover, old, new)
            recovered = await load.wait_for_successes(60, after=switched_at + 0.5, within=90)
            await asyncio.to_thread(
                cluster.wait, lambda: cluster.role(new) == "primary", 60, "new leader"
            )
            await asyncio.to_thread(
                cluster.wait, lambda: cluster.sync_standby() is old, 120, "old leader in sync"
            )
            switchover_outage = load.outage(switched_at, recovered)

            # 2. the leader's node is lost: Patroni and PostgreSQL killed.
            killed_at = time.monotonic()
            await asyncio.to_thread(new.kill)
            recovered = await load.wait_for_successes(60, after=killed_at + 0.5, within=120)
            node_loss_outage = load.outage(killed_at, recovered)
            assert cluster.role(old) == "primary"
        finally:
            load.stopping = True
            await asyncio.wait_for(running, 120)

    # Every error: the documented retryable envelope.
    codes: dict[str, int] = {}
    for _, response in load.errors:
        body = assert_envelope(response, response.json()["errorCode"], response.status_code)
        assert body["errorCode"] in RETRYABLE, body
        assert body["retryable"] is True, body
        what = f"{body['errorCode']}/{body['details'].get('cause')}"
        codes[what] = codes.get(what, 0) + 1

    # Every acknowledged write is on the surviving primary; no request saved twice.
    conn = await _primary_conn(cluster)
    try:
        stored = {
            (row["quote_id"], row["version"])
            for row in await conn.fetch("SELECT quote_id, version FROM quote_revisions")
        }
        # All but the one quote of the ambiguous commit's test.
        quotes = (await conn.fetchval("SELECT count(*) FROM quotes")) - 1
    finally:
        await conn.close()
    lost = [ack for ack in load.acknowledged if ack not in stored]
    creates = sum(1 for _, version in load.acknowledged if version == 1)
    report = {
        "acknowledged": len(load.acknowledged),
        "lost_acknowledged": len(lost),
        "errors": codes,
        "switchover_outage_seconds": round(switchover_outage, 2),
        "node_loss_outage_seconds": round(node_loss_outage, 2),
    }
    (tmp_path / "failover.json").write_text(json.dumps(report))
    print("patroni failover:", json.dumps(report))
    assert lost == [], f"{len(lost)} acknowledged writes lost: {lost[:5]}"
    # At most one quote per create request (each its own key), whether or not it was answered.
    assert creates <= quotes <= load.create_keys
    # The service recovered by itself: the same process, ready on the new primary.
    assert stack.server.alive()
    async with httpx.AsyncClient(base_url=stack.server.base_url) as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 200, ready.text
