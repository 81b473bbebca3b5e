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


KEYS = {
    "quote_revisions": ("version", "gen_random_uuid()::text"),
    "quote_items": ("position", "item_id"),
}
"""Each table: the column that keys a row within its quote, and the ``id`` a row written
without one gets back on downgrade."""


def upgrade() -> None:
    for table, (within, _) in KEYS.items():
        op.execute(
            f"""ALTER TABLE {table}
                  DROP CONSTRAINT pk_{table},
                  DROP CONSTRAINT uq_{table}_quote_id_{within},
                  ALTER COLUMN id DROP NOT NULL,
                  ADD CONSTRAINT pk_{table} PRIMARY KEY (quote_id, {within})"""
        )


def downgrade() -> None:
    for table, (within, restored_id) in KEYS.items():
        op.execute(f"UPDATE {table} SET id = {restored_id} WHERE id IS NULL")  # noqa: S608 (constants)
        op.execute(
            f"""ALTER TABLE {table}
                  DROP CONSTRAINT pk_{table},
                  ALTER COLUMN id SET NOT NULL,
                  ADD CONSTRAINT pk_{table} PRIMARY KEY (id),
                  ADD CONSTRAINT uq_{table}_quote_id_{within} UNIQUE (quote_id, {within})"""
        )
