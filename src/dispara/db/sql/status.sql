-- name: campaign_resolve
-- A campaign named by id, unique id prefix, the `id:` of its file, or name (the latest of that name wins).
SELECT id, name, created_at, (id::text LIKE %(prefix)s) AS by_id
FROM {campaigns}
WHERE tenant_id = %(tenant_id)s
  AND (id::text LIKE %(prefix)s OR idempotency_key = 'id:' || %(ref)s OR name = %(ref)s)
ORDER BY by_id DESC, (idempotency_key = 'id:' || %(ref)s) DESC, created_at DESC
LIMIT 20;

-- name: campaign_snapshot
SELECT id, name, status, transport, created_at, started_at, completed_at, total_messages AS total,
       sent_count AS counter_sent, failed_count AS counter_failed, status_reason, delay_min, delay_max,
       scheduled_for, now() AS now,
       document #>> '{{schedule,window,timezone}}' AS zone, daily_cap
FROM {campaigns}
WHERE id = %(campaign_id)s;

-- name: campaign_activity
-- Whether workers are taking the campaign's due jobs: the last claim, the last send, what is due now.
SELECT (SELECT count(*) FROM {jobs} j
        WHERE j.campaign_id = %(campaign_id)s AND j.status = 'pending' AND j.run_at <= now()) AS due,
       (SELECT count(*) FROM {jobs} j
        WHERE j.campaign_id = %(campaign_id)s AND j.status = 'processing') AS in_flight,
       (SELECT max(j.started_at) FROM {jobs} j WHERE j.campaign_id = %(campaign_id)s) AS last_claim_at,
       (SELECT min(j.run_at) FROM {jobs} j
        WHERE j.campaign_id = %(campaign_id)s AND j.status = 'pending' AND j.run_at <= now()) AS oldest_due,
       (SELECT max(m.sent_at) FROM {message_logs} m WHERE m.campaign_id = %(campaign_id)s) AS last_sent_at;

-- name: campaign_counts_by_instance
SELECT instance_name, status, count(*) AS count
FROM {message_logs}
WHERE campaign_id = %(campaign_id)s
GROUP BY instance_name, status;

-- name: campaign_sent_recently
-- Sends in the last minute, and the average spacing of each instance's recent sends for the ETA.
SELECT instance_name,
       count(*) FILTER (WHERE sent_at > now() - interval '1 minute') AS last_minute,
       count(*) AS recent,
       extract(epoch FROM max(sent_at) - min(sent_at)) AS span_s
FROM {message_logs}
WHERE campaign_id = %(campaign_id)s AND status = 'sent' AND sent_at > now() - interval '5 minutes'
GROUP BY instance_name;

-- name: campaign_instances_state
-- '-infinity' (never sent) has no Python datetime: it comes back as NULL.
SELECT name,
       CASE WHEN isfinite(next_send_at) THEN next_send_at END AS next_send_at,
       CASE WHEN paused_until > now() THEN paused_until END AS paused_until,
       CASE WHEN paused_until > now() THEN pause_reason END AS pause_reason,
       CASE WHEN day = (now() AT TIME ZONE 'America/Sao_Paulo')::date THEN sent_today ELSE 0 END AS sent_today
FROM {instances}
WHERE tenant_id = %(tenant_id)s AND name = ANY(%(names)s);

-- name: campaign_top_errors
SELECT coalesce(error_message, '(no message)') AS error, count(*) AS count
FROM {message_logs}
WHERE campaign_id = %(campaign_id)s AND status = 'failed'
GROUP BY 1
ORDER BY 2 DESC, 1
LIMIT 5;

-- name: campaign_latest_failures
SELECT phone_number, instance_name, coalesce(error_message, '(no message)'), updated_at
FROM {message_logs}
WHERE campaign_id = %(campaign_id)s AND status = 'failed'
ORDER BY updated_at DESC
LIMIT %(limit)s;
