-- name: jobs_enqueue
-- One job of any task type, as the web app's publish routes create them; the id goes back to the caller.
INSERT INTO jobs (tenant_id, payload, run_at, max_attempts)
VALUES (%(tenant_id)s, %(payload)s, coalesce(%(run_at)s::timestamptz, now()), coalesce(%(max_attempts)s, 3))
RETURNING id;
