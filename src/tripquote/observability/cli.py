"""``tripquote ops …``: operational figures from the ``operation_records`` of every process."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tripquote.observability.oprecords import summary_from_records

if TYPE_CHECKING:
    from tripquote.config import Settings

ops_app = typer.Typer(help="Operational figures (all processes, from the database).")

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@ops_app.callback()
def _ops() -> None:
    """Operational figures (all processes, from the database)."""


def parse_since(text: str) -> timedelta:
    """``30m`` / ``1h`` / ``2d`` / ``90s`` as a timedelta; raises typer.BadParameter otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise typer.BadParameter("use a positive number and a unit: 90s, 30m, 1h, 2d")
    try:
        since = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        since = _FURTHEST + _FURTHEST
    if since > _FURTHEST:
        raise typer.BadParameter("at most 36500d (100 years) back")
    return since


_FURTHEST = timedelta(days=36500)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as plain-text tables: operations, saves, rates (for a terminal)."""
    window = summary["window"]
    lines = [
        f"operations {window['size']}  since {window['since']}  until {window['until']}",
        "",
        f"{'operation':<16}{'count':>8}{'avg ms':>11}{'p50 ms':>11}"
        f"{'p95 ms':>11}{'p99 ms':>11}{'max ms':>11}",
    ]
    for name, stats in summary["operations"].items():
        lines.append(
            f"{name:<16}{stats['count']:>8}"
            + "".join(
                f"{_cell(stats[k]):>11}" for k in ("avgMs", "p50Ms", "p95Ms", "p99Ms", "maxMs")
            )
        )
    saves = summary["saves"]
    lines += [
        "",
        f"saves {saves['count']}  avg {_cell(saves['avgMs'])} ms  "
        f"p50 {_cell(saves['p50Ms'])} ms  p95 {_cell(saves['p95Ms'])} ms  "
        f"p99 {_cell(saves['p99Ms'])} ms",
        f"error rate {summary['errorRate']:.4f}  conflict rate {summary['conflictRate']:.4f}  "
        f"rollback rate {summary['rollbackRate']:.4f}",
    ]
    for code, rate in summary["errorRateByCode"].items():
        lines.append(f"  {code:<32}{rate:.4f}")
    return "\n".join(lines)


async def _summary(settings: Settings, since: datetime) -> dict[str, Any]:
    from tripquote.db.engine import create_engine

    engine = create_engine(settings)
    try:
        result: dict[str, Any] = await summary_from_records(engine, since)
    finally:
        await engine.dispose()
    return result


@ops_app.command("summary")
def summary_command(
    since: Annotated[str, typer.Option(help="How far back: 90s, 30m, 1h, 2d.")] = "1h",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Save latency and error, conflict and rollback rates across all processes since --since."""
    from tripquote.cli import cli_settings  # here: tripquote.cli imports this module

    start = datetime.now(UTC) - parse_since(since)
    settings = cli_settings()
    result = asyncio.run(_summary(settings, start))
    typer.echo(json.dumps(result, indent=2) if as_json else format_summary(result))
