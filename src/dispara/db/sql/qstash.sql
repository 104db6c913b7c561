-- QStash transport: publishing a campaign's messages and taking their deliveries.

-- name: qstash_campaign_for_publish
SELECT c.id, c.tenant_id, c.status, c.transport, c.retries, c.delay_min, c.delay_max, c.daily_cap,
       c.scheduled_for, c.document
FROM {campaigns} c
WHERE c.id = %(campaign_id)s;

-- name: qstash_unpublished
-- Messages QStash has not accepted yet, per instance in campaign order.
SELECT m.id, m.phone_number AS phone, m.message_content AS content, m.instance_name AS instance,
       m.qstash_round AS round
FROM {message_logs} m
WHERE m.campaign_id = %(campaign_id)s AND m.status = 'pending'
ORDER BY m.instance_name, m.seq, m.id;

-- name: qstash_instance_tail
-- Where each instance's schedule of this campaign ends: the latest release time already accepted.
SELECT m.instance_name, max(m.not_before) AS tail
FROM {message_logs} m
WHERE m.campaign_id = %(campaign_id)s AND m.status IN ('queued', 'sending') AND m.not_before IS NOT NULL
GROUP BY m.instance_name;

-- name: qstash_mark_queued
-- Only messages still pending move: one cancelled meanwhile stays cancelled.
UPDATE {message_logs} m
SET status = 'queued', queued_at = now(), qstash_message_id = u.qid, not_before = u.nb, updated_at = now()
FROM unnest(%(ids)b::dispara_message_id[], %(qids)b::text[], %(nbs)b::timestamptz[]) AS u(id, qid, nb)
WHERE m.id = u.id AND m.status = 'pending';

-- name: qstash_campaign_published
-- Everything accepted: the campaign runs. A paused or cancelled one keeps its status.
UPDATE {campaigns}
SET status = 'processing', status_reason = NULL, updated_at = now()
WHERE id = %(campaign_id)s AND status IN ('pending', 'scheduled')
  AND NOT EXISTS (SELECT 1 FROM {message_logs} m WHERE m.campaign_id = %(campaign_id)s AND m.status = 'pending');

-- name: qstash_campaigns_to_republish
-- Campaigns of the tenant with messages QStash does not hold: never accepted, or handed back.
SELECT c.id
FROM {campaigns} c
WHERE c.tenant_id = %(tenant_id)s AND c.transport = 'qstash'
  AND c.status IN ('pending', 'scheduled', 'processing')
  AND EXISTS (SELECT 1 FROM {message_logs} m WHERE m.campaign_id = c.id AND m.status = 'pending')
ORDER BY c.created_at;

-- name: qstash_delivery_lock
-- The delivered message with its campaign, locked for the decision of what this delivery does.
SELECT m.status, m.updated_at < now() - make_interval(secs => %(lease_s)s) AS stale,
       m.tenant_id, m.campaign_id, m.phone_number, m.message_content, m.message_type, m.media_url,
       m.file_name, m.instance_name, c.status, c.tenant_id, c.retries, c.transport, c.delay_min, c.delay_max,
       (SELECT o.opted FROM dispara_opted_out(m.tenant_id, m.phone_number) o)
FROM {message_logs} m
JOIN {campaigns} c ON c.id = m.campaign_id
WHERE m.id = %(message_id)s
FOR UPDATE OF m;

-- name: qstash_delivery_hold
-- Handed back to dispara: republished later (resume, redrive) as a new round.
UPDATE {message_logs}
SET status = 'pending', queued_at = NULL, qstash_round = qstash_round + 1, qstash_message_id = NULL,
    not_before = NULL, error_message = %(reason)s, updated_at = now()
WHERE id = %(message_id)s AND status IN ('pending', 'queued', 'sending');

-- name: qstash_delivery_release
-- Not sent after all (the instance could not send): QStash retries this delivery.
UPDATE {message_logs}
SET status = 'queued', error_message = %(reason)s, updated_at = now()
WHERE id = %(message_id)s AND status = 'sending';

-- name: qstash_delivery_cancel
UPDATE {message_logs}
SET status = 'cancelled', error_message = %(reason)s, updated_at = now()
WHERE id = %(message_id)s AND status IN ('pending', 'queued', 'sending');

-- name: qstash_delivery_take
-- One send in flight per WhatsApp number across every serve replica and worker: the instance's lease
-- (the one the jobs transport claims through; an expired one is taken over). With it, the message is
-- `sending` and its campaign started (the seed's started_at, set once); without it, nothing changes.
-- Once taken, this transaction's commit need not wait for the disk: until the outcome's (synchronous)
-- commit, a crash leaves the message to be sent again either way, at once or after the sending lease.
WITH taken AS (
    UPDATE {instances}
    SET locked_by = %(holder)s, locked_until = now() + make_interval(secs => %(lease_s)s), updated_at = now()
    WHERE tenant_id = %(tenant_id)s AND name = %(name)s
      AND (locked_until IS NULL OR locked_until < now())
    RETURNING name
),
started AS (
    UPDATE {campaigns}
    SET started_at = coalesce(started_at, now()), first_claimed_at = coalesce(first_claimed_at, now())
    WHERE id = %(campaign_id)s AND (started_at IS NULL OR first_claimed_at IS NULL)
      AND EXISTS (SELECT 1 FROM taken)
),
sending AS (
    UPDATE {message_logs} SET status = 'sending', updated_at = now()
    WHERE id = %(message_id)s AND EXISTS (SELECT 1 FROM taken)
)
SELECT name, set_config('synchronous_commit', 'off', true) FROM taken;

-- name: qstash_instance_release
UPDATE {instances}
SET locked_by = NULL, locked_until = NULL, last_sent_at = CASE WHEN %(sent)s THEN now() ELSE last_sent_at END,
    updated_at = now()
WHERE tenant_id = %(tenant_id)s AND name = %(name)s AND locked_by = %(holder)s;

-- name: qstash_instances_release
-- The leases of a group of finished deliveries, in one statement.
UPDATE {instances} i
SET locked_by = NULL, locked_until = NULL, last_sent_at = CASE WHEN u.sent THEN now() ELSE i.last_sent_at END,
    updated_at = now()
FROM unnest(%(tenant_ids)b::uuid[], %(names)b::text[], %(holders)b::text[], %(sent)b::bool[])
    AS u(tenant_id, name, holder, sent)
WHERE i.tenant_id = u.tenant_id AND i.name = u.name AND i.locked_by = u.holder;

-- name: qstash_retry_failed
-- `campaign retry` for a QStash campaign: failed messages of the kinds asked for become pending in a new
-- round (a new deduplication id), and the failed counter drops by exactly those, in the same statement.
WITH requeued AS (
    UPDATE {message_logs} m
    SET status = 'pending', error_kind = NULL, queued_at = NULL, qstash_round = m.qstash_round + 1,
        qstash_message_id = NULL, not_before = NULL, updated_at = now()
    WHERE m.campaign_id = %(campaign_id)s AND m.status = 'failed'
      AND coalesce(m.error_kind, 'transient') = ANY(%(kinds)s)
    RETURNING m.id
)
SELECT dispara_failed_requeued(%(campaign_id)s, (SELECT count(*) FROM requeued));
