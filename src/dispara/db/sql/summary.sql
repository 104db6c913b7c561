-- Campaign counts kept as messages change (migration 0010): written at ingest, appended to by the
-- message_logs trigger, folded by the compaction, read by status.

-- name: summary_ingest
-- The messages `campaign send` just copied, per instance, all in one status.
INSERT INTO {campaign_summary} AS s (campaign_id, instance, tenant_id, pending, queued)
SELECT %(campaign_id)s, u.instance, %(tenant_id)s,
       CASE WHEN %(status)s = 'pending' THEN u.n ELSE 0 END,
       CASE WHEN %(status)s = 'queued' THEN u.n ELSE 0 END
FROM unnest(%(instances)s::text[], %(counts)s::bigint[]) AS u(instance, n)
ON CONFLICT (campaign_id, instance) DO UPDATE
SET pending = s.pending + excluded.pending, queued = s.queued + excluded.queued;

-- name: summary_compact
-- Folds the oldest deltas into the counts and the 10 s send buckets, in one statement: a reader sees the
-- deltas or their sum, never both. SKIP LOCKED lets workers compact at once on disjoint deltas; rows are
-- upserted in key order, so two compactions never deadlock. Deltas of deleted campaigns are dropped;
-- the tenant is the campaign's.
WITH moved AS (
    DELETE FROM {campaign_summary_deltas} d
    WHERE d.id IN (SELECT id FROM {campaign_summary_deltas} ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
    RETURNING d.*
),
live AS (
    SELECT m.campaign_id, m.instance, c.tenant_id, m.at, m.pending, m.queued, m.sending, m.sent, m.failed,
           m.cancelled, m.delivered, m.read, m.replied
    FROM moved m
    JOIN {campaigns} c ON c.id = m.campaign_id
),
totals AS (
    INSERT INTO {campaign_summary} AS s
        (campaign_id, instance, tenant_id, pending, queued, sending, sent, failed, cancelled,
         delivered, read, replied, last_claim_at, last_sent_at)
    SELECT campaign_id, instance, tenant_id, sum(pending), sum(queued), sum(sending), sum(sent), sum(failed),
           sum(cancelled), sum(delivered), sum(read), sum(replied),
           max(at) FILTER (WHERE sending > 0), max(at) FILTER (WHERE sent > 0)
    FROM live
    GROUP BY campaign_id, instance, tenant_id
    ORDER BY campaign_id, instance
    ON CONFLICT (campaign_id, instance) DO UPDATE
    SET pending = s.pending + excluded.pending, queued = s.queued + excluded.queued,
        sending = s.sending + excluded.sending, sent = s.sent + excluded.sent,
        failed = s.failed + excluded.failed, cancelled = s.cancelled + excluded.cancelled,
        delivered = s.delivered + excluded.delivered, read = s.read + excluded.read,
        replied = s.replied + excluded.replied,
        last_claim_at = greatest(s.last_claim_at, excluded.last_claim_at),
        last_sent_at = greatest(s.last_sent_at, excluded.last_sent_at)
    RETURNING 1
),
buckets AS (
    INSERT INTO {campaign_sends} AS b (campaign_id, instance, bucket, tenant_id, sent, first_at, last_at)
    SELECT campaign_id, instance, date_bin('10 seconds', at, 'epoch'), tenant_id, sum(sent), min(at), max(at)
    FROM live
    WHERE sent > 0 AND at > now() - interval '15 minutes'
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3
    ON CONFLICT (campaign_id, instance, bucket) DO UPDATE
    SET sent = b.sent + excluded.sent, first_at = least(b.first_at, excluded.first_at),
        last_at = greatest(b.last_at, excluded.last_at)
    RETURNING 1
),
pruned AS (
    DELETE FROM {campaign_sends} WHERE bucket < now() - interval '15 minutes' RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM totals), (SELECT count(*) FROM buckets),
       (SELECT count(*) FROM pruned);

-- name: summary_by_instance
-- The counts as of now: the folded rows plus the deltas not folded yet.
SELECT instance, sum(pending), sum(queued), sum(sending), sum(sent), sum(failed), sum(cancelled),
       sum(delivered), sum(read), sum(replied), max(last_claim_at), max(last_sent_at)
FROM (
    SELECT instance, pending, queued, sending, sent, failed, cancelled, delivered, read, replied,
           last_claim_at, last_sent_at
    FROM {campaign_summary}
    WHERE campaign_id = %(campaign_id)s
    UNION ALL
    SELECT instance, pending, queued, sending, sent, failed, cancelled, delivered, read, replied,
           CASE WHEN sending > 0 THEN at END, CASE WHEN sent > 0 THEN at END
    FROM {campaign_summary_deltas}
    WHERE campaign_id = %(campaign_id)s
) s
GROUP BY instance
ORDER BY instance;

-- name: summary_sent_recently
-- Sends in the last minute (to the 10 s bucket), and each instance's sends over five minutes with the
-- time between its first and last one, for the spacing the ETA assumes.
SELECT instance,
       coalesce(sum(sent) FILTER (WHERE last_at > now() - interval '1 minute'), 0)::bigint AS last_minute,
       sum(sent)::bigint AS recent,
       extract(epoch FROM max(last_at) - min(first_at))::float8 AS span_s
FROM (
    SELECT instance, sent, first_at, last_at
    FROM {campaign_sends}
    WHERE campaign_id = %(campaign_id)s AND bucket > now() - interval '5 minutes 10 seconds'
    UNION ALL
    SELECT instance, sent, at, at
    FROM {campaign_summary_deltas}
    WHERE campaign_id = %(campaign_id)s AND sent > 0
) s
WHERE last_at > now() - interval '5 minutes'
GROUP BY instance;

-- name: summary_oldest_due
-- Only asked when a running campaign has queued messages and nothing in flight: since when the first
-- of them could go.
SELECT min(run_at) FROM {jobs}
WHERE campaign_id = %(campaign_id)s AND status = 'pending' AND run_at <= now();
