-- dispara schema, version 10: each campaign's message counts kept as they change, so status reads a few
-- rows instead of every message, and recent sends per 10 s for the rates and the ETA.

-- Per (campaign, instance): messages in each status, receipts, the last claim and send. Only the
-- compaction below writes an existing row (and `campaign send` a new one), so no worker ever waits on it.
CREATE TABLE {campaign_summary} (
    campaign_id    uuid NOT NULL REFERENCES {campaigns} (id) ON DELETE CASCADE,
    instance       text NOT NULL,
    tenant_id      uuid NOT NULL,
    pending        bigint NOT NULL DEFAULT 0,
    queued         bigint NOT NULL DEFAULT 0,
    sending        bigint NOT NULL DEFAULT 0,
    sent           bigint NOT NULL DEFAULT 0,
    failed         bigint NOT NULL DEFAULT 0,
    cancelled      bigint NOT NULL DEFAULT 0,
    delivered      bigint NOT NULL DEFAULT 0,
    read           bigint NOT NULL DEFAULT 0,
    replied        bigint NOT NULL DEFAULT 0,
    last_claim_at  timestamptz,
    last_sent_at   timestamptz,
    PRIMARY KEY (campaign_id, instance)
);

-- What each statement that changed message rows did to the counts, appended in that statement's own
-- transaction: appends take no lock another writer holds (two workers on one campaign never queue on a
-- counter row, and no lock order can deadlock), and a rolled-back batch leaves none. No foreign key: its
-- check would share-lock the campaign row the completer locks for update. An adopted message_logs may hold
-- rows without a tenant: the compaction takes the campaign's.
CREATE TABLE {campaign_summary_deltas} (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id  uuid NOT NULL,
    instance     text NOT NULL,
    tenant_id    uuid,
    at           timestamptz NOT NULL DEFAULT now(),
    pending      bigint NOT NULL,
    queued       bigint NOT NULL,
    sending      bigint NOT NULL,
    sent         bigint NOT NULL,
    failed       bigint NOT NULL,
    cancelled    bigint NOT NULL,
    delivered    bigint NOT NULL,
    read         bigint NOT NULL,
    replied      bigint NOT NULL
);

CREATE INDEX campaign_summary_deltas_campaign ON {campaign_summary_deltas} (campaign_id);

-- Messages sent per (campaign, instance) and 10-second bucket, with the first and last send time in it:
-- the last minute's rate and each instance's spacing. Buckets older than a quarter of an hour are pruned.
CREATE TABLE {campaign_sends} (
    campaign_id  uuid NOT NULL REFERENCES {campaigns} (id) ON DELETE CASCADE,
    instance     text NOT NULL,
    bucket       timestamptz NOT NULL,
    tenant_id    uuid NOT NULL,
    sent         bigint NOT NULL,
    first_at     timestamptz NOT NULL,
    last_at      timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, instance, bucket)
);

CREATE INDEX campaign_sends_bucket ON {campaign_sends} (bucket);

-- One place for every path that changes a message (claim, completion, cancel, retry, opt-out, QStash,
-- receipts, lease expiry, and any written later): old rows count -1, new rows +1, per statement. Inserts
-- are left to `campaign send`, which knows its counts: a transition table of a million-row COPY costs.
CREATE FUNCTION dispara_summary_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {campaign_summary_deltas}
        (campaign_id, instance, tenant_id, pending, queued, sending, sent, failed, cancelled,
         delivered, read, replied)
    SELECT r.campaign_id, r.instance, r.tenant_id,
           coalesce(sum(r.sign) FILTER (WHERE r.status = 'pending'), 0),
           coalesce(sum(r.sign) FILTER (WHERE r.status = 'queued'), 0),
           coalesce(sum(r.sign) FILTER (WHERE r.status = 'sending'), 0),
           coalesce(sum(r.sign) FILTER (WHERE r.status = 'sent'), 0),
           coalesce(sum(r.sign) FILTER (WHERE r.status = 'failed'), 0),
           coalesce(sum(r.sign) FILTER (WHERE r.status = 'cancelled'), 0),
           coalesce(sum(r.sign) FILTER (WHERE r.delivered), 0),
           coalesce(sum(r.sign) FILTER (WHERE r.read), 0),
           coalesce(sum(r.sign) FILTER (WHERE r.replied), 0)
    FROM (
        SELECT campaign_id, coalesce(instance_name, '') AS instance, tenant_id, status, -1 AS sign,
               delivered_at IS NOT NULL AS delivered, read_at IS NOT NULL AS read,
               replied_at IS NOT NULL AS replied
        FROM old_rows
        WHERE campaign_id IS NOT NULL
        UNION ALL
        SELECT campaign_id, coalesce(instance_name, ''), tenant_id, status, 1,
               delivered_at IS NOT NULL, read_at IS NOT NULL, replied_at IS NOT NULL
        FROM new_rows
        WHERE campaign_id IS NOT NULL
    ) r
    GROUP BY r.campaign_id, r.instance, r.tenant_id
    HAVING (sum(r.sign) FILTER (WHERE r.status = 'pending') <> 0
        OR sum(r.sign) FILTER (WHERE r.status = 'queued') <> 0
        OR sum(r.sign) FILTER (WHERE r.status = 'sending') <> 0
        OR sum(r.sign) FILTER (WHERE r.status = 'sent') <> 0
        OR sum(r.sign) FILTER (WHERE r.status = 'failed') <> 0
        OR sum(r.sign) FILTER (WHERE r.status = 'cancelled') <> 0
        OR sum(r.sign) FILTER (WHERE r.delivered) <> 0
        OR sum(r.sign) FILTER (WHERE r.read) <> 0
        OR sum(r.sign) FILTER (WHERE r.replied) <> 0);
    RETURN NULL;
END;
$$;

CREATE TRIGGER message_logs_summary
    AFTER UPDATE ON {message_logs}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dispara_summary_changed();

-- Campaigns queued before this version, or already in an adopted message_logs: counted once from their
-- messages (statuses dispara does not know are left out, as `status --verify` leaves them out).
INSERT INTO {campaign_summary}
    (campaign_id, instance, tenant_id, pending, queued, sending, sent, failed, cancelled,
     delivered, read, replied, last_sent_at)
SELECT m.campaign_id, coalesce(m.instance_name, ''), c.tenant_id,
       count(*) FILTER (WHERE m.status = 'pending'), count(*) FILTER (WHERE m.status = 'queued'),
       count(*) FILTER (WHERE m.status = 'sending'), count(*) FILTER (WHERE m.status = 'sent'),
       count(*) FILTER (WHERE m.status = 'failed'), count(*) FILTER (WHERE m.status = 'cancelled'),
       count(m.delivered_at), count(m.read_at), count(m.replied_at), max(m.sent_at)
FROM {message_logs} m
JOIN {campaigns} c ON c.id = m.campaign_id
GROUP BY 1, 2, 3;
