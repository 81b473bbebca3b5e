"""Prometheus metrics: labels after tracked operations, the token, and several processes."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client.parser import text_string_to_metric_families

from tripquote.errors import QuoteConflictVersion, TripquoteError
from tripquote.observability.metrics import (
    DATABASE_GAUGES,
    EXPORTED_METRIC_NAMES,
    MULTIPROC_ENV,
    render_metrics,
)
from tripquote.observability.operations import Observer
from tripquote.observability.routes import router


def samples(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(exposition: str, name: str, **labels: str) -> float:
    return samples(exposition).get((name, frozenset(labels.items())), 0.0)


def build_app(observer: Observer) -> FastAPI:
    app = FastAPI()
    app.state.observer = observer

    async def on_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TripquoteError)
        observer.error_rendered(exc)
        return JSONResponse({"success": False, "errorCode": exc.code}, exc.status, exc.headers)

    app.add_exception_handler(TripquoteError, on_error)
    app.include_router(router)
    return app


@pytest.fixture
async def client_for(settings_factory: Any) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def make(**settings: Any) -> tuple[httpx.AsyncClient, Observer]:
        observer = Observer(settings_factory(**settings))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(observer)), base_url="http://t"
        )
        clients.append(client)
        return client, observer

    yield make
    for client in clients:
        await client.aclose()


async def test_tracked_operations_appear_with_their_labels(client_for: Any) -> None:
    client, observer = client_for()
    before = (await client.get("/metrics")).text
    for _ in range(3):
        async with observer.track("metrics_test_update"):
            pass
    with pytest.raises(QuoteConflictVersion):
        async with observer.track("metrics_test_update"):
            raise QuoteConflictVersion()
    observer.db_retry()
    observer.db_rollback("QUOTE_CONFLICT_VERSION")

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    op = "metrics_test_update"
    assert delta("tripquote_operations_total", operation=op, outcome="success", error_code="") == 3
    assert (
        delta(
            "tripquote_operations_total",
            operation=op,
            outcome="error",
            error_code="QUOTE_CONFLICT_VERSION",
        )
        == 1
    )
    assert delta("tripquote_operation_duration_seconds_count", operation=op, outcome="success") == 3
    assert (
        delta(
            "tripquote_operation_duration_seconds_bucket",
            operation=op,
            outcome="success",
            le="10.0",
        )
        == 3
    )
    assert delta("tripquote_version_conflicts_total") == 1
    assert delta("tripquote_db_retries_total") == 1
    assert delta("tripquote_db_rollbacks_total", reason="QUOTE_CONFLICT_VERSION") == 1
    buckets = {
        dict(labels)["le"]
        for (name, labels) in samples(after)
        if name == "tripquote_operation_duration_seconds_bucket" and ("operation", op) in labels
    }
    assert {"0.5", "0.75", "1.0", "2.5", "+Inf"} <= buckets


async def test_every_exported_name_is_exposed(client_for: Any) -> None:
    client, observer = client_for()
    async with observer.track("metrics_test_names"):
        pass
    observer.db_rollback("DATABASE_TIMEOUT")
    exposed = {
        family.name
        for family in text_string_to_metric_families((await client.get("/metrics")).text)
    }
    # The parser drops a counter's "_total"; the exported names keep it. The outbox gauges
    # are read from the database, which this app has none of (tests/webhooks covers them).
    expected = EXPORTED_METRIC_NAMES - DATABASE_GAUGES
    assert {name.removesuffix("_total") for name in expected} <= exposed


async def test_metrics_token(client_for: Any) -> None:
    client, _ = client_for(metrics_token="metrics-token-123")
    missing = await client.get("/metrics")
    assert missing.status_code == 401
    assert missing.json()["errorCode"] == "AUTHENTICATION_FAILED"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    basic = await client.get("/metrics", headers={"Authorization": "Basic metrics-token-123"})
    assert basic.status_code == 401
    right = await client.get("/metrics", headers={"Authorization": "Bearer metrics-token-123"})
    assert right.status_code == 200
    assert "tripquote_operations_total" in right.text


async def test_no_token_configured_means_open(client_for: Any) -> None:
    client, _ = client_for()
    assert (await client.get("/metrics")).status_code == 200


WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    from tripquote.config import Settings
    from tripquote.errors import QuotePersistenceFailed
    from tripquote.observability.operations import Observer

    async def main(successes: int) -> None:
        observer = Observer(Settings(_env_file=None))
        for _ in range(successes):
            async with observer.track("mp_update"):
                pass
        try:
            async with observer.track("mp_update"):
                raise QuotePersistenceFailed()
        except QuotePersistenceFailed:
            pass
        observer.db_retry()

    asyncio.run(main(int(sys.argv[1])))
    print(os.getpid())
    """
)


def test_several_processes_are_summed(
    tmp_path: Path, python: str, subprocess_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two real worker processes write into one PROMETHEUS_MULTIPROC_DIR; /metrics sums them."""
    multiproc_dir = tmp_path / "prom"
    multiproc_dir.mkdir()
    env = subprocess_env | {MULTIPROC_ENV: str(multiproc_dir)}
    workers = [
        subprocess.Popen([python, "-c", WORKER, str(n)], env=env, stdout=subprocess.PIPE, text=True)
        for n in (3, 4)
    ]
    pids = []
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        pids.append(int(out.strip().splitlines()[-1]))
    assert len(set(pids)) == 2
    assert len(list(multiproc_dir.glob("counter_*.db"))) == 2  # one file per process

    monkeypatch.setenv(MULTIPROC_ENV, str(multiproc_dir))
    body, content_type = render_metrics()
    text = body.decode()
    assert content_type.startswith("text/plain")
    labels = {"operation": "mp_update", "outcome": "success", "error_code": ""}
    assert value(text, "tripquote_operations_total", **labels) == 7
    failed = labels | {"outcome": "error", "error_code": "QUOTE_PERSISTENCE_FAILED"}
    assert value(text, "tripquote_operations_total", **failed) == 2
    assert value(text, "tripquote_db_retries_total") == 2
    assert (
        value(
            text,
            "tripquote_operation_duration_seconds_count",
            operation="mp_update",
            outcome="success",
        )
        == 7
    )

    from tripquote.observability.metrics import multiprocess_child_exit

    for pid in pids:
        multiprocess_child_exit(pid)  # counters survive their process: still summed
    assert value(render_metrics()[0].decode(), "tripquote_operations_total", **labels) == 7


async def test_serve_removes_the_folders_it_made(db_url: str, tmp_path: Path) -> None:
    import struct

    from tests.servers import server_env, start_server, wait_ready

    env = {**server_env(db_url), "TMPDIR": str(tmp_path)}
    server = start_server(env, log_dir=tmp_path / "logs", workers=2, metrics_dir=False)
    try:
        await wait_ready(server, workers=2)
        assert len(list(tmp_path.glob("tripquote-metrics-*"))) == 1  # the workers' files
        (board,) = tmp_path.glob("tripquote-board-*/board")  # the workers' board
        slots = [pid for pid, _ in struct.iter_unpack("=qq", board.read_bytes()) if pid]
        assert len(set(slots)) == 2 and server.process.pid not in slots  # one per worker
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log_tail()
    assert list(tmp_path.glob("tripquote-metrics-*")) == []
    assert list(tmp_path.glob("tripquote-board-*")) == []
