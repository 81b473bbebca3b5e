-- Fault injection for drills: make every UPDATE of ONE quote fail with a chosen SQLSTATE.
-- STAGING ONLY. Remove with remove_fault.sql as soon as the drill is over.
--
--   psql "$STAGING_DATABASE_URL" -v quote_id="$Q" -v sqlstate=40001 -f ops/drills/inject_fault.sql
--
-- sqlstate -> what tripquote answers (mapping: src/tripquote/db/errors.py)
--   40001 serialization_failure, 40P01 deadlock_detected
--         -> retried TRIPQUOTE_TX_MAX_ATTEMPTS times, then 503 DATABASE_TRANSACTION_ABORTED
--   23505 unique_violation, 23503 foreign_key_violation, 53300 too_many_connections
--         -> 503 QUOTE_PERSISTENCE_FAILED
--   55P03 lock_not_available, 57014 query_canceled
--         -> 503 DATABASE_TIMEOUT
--   23514 check_violation -> 400 QUOTE_VALIDATION_FAILED ("the database refused a value")
--
-- The WHEN clause limits the blast radius to the drill quote; other quotes save normally.

CREATE OR REPLACE FUNCTION tripquote_drill_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'tripquote drill: injected SQLSTATE %', TG_ARGV[0] USING ERRCODE = TG_ARGV[0];
END $$;

DROP TRIGGER IF EXISTS tripquote_drill_fault ON quotes;
CREATE TRIGGER tripquote_drill_fault BEFORE UPDATE ON quotes
  FOR EACH ROW WHEN (OLD.id = :'quote_id')
  EXECUTE FUNCTION tripquote_drill_fault(:'sqlstate');
