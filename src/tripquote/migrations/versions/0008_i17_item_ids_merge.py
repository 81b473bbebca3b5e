"""Items keep their id across edits; a merged save's revision says what it merged

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

Issue 17. ``quote_items.item_id`` is an item's id in the API, kept from version to version
(an edit still writes the rows by position: a moved item's id moves to its new position's
row). NULL on the rows written before: their id in the API is then the row's id, as before
(``sql.item_id``), so nothing is backfilled and the previous release runs on this schema
unchanged (its edits write no ``item_id``: an item it rewrites in place keeps its id, one it
adds takes the row's). ``quote_revisions.merge`` holds, for a revision written by a merged save
(``Prefer: merge``), its base version, the version it was applied onto and the fields and
items it took from each side (JSON; NULL for every other revision). Both columns are added
without a default: no table rewrite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("quote_items", sa.Column("item_id", sa.String(36), nullable=True))
    op.add_column("quote_revisions", sa.Column("merge", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("quote_revisions", "merge")
    op.drop_column("quote_items", "item_id")
