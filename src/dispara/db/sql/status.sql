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

-- name: campaign_counts_by_instance
SELECT instance_name, status, count(*) AS count
FROM {message_logs}
WHERE campaign_id = %(campaign_id)s
GROUP BY instance_name, status;

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
