"""The Prometheus artefacts are valid, unit-tested, use only exported metrics, and link to the
runbook: ops/prometheus/{alerts.yml, alerts_test.yml, prometheus.yml}."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import pytest

from tests.ops.support import (
    ALERTS,
    ALERTS_TEST,
    PROMETHEUS_CONFIG,
    RUNBOOK,
    SAVE_OPERATIONS,
    alert_rules,
    allowed_series_names,
    anchors,
    assert_promtool_ok,
    duration_buckets,
    exported_metric_names,
    load_yaml,
    metric_names_in,
    section,
)
from tripquote.errors import ERROR_CLASSES, Severity

SEVERITIES = {"critical", "warning", "info"}
RUNBOOK_PREFIX = "docs/runbook.md#"


# --- promtool ---------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    assert_promtool_ok("check", "rules", str(ALERTS))


def test_promtool_rule_unit_tests_pass() -> None:
    assert_promtool_ok("test", "rules", str(ALERTS_TEST))


def test_promtool_check_config() -> None:
    # Also loads and checks the rule files the config names (alerts.yml).
    assert_promtool_ok("check", "config", str(PROMETHEUS_CONFIG))


# --- alerts.yml -------------------------------------------------------------------------------


def _alert_ids() -> list[str]:
    return [rule["alert"] for rule in alert_rules()]


def test_alert_names_are_unique() -> None:
    names = _alert_ids()
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("rule", alert_rules(), ids=_alert_ids())
def test_alert_has_severity_and_annotations(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{rule['alert']}: missing {key}"


@pytest.mark.parametrize("rule", alert_rules(), ids=_alert_ids())
def test_alert_links_to_its_runbook_section(rule: dict[str, Any]) -> None:
    url = rule["annotations"]["runbook_url"]
    assert url.startswith(RUNBOOK_PREFIX), url
    anchor = url.removeprefix(RUNBOOK_PREFIX)
    text = RUNBOOK.read_text(encoding="utf-8")
    assert anchor in anchors(text), f"docs/runbook.md has no section for #{anchor}"
    assert anchor == rule["alert"].lower(), "the section is titled with the alert name"
    body = section(text, rule["alert"])
    for part in ("**Meaning.**", "**Confirm.**", "**Likely causes.**", "**What to do.**"):
        assert part in body, f"runbook section {rule['alert']} lacks {part}"


@pytest.mark.parametrize("rule", alert_rules(), ids=_alert_ids())
def test_alert_uses_only_exported_metrics(rule: dict[str, Any]) -> None:
    allowed = allowed_series_names(exported_metric_names())
    unknown = metric_names_in(rule["expr"]) - allowed
    assert not unknown, f"{rule['alert']} uses metrics the app does not export: {unknown}"


@pytest.mark.parametrize("rule", alert_rules(), ids=_alert_ids())
def test_ratios_are_guarded_against_zero_traffic(rule: dict[str, Any]) -> None:
    expr = " ".join(rule["expr"].split())
    for denominator in expr.split(" / ")[1:]:
        # The divisor is filtered to non-zero values: `/ (sum(rate(...)) > 0)`.
        assert re.match(r"\(sum\(rate\(.*?\)\) > 0\)", denominator), (
            f"{rule['alert']}: unguarded division: / {denominator[:80]}"
        )


def test_save_selector_names_exactly_the_save_operations() -> None:
    text = ALERTS.read_text(encoding="utf-8")
    selectors = set(re.findall(r'operation=~"([^"]+)"', text))
    assert selectors, "the rules select the save operations"
    for selector in selectors:
        match = re.fullmatch(r"quote\[\.\]\(([a-z|]+)\)\|proposal\[\.\]\(([a-z|]+)\)", selector)
        assert match, selector
        named = {f"quote.{verb}" for verb in match.group(1).split("|")}
        named |= {f"proposal.{verb}" for verb in match.group(2).split("|")}
        assert named == SAVE_OPERATIONS


def test_caller_critical_rule_names_exactly_the_codes_that_send_no_alert() -> None:
    # The app alerts each CRITICAL error the system caused; this rule covers the rest by rate.
    [rule] = [r for r in alert_rules() if r["alert"] == "TripquoteCallerCriticalErrorRateHigh"]
    selectors = set(re.findall(r'error_code=~"([^"]+)"', rule["expr"]))
    expected = {
        cls.code
        for cls in ERROR_CLASSES
        if cls.severity == Severity.CRITICAL and not cls.alerts_each()
    }
    assert [set(selector.split("|")) for selector in selectors] == [expected]


def test_latency_thresholds_are_histogram_bucket_boundaries() -> None:
    # histogram_quantile is exact at a bucket boundary and interpolated between them.
    buckets = duration_buckets()
    assert 0.5 in buckets
    assert 1.0 in buckets


# --- alerts_test.yml --------------------------------------------------------------------------


def _unit_tests() -> list[dict[str, Any]]:
    return list(load_yaml(ALERTS_TEST)["tests"])


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: dict[str, int] = defaultdict(int)
    silent: dict[str, int] = defaultdict(int)
    for group in _unit_tests():
        for case in group.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                firing[case["alertname"]] += 1
            else:
                silent[case["alertname"]] += 1
    for name in _alert_ids():
        assert firing[name], f"no promtool test makes {name} fire"
        assert silent[name], f"no promtool test checks that {name} stays silent"
    unknown = (set(firing) | set(silent)) - set(_alert_ids())
    assert not unknown, f"tests for alerts that do not exist: {unknown}"


def test_unit_test_series_are_exported_metrics() -> None:
    allowed = allowed_series_names(exported_metric_names()) | {"up"}
    for group in _unit_tests():
        for series in group.get("input_series", []):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", series["series"])
            assert name, series["series"]
            assert name.group(0) in allowed, f"unknown metric in a test series: {series}"


def test_unit_test_histograms_use_the_exported_buckets() -> None:
    expected = {repr(float(b)) for b in duration_buckets()} | {"+Inf"}
    for group in _unit_tests():
        les = {
            match.group(1)
            for series in group.get("input_series", [])
            if (match := re.search(r'le="([^"]+)"', series["series"]))
        }
        if les:
            assert les == expected, f"test buckets {sorted(les)} differ from {sorted(expected)}"


# --- prometheus.yml ---------------------------------------------------------------------------


def test_scrape_config_scrapes_the_service_and_loads_the_rules() -> None:
    config = load_yaml(PROMETHEUS_CONFIG)
    assert "alerts.yml" in config["rule_files"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # The rules select up{job="tripquote"}.
    job = jobs["tripquote"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    assert "localhost:8000" in targets
    assert 'up{job="tripquote"}' in ALERTS.read_text(encoding="utf-8")
