-- name: campaign_find_by_key
SELECT id, name, status, total_messages, sent_count, failed_count, created_at
FROM {campaigns}
WHERE tenant_id = %(tenant_id)s AND idempotency_key = %(key)s;

-- name: campaign_insert
INSERT INTO {campaigns} (
    tenant_id, user_id, name, target_audience, creative, status, instances, delay_min, delay_max,
    is_scheduled, scheduled_for, transport, retries, idempotency_key, document, daily_cap
) VALUES (
    %(tenant_id)s, %(user_id)s, %(name)s, %(target_audience)s, %(creative)s, %(status)s, %(instances)s,
    %(delay_min)s, %(delay_max)s, %(is_scheduled)s, %(scheduled_for)s, %(transport)s, %(retries)s,
    %(idempotency_key)s, %(document)s, %(daily_cap)s
)
ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
RETURNING id;

-- name: campaign_set_total
UPDATE {campaigns} SET total_messages = %(total)s, updated_at = now() WHERE id = %(campaign_id)s;

-- name: message_logs_copy
COPY {message_logs} (
    tenant_id, campaign_id, seq, phone_number, message_content, message_type, media_url, file_name,
    instance_name, status, queued_at, contact
) FROM STDIN;

-- name: message_logs_ids_ordered
-- bigint ids come from a sequence, in the order rows are copied; an adopted table's uuid keys do not.
SELECT format_type(atttypid, atttypmod) = 'bigint'
FROM pg_attribute WHERE attrelid = '{message_logs}'::regclass AND attname = 'id';

-- name: message_logs_last_id
SELECT coalesce(max(id), 0) FROM {message_logs};

-- name: jobs_insert_for_messages
-- The jobs of the messages just copied, derived server-side (no second trip of every message over the wire).
-- Found by id range: ids were handed out in the order the rows were copied, so id order is seq order.
INSERT INTO {jobs} (tenant_id, payload, run_at, max_attempts, instance, campaign_id, message_id)
SELECT m.tenant_id,
       jsonb_build_object(
           'run_location', 'supabase',
           'task_type', 'send-message',
           'data', jsonb_build_object('message_id', m.id, 'campaign_id', m.campaign_id)
       ),
       coalesce(%(run_at)s::timestamptz, now()),
       %(max_attempts)s,
       m.instance_name,
       m.campaign_id,
       m.id
FROM {message_logs} m
WHERE m.id > %(after)s AND m.id <= %(upto)s AND m.campaign_id = %(campaign_id)s
ORDER BY m.id;

-- name: jobs_insert_for_campaign
-- The same for every message of the campaign that has no job yet, in seq order: for keys that are not in
-- copy order, and for the rows an id range missed (a table whose ids do not follow the copy).
INSERT INTO {jobs} (tenant_id, payload, run_at, max_attempts, instance, campaign_id, message_id)
SELECT m.tenant_id,
       jsonb_build_object(
           'run_location', 'supabase',
           'task_type', 'send-message',
           'data', jsonb_build_object('message_id', m.id, 'campaign_id', m.campaign_id)
       ),
       coalesce(%(run_at)s::timestamptz, now()),
       %(max_attempts)s,
       m.instance_name,
       m.campaign_id,
       m.id
FROM {message_logs} m
WHERE m.campaign_id = %(campaign_id)s
  AND NOT EXISTS (SELECT 1 FROM {jobs} j WHERE j.campaign_id = m.campaign_id AND j.message_id = m.id)
ORDER BY m.seq;

-- name: instances_ensure
INSERT INTO {instances} (tenant_id, name)
SELECT %(tenant_id)s, unnest(%(names)s::text[])
ON CONFLICT (tenant_id, name) DO NOTHING;

-- name: optouts_all
SELECT phone FROM {optouts} WHERE tenant_id = %(tenant_id)s;

-- name: campaign_set_contact_details
UPDATE {campaigns} SET test = %(test)s, contact_fields = %(fields)s WHERE id = %(campaign_id)s;
