"""Money columns hold 4 decimal places (PostgreSQL NUMERIC(18, 4), was NUMERIC(14, 2))

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

Amounts are kept in their currency's ISO 4217 minor units: 0 (JPY), 2 (EUR), 3 (KWD, BHD, …)
or 4 (CLF). NUMERIC(14, 2) rounded a 3- or 4-decimal amount to 2 places on write, silently, so
a quote in KWD read back with other totals than it was saved with. NUMERIC(18, 4) holds every
amount the pricing allows (below 10^12) in every currency exactly. PostgreSQL rewrites both
tables (a lock on each while it runs).

Quotes saved in such a currency before 0005 lost those digits for good, and no revision
reliably keeps them (a transition's snapshot is taken from the rounded row, and a later edit
re-priced from it): the upgrade does not guess. docs/rollback.md says how to find them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = {
    "quotes": ("discount", "subtotal", "markup_amount", "total"),
    "quote_items": ("unit_price", "line_total"),
}


def upgrade() -> None:
    _alter("numeric(18, 4)")


def downgrade() -> None:
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
    for table, columns in COLUMNS.items():
        # One statement per table: one rewrite, whatever the number of columns.
        changes = ", ".join(f"ALTER COLUMN {column} TYPE {numeric}" for column in columns)
        op.execute(f"ALTER TABLE {table} {changes}")
