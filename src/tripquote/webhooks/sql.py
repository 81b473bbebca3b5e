# ruff: noqa: S608  (SQL composed at import from constant fragments; every value is bound)
"""The delivery worker's statements: fan events out to deliveries, claim due deliveries in a
batch, record a batch's attempts.

``FAN_OUT`` turns committed events into delivery rows after the saves' commits, so a save
writes its event and nothing else. Each event carries ``xact``, its writing transaction's id;
each enabled subscription a high-water mark ``fanned_out_to``: every event with a lower
``xact`` has been considered for it. A pass locks the subscriptions
(``LOCK_SUBSCRIPTIONS``, ``FOR UPDATE SKIP LOCKED``: of several workers one fans a given
subscription out at a time) and takes the ``HORIZON``, the lowest transaction id still running
in this database: every transaction below it has ended, its events are all visible, and no new
one can get an id below it. It inserts a delivery for each matching event in
[``fanned_out_to``, horizon) and moves the mark to the horizon, in the same transaction: each
event once (the unique (event, subscription, created_at) key and ``ON CONFLICT DO
NOTHING`` besides). A
transaction takes its id before it commits, so a quote's later version can have the lower
``xact`` (its transaction got its id, then waited for the earlier version's lock): an event's
earlier versions of the same quote that are past the horizon (committed, since the later
version was built on them) are fanned out with it, so the claim's version order holds.

``CLAIM`` takes up to ``:batch`` pending deliveries that are due, of enabled subscriptions,
whose quote has no earlier event still pending for the same subscription (so each
subscription gets a quote's events in version order, and a version's own — its
``quote.sent``, then its ``quote.viewed`` — in the order they were written; a batch holds at
most one delivery per quote and subscription), and locks them ``FOR UPDATE SKIP LOCKED``: any
number of workers claim disjoint rows, and a claimed row stays locked (so an earlier event
blocks the later ones) until its attempt is recorded in the same transaction. A worker that
dies mid-delivery releases them with its connection: the deliveries are pending again, same
events, same ``webhook-id`` (at least once).
"""

from __future__ import annotations

from tripquote.quotes.sql import Statement

HORIZON = """
    SELECT least(pg_snapshot_xmax(snap)::text::bigint,
                 (SELECT min(x::text::bigint) FROM pg_snapshot_xip(snap) x
                   WHERE NOT EXISTS (
                         SELECT 1 FROM pg_stat_get_activity(NULL) a
                          WHERE a.datid <> (SELECT oid FROM pg_database
                                             WHERE datname = current_database())
                            AND a.backend_xid::text::bigint = x::text::bigint % 4294967296)))
           AS xmin
      FROM pg_current_snapshot() snap"""
"""The fan-out's horizon: the lowest transaction id still running in this database for this
statement's snapshot (its ``xmax`` when none is): every event with a lower ``xact`` is
committed (and visible to the statement) or rolled back, and no new one can get a lower id.
A transaction the snapshot saw running counts unless it is known to run in another database
(a transaction writes in one database only): another database's long transaction on the same
server does not hold the fan-out back; one in this database does, until it ends."""

LOCK_SUBSCRIPTIONS = Statement.of(
    f"""
WITH horizon AS ({HORIZON}
)
SELECT w.id, w.fanned_out_to, h.xmin AS horizon
  FROM webhook_subscriptions w, horizon h
 WHERE w.enabled AND w.fanned_out_to < h.xmin
   FOR UPDATE OF w SKIP LOCKED
"""
)
"""The enabled subscriptions with events below the horizon not yet considered that no other
worker is fanning out, locked until the fan-out's commit; each with its mark and the
horizon."""

FAN_OUT = Statement.of(
    """
WITH sub AS (
    SELECT w.id, w.agency_id, w.event_types, w.fanned_out_to
      FROM webhook_subscriptions w
     WHERE w.id = ANY(:subscription_ids::text[])
), moved AS (
    UPDATE webhook_subscriptions w SET fanned_out_to = :horizon
     WHERE w.id = ANY(:subscription_ids::text[])
), recent AS MATERIALIZED (
    SELECT e.id, e.agency_id, e.type, e.quote_id, e.version, e.xact, e.occurred_at
      FROM events e
     WHERE e.xact >= :low AND e.xact < :horizon
), fresh AS (
    SELECT s.id AS subscription_id, s.event_types, e.id, e.quote_id, e.version, e.xact,
           e.occurred_at
      FROM sub s JOIN recent e
        ON e.agency_id = s.agency_id AND e.xact >= s.fanned_out_to
       AND e.type = ANY(s.event_types)
), earlier AS (
    -- A quote's earlier versions whose transaction got its id later: committed (the later
    -- version was built on them), past the horizon; fanned out now, ahead of it.
    SELECT f.subscription_id, p.id, p.quote_id, p.version, p.xact, p.occurred_at
      FROM fresh f JOIN events p
        ON p.quote_id = f.quote_id AND p.version <= f.version AND p.xact >= :horizon
       AND p.type = ANY(f.event_types)
), fanned AS (
    INSERT INTO webhook_deliveries (event_id, subscription_id, quote_id, version, status,
                                    next_attempt_at, created_at)
    -- Due now, or with the retry its quote's earlier pending delivery waits for (so the
    -- deliveries due first are the ones that can go: ``CLAIM``'s window).
    SELECT n.id, n.subscription_id, n.quote_id, n.version, 'pending',
           greatest(:now::timestamptz,
                    (SELECT max(p.next_attempt_at) FROM webhook_deliveries p
                      WHERE p.subscription_id = n.subscription_id
                        AND p.quote_id = n.quote_id AND p.status = 'pending')),
           n.occurred_at  -- its event's: the partition key both share (migration 0012)
      FROM (SELECT subscription_id, id, quote_id, version, xact, occurred_at FROM fresh
            UNION SELECT subscription_id, id, quote_id, version, xact, occurred_at
                    FROM earlier) n
     ORDER BY n.subscription_id, n.quote_id, n.version, n.xact
        ON CONFLICT (event_id, subscription_id, created_at) DO NOTHING
    RETURNING 1
)
SELECT count(*) AS deliveries FROM fanned
"""
)
"""The locked subscriptions ``:subscription_ids`` (``LOCK_SUBSCRIPTIONS``): a delivery for
each of their events in [their mark, ``:horizon``) (``:low``: the lowest mark; the bounds are
values, so the plan scans only that range of ``ix_events_xact``), pending from ``:now``,
their marks moved to ``:horizon``. ``deliveries``: how many were written."""

CLAIM = Statement.of(
    """
WITH candidate AS (
    -- The first due ones in order (a sort of the due index entries only, no per-row check).
    SELECT d.id, d.created_at
      FROM webhook_deliveries d
      JOIN webhook_subscriptions w ON w.id = d.subscription_id AND w.enabled
     WHERE d.status = 'pending' AND d.next_attempt_at <= :now
     ORDER BY d.next_attempt_at, d.id
     LIMIT :window
), due AS (
    SELECT d.id, d.created_at
      FROM candidate c
      JOIN webhook_deliveries d ON d.id = c.id AND d.created_at = c.created_at
     WHERE d.status = 'pending'
       AND NOT EXISTS (
           SELECT 1 FROM webhook_deliveries p
            WHERE p.subscription_id = d.subscription_id AND p.quote_id = d.quote_id
              AND p.status = 'pending' AND (p.version, p.id) < (d.version, d.id))
     ORDER BY d.next_attempt_at, d.id
     LIMIT :batch
       FOR UPDATE OF d SKIP LOCKED
)
SELECT d.id, d.created_at, d.attempts, d.subscription_id, w.url, w.secret, w.previous_secret,
       w.previous_secret_expires_at, e.id AS event_id, e.type, e.occurred_at, e.agency_id,
       e.quote_id, e.version, e.actor, e.correlation_id, r.snapshot::text AS data
  FROM due
  JOIN webhook_deliveries d ON d.id = due.id AND d.created_at = due.created_at
  JOIN webhook_subscriptions w ON w.id = d.subscription_id
  JOIN events e ON e.id = d.event_id AND e.occurred_at = d.created_at
  JOIN quote_revisions r ON r.quote_id = e.quote_id AND r.version = e.version
 ORDER BY d.next_attempt_at, d.id
"""
)
"""Up to ``:batch`` due deliveries, locked, each with its subscription's URL and secrets, its
event and the quote's snapshot at the event's version (its revision); looked for among the
first ``:window`` due ones (a delivery waiting behind its quote's earlier one is due no
sooner than it: ``FAN_OUT`` and ``RECORD`` keep it so). A delivery and its event are found by
their whole key, partition key included (migration 0012): one partition probed each."""

RECORD = Statement.of(
    """
WITH result AS (
    SELECT *
      FROM unnest(:delivery_ids::bigint[], :created_ats::timestamptz[],
                  :status_codes::int[], :durations_ms::float8[],
                  :errors::text[], :delivered::bool[], :gone::bool[],
                  :next_attempts_at::timestamptz[])
           AS r(id, created_at, status_code, duration_ms, error, delivered, gone,
                next_attempt_at)
), attempt AS (
    UPDATE webhook_deliveries d
       SET attempts = d.attempts + 1, last_attempt_at = :now, last_status_code = r.status_code,
           last_duration_ms = r.duration_ms, last_error = r.error,
           status = CASE WHEN r.delivered THEN 'delivered'
                         WHEN NOT r.gone AND d.attempts + 1 >= :max_attempts THEN 'dead'
                         ELSE 'pending' END,
           delivered_at = CASE WHEN r.delivered THEN :now::timestamptz END,
           next_attempt_at = CASE WHEN r.delivered THEN d.next_attempt_at
                                  ELSE r.next_attempt_at END
      FROM result r
     WHERE d.id = r.id AND d.created_at = r.created_at
    RETURNING d.id, d.status, d.subscription_id, d.quote_id, d.version, d.next_attempt_at,
              r.gone
), behind AS (
    -- A quote's later deliveries wait at least as long as its earlier one's retry.
    UPDATE webhook_deliveries f SET next_attempt_at = a.next_attempt_at
      FROM attempt a
     WHERE a.status = 'pending' AND f.subscription_id = a.subscription_id
       AND f.quote_id = a.quote_id AND f.status = 'pending'
       AND (f.version, f.id) > (a.version, a.id) AND f.next_attempt_at < a.next_attempt_at
), disabled AS (
    -- 410 Gone: the receiver says the endpoint is gone for good; its deliveries wait.
    UPDATE webhook_subscriptions w
       SET enabled = false, disabled_reason = 'gone', updated_at = :now
     WHERE w.id IN (SELECT a.subscription_id FROM attempt a WHERE a.gone)
)
SELECT id, status FROM attempt
"""
)
"""A batch's results on its deliveries (arrays, one element per delivery: its id and
``created_at``, its whole key): each delivered,
pending again at its ``next_attempts_at``, or dead once ``:max_attempts`` attempts failed; a
``gone`` one also disables its subscription. ``(id, status)`` per delivery."""

WORKER_APPLICATION = "tripquote-webhooks"
"""The ``application_name`` of ``tripquote webhooks run``'s connections."""

OTHERS_ACTIVE = Statement.of(
    f"""
SELECT count(*) AS active
  FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type = 'client backend'
   AND pid <> pg_backend_pid() AND NOT (pid = ANY(:own::int[]))
   AND application_name IS DISTINCT FROM '{WORKER_APPLICATION}'
   AND (state = 'active' OR state_change > clock_timestamp() - interval '0.5 seconds')
"""
)
"""How many connections to this database other than the delivery workers' (``:own``: this
worker's; ``WORKER_APPLICATION``: the ``webhooks run`` processes') run a statement now or
ran one in the last half second."""
