-- name: campaign_list
SELECT id, name, status, transport, total_messages AS total, sent_count AS sent, failed_count AS failed,
       created_at, completed_at
FROM {campaigns}
WHERE tenant_id = %(tenant_id)s AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY created_at DESC
LIMIT %(limit)s;

-- name: campaign_export
-- The columns are named as the export's (campaigns/export.py EXPORT_COLUMNS), plus the contact.
SELECT phone_number AS phone, instance_name AS instance, status, message_type AS type,
       message_content AS content, media_url, queued_at, sent_at, evolution_key, error_message AS error,
       retry_count, updated_at, delivery_status, delivered_at, read_at, replied_at, reply_text, contact
FROM {message_logs}
WHERE campaign_id = %(campaign_id)s AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY seq, id;

-- name: campaign_pause
UPDATE {campaigns}
SET status = 'paused', status_reason = %(reason)s, updated_at = now()
WHERE id = %(campaign_id)s AND status IN ('pending', 'scheduled', 'processing')
RETURNING status;

-- name: campaign_resume
-- Back to processing; the scheduler holds it again if its start or window is still ahead.
UPDATE {campaigns}
SET status = CASE WHEN scheduled_for > now() THEN 'scheduled' ELSE 'processing' END,
    status_reason = NULL, consecutive_failures = 0, updated_at = now()
WHERE id = %(campaign_id)s AND status = 'paused'
RETURNING status;

-- name: campaign_status_of
SELECT status FROM {campaigns} WHERE id = %(campaign_id)s;

-- name: campaign_cancel
-- Unsent messages are cancelled and their jobs with them; messages in flight finish as they do.
WITH campaign AS (
    UPDATE {campaigns}
    SET status = 'cancelled', status_reason = %(reason)s, completed_at = coalesce(completed_at, now()),
        updated_at = now()
    WHERE id = %(campaign_id)s AND status NOT IN ('completed', 'cancelled')
    RETURNING id
),
jobs_cancelled AS (
    UPDATE {jobs}
    SET status = 'cancelled', finished_at = now(), last_error = %(reason)s, updated_at = now()
    WHERE campaign_id = (SELECT id FROM campaign) AND status = 'pending'
    RETURNING id
),
messages_cancelled AS (
    UPDATE {message_logs}
    SET status = 'cancelled', error_message = %(reason)s, updated_at = now()
    WHERE campaign_id = (SELECT id FROM campaign) AND status IN ('pending', 'queued')
    RETURNING id
)
SELECT (SELECT count(*) FROM campaign) AS cancelled, (SELECT count(*) FROM messages_cancelled) AS messages,
       (SELECT count(*) FROM jobs_cancelled) AS jobs;

-- name: campaign_retry
-- Failed messages of the kinds asked for go back to the queue with fresh attempts; the failed
-- counter drops by exactly the messages that left `failed`, in the same statement.
WITH target AS (
    SELECT j.id
    FROM {jobs} j
    WHERE j.campaign_id = %(campaign_id)s AND j.status = 'failed'
      AND coalesce(j.error_kind, 'transient') = ANY(%(kinds)s)
    FOR UPDATE
),
rearmed AS (
    UPDATE {jobs} j
    SET status = 'pending', run_at = now(), attempts = 0, finished_at = NULL, error_kind = NULL,
        last_error = NULL, locked_by = NULL, locked_until = NULL, updated_at = now()
    WHERE j.id = ANY(ARRAY(SELECT id FROM target))
    RETURNING j.message_id
),
requeued AS (
    UPDATE {message_logs} m
    SET status = 'queued', error_kind = NULL, queued_at = now(), updated_at = now()
    WHERE m.id = ANY(ARRAY(SELECT message_id FROM rearmed)) AND m.status = 'failed'
    RETURNING m.id
)
SELECT dispara_failed_requeued(%(campaign_id)s, (SELECT count(*) FROM requeued));

-- name: campaign_in_flight
-- Claimed jobs of the campaign that a live worker still holds (a lapsed lease is a dead worker's).
SELECT count(*) FROM {jobs}
WHERE campaign_id = %(campaign_id)s AND status = 'processing' AND locked_until > now();

-- name: campaign_delete
-- The foreign keys cascade too; deleting explicitly is what lets us count what went.
-- Each CTE is named apart from its table: a count reads what was deleted, never a (renamed) table.
WITH gone_messages AS (DELETE FROM {message_logs} WHERE campaign_id = %(campaign_id)s RETURNING 1),
     gone_jobs AS (DELETE FROM {jobs} WHERE campaign_id = %(campaign_id)s RETURNING 1),
     gone AS (DELETE FROM {campaigns} WHERE id = %(campaign_id)s RETURNING 1)
SELECT (SELECT count(*) FROM gone_messages), (SELECT count(*) FROM gone_jobs), (SELECT count(*) FROM gone);

-- name: campaign_status_for_update
SELECT status FROM {campaigns} WHERE id = %(campaign_id)s FOR UPDATE;

-- name: campaign_contact_fields
-- The contacts' columns: as the file had them, else from the first message (jsonb sorts its keys).
SELECT c.contact_fields,
       (SELECT m.contact FROM {message_logs} m WHERE m.campaign_id = c.id ORDER BY m.seq LIMIT 1)
FROM {campaigns} c
WHERE c.id = %(campaign_id)s;
