"""lifecycle: idempotency keys, list and quota indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tripquote.db.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("agent_id", sa.String(length=36), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", tripquote.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("response_headers", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "state IN ('in_flight', 'done')", name=op.f("ck_idempotency_keys_state")
        ),
        sa.PrimaryKeyConstraint("agent_id", "key", name=op.f("pk_idempotency_keys")),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_keys_expires_at"), ["expires_at"], unique=False
        )
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.drop_index("ix_quotes_agent_id_last_modified_at_id")
        batch_op.drop_index("ix_quotes_agency_id_last_modified_at_id")
        batch_op.create_index(
            "ix_quotes_agent_id_created_at_id", ["agent_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_quotes_agency_id_created_at_id", ["agency_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_quotes_agent_id_status", ["agent_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quotes", schema=None) as batch_op:
        batch_op.drop_index("ix_quotes_agent_id_status")
        batch_op.drop_index("ix_quotes_agency_id_created_at_id")
        batch_op.drop_index("ix_quotes_agent_id_created_at_id")
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
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_idempotency_keys_expires_at"))
    op.drop_table("idempotency_keys")
