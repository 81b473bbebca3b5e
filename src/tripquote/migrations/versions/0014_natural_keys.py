"""Revisions and items keyed by their quote

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

``quote_revisions`` is keyed by ``(quote_id, version)`` and ``quote_items`` by
``(quote_id, position)``: the unique keys every statement already reads them by become their
primary keys, and the random ``id`` of each row loses its index (one index fewer to write per
revision and per item, and the one whose entries landed on random pages of an index as large
as the whole history). The ``id`` columns stay, nullable: this release leaves them NULL, a
previous release still running writes them, and items written before migration 0008 keep
theirs as their API id (``sql.item_id``).

Upgrade: each table's new primary key index is built in the upgrade's transaction, under its
``ACCESS EXCLUSIVE`` lock: saves wait while it builds (about a second per million rows here).
Downgrade: rows without an ``id`` get one (an item its API id, a revision a new UUID), then the
``id`` primary keys and the unique keys come back.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """ALTER TABLE quote_revisions
             DROP CONSTRAINT pk_quote_revisions,
             DROP CONSTRAINT uq_quote_revisions_quote_id_version,
             ALTER COLUMN id DROP NOT NULL,
             ADD CONSTRAINT pk_quote_revisions PRIMARY KEY (quote_id, version)"""
    )
    op.execute(
        """ALTER TABLE quote_items
             DROP CONSTRAINT pk_quote_items,
             DROP CONSTRAINT uq_quote_items_quote_id_position,
             ALTER COLUMN id DROP NOT NULL,
             ADD CONSTRAINT pk_quote_items PRIMARY KEY (quote_id, position)"""
    )


def downgrade() -> None:
    op.execute("UPDATE quote_items SET id = item_id WHERE id IS NULL")
    op.execute(
        """ALTER TABLE quote_items
             DROP CONSTRAINT pk_quote_items,
             ALTER COLUMN id SET NOT NULL,
             ADD CONSTRAINT pk_quote_items PRIMARY KEY (id),
             ADD CONSTRAINT uq_quote_items_quote_id_position UNIQUE (quote_id, position)"""
    )
    op.execute("UPDATE quote_revisions SET id = gen_random_uuid()::text WHERE id IS NULL")
    op.execute(
        """ALTER TABLE quote_revisions
             DROP CONSTRAINT pk_quote_revisions,
             ALTER COLUMN id SET NOT NULL,
             ADD CONSTRAINT pk_quote_revisions PRIMARY KEY (id),
             ADD CONSTRAINT uq_quote_revisions_quote_id_version UNIQUE (quote_id, version)"""
    )
