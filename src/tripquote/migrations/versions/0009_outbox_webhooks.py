"""The transactional outbox (events) and webhook subscriptions and deliveries

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05

``events``: one row per committed quote change, written by the change's own statement
(``quotes/sql.py`` ``revision``), so a rolled-back save never has one; its quote snapshot is
the revision's of the same (quote, version), read by the worker, not copied.
``webhook_subscriptions``: an agency's endpoints, with the signing secret (Standard Webhooks
``whsec_``) and, during a rotation, the previous one until ``previous_secret_expires_at``.
``webhook_deliveries``: one row per (event, subscription) whose types match, fanned out by the
same statement; the delivery worker claims them with ``FOR UPDATE SKIP LOCKED``
(``webhooks/sql.py``).

New tables only: the downgrade drops them (their events and deliveries with them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tripquote.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_AT = tripquote.db.types.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at", _AT(), nullable=False),
        sa.Column("agency_id", sa.String(36), sa.ForeignKey("agencies.id"), nullable=False),
        sa.Column("quote_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(36), nullable=False),
        sa.Column("correlation_id", sa.String(128), nullable=False),
        # One event of each type per version: its change's, and the first view of its link.
        sa.UniqueConstraint(
            "quote_id", "version", "type", name=op.f("uq_events_quote_id_version_type")
        ),
    )
    op.create_index("ix_events_occurred_at", "events", ["occurred_at"])
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("agency_id", sa.String(36), sa.ForeignKey("agencies.id"), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.String(32)), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(32), nullable=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("previous_secret", sa.String(128), nullable=True),
        sa.Column("previous_secret_expires_at", _AT(), nullable=True),
        sa.Column("created_at", _AT(), nullable=False),
        sa.Column("updated_at", _AT(), nullable=False),
    )
    op.create_index(
        "ix_webhook_subscriptions_agency_id", "webhook_subscriptions", ["agency_id", "created_at"]
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "event_id",
            sa.String(40),
            sa.ForeignKey("events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "subscription_id",
            sa.String(36),
            sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("quote_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", _AT(), nullable=False),
        sa.Column("created_at", _AT(), nullable=False),
        sa.Column("last_attempt_at", _AT(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_duration_ms", sa.Float(), nullable=True),
        sa.Column("last_error", sa.String(64), nullable=True),
        sa.Column("delivered_at", _AT(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'delivered', 'dead')", name=op.f("ck_webhook_deliveries_status")
        ),
        sa.UniqueConstraint(
            "event_id",
            "subscription_id",
            name=op.f("uq_webhook_deliveries_event_id_subscription_id"),
        ),
    )
    # The worker's claim: due pending rows, and a quote's earlier pending versions.
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["next_attempt_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_pending_order",
        "webhook_deliveries",
        ["subscription_id", "quote_id", "version"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_subscription_id_id", "webhook_deliveries", ["subscription_id", "id"]
    )
    op.create_index(
        "ix_webhook_deliveries_delivered_at",
        "webhook_deliveries",
        ["delivered_at"],
        postgresql_where=sa.text("status = 'delivered'"),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.drop_table("events")
