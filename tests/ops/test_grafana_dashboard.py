"""The Grafana dashboard parses, is importable with a Prometheus data-source input, shows every
exported metric and nothing else, and every panel query is valid PromQL (checked by promtool)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.support import (
    DASHBOARD,
    allowed_series_names,
    assert_promtool_ok,
    exported_metric_names,
    metric_names_in,
)

DATASOURCE_UID = "${DS_PROMETHEUS}"

# Grafana's built-in variables and the dashboard's own, as promtool-checkable stand-ins.
SUBSTITUTIONS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels folded inside collapsed rows
    return panels


def _targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in _panels(dashboard) for t in p.get("targets", [])]


def test_schema_version_and_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"]
    assert dashboard["title"]
    assert dashboard.get("id") is None, "an exported dashboard carries no database id"


def test_prometheus_datasource_is_an_input_and_a_variable(dashboard: dict[str, Any]) -> None:
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    # The variable makes ${DS_PROMETHEUS} resolve when the file is provisioned, not imported.
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"


def test_every_panel_and_query_uses_the_prometheus_input(dashboard: dict[str, Any]) -> None:
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
    for panel, target in _targets(dashboard):
        assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]


def test_panel_ids_are_unique_and_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    panels = [p for p in _panels(dashboard) if p["type"] != "row"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_queries_use_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    allowed = allowed_series_names(exported_metric_names())
    for panel, target in _targets(dashboard):
        unknown = metric_names_in(target["expr"]) - allowed
        assert not unknown, f"panel {panel['title']!r} queries unknown metrics {unknown}"


def test_every_exported_metric_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    used = set()
    for _, target in _targets(dashboard):
        used |= metric_names_in(target["expr"])
    for base in exported_metric_names():
        derived = allowed_series_names(frozenset({base}))
        assert used & derived, f"{base} is exported but on no panel"


@pytest.mark.parametrize(
    ("title", "needle"),
    [
        ("Save rate by operation", "by (operation)"),
        ("Error rate by error code", "by (error_code)"),
        ("Save duration P50 / P95 / P99", "histogram_quantile(0.99"),
        ("Conflict rate", "tripquote_version_conflicts_total"),
        ("Rollback rate by reason", "by (reason)"),
        ("DB transaction retries", "tripquote_db_retries_total"),
        ("Alert deliveries by channel / result", "by (channel, result)"),
        ("Dropped operation records", "tripquote_oprecords_dropped_total"),
    ],
)
def test_required_panel(dashboard: dict[str, Any], title: str, needle: str) -> None:
    panels = {p["title"]: p for p in _panels(dashboard)}
    assert title in panels, f"no panel {title!r}"
    exprs = " ".join(t["expr"] for t in panels[title]["targets"])
    assert needle in exprs, f"panel {title!r}: expected {needle!r} in {exprs}"


def test_latency_panel_shows_the_targets(dashboard: dict[str, Any]) -> None:
    panel = next(p for p in _panels(dashboard) if p["title"] == "Save duration P50 / P95 / P99")
    exprs = [t["expr"] for t in panel["targets"]]
    for quantile in ("0.5", "0.95", "0.99"):
        assert any(e.startswith(f"histogram_quantile({quantile},") for e in exprs), quantile
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["unit"] == "s"
    steps = [s["value"] for s in defaults["thresholds"]["steps"] if s["value"] is not None]
    assert {0.5, 1} <= set(steps), steps
    assert defaults["custom"]["thresholdsStyle"]["mode"] != "off", "thresholds must be drawn"


def _as_promql(expr: str) -> str:
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    leftover = re.findall(r"\$\{?\w+", expr)
    assert not leftover, f"unknown dashboard variables {leftover} in {expr}"
    return expr


def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    # promtool has no offline "check expression"; recording rules get the same parser.
    rules = [
        {
            "record": f"dashboard:panel_{panel['id']}:{target['refId']}",
            "expr": _as_promql(target["expr"]),
        }
        for panel, target in _targets(dashboard)
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_promtool_ok("check", "rules", str(path))
