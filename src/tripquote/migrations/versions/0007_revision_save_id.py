"""Revisions carry the id of the save that wrote them (quote_revisions.save_id)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05

A save whose COMMIT was sent but not answered (the connection lost meanwhile: a failover, a
backend terminated while it waited for the synchronous standby) has an unknown outcome. Each
save now writes a fresh id with its revision row(s), so the service can look for it after
reconnecting and answer the truth (``db/transaction.py``). Unique per quote (the expiry sweep
writes one save id on each revision of its batch) and indexed by it first. Rows written before
0007 have none (NULL): no save is ever in doubt about them.

The index is built in the upgrade's transaction: on a large ``quote_revisions`` it holds a lock
that blocks writes of revisions while it builds (docs/rollback.md).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("quote_revisions", sa.Column("save_id", sa.String(36), nullable=True))
    op.create_index(
        "uq_quote_revisions_save_id_quote_id",
        "quote_revisions",
        ["save_id", "quote_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_quote_revisions_save_id_quote_id", "quote_revisions")
    op.drop_column("quote_revisions", "save_id")
