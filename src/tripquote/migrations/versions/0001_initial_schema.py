"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-29 14:58:43.448633
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tripquote.db.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agencies",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("created_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agencies")),
    )
    op.create_table(
        "operation_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("recorded_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=False),
        sa.Column("operation", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=True),
        sa.Column("quote_id", sa.String(length=36), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operation_records")),
    )
    with op.batch_alter_table("operation_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operation_records_recorded_at"), ["recorded_at"], unique=False
        )

    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=16), server_default="agent", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('agent', 'admin')", name=op.f("ck_agents_role")),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_agents_agency_id_agencies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("email", name=op.f("uq_agents_email")),
    )
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agents_agency_id"), ["agency_id"], unique=False)

    op.create_table(
        "clients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("created_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_clients_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_clients_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
    )
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.create_index(
            "ix_clients_agency_id_created_at", ["agency_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_clients_agent_id_created_at", ["agent_id", "created_at"], unique=False
        )

    op.create_table(
        "quotes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agency_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("trip_name", sa.String(length=200), nullable=False),
        sa.Column("destination", sa.String(length=200), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=False),
        sa.Column("travelers", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "markup_percent", tripquote.db.types.Percent(precision=5, scale=2), nullable=False
        ),
        sa.Column("discount", tripquote.db.types.Money(precision=14, scale=2), nullable=False),
        sa.Column("expires_in_days", sa.Integer(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("subtotal", tripquote.db.types.Money(precision=14, scale=2), nullable=False),
        sa.Column("markup_amount", tripquote.db.types.Money(precision=14, scale=2), nullable=False),
        sa.Column("total", tripquote.db.types.Money(precision=14, scale=2), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_modified_by", sa.String(length=36), nullable=False),
        sa.Column(
            "last_modified_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("sent_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('DRAFT', 'SENT', 'ACCEPTED', 'REJECTED', 'EXPIRED', 'CANCELLED')",
            name=op.f("ck_quotes_status"),
        ),
        sa.CheckConstraint("start_date < end_date", name=op.f("ck_quotes_date_order")),
        sa.CheckConstraint("travelers BETWEEN 1 AND 50", name=op.f("ck_quotes_travelers_range")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_quotes_version_positive")),
        sa.ForeignKeyConstraint(
            ["agency_id"], ["agencies.id"], name=op.f("fk_quotes_agency_id_agencies")
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_quotes_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_quotes_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quotes")),
    )
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_quotes_agency_id_last_modified_at_id",
            ["agency_id", "last_modified_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_quotes_agent_id_last_modified_at_id",
            ["agent_id", "last_modified_at", "id"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_quotes_client_id"), ["client_id"], unique=False)
        batch_op.create_index("ix_quotes_status_expires_at", ["status", "expires_at"], unique=False)

    op.create_table(
        "quote_items",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("quote_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", tripquote.db.types.Money(precision=14, scale=2), nullable=False),
        sa.Column("line_total", tripquote.db.types.Money(precision=14, scale=2), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "type IN ('FLIGHT', 'HOTEL', 'ACTIVITY', 'TRANSFER', 'OTHER')",
            name=op.f("ck_quote_items_type"),
        ),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_quote_items_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["quote_id"],
            ["quotes.id"],
            name=op.f("fk_quote_items_quote_id_quotes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quote_items")),
        sa.UniqueConstraint("quote_id", "position", name=op.f("uq_quote_items_quote_id_position")),
    )
    op.create_table(
        "quote_revisions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("quote_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=36), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["quote_id"],
            ["quotes.id"],
            name=op.f("fk_quote_revisions_quote_id_quotes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quote_revisions")),
        sa.UniqueConstraint(
            "quote_id", "version", name=op.f("uq_quote_revisions_quote_id_version")
        ),
    )


def downgrade() -> None:
    op.drop_table("quote_revisions")
    op.drop_table("quote_items")
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.drop_index("ix_quotes_status_expires_at")
        batch_op.drop_index(batch_op.f("ix_quotes_client_id"))
        batch_op.drop_index("ix_quotes_agent_id_last_modified_at_id")
        batch_op.drop_index("ix_quotes_agency_id_last_modified_at_id")

    op.drop_table("quotes")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_index("ix_clients_agent_id_created_at")
        batch_op.drop_index("ix_clients_agency_id_created_at")

    op.drop_table("clients")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agents_agency_id"))

    op.drop_table("agents")
    with op.batch_alter_table("operation_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operation_records_recorded_at"))

    op.drop_table("operation_records")
    op.drop_table("agencies")
