-- Job webhook events: written with the outcomes they report, delivered at least once by any worker.

-- name: webhook_insert
INSERT INTO {webhook_events} (tenant_id, job_id, campaign_id, event)
SELECT %(tenant_id)s, u.job_id, u.campaign_id, u.event
FROM unnest(%(job_ids)s::bigint[], %(campaign_ids)s::uuid[], %(events)s::json[]) AS u(job_id, campaign_id, event);

-- name: webhook_claim
-- Due events in the order they were written; a job's later event waits for its earlier ones, so a
-- receiver always hears of a start before the finish. Leased while delivered, like a job.
WITH due AS (
    SELECT e.id
    FROM {webhook_events} e
    WHERE e.tenant_id = %(tenant_id)s AND e.status = 'pending' AND e.next_attempt_at <= now()
      AND (e.locked_until IS NULL OR e.locked_until < now())
      AND NOT EXISTS (
          SELECT 1 FROM {webhook_events} b
          WHERE b.job_id = e.job_id AND b.id < e.id AND b.status = 'pending'
      )
    ORDER BY e.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {webhook_events} w
SET locked_by = %(worker)s, locked_until = now() + make_interval(secs => %(lease_s)s), attempts = w.attempts + 1
FROM due
WHERE w.id = due.id
RETURNING w.id, w.event, w.attempts;

-- name: webhook_delivered
UPDATE {webhook_events}
SET status = 'delivered', delivered_at = now(), last_error = NULL, locked_by = NULL, locked_until = NULL
WHERE id = %(id)s;

-- name: webhook_failed
UPDATE {webhook_events}
SET status = CASE WHEN %(final)s THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => %(delay_s)s),
    last_error = %(error)s, locked_by = NULL, locked_until = NULL
WHERE id = %(id)s;

-- name: webhook_release
UPDATE {webhook_events}
SET attempts = attempts - 1, locked_by = NULL, locked_until = NULL
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'pending';

-- name: webhook_of_job
SELECT status, attempts, event ->> 'status' AS event, created_at, delivered_at, last_error
FROM {webhook_events}
WHERE job_id = %(job_id)s
ORDER BY id;
