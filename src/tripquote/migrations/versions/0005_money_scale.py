"""Money columns hold 4 decimal places (PostgreSQL NUMERIC(18, 4), was NUMERIC(14, 2))

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Amounts are kept in their currency's ISO 4217 minor units: 0 (JPY), 2 (EUR), 3 (KWD, BHD, …)
or 4 (CLF). NUMERIC(14, 2) rounded a 3- or 4-decimal amount to 2 places on write, silently, so
a quote in KWD read back with other totals than it was saved with (SQLite, which stores money
as text, kept them). NUMERIC(18, 4) holds every amount the pricing allows (below 10^12) in
every currency exactly. PostgreSQL rewrites both tables (a lock on each while it runs); SQLite
has nothing to change.

Quotes already saved in such a currency lost those digits, but their revision snapshots (the
API form, written from the exact amounts) kept them: the upgrade restores each amount of a
quote from the snapshot of its current version, where rounding that snapshot amount to 2
places gives the stored one, and logs how many quotes it restored.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FINER_CURRENCIES = ("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND", "CLF", "UYW")
"""ISO 4217 currencies with 3 or 4 minor units (quotes/pricing.py ``MINOR_UNITS``)."""

COLUMNS = {
    "quotes": ("discount", "subtotal", "markup_amount", "total"),
    "quote_items": ("unit_price", "line_total"),
}


def upgrade() -> None:
    _alter("numeric(18, 4)")
    if op.get_bind().dialect.name == "postgresql":
        _restore_from_snapshots()


def _restore_from_snapshots() -> None:
    currencies = ", ".join(f"'{code}'" for code in FINER_CURRENCIES)
    current = (
        "SELECT q.id, r.snapshot FROM quotes q"  # noqa: S608 (constants)
        " JOIN quote_revisions r ON r.quote_id = q.id AND r.version = q.version"
        f" WHERE q.currency IN ({currencies})"
    )
    restored = []
    for table, key, amounts in (
        (
            "quotes",
            "t.id",
            {
                "discount": "s.snapshot -> 'pricing' ->> 'discount'",
                "subtotal": "s.snapshot -> 'pricing' ->> 'subtotal'",
                "markup_amount": "s.snapshot -> 'pricing' ->> 'markupAmount'",
                "total": "s.snapshot -> 'pricing' ->> 'total'",
            },
        ),
        (
            "quote_items",
            "t.quote_id",
            {
                "unit_price": "s.snapshot -> 'items' -> t.position ->> 'unitPrice'",
                "line_total": "s.snapshot -> 'items' -> t.position ->> 'lineTotal'",
            },
        ),
    ):
        # An amount is restored only where the stored one is the snapshot's rounded to 2 places.
        rounded = {c: f"round(({v})::numeric, 2) = t.{c}" for c, v in amounts.items()}
        sets = ", ".join(
            f"{c} = CASE WHEN {rounded[c]} THEN ({v})::numeric ELSE t.{c} END"
            for c, v in amounts.items()
        )
        differs = " OR ".join(
            f"({rounded[c]} AND ({v})::numeric <> t.{c})" for c, v in amounts.items()
        )
        result = op.get_bind().execute(
            sa.text(
                f"UPDATE {table} AS t SET {sets} FROM ({current}) AS s"  # noqa: S608 (constants)
                f" WHERE {key} = s.id AND ({differs})"
            )
        )
        restored.append(result.rowcount)
    logging.getLogger("alembic.runtime.migration").info(
        "0005: restored the exact amounts of %d quotes and %d items (3- or 4-decimal "
        "currencies) from their revision snapshots",
        *restored,
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in COLUMNS.items():
            finer = " OR ".join(f"{c} <> round({c}, 2)" for c in columns)
            query = f"SELECT EXISTS (SELECT 1 FROM {table} WHERE {finer})"  # noqa: S608 (constants)
            if op.get_bind().execute(sa.text(query)).scalar():
                raise RuntimeError(
                    f"{table} holds amounts with more than 2 decimal places (3- or 4-decimal "
                    "currencies): NUMERIC(14, 2) would round them. Convert or remove those "
                    "quotes first; nothing was changed."
                )
    _alter("numeric(14, 2)")


def _alter(numeric: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        # One statement per table: one rewrite, whatever the number of columns.
        changes = ", ".join(f"ALTER COLUMN {column} TYPE {numeric}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
