-- Operator commands on the queue: redrive, jobs list/show/retry/cancel. Scoped to one tenant.
-- Whenever a message leaves `failed`, the campaign's failed_count drops in the same statement: exact counters.

-- name: queue_rearm_failed
-- Failed jobs that still have attempts left and did not fail permanently go back to pending.
WITH picked AS (
    SELECT id FROM {jobs}
    WHERE tenant_id = %(tenant_id)s AND status = 'failed' AND attempts < max_attempts
      AND (error_kind IS NULL OR error_kind = 'transient')
    FOR UPDATE SKIP LOCKED
),
rearmed AS (
    UPDATE {jobs} j
    SET status = 'pending', run_at = now(), finished_at = NULL, error_kind = NULL, updated_at = now()
    FROM picked p
    WHERE j.id = p.id
    RETURNING j.id, j.message_id
),
requeued AS (
    UPDATE {message_logs} m
    SET status = 'queued', error_kind = NULL, updated_at = now()
    FROM rearmed r
    WHERE m.id = r.message_id AND m.status = 'failed'
    RETURNING m.campaign_id
),
uncounted AS (
    UPDATE {campaigns} c
    SET failed_count = greatest(0, c.failed_count - x.n),
        status = CASE WHEN c.status = 'completed' THEN 'processing' ELSE c.status END,
        completed_at = CASE WHEN c.status = 'completed' THEN NULL ELSE c.completed_at END,
        updated_at = now()
    FROM (SELECT campaign_id, count(*) AS n FROM requeued GROUP BY campaign_id) x
    WHERE c.id = x.campaign_id
)
SELECT count(*) FROM rearmed;

-- name: queue_prune_completed
-- Completed jobs past the retention, in bounded batches so no statement holds locks for long.
-- The per-message record stays in message_logs; failed jobs stay for inspection.
DELETE FROM {jobs}
WHERE id = ANY(ARRAY(
    SELECT id FROM {jobs}
    WHERE status = 'completed' AND tenant_id = %(tenant_id)s
      AND finished_at < now() - make_interval(days => %(days)s)
    LIMIT %(limit)s
));

-- name: queue_resume_instances
UPDATE {instances}
SET paused_until = NULL, pause_reason = NULL, updated_at = now()
WHERE tenant_id = %(tenant_id)s AND paused_until IS NOT NULL AND paused_until <= now();

-- name: jobs_list
SELECT j.id, j.status, j.payload ->> 'task_type' AS task_type, j.instance, j.attempts, j.max_attempts, j.run_at,
       j.started_at, j.finished_at, j.last_error, j.campaign_id, j.message_id
FROM {jobs} j
WHERE j.tenant_id = %(tenant_id)s
  AND (%(status)s::text IS NULL OR j.status = %(status)s::text)
  AND (%(task_type)s::text IS NULL OR j.payload ->> 'task_type' = %(task_type)s::text)
ORDER BY j.id DESC
LIMIT %(limit)s;

-- name: jobs_show
SELECT j.id, j.status, j.payload, j.instance, j.attempts, j.max_attempts, j.priority, j.run_at,
       j.created_at, j.updated_at, j.started_at, j.finished_at, j.last_error, j.error_kind, j.result,
       j.locked_by, j.locked_until, j.campaign_id, j.message_id, c.name AS campaign_name,
       m.status AS message_status, m.phone_number AS phone
FROM {jobs} j
LEFT JOIN {campaigns} c ON c.id = j.campaign_id
LEFT JOIN {message_logs} m ON m.id = j.message_id
WHERE j.tenant_id = %(tenant_id)s AND j.id = %(id)s;

-- name: jobs_status
SELECT status FROM {jobs} WHERE tenant_id = %(tenant_id)s AND id = %(id)s;

-- name: jobs_retry
-- A failed job runs again now with its attempts reset; its message leaves the failed count.
WITH target AS (
    SELECT id, message_id FROM {jobs}
    WHERE tenant_id = %(tenant_id)s AND id = %(id)s AND status = 'failed'
    FOR UPDATE
),
rearmed AS (
    UPDATE {jobs} j
    SET status = 'pending', run_at = now(), attempts = 0, finished_at = NULL, error_kind = NULL,
        locked_by = NULL, locked_until = NULL, updated_at = now()
    FROM target t
    WHERE j.id = t.id
    RETURNING j.id
),
requeued AS (
    UPDATE {message_logs} m
    SET status = 'queued', error_kind = NULL, error_message = NULL, updated_at = now()
    FROM target t
    WHERE m.id = t.message_id AND m.status = 'failed'
    RETURNING m.campaign_id
),
uncounted AS (
    UPDATE {campaigns} c
    SET failed_count = greatest(0, c.failed_count - 1),
        status = CASE WHEN c.status = 'completed' THEN 'processing' ELSE c.status END,
        completed_at = CASE WHEN c.status = 'completed' THEN NULL ELSE c.completed_at END,
        consecutive_failures = 0,
        updated_at = now()
    FROM requeued r
    WHERE c.id = r.campaign_id
    RETURNING c.name, c.status
)
SELECT (SELECT count(*) FROM rearmed) AS retried, (SELECT name FROM uncounted) AS campaign,
       (SELECT status FROM uncounted) AS campaign_status;

-- name: jobs_cancel
-- A pending job is cancelled (never claimed again) and so is its message.
WITH target AS (
    SELECT id, message_id FROM {jobs}
    WHERE tenant_id = %(tenant_id)s AND id = %(id)s AND status = 'pending'
    FOR UPDATE
),
cancelled AS (
    UPDATE {jobs} j
    SET status = 'cancelled', finished_at = now(), last_error = 'cancelled by an operator', updated_at = now()
    FROM target t
    WHERE j.id = t.id
    RETURNING j.id
),
message AS (
    UPDATE {message_logs} m
    SET status = 'cancelled', updated_at = now()
    FROM target t
    WHERE m.id = t.message_id AND m.status IN ('pending', 'queued', 'sending')
    RETURNING m.campaign_id
)
SELECT (SELECT count(*) FROM cancelled) AS cancelled, (SELECT campaign_id FROM message) AS campaign_id;

-- name: campaign_complete_if_done
-- After a cancel: the campaign may have nothing left to send.
UPDATE {campaigns} c
SET status = 'completed', completed_at = now(), updated_at = now()
WHERE c.id = %(id)s AND c.status IN ('processing', 'paused')
  AND c.sent_count + c.failed_count
      + (SELECT count(*) FROM {message_logs} m WHERE m.campaign_id = c.id AND m.status = 'cancelled')
      >= c.total_messages
RETURNING c.name;
