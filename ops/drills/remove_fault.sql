-- Remove the drill fault installed by inject_fault.sql (safe to run twice).
--   psql "$STAGING_DATABASE_URL" -f ops/drills/remove_fault.sql
DROP TRIGGER IF EXISTS tripquote_drill_fault ON quotes;
DROP FUNCTION IF EXISTS tripquote_drill_fault();
