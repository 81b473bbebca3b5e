"""Helpers for the operator-artefact tests: paths, promtool, exported metric names, Markdown."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OPS = REPO / "ops"
DOCS = REPO / "docs"
ALERTS = OPS / "prometheus" / "alerts.yml"
ALERTS_TEST = OPS / "prometheus" / "alerts_test.yml"
PROMETHEUS_CONFIG = OPS / "prometheus" / "prometheus.yml"
DASHBOARD = OPS / "grafana" / "tripquote-dashboard.json"
RUNBOOK = DOCS / "runbook.md"
ERRORS_DOC = DOCS / "errors.md"
ROLLBACK_DOC = DOCS / "rollback.md"
MIGRATIONS = REPO / "src" / "tripquote" / "migrations" / "versions"

# BRIEF.md, "Interface details" -> "Metric names": base names, counters with ``_total``.
# Used only while tripquote.observability.metrics does not expose EXPORTED_METRIC_NAMES.
BRIEF_METRIC_NAMES: frozenset[str] = frozenset(
    {
        "tripquote_operations_total",
        "tripquote_operation_duration_seconds",
        "tripquote_db_retries_total",
        "tripquote_db_rollbacks_total",
        "tripquote_version_conflicts_total",
        "tripquote_alerts_total",
        "tripquote_oprecords_dropped_total",
    }
)
# BRIEF.md: "histogram, buckets around 0.5 s and 1 s"; the issue fixes these boundaries.
BRIEF_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
)

SAVE_OPERATIONS = frozenset(
    {"quote.create", "quote.update", "quote.delete", "quote.send", "quote.accept", "quote.reject"}
    | {"proposal.accept", "proposal.decline"}  # the client's answers: saves of the quote
)

METRIC_NAME = re.compile(r"\btripquote_[a-z_]+")


def _metrics_module() -> ModuleType | None:
    """tripquote.observability.metrics when it exists (import errors are real failures)."""
    if importlib.util.find_spec("tripquote.observability") is None:
        return None
    if importlib.util.find_spec("tripquote.observability.metrics") is None:
        return None
    return importlib.import_module("tripquote.observability.metrics")


def exported_metric_names() -> frozenset[str]:
    """Base names of the exported metrics: the app's own list when it has one, else the BRIEF's."""
    module = _metrics_module()
    names = getattr(module, "EXPORTED_METRIC_NAMES", None) if module else None
    return frozenset(names) if names is not None else BRIEF_METRIC_NAMES


def duration_buckets() -> tuple[float, ...]:
    """Upper bounds of tripquote_operation_duration_seconds (the app's, else the BRIEF's)."""
    module = _metrics_module()
    buckets = getattr(module, "DURATION_BUCKETS", None) if module else None
    return tuple(float(b) for b in buckets) if buckets is not None else BRIEF_DURATION_BUCKETS


def allowed_series_names(bases: frozenset[str]) -> frozenset[str]:
    """Every series name prometheus-client derives from the base names.

    A counter ``x_total`` also has ``x_created``; a histogram ``x`` has ``x_bucket``,
    ``x_sum``, ``x_count`` and ``x_created``.
    """
    allowed: set[str] = set()
    for base in bases:
        allowed.add(base)
        if base.endswith("_total"):
            allowed.add(base.removesuffix("_total") + "_created")
        else:
            allowed.update(base + suffix for suffix in ("_bucket", "_sum", "_count", "_created"))
    return frozenset(allowed)


def metric_names_in(text: str) -> set[str]:
    """Every ``tripquote_…`` metric name mentioned in a PromQL expression or series selector."""
    return set(METRIC_NAME.findall(text))


# --- promtool ---------------------------------------------------------------------------------


def in_ci() -> bool:
    """True when the CI environment variable is set (to anything but 0, false, no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_promtool() -> str:
    """Path of promtool; fails the test when CI is set and promtool is missing, else skips."""
    path = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if path:
        return path
    reason = (
        "promtool not found: install it (Debian/Ubuntu: apt-get install prometheus) "
        "or set PROMTOOL=/path/to/promtool"
    )
    if in_ci():
        pytest.fail(f"{reason}; it is required when CI is set")
    pytest.skip(reason)


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool with ``args`` from the repository root; the result, whatever its code."""
    return subprocess.run(
        [require_promtool(), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_promtool_ok(*args: str) -> None:
    """Run promtool and fail with its whole output unless it exits 0."""
    result = run_promtool(*args)
    assert result.returncode == 0, (
        f"promtool {' '.join(args)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


# --- YAML / rules -----------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yml, in file order."""
    groups = load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# --- Markdown ---------------------------------------------------------------------------------


def markdown_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    out: list[tuple[int, str]] = []
    fenced = False
    for number, line in enumerate(text.splitlines()):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> list[tuple[int, int, str]]:
    """(level, line number, title) of every ATX heading outside code blocks."""
    found: list[tuple[int, int, str]] = []
    for number, line in markdown_lines(text):
        match = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if match:
            found.append((len(match.group(1)), number, match.group(2)))
    return found


def anchors(text: str) -> set[str]:
    """Every anchor a link can target: heading slugs (deduplicated GitHub-style) and HTML ids."""
    seen: dict[str, int] = {}
    result: set[str] = set()
    for _, _, title in headings(text):
        slug = github_slug(title)
        if slug in seen:
            seen[slug] += 1
            result.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            result.add(slug)
    result.update(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    return result


def section(text: str, title: str) -> str:
    """The body of the section titled ``title``, up to the next heading of its level or higher."""
    lines = text.splitlines()
    found = headings(text)
    for index, (level, number, heading) in enumerate(found):
        if heading == title:
            end = len(lines)
            for next_level, next_number, _ in found[index + 1 :]:
                if next_level <= level:
                    end = next_number
                    break
            return "\n".join(lines[number + 1 : end])
    raise AssertionError(f"no section titled {title!r}")


def split_table_row(line: str) -> list[str]:
    """The cells of one Markdown table row (``\\|`` is a literal pipe inside a cell)."""
    body = line.strip()
    body = body.removeprefix("|").removesuffix("|")
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", body)]


def table_after(text: str, first_header: str) -> list[dict[str, str]]:
    """Rows (header -> cell) of the first table whose first header cell is ``first_header``."""
    lines = [line for _, line in markdown_lines(text)]
    for index, line in enumerate(lines):
        if line.startswith("|") and split_table_row(line)[0] == first_header:
            header = split_table_row(line)
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                cells = split_table_row(row)
                assert len(cells) == len(header), f"table row has {len(cells)} cells: {row}"
                rows.append(dict(zip(header, cells, strict=True)))
            return rows
    raise AssertionError(f"no table with first column {first_header!r}")
