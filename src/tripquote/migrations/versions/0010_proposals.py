"""Proposals: the quote as sent, its private link and the client's answer (issue 16)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

One row per send: the proposal (the sent revision's snapshot with the agency's name and time
zone, ``json``: its text kept byte for byte) and the SHA-256 of that text, the link (the
SHA-256 of its token, never the token; the random nonce the token is derived from with the
service's key), its expiry, view figures, how it ended (revoked, superseded by a re-send,
cancelled) and the client's answer (signer, time, IP, user agent, the hash it answered).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "proposals",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "quote_id",
            sa.String(36),
            sa.ForeignKey("quotes.id", ondelete="CASCADE", name="fk_proposals_quote_id_quotes"),
            nullable=False,
        ),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("link_nonce", sa.String(64), nullable=False),
        sa.Column("proposal", sa.JSON(), nullable=False),
        sa.Column("proposal_hash", sa.String(64), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("expires_at", ts, nullable=False),
        sa.Column("ended_at", ts, nullable=True),
        sa.Column("ended_reason", sa.String(16), nullable=True),
        sa.Column("views", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("first_viewed_at", ts, nullable=True),
        sa.Column("last_viewed_at", ts, nullable=True),
        sa.Column("answer", sa.String(16), nullable=True),
        sa.Column("answered_at", ts, nullable=True),
        sa.Column("signer_name", sa.String(200), nullable=True),
        sa.Column("decline_reason", sa.Text(), nullable=True),
        sa.Column("answer_ip", sa.String(64), nullable=True),
        sa.Column("answer_user_agent", sa.String(512), nullable=True),
        sa.Column("answered_hash", sa.String(64), nullable=True),
        sa.CheckConstraint(
            "ended_reason IN ('REVOKED', 'SUPERSEDED', 'CANCELLED')",
            name="ck_proposals_ended_reason",
        ),
        sa.CheckConstraint("answer IN ('ACCEPTED', 'REJECTED')", name="ck_proposals_answer"),
        sa.UniqueConstraint("token_hash", name="uq_proposals_token_hash"),
    )
    op.create_index("ix_proposals_quote_id_created_at", "proposals", ["quote_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_proposals_quote_id_created_at", "proposals")
    op.drop_table("proposals")
