"""The benchmark in a tiny configuration (B=20, N=20, T=1 s, one worker) against PostgreSQL.

Proves the bench itself works end to end: it starts and stops its servers, creates and
drops its databases, produces the JSON, and its correctness checks pass (hot quote: one
winner; contention: no lost update; burst: every save whole). It does not judge speed.
Skipped when PostgreSQL is not reachable on 127.0.0.1:5432 (or TRIPQUOTE_TEST_EMBEDDED=1).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import EMBEDDED

pytestmark = [pytest.mark.postgres, pytest.mark.bench]

REPO = Path(__file__).resolve().parents[2]
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")


def _postgres_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return True
    except OSError:
        return False


requires_pg = pytest.mark.skipif(
    EMBEDDED or not _postgres_reachable(), reason="no PostgreSQL on 127.0.0.1:5432"
)


def _leftovers(document: dict) -> tuple[list[str], list[int]]:
    """Databases of this run still present, server processes still alive."""
    names = document["meta"]["databases"]["created"]

    async def present() -> list[str]:
        conn = await asyncpg.connect(f"{PG}/postgres")
        try:
            rows = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", names
            )
        finally:
            await conn.close()
        return [r["datname"] for r in rows]

    alive = []
    for server in document["meta"]["servers"]:
        stat = Path(f"/proc/{server['pid']}/stat")
        if stat.exists() and stat.read_text().split(") ", 1)[1][:1] != "Z":
            alive.append(server["pid"])
    return asyncio.run(present()), alive


def _tiny(json_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.run",
        "--burst",
        "20",
        "--hot",
        "20",
        "--workers",
        "1",
        "--rounds",
        "2",
        "--agents",
        "2",
        "--contention-agents",
        "2",
        "--contention-quotes",
        "2",
        "--contention-seconds",
        "1",
        "--ceiling-clients",
        "httpx",
        "--pg",
        PG,
        "--json",
        str(json_path),
        *extra,
    ]


@requires_pg
def test_tiny_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(_tiny(out), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    document = json.loads(out.read_text())

    meta = document["meta"]
    assert meta["machine"]["nproc"] >= 1 and meta["machine"]["cpu_model"]
    assert meta["postgres"]["synchronous_commit"] in {
        "on",
        "off",
        "local",
        "remote_write",
        "remote_apply",
    }
    assert "same machine" in meta["note"]
    assert "load generator runs on the same machine" in proc.stdout

    runs = {(r["target"], r["scenario"]): r for r in document["runs"]}
    targets = ("limit", "peer", *(() if document["skipped"] else ("tripquote",)))
    for target in targets:  # bursts (and tripquote's proposal) in every round, the rest once
        rounds = [r["round"] for r in document["runs"] if r["target"] == target]
        # hot; contention, in its notes and three item modes (issue 17)
        once = {"limit": 0, "peer": 1, "tripquote": 5}[target]
        every = {"limit": 1, "peer": 1, "tripquote": 2}[target]
        assert sorted(rounds) == [0] * (every + once) + [1] * every, (target, rounds)
    for record in document["ratios"]:
        assert [r["round"] for r in record["rounds"]] == [0, 1], record
    for target in ("limit", "peer"):
        summary = runs[(target, "burst")]["summary"]
        assert summary["count"] == 20 and summary["ok"] == 20, summary
        assert summary["latency"]["all"]["p99_ms"] <= summary["latency"]["all"]["max_ms"]
    assert runs[("peer", "hot")]["checks"]["passed"]
    assert runs[("peer-ping", "ceiling/httpx")]["summary"]["ok"] == 20

    if not document["skipped"]:  # tripquote is installed: its scenarios ran too
        burst = runs[("tripquote", "burst")]
        assert burst["summary"]["count"] == 20
        assert burst["verify"]["passed"], burst["verify"]
        hot = runs[("tripquote", "hot")]["checks"]
        assert hot["passed"], hot
        assert hot["successes"] == 1 and hot["conflicts"] == 19
        contention = runs[("tripquote", "contention")]["summary"]
        assert contention["passed"] and contention["lost_updates"] == 0, contention
        for mode in ("items", "items-merge", "overlap-merge"):
            summary = runs[("tripquote", f"contention-{mode}")]["summary"]
            assert summary["mode"] == mode
            assert summary["passed"] and summary["lost_updates"] == 0, summary
            assert summary["phantom_markers"] == summary["duplicated_markers"] == 0, summary
        # Each agent editing its own item with merge: no stale save is refused.
        assert runs[("tripquote", "contention-items-merge")]["summary"]["conflicts"] == 0
        assert runs[("tripquote", "proposal")]["summary"]["passed"]

    databases, alive = _leftovers(document)
    assert databases == [] and alive == []


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@requires_pg
def test_interrupt_stops_servers_and_drops_databases(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.Popen(
        _tiny(out, "--scenarios", "peer", "--burst", "20,500"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell without job control starts background commands with SIGINT ignored, and a
        # Python started so keeps ignoring it: give the bench the terminal's Ctrl-C back.
        preexec_fn=_default_sigint,
    )
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        for line in proc.stdout:
            if "ready in" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        assert proc.wait(timeout=60) == 130, rest
    finally:
        if proc.poll() is None:
            proc.kill()
    document = json.loads(out.read_text())
    assert document["meta"]["aborted"]
    databases, alive = _leftovers(document)
    assert databases == [] and alive == []


@requires_pg
@pytest.mark.pgbouncer
def test_tiny_run_through_pgbouncer(tmp_path: Path) -> None:
    from tests.pgbouncer.conftest import require_pgbouncer

    require_pgbouncer()
    out = tmp_path / "bench.json"
    argv = [*_tiny(out, "--through-pgbouncer"), "--scenarios", "burst"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    document = json.loads(out.read_text())
    bounced = [r for r in document["runs"] if r["target"] == "tripquote-pgbouncer"]
    assert sorted(r["round"] for r in bounced) == [0, 1]  # one burst per round
    for run in bounced:
        assert run["summary"]["ok"] == 20, run["summary"]
        assert run["verify"]["passed"] is True, run["verify"]
    ratios = [r for r in document["ratios"] if r["target"] == "tripquote-pgbouncer"]
    assert [r["versus"] for r in ratios] == ["tripquote"]
    assert ratios[0]["throughput_ratio"] is not None
    assert "tripquote-pgbouncer/tripquote" in proc.stdout
    names, alive = _leftovers(document)
    assert names == [] and alive == []


@requires_pg
def test_tiny_run_with_webhooks(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = [*_tiny(out, "--with-webhooks"), "--scenarios", "burst"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    document = json.loads(out.read_text())
    if document["skipped"]:
        pytest.skip("tripquote is not installed")
    with_hooks = [
        r
        for r in document["runs"]
        if r["target"] == "tripquote-webhooks" and r["scenario"] == "burst"
    ]
    assert sorted(r["round"] for r in with_hooks) == [0, 1]  # one burst per round
    for run in with_hooks:
        assert run["summary"]["ok"] == 20, run["summary"]
        assert run["verify"]["passed"] is True, run["verify"]
    lags = [r["summary"] for r in document["runs"] if r["scenario"] == "delivery-lag"]
    assert len(lags) == 2
    for lag in lags:  # every save of the round's bursts (and its warm-up) delivered once
        assert lag["delivered"] >= 20 and lag["not_delivered"] == 0, lag
        assert lag["p50_ms"] <= lag["p99_ms"] <= lag["max_ms"], lag
    ratios = [r for r in document["ratios"] if r["target"] == "tripquote-webhooks"]
    assert [r["versus"] for r in ratios] == ["tripquote"]
    assert "tripquote-webhooks/tripquote" in proc.stdout
    names, alive = _leftovers(document)
    assert names == [] and alive == []


def test_tiny_proposal_scenario(tmp_path: Path) -> None:
    # The client's pages beside a save burst: views and accepts all answered, every save too.
    out = tmp_path / "bench.json"
    argv = [
        *_tiny(out, "--proposal-views", "20", "--proposal-accepts", "5"),
        "--scenarios",
        "proposal",
        "--rounds",
        "2",
    ]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    document = json.loads(out.read_text())
    # Every round runs it on links of its own: one ratio per round, and their median.
    first, run = [r for r in document["runs"] if r["scenario"] == "proposal"]
    assert first["summary"]["passed"] and (first["round"], run["round"]) == (0, 1)
    (ratios,) = document["proposal_ratios"]
    throughput = ratios["save_throughput_ratio"]
    assert ratios["rounds"] == 2 and len(throughput["rounds"]) == 2
    assert min(throughput["rounds"]) <= throughput["median"] <= max(throughput["rounds"])
    summary = run["summary"]
    assert summary["passed"], summary
    assert (summary["views"], summary["accepts"]) == (20, 5)
    assert summary["pages_ok"] == 25 and summary["saves_ok_beside"] == 20
    assert summary["view_latency"]["count"] == 20 and summary["accept_latency"]["count"] == 5
    assert summary["save_throughput_ratio"] is not None
    # Alone before and after, and the control burst beside as many trivial requests.
    assert all(rate for rate in summary["saves_per_s_alone_before_after"])
    assert summary["control_ratio"] is not None and summary["pages_over_control"] is not None
    assert "proposal w=1: PASS" in proc.stdout
    databases, alive = _leftovers(document)
    assert databases == [] and alive == []
