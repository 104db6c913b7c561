-- name: db_now
-- The one clock every schedule, window and pacing decision is taken on: the database's, never a host's.
SELECT now();
