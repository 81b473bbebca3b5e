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
Downgrade: rows without an ``id`` get one (an item its API id unless a row already holds that
``id``, else a new UUID; a revision a new UUID), then the ``id`` primary keys and the unique
keys come back. A row id is taken when an item written before migration 0008 (its API id: its
row id) is moved to another position: its new row's ``item_id`` is the old row's ``id``, which
that row keeps at its own position.
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
    # An API id another row holds as its id (a pre-0008 item moved since): a new UUID (one
    # hash join, as ``id`` has no index here); then every other row its API id (``KEYS``).
    op.execute(
        """UPDATE quote_items SET id = gen_random_uuid()::text
            WHERE id IS NULL
              AND item_id IN (SELECT id FROM quote_items WHERE id IS NOT NULL)"""
    )
    for table, (within, restored_id) in KEYS.items():
        op.execute(f"UPDATE {table} SET id = {restored_id} WHERE id IS NULL")  # noqa: S608 (constants)
        op.execute(
            f"""ALTER TABLE {table}
                  DROP CONSTRAINT pk_{table},
                  ALTER COLUMN id SET NOT NULL,
                  ADD CONSTRAINT pk_{table} PRIMARY KEY (id),
                  ADD CONSTRAINT uq_{table}_quote_id_{within} UNIQUE (quote_id, {within})"""
        )
