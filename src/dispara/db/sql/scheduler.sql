-- name: scheduler_candidates
-- Campaigns whose start is pending, or that send only inside a window.
SELECT id, status, scheduled_for, document
FROM {campaigns}
WHERE status = 'scheduled'
   OR (status = 'processing' AND jsonb_typeof(document -> 'schedule' -> 'window') = 'object');

-- name: scheduler_start
UPDATE {campaigns}
SET status = 'processing', status_reason = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'scheduled';

-- name: scheduler_hold
UPDATE {campaigns}
SET status = 'scheduled', scheduled_for = %(until)s, status_reason = %(reason)s, updated_at = now()
WHERE id = %(id)s AND status = %(status)s;
