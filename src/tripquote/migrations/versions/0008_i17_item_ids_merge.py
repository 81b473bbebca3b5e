"""Items keep their id across edits; a merged save's revision says what it merged

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

Issue 17. An edit now writes a quote's items by their id (an item keeps its id from version
to version, so a stale save can be merged item by item): moving items swaps positions inside
one statement, so ``uq_quote_items_quote_id_position`` becomes DEFERRABLE INITIALLY IMMEDIATE
(checked at the end of each statement, not per row). ``quote_revisions.merge`` holds, for a
revision written by a merged save, its base version, the version it was applied onto and the
fields and items it took from each side (JSON; NULL for every other revision).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_UNIQUE = "uq_quote_items_quote_id_position"


def upgrade() -> None:
    op.drop_constraint(_UNIQUE, "quote_items", type_="unique")
    op.create_unique_constraint(
        _UNIQUE, "quote_items", ["quote_id", "position"], deferrable=True, initially="IMMEDIATE"
    )
    op.add_column("quote_revisions", sa.Column("merge", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("quote_revisions", "merge")
    op.drop_constraint(_UNIQUE, "quote_items", type_="unique")
    op.create_unique_constraint(_UNIQUE, "quote_items", ["quote_id", "position"])
