"""The delivery worker's statements: claim one due delivery, record its attempt.

``CLAIM`` takes one pending delivery that is due, of an enabled subscription, whose quote has
no earlier event still pending for the same subscription (so each subscription gets a
quote's events in version order, and a version's own — its ``quote.sent``, then its
``quote.viewed`` — in the order they were written), and locks it ``FOR UPDATE SKIP LOCKED``:
any number of workers claim disjoint rows, and a claimed row stays locked (so an earlier
event blocks the later ones) until its attempt is recorded in the same transaction. A worker
that dies mid-delivery releases it with its connection: the delivery is pending again, same
event, same ``webhook-id`` (at least once).
"""

from __future__ import annotations

from tripquote.quotes.sql import Statement

CLAIM = Statement.of(
    """
WITH due AS (
    SELECT d.id, d.created_at
      FROM webhook_deliveries d
      JOIN webhook_subscriptions w ON w.id = d.subscription_id AND w.enabled
     WHERE d.status = 'pending' AND d.next_attempt_at <= :now
       AND NOT EXISTS (
           SELECT 1 FROM webhook_deliveries p
            WHERE p.subscription_id = d.subscription_id AND p.quote_id = d.quote_id
              AND p.status = 'pending' AND (p.version, p.id) < (d.version, d.id))
     ORDER BY d.next_attempt_at, d.id
     LIMIT 1
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
"""
)
"""One due delivery, locked, with its subscription's URL and secrets, its event and the
quote's snapshot at the event's version (its revision). A delivery and its event are found by
their whole key, partition key included (migration 0012): one partition probed each."""

RECORD = Statement.of(
    """
WITH attempt AS (
    UPDATE webhook_deliveries
       SET attempts = attempts + 1, last_attempt_at = :now, last_status_code = :status_code,
           last_duration_ms = :duration_ms, last_error = :error,
           status = CASE WHEN :delivered THEN 'delivered'
                         WHEN NOT :gone AND attempts + 1 >= :max_attempts THEN 'dead'
                         ELSE 'pending' END,
           delivered_at = CASE WHEN :delivered THEN :now::timestamptz END,
           next_attempt_at = CASE WHEN :delivered THEN next_attempt_at
                                  ELSE :next_attempt_at END
     WHERE id = :delivery_id AND created_at = :created_at
    RETURNING status, subscription_id
), disabled AS (
    -- 410 Gone: the receiver says the endpoint is gone for good; its deliveries wait.
    UPDATE webhook_subscriptions w
       SET enabled = false, disabled_reason = 'gone', updated_at = :now
      FROM attempt a
     WHERE :gone AND w.id = a.subscription_id
)
SELECT status FROM attempt
"""
)
"""An attempt's result on delivery (``:delivery_id``, ``:created_at``): delivered, pending
again at ``:next_attempt_at``, or dead once ``:max_attempts`` attempts failed; ``:gone`` also
disables the subscription."""
