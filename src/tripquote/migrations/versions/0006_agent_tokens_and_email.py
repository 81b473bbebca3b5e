"""Agents: token revocation (agents.tokens_valid_after) and e-mails unique whatever their case

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

``agents.tokens_valid_after`` (nullable, NULL: never revoked): ``tripquote token revoke`` sets
it, and a token issued (``iat``) before it is refused. E-mails become unique case-insensitively:
a unique index on ``lower(email)`` replaces the case-sensitive ``uq_agents_email``.

Agents whose e-mails differ only by case make the upgrade refuse (``db_upgrade_refused``,
listing their ids) and change nothing. It does not pick a winner: each of them may have its own
quotes, clients and tokens, and which one is the person's real account (and what becomes of the
other's quotes) is the operator's decision, not a migration's. docs/rollback.md says how to
find them and settle them first.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tripquote.db.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DUPLICATES = """
SELECT lower(email) AS email, string_agg(id, ', ' ORDER BY created_at, id) AS ids
  FROM agents GROUP BY lower(email) HAVING count(*) > 1 ORDER BY 1
"""


def upgrade() -> None:
    duplicates = op.get_bind().execute(sa.text(DUPLICATES)).all()
    if duplicates:
        groups = "; ".join(f"agents {row.ids}" for row in duplicates)
        raise RuntimeError(
            f"{len(duplicates)} e-mail address(es) belong to several agents, differing only by "
            f"case ({groups}): keep one agent per address (change or disable-and-rename the "
            "others' e-mail), then upgrade again; nothing was changed."
        )
    op.add_column(
        "agents", sa.Column("tokens_valid_after", tripquote.db.types.UTCDateTime(timezone=True))
    )
    op.drop_constraint("uq_agents_email", "agents", type_="unique")
    op.create_index("uq_agents_email_lower", "agents", [sa.text("lower(email)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_agents_email_lower", "agents")
    op.create_unique_constraint("uq_agents_email", "agents", ["email"])
    op.drop_column("agents", "tokens_valid_after")
