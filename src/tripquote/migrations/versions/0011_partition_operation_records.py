"""operation_records partitioned by day on recorded_at, existing rows kept (retention)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05

``operation_records`` only grows; deleting old rows one by one locks and bloats it. It becomes
a table range-partitioned by ``recorded_at`` whose partitions ``tripquote maintenance``
creates ahead and drops whole when older than ``TRIPQUOTE_OPERATION_RECORDS_RETENTION_DAYS``
(``db/retention.py``). The existing table, renamed, is attached as the first partition
(every instant before tomorrow, UTC): its rows are kept without being copied, and it is dropped
with them once they are all past the retention. Its primary key becomes (id, recorded_at) (a
partitioned table's unique keys include the partition key): building that index on a large
table holds its lock meanwhile. The next days' partitions are created here too.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

AHEAD_DAYS = 7

COLUMNS = """
    id integer NOT NULL DEFAULT nextval('operation_records_id_seq'::regclass),
    recorded_at timestamp with time zone NOT NULL,
    correlation_id varchar(128) NOT NULL,
    operation varchar(64) NOT NULL,
    agent_id varchar(36),
    quote_id varchar(36),
    outcome varchar(16) NOT NULL,
    error_code varchar(64),
    http_status integer,
    duration_ms double precision NOT NULL,
    pid integer NOT NULL"""


def _midnight(day: int) -> str:
    today = datetime.now(UTC).date()
    return datetime.combine(today + timedelta(days=day), time(), tzinfo=UTC).isoformat()


def upgrade() -> None:
    first = "operation_records_before_" + _midnight(1)[:10].replace("-", "")
    op.execute(f"ALTER TABLE operation_records RENAME TO {first}")
    op.execute(f"ALTER INDEX pk_operation_records RENAME TO {first}_id")
    op.execute(f"ALTER INDEX ix_operation_records_recorded_at RENAME TO {first}_recorded_at")
    op.execute(
        f"CREATE TABLE operation_records ({COLUMNS},"
        " CONSTRAINT pk_operation_records PRIMARY KEY (id, recorded_at)"
        ") PARTITION BY RANGE (recorded_at)"
    )
    op.execute("ALTER SEQUENCE operation_records_id_seq OWNED BY operation_records.id")
    op.execute("CREATE INDEX ix_operation_records_recorded_at ON operation_records (recorded_at)")
    op.execute(f"ALTER TABLE {first} DROP CONSTRAINT {first}_id")  # the parent's key replaces it
    op.execute(
        f"ALTER TABLE operation_records ATTACH PARTITION {first}"
        f" FOR VALUES FROM (MINVALUE) TO ('{_midnight(1)}')"
    )
    for day in range(1, AHEAD_DAYS + 1):
        name = "operation_records_p" + _midnight(day)[:10].replace("-", "")
        op.execute(
            f"CREATE TABLE {name} PARTITION OF operation_records"
            f" FOR VALUES FROM ('{_midnight(day)}') TO ('{_midnight(day + 1)}')"
        )


def downgrade() -> None:
    op.execute("ALTER TABLE operation_records RENAME TO operation_records_partitioned")
    op.execute("ALTER INDEX pk_operation_records RENAME TO pk_operation_records_partitioned")
    op.execute(
        "ALTER INDEX ix_operation_records_recorded_at"
        " RENAME TO ix_operation_records_recorded_at_partitioned"
    )
    op.execute(
        f"CREATE TABLE operation_records ({COLUMNS},"
        " CONSTRAINT pk_operation_records PRIMARY KEY (id))"
    )
    op.execute("INSERT INTO operation_records SELECT * FROM operation_records_partitioned")
    op.execute("ALTER SEQUENCE operation_records_id_seq OWNED BY operation_records.id")
    op.execute("DROP TABLE operation_records_partitioned")
    op.execute("CREATE INDEX ix_operation_records_recorded_at ON operation_records (recorded_at)")
