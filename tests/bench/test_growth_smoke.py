"""The growth scenario in a tiny configuration (1,000 history quotes, pages of 5, B = 10).

Proves the scenario works end to end, not its figures: the history loads by COPY, every
operation is measured on the empty and on the loaded database, the ratio table, the sizes
and (with a threshold no ratio reaches) the plans of every operation are printed, the burst
is verified whole in both phases, and the databases and servers are gone at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench.test_bench_smoke import PG, REPO, _leftovers, pytestmark, requires_pg

__all__ = ["pytestmark"]

OPERATIONS = {
    "burst", "hot", "get", "list", "list p2", "list status", "list status p2",
    "list clientId", "list clientId p2", "list updatedSince", "list updatedSince p2",
    "admin list", "admin list p2", "revisions", "revisions p2", "revision",
    "edit long quote", "edit short quote", "expire", "idempotency purge",
}  # fmt: skip


@requires_pg
def test_tiny_growth_run(tmp_path: Path) -> None:
    out = tmp_path / "growth.json"
    argv = [
        sys.executable, "-m", "bench.run", "--scenarios", "growth", "--pg", PG,
        "--json", str(out), "--workers", "1", "--rounds", "1", "--agents", "2",
        "--burst", "10", "--hot", "10", "--growth-quotes", "1000", "--growth-pages", "2",
        "--growth-page-size", "5", "--growth-versions", "12", "--growth-due", "30",
        "--growth-reads", "5", "--growth-threshold", "1000",
    ]  # fmt: skip
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    document = json.loads(out.read_text())
    (run,) = [r for r in document["runs"] if r["scenario"] == "growth"]
    assert run["checks"]["passed"]
    summary = run["summary"]
    assert summary["history"]["quotes"] == 1000
    assert summary["history"]["operation_records"] == 2000
    for phase in ("empty", "large"):
        results = summary["results"][phase]
        assert set(results) >= OPERATIONS, OPERATIONS - set(results)
        assert results["expire"]["count"] >= 30 and results["idempotency purge"]["count"] >= 30
        assert results["burst"]["ok"] == 10 and results["burst"]["verify"]["passed"]
        assert results["rss_kib"] and min(results["rss_kib"]) > 0
    ratios = {r["operation"] for r in summary["ratios"]}
    assert OPERATIONS | {"rss per worker (KiB, max)"} == ratios
    text = proc.stdout
    assert "need ~" in text and "free in" in text  # the disk check, before the load
    assert "growth: large / empty" in text and "database size:" in text
    assert "edits of the long quote / of a 1-version quote: empty " in text
    assert "index ix_quotes_agent_id_created_at_id" in text
    for name in OPERATIONS:  # every operation below the threshold: its plans are shown
        assert f"=== {name}: " in text, name
    assert "--- its generic plan:" in text and "Buffers: shared" in text
    databases, alive = _leftovers(document)
    assert databases == [] and alive == []
