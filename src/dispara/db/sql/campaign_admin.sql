-- name: campaign_list
SELECT id, name, status, transport, total_messages, sent_count, failed_count, created_at, completed_at
FROM campaigns
WHERE tenant_id = %(tenant_id)s AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY created_at DESC
LIMIT %(limit)s;

-- name: campaign_export
SELECT phone_number, instance_name, status, message_type, message_content, media_url, queued_at, sent_at,
       evolution_key, error_message, retry_count, updated_at
FROM message_logs
WHERE campaign_id = %(campaign_id)s AND (%(status)s::text IS NULL OR status = %(status)s)
ORDER BY seq, id;
