"""Webhook deliveries fanned out by the workers after the commit, not by the save's statement

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

``events.xact``: the id of the transaction that wrote the event (the column's default,
``pg_current_xact_id()``), with an index (an increasing key: each save adds its entry at the
right end), and an index on ``events (quote_id, version)`` (the fan-out takes a quote's earlier
versions along; 0012 dropped the unique key that served it).
``webhook_subscriptions.fanned_out_to``: the subscription's high-water mark; every event with
a lower ``xact`` has been considered for it (default: the first transaction id not yet
assigned when the row is written, so a new subscription gets the events of changes made after
it). The workers' ``FAN_OUT`` (``webhooks/sql.py``) writes the
deliveries.

Upgrade: existing events keep a NULL ``xact`` (their deliveries were written by their saves;
no rewrite of the table) and existing subscriptions get a mark above every transaction id
assigned so far. The index on ``events.xact`` is built in the upgrade's transaction: saves
wait while it builds on a large table. A previous release still running writes its
deliveries in its saves as before; the workers' fan-out then finds them written
(``ON CONFLICT DO NOTHING``). Downgrade: the events not yet fanned
out (the table locked first, so none is in flight) get their deliveries as the previous
release's saves would have written them, then the columns go.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

XACT = "pg_current_xact_id()::text::bigint"
NEXT_XACT = "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Added without a default, then given one: no rewrite of the table, no long lock. The
    # events written before stay NULL: their deliveries were written by their saves.
    op.add_column("events", sa.Column("xact", sa.BigInteger(), nullable=True))
    op.alter_column("events", "xact", server_default=sa.text(f"({XACT})"))
    op.create_index("ix_events_xact", "events", ["xact"])
    op.create_index("ix_events_quote_id_version", "events", ["quote_id", "version"])
    op.add_column(
        "webhook_subscriptions",
        sa.Column(
            "fanned_out_to",
            sa.BigInteger(),
            nullable=False,
            server_default=sa.text(f"({NEXT_XACT})"),
        ),
    )


def downgrade() -> None:
    op.execute("LOCK TABLE events IN EXCLUSIVE MODE")
    op.execute(
        """
INSERT INTO webhook_deliveries (event_id, subscription_id, quote_id, version, status,
                                next_attempt_at, created_at)
SELECT e.id, w.id, e.quote_id, e.version, 'pending', now(), e.occurred_at
  FROM webhook_subscriptions w
  JOIN events e ON e.agency_id = w.agency_id AND e.xact >= w.fanned_out_to
               AND e.type = ANY(w.event_types)
 WHERE w.enabled
 ORDER BY w.id, e.quote_id, e.version, e.xact
    ON CONFLICT (event_id, subscription_id, created_at) DO NOTHING
"""
    )
    op.drop_column("webhook_subscriptions", "fanned_out_to")
    op.drop_index("ix_events_quote_id_version", table_name="events")
    op.drop_index("ix_events_xact", table_name="events")
    op.drop_column("events", "xact")
