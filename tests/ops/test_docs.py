"""The operator documents stay true: docs/errors.md matches errors.py, the runbook covers every
CRITICAL code, links resolve, and docs/rollback.md lists every migration."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.ops.support import (
    DOCS,
    ERRORS_DOC,
    MIGRATIONS,
    ROLLBACK_DOC,
    RUNBOOK,
    anchors,
    headings,
    markdown_lines,
    section,
    table_after,
)
from tripquote.errors import ERROR_CLASSES, Severity, TripquoteError

# --- docs/errors.md <-> src/tripquote/errors.py -----------------------------------------------


def _error_rows() -> dict[str, dict[str, str]]:
    rows = table_after(ERRORS_DOC.read_text(encoding="utf-8"), "Code")
    return {row["Code"].strip("`"): row for row in rows}


def _first_int(cell: str) -> int | None:
    match = re.search(r"\d+", cell)
    return int(match.group(0)) if match else None


def test_error_table_lists_every_code_once_in_order() -> None:
    rows = table_after(ERRORS_DOC.read_text(encoding="utf-8"), "Code")
    documented = [row["Code"].strip("`") for row in rows]
    assert documented == [cls.code for cls in ERROR_CLASSES]


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda cls: cls.code)
def test_error_row_matches_the_class(cls: type[TripquoteError]) -> None:
    row = _error_rows().get(cls.code)
    assert row is not None, f"{cls.code} is missing from docs/errors.md"
    assert _first_int(row["HTTP"]) == cls.http_status, row["HTTP"]
    assert row["Severity"] == cls.severity.value
    assert row["Retryable"] == ("yes" if cls.retryable else "no")
    assert row["Caused by"] == cls.caused_by
    if cls.retry_after_seconds is None:
        assert not re.search(r"\d", row["Retry-After"]), (
            f"{cls.code} sets no fixed Retry-After; the table says {row['Retry-After']!r}"
        )
    else:
        assert _first_int(row["Retry-After"]) == cls.retry_after_seconds, row["Retry-After"]
    for header in cls().headers:
        if header != "Retry-After":
            assert header.lower() in " ".join(row.values()).lower(), (
                f"{cls.code} sends {header}; its row does not say so"
            )
    assert row["When it happens"] and row["What the client should do"]


def test_envelope_fields_are_documented() -> None:
    text = ERRORS_DOC.read_text(encoding="utf-8")
    rows = table_after(text, "field")
    fields = {row["field"].strip("`") for row in rows}
    assert fields == {
        "success",
        "errorCode",
        "message",
        "severity",
        "retryable",
        "correlationId",
        "details",
        "timestamp",
    }


# --- docs/runbook.md --------------------------------------------------------------------------


def _error_codes_part() -> str:
    return section(RUNBOOK.read_text(encoding="utf-8"), "Error codes")


@pytest.mark.parametrize(
    "cls", [c for c in ERROR_CLASSES if c.severity == Severity.CRITICAL], ids=lambda c: c.code
)
def test_critical_code_has_a_runbook_section_with_a_drill(cls: type[TripquoteError]) -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    assert cls.code.lower() in anchors(text), f"no runbook section ### {cls.code}"
    body = section(text, cls.code)
    assert "Drill" in body, f"runbook section {cls.code} has no drill"
    assert "```" in body, f"runbook section {cls.code} has no commands"


def test_runbook_mentions_every_error_code() -> None:
    part = _error_codes_part()
    missing = [cls.code for cls in ERROR_CLASSES if cls.code not in part]
    assert not missing, f"the runbook's Error codes part does not cover {missing}"


def test_runbook_names_the_operator_tools() -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    for needle in (
        "tripquote ops summary --since",
        "/api/ops/summary",
        "/health/ready",
        "tripquote db current",
        "correlation_id",
        "error_code",
    ):
        assert needle in text, needle


# --- docs/rollback.md -------------------------------------------------------------------------


def _revisions() -> list[str]:
    found = []
    for path in sorted(MIGRATIONS.glob("*.py")):
        match = re.search(r"^revision\s*(?::[^=]+)?=\s*['\"]([^'\"]+)['\"]", path.read_text(), re.M)
        if match:
            found.append(match.group(1))
    return found


def test_rollback_lists_what_every_migration_downgrade_loses() -> None:
    revisions = _revisions()
    assert revisions, "no migrations found"
    rows = table_after(ROLLBACK_DOC.read_text(encoding="utf-8"), "revision")
    documented = {row["revision"].strip("`") for row in rows}
    missing = [r for r in revisions if r not in documented]
    assert not missing, f"docs/rollback.md does not say what downgrading {missing} loses"


def test_rollback_procedure_names_the_commands() -> None:
    text = ROLLBACK_DOC.read_text(encoding="utf-8")
    for needle in ("tripquote db current", "tripquote db downgrade", "pg_dump", "Code first"):
        assert needle in text, needle


# --- links between the documents ----------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_relative_links_resolve(path: Path) -> None:
    body = "\n".join(line for _, line in markdown_lines(path.read_text(encoding="utf-8")))
    for target in re.findall(r"\]\(([^)\s]+)\)", body):
        if re.match(r"[a-z]+:", target):
            continue  # an external URL
        file_part, _, anchor = target.partition("#")
        linked = path.parent / file_part if file_part else path
        assert linked.exists(), f"{path.name}: broken link {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked.read_text(encoding="utf-8")), (
                f"{path.name}: no anchor #{anchor} in {linked.name}"
            )


def test_headings_are_unique_in_the_runbook() -> None:
    titles = [title for _, _, title in headings(RUNBOOK.read_text(encoding="utf-8"))]
    duplicates = {t for t in titles if titles.count(t) > 1}
    assert not duplicates, duplicates
