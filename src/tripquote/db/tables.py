"""The schema, as SQLAlchemy Core tables; Alembic migrations are what create it."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
    true,
)
from sqlalchemy import Column as C
from sqlalchemy.dialects.postgresql import ARRAY

from tripquote.db.types import Money, Percent, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

ID = 36  # UUID text form

agencies = Table(
    "agencies",
    metadata,
    C("id", String(ID), primary_key=True),
    C("name", String(200), nullable=False),
    C("timezone", String(64), nullable=False, server_default="UTC"),
    C("created_at", UTCDateTime(), nullable=False),
)

agents = Table(
    "agents",
    metadata,
    C("id", String(ID), primary_key=True),
    C("agency_id", String(ID), ForeignKey("agencies.id"), nullable=False, index=True),
    C("email", String(320), nullable=False),  # unique whatever its case: uq_agents_email_lower
    C("name", String(200), nullable=False),
    C("role", String(16), nullable=False, server_default="agent"),
    C("active", Boolean(), nullable=False, server_default=true()),
    C("created_at", UTCDateTime(), nullable=False),
    # Tokens issued (iat) before this instant are refused (tripquote token revoke); NULL: none.
    C("tokens_valid_after", UTCDateTime(), nullable=True),
    # An upper bound of the agent's open quotes (DRAFT + unexpired SENT), kept under the
    # agent's row lock: raised by every create and reopen, never lowered by what closes a
    # quote, re-set to the exact count whenever it reaches the limit (quotes/store.py).
    C("open_quote_bound", Integer(), nullable=False, server_default="0"),
    CheckConstraint("role IN ('agent', 'admin')", name="role"),
)
Index("uq_agents_email_lower", func.lower(agents.c.email), unique=True)

clients = Table(
    "clients",
    metadata,
    C("id", String(ID), primary_key=True),
    C("agency_id", String(ID), ForeignKey("agencies.id"), nullable=False),
    C("agent_id", String(ID), ForeignKey("agents.id"), nullable=False),
    C("name", String(200), nullable=False),
    C("email", String(320), nullable=True),
    C("phone", String(64), nullable=True),
    C("created_at", UTCDateTime(), nullable=False),
    Index("ix_clients_agent_id_created_at", "agent_id", "created_at"),
    Index("ix_clients_agency_id_created_at", "agency_id", "created_at"),
)

quotes = Table(
    "quotes",
    metadata,
    C("id", String(ID), primary_key=True),
    C("agency_id", String(ID), ForeignKey("agencies.id"), nullable=False),
    C("agent_id", String(ID), ForeignKey("agents.id"), nullable=False),
    C("client_id", String(ID), ForeignKey("clients.id"), nullable=False, index=True),
    C("trip_name", String(200), nullable=False),
    C("destination", String(200), nullable=False),
    C("start_date", Date(), nullable=False),
    C("end_date", Date(), nullable=False),
    C("travelers", Integer(), nullable=False),
    C("currency", String(3), nullable=False),
    C("markup_percent", Percent(), nullable=False),
    C("discount", Money(), nullable=False),
    C("expires_in_days", Integer(), nullable=False),
    C("notes", Text(), nullable=True),
    C("subtotal", Money(), nullable=False),
    C("markup_amount", Money(), nullable=False),
    C("total", Money(), nullable=False),
    C("status", String(16), nullable=False),
    C("version", Integer(), nullable=False, server_default="1"),
    C("created_at", UTCDateTime(), nullable=False),
    C("last_modified_by", String(ID), nullable=False),
    C("last_modified_at", UTCDateTime(), nullable=False),
    C("sent_at", UTCDateTime(), nullable=True),
    C("expires_at", UTCDateTime(), nullable=True),
    CheckConstraint("version >= 1", name="version_positive"),
    CheckConstraint("travelers BETWEEN 1 AND 50", name="travelers_range"),
    CheckConstraint("start_date < end_date", name="date_order"),
    CheckConstraint(
        "status IN ('DRAFT', 'SENT', 'ACCEPTED', 'REJECTED', 'EXPIRED', 'CANCELLED')",
        name="status",
    ),
    Index("ix_quotes_agent_id_created_at_id", "agent_id", "created_at", "id"),
    Index("ix_quotes_agency_id_created_at_id", "agency_id", "created_at", "id"),
    Index("ix_quotes_agent_id_status", "agent_id", "status"),
    Index("ix_quotes_status_expires_at", "status", "expires_at"),
)

quote_items = Table(
    "quote_items",
    metadata,
    # Written before migration 0014 (and by a release before it): NULL on the rows written
    # since. Read only as the API id of a row without ``item_id``.
    C("id", String(ID), nullable=True),
    C(
        "quote_id",
        String(ID),
        ForeignKey("quotes.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # The item's id in the API, kept from version to version (the row is the position's);
    # NULL on rows written before migration 0008 or by an older release: then the row's id.
    C("item_id", String(ID), nullable=True),
    C("position", Integer(), primary_key=True),
    C("type", String(16), nullable=False),
    C("description", String(500), nullable=False),
    C("quantity", Integer(), nullable=False),
    C("unit_price", Money(), nullable=False),
    C("line_total", Money(), nullable=False),
    C("details", JSON(), nullable=False),
    CheckConstraint("quantity >= 1", name="quantity_positive"),
    CheckConstraint("type IN ('FLIGHT', 'HOTEL', 'ACTIVITY', 'TRANSFER', 'OTHER')", name="type"),
)

quote_revisions = Table(
    "quote_revisions",
    metadata,
    # Written before migration 0014 (and by a release before it); NULL since, never read.
    C("id", String(ID), nullable=True),
    C(
        "quote_id",
        String(ID),
        ForeignKey("quotes.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    C("version", Integer(), primary_key=True),
    C("operation", String(16), nullable=False),
    C("status", String(16), nullable=False),
    C("actor_id", String(ID), nullable=False),
    C("correlation_id", String(128), nullable=False),
    C("created_at", UTCDateTime(), nullable=False),
    C("snapshot", JSON(), nullable=False),
    # The save that wrote it (db/transaction.py resolves an unanswered COMMIT by it); NULL on
    # revisions written before migration 0007.
    C("save_id", String(ID), nullable=True),
    # A merged save's base version, the version it was applied onto and what it took from
    # each side (quotes/merge.py); NULL for every other revision (and before migration 0008).
    C("merge", JSON(), nullable=True),
    Index("uq_quote_revisions_save_id_quote_id", "save_id", "quote_id", unique=True),
)

operation_records = Table(
    "operation_records",
    metadata,
    # Partitioned by day on recorded_at (migration 0011): the partition key is in the primary
    # key; partitions are made and dropped by `tripquote maintenance` (db/retention.py).
    C("id", Integer(), primary_key=True, autoincrement=True),
    C("recorded_at", UTCDateTime(), primary_key=True, index=True),
    C("correlation_id", String(128), nullable=False),
    C("operation", String(64), nullable=False),
    C("agent_id", String(ID), nullable=True),
    C("quote_id", String(ID), nullable=True),
    C("outcome", String(16), nullable=False),
    C("error_code", String(64), nullable=True),
    C("http_status", Integer(), nullable=True),
    C("duration_ms", Float(), nullable=False),
    C("pid", Integer(), nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    C("agent_id", String(ID), primary_key=True),
    C("key", String(255), primary_key=True),
    C("request_hash", String(64), nullable=False),
    C("state", String(16), nullable=False),
    C("created_at", UTCDateTime(), nullable=False),
    C("expires_at", UTCDateTime(), nullable=False, index=True),
    C("response_status", Integer(), nullable=True),
    C("response_body", Text(), nullable=True),
    C("response_headers", JSON(), nullable=True),
    CheckConstraint("state IN ('in_flight', 'done')", name="state"),
)

XACT = "pg_current_xact_id()::text::bigint"
"""The current transaction's id (one is assigned if it had none)."""
NEXT_XACT = "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
"""The first transaction id not yet assigned when the statement's snapshot was taken."""

events = Table(
    "events",
    metadata,
    # The transactional outbox: one row per committed quote change, written by the change's
    # own statement (quotes/sql.py ``outbox``); its id is the webhook-id of its deliveries.
    # Partitioned by day on occurred_at (migration 0012): the partition key is in the primary
    # key; partitions are made and dropped by `tripquote maintenance` (db/retention.py). One
    # event per (quote, version, type) is kept by the writes (0012's docstring says how).
    C("id", String(40), primary_key=True),
    C("type", String(32), nullable=False),
    C("occurred_at", UTCDateTime(), primary_key=True),
    C("agency_id", String(ID), nullable=False),  # its quote's (no foreign key: 0012)
    C("quote_id", String(ID), nullable=False),
    C("version", Integer(), nullable=False),
    C("actor", String(ID), nullable=False),
    C("correlation_id", String(128), nullable=False),
    # The writing transaction's id: the delivery workers fan events out by it after the
    # commit (webhooks/sql.py FAN_OUT), a range of ix_events_xact at a time.
    # NULL on events written before migration 0013 (their saves wrote their deliveries).
    C("xact", BigInteger(), nullable=True, server_default=text(f"({XACT})")),
    # The snapshot is the revision's of (quote_id, version): read by the worker, not copied.
    Index("ix_events_xact", "xact"),
    # A quote's events by version: the fan-out takes a quote's earlier versions along
    # (webhooks/sql.py FAN_OUT ``earlier``).
    Index("ix_events_quote_id_version", "quote_id", "version"),
)

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    C("id", String(ID), primary_key=True),
    C("agency_id", String(ID), ForeignKey("agencies.id"), nullable=False),
    C("url", String(2048), nullable=False),
    C("event_types", ARRAY(String(32)), nullable=False),
    C("enabled", Boolean(), nullable=False),
    C("disabled_reason", String(32), nullable=True),
    C("secret", String(128), nullable=False),
    # During a rotation the previous secret signs too, until this instant (both signatures).
    C("previous_secret", String(128), nullable=True),
    C("previous_secret_expires_at", UTCDateTime(), nullable=True),
    C("created_at", UTCDateTime(), nullable=False),
    C("updated_at", UTCDateTime(), nullable=False),
    # Every event with a lower xact has been fanned out to it (or was before it existed):
    # by default the first transaction id not yet assigned when the row is written.
    C("fanned_out_to", BigInteger(), nullable=False, server_default=text(f"({NEXT_XACT})")),
    Index("ix_webhook_subscriptions_agency_id", "agency_id", "created_at"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    # Partitioned by day on created_at (migration 0012), dropped with its event's day: a
    # delivery is written by its event's statement, so created_at IS the event's occurred_at,
    # and (event_id, created_at) is its event's key (joined on both). No foreign keys (a
    # partition's would lock the table it names whenever a day is made or dropped: 0012);
    # deleting a subscription deletes its deliveries (webhooks/repository.py).
    C("id", BigInteger(), Identity(), primary_key=True),
    C("event_id", String(40), nullable=False),
    C("subscription_id", String(ID), nullable=False),
    C("quote_id", String(ID), nullable=False),
    C("version", Integer(), nullable=False),
    C("status", String(16), nullable=False),
    C("attempts", Integer(), nullable=False, server_default="0"),
    C("next_attempt_at", UTCDateTime(), nullable=False),
    C("created_at", UTCDateTime(), primary_key=True),
    C("last_attempt_at", UTCDateTime(), nullable=True),
    C("last_status_code", Integer(), nullable=True),
    C("last_duration_ms", Float(), nullable=True),
    C("last_error", String(64), nullable=True),
    C("delivered_at", UTCDateTime(), nullable=True),
    CheckConstraint("status IN ('pending', 'delivered', 'dead')", name="status"),
    UniqueConstraint("event_id", "subscription_id", "created_at"),
    Index(
        "ix_webhook_deliveries_pending",
        "next_attempt_at",
        "id",
        postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "ix_webhook_deliveries_pending_order",
        "subscription_id",
        "quote_id",
        "version",
        postgresql_where=text("status = 'pending'"),
    ),
    Index("ix_webhook_deliveries_subscription_id_id", "subscription_id", "id"),
)

proposals = Table(
    "proposals",
    metadata,
    C("id", String(ID), primary_key=True),
    C("quote_id", String(ID), ForeignKey("quotes.id", ondelete="CASCADE"), nullable=False),
    C("version", Integer(), nullable=False),  # the version sent
    C("token_hash", String(64), nullable=False, unique=True),  # SHA-256 of the link's token
    C("link_nonce", String(64), nullable=False),  # the token is HMAC(service key, nonce)
    C("proposal", JSON(), nullable=False),  # {agency: {name, timeZone}, quote: snapshot}
    C("proposal_hash", String(64), nullable=False),  # SHA-256 of the proposal's JSON text
    C("created_at", UTCDateTime(), nullable=False),
    C("expires_at", UTCDateTime(), nullable=False),
    C("ended_at", UTCDateTime(), nullable=True),
    C("ended_reason", String(16), nullable=True),
    C("views", Integer(), nullable=False, server_default="0"),
    C("first_viewed_at", UTCDateTime(), nullable=True),
    C("last_viewed_at", UTCDateTime(), nullable=True),
    C("answer", String(16), nullable=True),
    C("answered_at", UTCDateTime(), nullable=True),
    C("signer_name", String(200), nullable=True),
    C("decline_reason", Text(), nullable=True),
    C("answer_ip", String(64), nullable=True),
    C("answer_user_agent", String(512), nullable=True),
    C("answered_hash", String(64), nullable=True),
    CheckConstraint("ended_reason IN ('REVOKED', 'SUPERSEDED', 'CANCELLED')", name="ended_reason"),
    CheckConstraint("answer IN ('ACCEPTED', 'REJECTED')", name="answer"),
    Index("ix_proposals_quote_id_created_at", "quote_id", "created_at"),
)
