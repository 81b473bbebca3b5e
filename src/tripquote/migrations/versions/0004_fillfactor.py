"""Free space in every page of quotes and quote_items (PostgreSQL fillfactor 80)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

A save rewrites the quote row and, by position, its item rows without changing any indexed
column. PostgreSQL can then keep the new row version in the same page and skip every index
(a heap-only tuple, HOT), but only if the page has room; at the default fillfactor of 100 it
never has, so each save also inserted into the quote's six indexes and two per item. At 80,
new pages keep a fifth free for the next versions. Existing pages get the room once rewritten
(``VACUUM FULL quotes, quote_items`` in a maintenance window).
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("quotes", "quote_items")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 80)")


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
