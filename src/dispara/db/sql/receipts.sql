-- Evolution's webhooks: the inbox, receipts, replies and instance connection state.

-- name: inbox_record
-- The one write webhook requests make, for every request that arrived meanwhile (group commit).
-- A retried body (same bytes) is stored once, also when both copies are in the same group.
INSERT INTO {evolution_inbox} (tenant_id, digest, event, instance, body)
SELECT %(tenant_id)s, d, e, i, b::jsonb
FROM unnest(%(digests)s::bytea[], %(events)s::text[], %(instances)s::text[], %(bodies)s::text[]) AS u(d, e, i, b)
ON CONFLICT (tenant_id, digest) DO NOTHING;

-- name: inbox_claim
-- Events not processed yet, oldest first; receipts waiting for their send are left to inbox_claim_matched.
SELECT id, event, instance, body, received_at
FROM {evolution_inbox}
WHERE tenant_id = %(tenant_id)s AND processed_at IS NULL AND key_id IS NULL
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: inbox_claim_matched
-- Receipts that came before their send was recorded, and whose message now exists.
SELECT i.id, i.event, i.instance, i.body, i.received_at
FROM {evolution_inbox} i
WHERE i.tenant_id = %(tenant_id)s AND i.processed_at IS NULL AND i.key_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM {message_logs} m
              WHERE m.tenant_id = i.tenant_id AND m.instance_name = i.instance AND m.evolution_key = i.key_id)
ORDER BY i.id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: inbox_done
UPDATE {evolution_inbox} i
SET processed_at = now(), outcome = u.outcome
FROM unnest(%(ids)s::bigint[], %(outcomes)s::text[]) AS u(id, outcome)
WHERE i.id = u.id;

-- name: inbox_wait
-- Receipts of a key no message has yet: kept for a while (a receipt can beat the commit of its send).
UPDATE {evolution_inbox} i
SET key_id = u.key_id
FROM unnest(%(ids)s::bigint[], %(keys)s::text[]) AS u(id, key_id)
WHERE i.id = u.id;

-- name: inbox_expire
UPDATE {evolution_inbox}
SET processed_at = now(), outcome = 'unmatched receipt'
WHERE tenant_id = %(tenant_id)s AND processed_at IS NULL AND key_id IS NOT NULL
  AND received_at < now() - make_interval(secs => %(wait_s)s);

-- name: inbox_prune
-- Processed events are kept long enough to deduplicate every retry Evolution can still make.
DELETE FROM {evolution_inbox}
WHERE processed_at < now() - make_interval(secs => %(keep_s)s);

-- name: inbox_pending
SELECT count(*) FILTER (WHERE key_id IS NULL) AS events, count(*) FILTER (WHERE key_id IS NOT NULL) AS waiting
FROM {evolution_inbox}
WHERE tenant_id = %(tenant_id)s AND processed_at IS NULL;

-- name: receipts_apply
-- Receipts of one batch, folded per message: the status only moves up, delivered_at/read_at keep the first
-- time. `locked` reads each message's latest version under its lock, so what moved (and the counters) is
-- exact whatever other batch touches the same messages. Returns the inbox rows that found their message.
WITH r AS (
    SELECT * FROM unnest(%(inbox_ids)s::bigint[], %(instances)s::text[], %(keys)s::text[], %(ranks)s::int[],
                         %(at)s::timestamptz[]) AS r(inbox_id, instance, key_id, rank, at)
),
hit AS (
    SELECT r.inbox_id, m.id AS message_id, r.rank, r.at
    FROM r
    JOIN {message_logs} m
      ON m.tenant_id = %(tenant_id)s AND m.instance_name = r.instance AND m.evolution_key = r.key_id
),
folded AS (
    SELECT message_id, max(rank) AS rank,
           min(at) FILTER (WHERE rank >= %(delivered_rank)s) AS delivered_at,
           min(at) FILTER (WHERE rank >= %(read_rank)s) AS read_at
    FROM hit
    GROUP BY message_id
),
locked AS (
    SELECT m.id, m.delivery_status, m.delivered_at, m.read_at
    FROM {message_logs} m
    WHERE m.id IN (SELECT message_id FROM folded)
    ORDER BY m.id
    FOR UPDATE
),
moved AS (
    UPDATE {message_logs} m
    SET delivery_status = CASE
            WHEN f.rank > coalesce(array_position(%(names)s::text[], l.delivery_status), 0)
            THEN (%(names)s::text[])[f.rank] ELSE l.delivery_status END,
        delivered_at = coalesce(l.delivered_at, f.delivered_at),
        read_at = coalesce(l.read_at, f.read_at),
        updated_at = now()
    FROM folded f JOIN locked l ON l.id = f.message_id
    WHERE m.id = f.message_id
    RETURNING m.campaign_id,
              (l.delivered_at IS NULL AND f.delivered_at IS NOT NULL) AS delivered,
              (l.read_at IS NULL AND f.read_at IS NOT NULL) AS read
),
counted AS (
    UPDATE {campaigns} c
    SET delivered_count = c.delivered_count + d.delivered, read_count = c.read_count + d.read
    FROM (SELECT campaign_id, count(*) FILTER (WHERE delivered) AS delivered,
                 count(*) FILTER (WHERE read) AS read
          FROM moved GROUP BY campaign_id ORDER BY campaign_id) d
    WHERE c.id = d.campaign_id AND (d.delivered > 0 OR d.read > 0)
)
SELECT DISTINCT inbox_id FROM hit;

-- name: reply_record
-- One row per incoming message: a repeated upsert (retry, or both webhooks) returns nothing.
INSERT INTO {evolution_replies} (tenant_id, instance, key_id, phone, text, received_at)
VALUES (%(tenant_id)s, %(instance)s, %(key_id)s, %(phone)s, %(text)s, %(at)s)
ON CONFLICT DO NOTHING
RETURNING key_id;

-- name: reply_target
-- The message a reply answers: the one it quotes, else the latest sent to that number.
(SELECT id, campaign_id, phone_number, 0 AS pick
 FROM {message_logs}
 WHERE tenant_id = %(tenant_id)s AND instance_name = %(instance)s AND evolution_key = %(quoted)s
   AND %(quoted)s::text IS NOT NULL
 LIMIT 1)
UNION ALL
(SELECT id, campaign_id, phone_number, 1 AS pick
 FROM {message_logs}
 WHERE tenant_id = %(tenant_id)s AND phone_number = %(phone)s AND status = 'sent'
   AND %(phone)s::text IS NOT NULL
 ORDER BY sent_at DESC NULLS LAST
 LIMIT 1)
ORDER BY pick
LIMIT 1;

-- name: reply_attach
-- replied_at keeps the first reply, reply_text the latest; the counter moves on the first only.
WITH locked AS (
    SELECT id, replied_at FROM {message_logs} WHERE id = %(message_id)s FOR UPDATE
),
moved AS (
    UPDATE {message_logs} m
    SET replied_at = coalesce(l.replied_at, %(at)s), reply_text = %(text)s, updated_at = now()
    FROM locked l
    WHERE m.id = l.id
    RETURNING m.campaign_id, l.replied_at IS NULL AS first
)
UPDATE {campaigns} c SET replied_count = c.replied_count + 1
FROM moved
WHERE c.id = moved.campaign_id AND moved.first;

-- name: reply_link
UPDATE {evolution_replies}
SET message_id = %(message_id)s, phone = coalesce(phone, %(phone)s), opted_out = %(opted_out)s
WHERE tenant_id = %(tenant_id)s AND instance = %(instance)s AND key_id = %(key_id)s;

-- name: optout_link_campaign
UPDATE {optouts} SET campaign_id = %(campaign_id)s
WHERE tenant_id = %(tenant_id)s AND phone = %(phone)s AND campaign_id IS NULL;

-- name: instance_connection
-- What Evolution said about the instance. hard: paused until `open` (ten years stands for "until": psycopg
-- has no infinite datetime); soft: a cooldown, only after `open`;
-- open: lifts a pause this webhook set (never one the worker's own checks set).
INSERT INTO {instances} AS i (tenant_id, name, connection_state, connection_reason, connection_at,
                            paused_until, pause_reason, webhook_paused)
VALUES (%(tenant_id)s, %(name)s, %(state)s, %(reason)s, %(at)s,
        CASE WHEN %(pause)s = 'hard' THEN now() + interval '10 years' END,
        CASE WHEN %(pause)s = 'hard' THEN %(reason)s END,
        %(pause)s = 'hard')
ON CONFLICT (tenant_id, name) DO UPDATE
SET connection_state = excluded.connection_state,
    connection_reason = excluded.connection_reason,
    connection_at = excluded.connection_at,
    paused_until = CASE
        WHEN %(pause)s = 'hard' THEN now() + interval '10 years'
        WHEN %(pause)s = 'soft' AND i.connection_state = 'open'
            THEN greatest(coalesce(i.paused_until, now()), now() + make_interval(secs => %(soft_s)s))
        WHEN %(pause)s = 'resume' AND i.webhook_paused THEN NULL
        ELSE i.paused_until END,
    pause_reason = CASE
        WHEN %(pause)s = 'hard' OR (%(pause)s = 'soft' AND i.connection_state = 'open') THEN %(reason)s
        WHEN %(pause)s = 'resume' AND i.webhook_paused THEN NULL
        ELSE i.pause_reason END,
    webhook_paused = CASE
        WHEN %(pause)s = 'hard' OR (%(pause)s = 'soft' AND i.connection_state = 'open') THEN true
        WHEN %(pause)s = 'resume' THEN false
        ELSE i.webhook_paused END,
    updated_at = now()
-- Events arrive out of order: an older one never overrides a newer one.
WHERE i.connection_at IS NULL OR i.connection_at <= excluded.connection_at;

-- name: campaign_receipts_by_instance
SELECT coalesce(instance_name, '') AS name, count(delivered_at) AS delivered, count(read_at) AS read,
       count(replied_at) AS replied
FROM {message_logs}
WHERE campaign_id = %(campaign_id)s
GROUP BY 1;

-- name: doctor_webhook_pauses
SELECT name, pause_reason
FROM {instances}
WHERE tenant_id = %(tenant_id)s AND webhook_paused AND paused_until > now()
ORDER BY name;
