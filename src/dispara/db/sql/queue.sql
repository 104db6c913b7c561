-- The jobs queue: claim, complete, lease upkeep. Statements are scoped to the tenants a worker serves
-- (one, or every one with `worker --all-tenants`); completions to one tenant at a time. Times are the
-- database's now(), never a host clock.
-- The pacing calendar day is São Paulo's: daily caps reset at local midnight, not at UTC's.

-- name: queue_claim
-- One claim for every kind of job: ready instances (no lease, gap elapsed, not paused, work due), each
-- leased with its next run of jobs, then, in the slots left, jobs that no instance paces (no `instance`).
-- A run is one job, or up to run_size consecutive ones while their campaigns have no gap (delay_max = 0).
-- Every job with an instance is a message send: task types are filtered for unpaced jobs only.
-- Across tenants the slots go round: each tenant's first ready instance before anyone's second, the
-- tenant claimed least recently first; within a tenant, the instance that has waited longest.
WITH served AS (
    SELECT i.tenant_id, max(i.claimed_at) AS claimed_at
    FROM {instances} i
    WHERE i.tenant_id = ANY(%(tenants)s::uuid[])
    GROUP BY i.tenant_id
),
eligible AS (
    SELECT i.tenant_id, i.name, i.next_send_at,
           row_number() OVER (PARTITION BY i.tenant_id ORDER BY i.next_send_at, i.name) AS turn
    FROM {instances} i
    -- Only instances with a job that `candidates` would take: one whose jobs are all blocked (paused
    -- campaign, spent daily cap) must not hold a slot. LATERAL ... LIMIT 1, not EXISTS: with EXISTS the
    -- planner hashes every pending job of the tenant.
    CROSS JOIN LATERAL (
        SELECT true AS ok
        FROM {jobs} e
        WHERE e.tenant_id = i.tenant_id AND e.instance = i.name
          AND e.status = 'pending' AND e.run_at <= now()
          AND (e.campaign_id IS NULL OR EXISTS (
              SELECT 1 FROM {campaigns} ec
              WHERE ec.id = e.campaign_id AND ec.status = 'processing'
                AND (ec.daily_cap IS NULL
                     OR CASE WHEN i.day = (now() AT TIME ZONE 'America/Sao_Paulo')::date
                             THEN i.sent_today ELSE 0 END < ec.daily_cap)))
        LIMIT 1
    ) has_work
    WHERE i.tenant_id = ANY(%(tenants)s::uuid[])
      AND (i.locked_until IS NULL OR i.locked_until < now())
      AND i.next_send_at <= now()
      AND (i.paused_until IS NULL OR i.paused_until <= now())
      AND has_work.ok
),
ready AS (
    SELECT i.tenant_id, i.name, i.probe, i.consecutive_failures AS streak,
           CASE WHEN i.day = (now() AT TIME ZONE 'America/Sao_Paulo')::date THEN i.sent_today ELSE 0 END
               AS sent_today
    FROM eligible e
    JOIN served s ON s.tenant_id = e.tenant_id
    JOIN {instances} i ON i.tenant_id = e.tenant_id AND i.name = e.name
    -- Checked again on the row locked: another worker may have leased it since this statement began.
    WHERE (i.locked_until IS NULL OR i.locked_until < now())
      AND i.next_send_at <= now()
      AND (i.paused_until IS NULL OR i.paused_until <= now())
    ORDER BY e.turn, s.claimed_at NULLS FIRST, e.next_send_at, e.tenant_id, e.name
    LIMIT %(instances)s
    FOR UPDATE OF i SKIP LOCKED
),
-- The filters are written as EXISTS on purpose: with a join (or a filter on payload, which has no
-- statistics) the planner reads all of an instance's pending jobs and sorts them, instead of walking
-- jobs_runnable_instance in order and stopping after run_size rows.
candidates AS (
    SELECT r.tenant_id, r.name, r.sent_today, c.id, c.message_id, c.priority, c.run_at,
           coalesce(cp.delay_max, 0) AS delay_max, cp.daily_cap
    FROM ready r
    CROSS JOIN LATERAL (
        SELECT j.id, j.message_id, j.priority, j.run_at, j.campaign_id
        FROM {jobs} j
        WHERE j.tenant_id = r.tenant_id AND j.instance = r.name
          AND j.status = 'pending' AND j.run_at <= now()
          AND (j.campaign_id IS NULL OR EXISTS (
              SELECT 1 FROM {campaigns} x
              WHERE x.id = j.campaign_id AND x.status = 'processing'
                AND (x.daily_cap IS NULL OR r.sent_today < x.daily_cap)))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT %(run_size)s
        FOR UPDATE OF j SKIP LOCKED
    ) c
    LEFT JOIN {campaigns} cp ON cp.id = c.campaign_id
),
numbered AS (
    SELECT c.*,
           row_number() OVER w AS n,
           -- true from the first job whose campaign wants a gap: the run stops before it
           bool_or(c.delay_max > 0) OVER w AS gapped
    FROM candidates c
    WINDOW w AS (PARTITION BY c.tenant_id, c.name ORDER BY c.priority DESC, c.run_at, c.id)
),
picked AS (
    SELECT id, message_id, tenant_id, name
    FROM numbered
    WHERE n = 1 OR (NOT gapped AND (daily_cap IS NULL OR sent_today + n <= daily_cap))
),
room AS (
    SELECT greatest(0, %(instances)s - count(*)) AS n FROM (SELECT DISTINCT tenant_id, name FROM picked) p
),
-- Unpaced jobs: each tenant's first ones before anyone's next, in the order the tenants are given (the
-- worker puts the one it served least recently first). Rows locked and not taken are let go when the
-- statement ends.
unpaced AS (
    SELECT u.id, u.message_id, t.rank,
           row_number() OVER (PARTITION BY t.id ORDER BY u.priority DESC, u.run_at, u.id) AS turn
    FROM unnest(%(tenants)s::uuid[]) WITH ORDINALITY AS t(id, rank)
    CROSS JOIN LATERAL (
        SELECT j.id, j.message_id, j.priority, j.run_at
        FROM {jobs} j
        WHERE j.tenant_id = t.id AND j.status = 'pending' AND j.instance IS NULL AND j.run_at <= now()
          AND j.payload ->> 'task_type' = ANY(%(task_types)s)
          AND (j.campaign_id IS NULL
               OR EXISTS (SELECT 1 FROM {campaigns} c WHERE c.id = j.campaign_id AND c.status = 'processing'))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT (SELECT n FROM room)
        FOR UPDATE OF j SKIP LOCKED
    ) u
),
taken AS (
    SELECT id, message_id FROM picked
    UNION ALL
    (SELECT id, message_id FROM unpaced ORDER BY turn, rank LIMIT (SELECT n FROM room))
),
-- `= ANY(ARRAY(...))` makes the updates primary-key lookups; a join tempts the planner into hashing the table.
claimed AS (
    UPDATE {jobs} j
    SET status = 'processing',
        locked_by = %(worker)s,
        locked_until = now() + make_interval(secs => %(lease_s)s),
        started_at = now(),
        updated_at = now()
    WHERE j.id = ANY(ARRAY(SELECT id FROM taken))
    -- `attempts` is the attempt this claim makes; it is spent only when the completer stores a try.
    RETURNING j.id, j.tenant_id, j.instance, j.payload, j.attempts + 1 AS attempts, j.max_attempts,
              j.campaign_id, j.message_id, j.priority, j.run_at, j.started_at
),
-- Only sendable messages are returned: a job whose message was cancelled meanwhile comes back without one,
-- and one whose number has just been opted out comes back cancelled; either way its job completes unsent.
sending AS (
    UPDATE {message_logs} m
    -- A number opted out after the campaign was queued is cancelled here, at the last moment, not sent.
    SET (status, error_message) = (
            SELECT CASE WHEN o.opted THEN 'cancelled' ELSE 'sending' END,
                   CASE WHEN o.opted THEN 'opted out after the campaign was queued' ELSE m.error_message END
            FROM dispara_opted_out(m.tenant_id, m.phone_number) o
        ),
        updated_at = now()
    WHERE m.id = ANY(ARRAY(SELECT message_id FROM taken WHERE message_id IS NOT NULL))
      AND m.status IN ('pending', 'queued', 'sending')
    RETURNING m.id, m.status, m.phone_number, m.message_content, m.message_type, m.media_url, m.file_name
),
started AS (
    -- The seed's started_at: the moment a campaign's first message was claimed (no-op afterwards).
    UPDATE {campaigns} c
    SET started_at = now()
    WHERE c.id = ANY(ARRAY(SELECT DISTINCT campaign_id FROM claimed WHERE campaign_id IS NOT NULL))
      AND c.started_at IS NULL
),
leased AS (
    UPDATE {instances} i
    SET locked_by = %(worker)s, locked_until = now() + make_interval(secs => %(lease_s)s),
        claimed_at = now(), updated_at = now()
    FROM (SELECT DISTINCT tenant_id, name FROM picked) p
    WHERE i.tenant_id = p.tenant_id AND i.name = p.name
)
-- Jobs ('j') and their messages ('m') come back as separate rows, matched by the caller: joining two
-- CTEs that the planner believes hold one row each would be a nested loop, quadratic in the batch size.
-- A message row carries its id as message_id: a job id and a message id need not have one type.
SELECT 'j' AS kind, c.id, c.tenant_id, c.instance, c.payload, c.attempts, c.max_attempts, c.campaign_id,
       c.message_id, c.started_at, cp.delay_min, cp.delay_max, c.priority, c.run_at,
       NULL AS status, NULL AS phone_number, NULL AS message_content, NULL AS message_type,
       NULL AS media_url, NULL AS file_name, r.probe, r.streak
FROM claimed c
LEFT JOIN {campaigns} cp ON cp.id = c.campaign_id
LEFT JOIN ready r ON r.tenant_id = c.tenant_id AND r.name = c.instance
UNION ALL
SELECT 'm', NULL, NULL, NULL, NULL, NULL, NULL, NULL, s.id, NULL, NULL, NULL, NULL, NULL,
       s.status, s.phone_number, s.message_content, s.message_type, s.media_url, s.file_name, NULL, NULL
FROM sending s
ORDER BY kind, tenant_id, instance, priority DESC, run_at, id;

-- name: queue_complete_jobs
-- Outcomes of a batch for the jobs. Only the lease holder may write (locked_by = worker): a worker whose
-- lease expired and was taken over gets nothing back for that job, and must not touch its message. A send
-- that went out is also recorded on a job that went back to pending meanwhile (`adopt`): not yet claimed
-- again, it must not be sent twice.
UPDATE {jobs} j
SET status = u.job_status,
    attempts = j.attempts + u.charge,
    run_at = CASE WHEN u.job_status = 'pending' THEN now() + make_interval(secs => u.delay_s) ELSE j.run_at END,
    finished_at = CASE WHEN u.job_status = 'pending' THEN NULL ELSE now() END,
    last_error = coalesce(u.error, j.last_error),
    result = coalesce(u.result::jsonb, j.result),
    error_kind = u.kind,
    locked_by = NULL,
    locked_until = NULL,
    updated_at = now()
FROM unnest(
    %(job_ids)b::bigint[], %(job_status)b::text[], %(charge)b::int[], %(delay_s)b::float8[],
    %(errors)b::text[], %(results)b::text[], %(kinds)b::text[], %(adopt)b::bool[]
) AS u(job_id, job_status, charge, delay_s, error, result, kind, adopt)
WHERE j.id = u.job_id
  AND ((j.status = 'processing' AND j.locked_by = %(worker)s) OR (u.adopt AND j.status = 'pending'))
RETURNING j.id, j.status, j.finished_at;

-- name: queue_complete_messages
-- The messages of the jobs just written. A message moves only out of an unfinished status, and the rows
-- returned are what the caller moves the campaign counters by, in the same transaction: exactly once.
UPDATE {message_logs} m
SET status = u.status,
    evolution_key = CASE WHEN u.status = 'sent' THEN u.evo_key ELSE m.evolution_key END,
    evolution_response = CASE WHEN u.status = 'sent' THEN u.response::jsonb ELSE m.evolution_response END,
    sent_at = CASE WHEN u.status = 'sent' THEN now() ELSE m.sent_at END,
    error_message = CASE WHEN u.status = 'sent' THEN NULL ELSE coalesce(u.error, m.error_message) END,
    error_kind = CASE WHEN u.status = 'failed' THEN u.kind
                      WHEN u.status = 'sent' THEN NULL
                      ELSE m.error_kind END,
    retry_count = m.retry_count + u.retry_inc,
    updated_at = now()
FROM unnest(
    %(msg_ids)b::dispara_message_id[], %(msg_status)b::text[], %(keys)b::text[], %(responses)b::text[],
    %(errors)b::text[], %(kinds)b::text[], %(retry_inc)b::int[]
) AS u(id, status, evo_key, response, error, kind, retry_inc)
WHERE m.id = u.id AND m.status IN ('pending', 'queued', 'sending')
RETURNING m.id, m.campaign_id, m.status;

-- name: queue_campaign_counters
-- Move counters by what actually transitioned; complete or auto-pause the campaign in the same transaction.
-- `locked` takes the rows in id order (no deadlock between workers) and reads their latest version.
WITH u AS (
    SELECT *
    FROM unnest(%(ids)b::uuid[], %(sent)b::int[], %(failed)b::int[], %(reset)b::bool[], %(streak)b::int[],
                %(last_error)b::text[])
        AS u(id, sent, failed, reset, streak, last_error)
),
locked AS (
    SELECT c.id, c.status, c.sent_count, c.failed_count, c.total_messages, c.consecutive_failures
    FROM {campaigns} c
    WHERE c.id = ANY(%(ids)b::uuid[])
    ORDER BY c.id
    FOR UPDATE
),
calc AS (
    SELECT l.id, l.status AS old_status, l.total_messages, u.last_error,
           l.sent_count + u.sent AS sent_count,
           l.failed_count + u.failed AS failed_count,
           CASE WHEN u.reset THEN u.streak ELSE l.consecutive_failures + u.streak END AS streak,
           (SELECT count(*) FROM {message_logs} m WHERE m.campaign_id = l.id AND m.status = 'cancelled')
               AS cancelled
    FROM locked l
    JOIN u ON u.id = l.id
),
next AS (
    SELECT calc.*,
           CASE
               WHEN old_status IN ('processing', 'paused')
                    AND sent_count + failed_count + cancelled >= total_messages THEN 'completed'
               WHEN old_status = 'processing' AND streak >= %(pause_after)s THEN 'paused'
               ELSE old_status
           END AS new_status
    FROM calc
)
UPDATE {campaigns} c
SET sent_count = n.sent_count,
    failed_count = n.failed_count,
    consecutive_failures = n.streak,
    status = n.new_status,
    completed_at = CASE WHEN n.new_status = 'completed' AND n.old_status <> 'completed' THEN now()
                        ELSE c.completed_at END,
    status_reason = CASE
        WHEN n.new_status = 'paused' AND n.old_status = 'processing'
            THEN 'auto-paused after ' || n.streak || ' failed messages in a row; last error: '
                 || coalesce(n.last_error, 'unknown')
        ELSE c.status_reason END,
    updated_at = now()
FROM next n
WHERE c.id = n.id
RETURNING c.id, n.old_status, c.status, c.name, c.total_messages AS total, c.sent_count AS sent,
          c.failed_count AS failed, c.first_claimed_at, c.completed_at, c.status_reason AS reason;

-- name: queue_instances_update
-- Per-instance effects of a batch: daily counters, and at the end of a run the gap before the next send,
-- the lease release, the failure streak and, when it must rest, the pause the retry policy chose.
WITH u AS (
    SELECT *
    FROM unnest(%(names)b::text[], %(sent)b::int[], %(failed)b::int[], %(release)b::bool[],
                %(gap_s)b::float8[], %(pause_s)b::float8[], %(reasons)b::text[], %(streak)b::int[],
                %(probe)b::bool[])
        AS u(name, sent, failed, release, gap_s, pause_s, reason, streak, probe)
),
today AS (
    SELECT (now() AT TIME ZONE 'America/Sao_Paulo')::date AS d
)
UPDATE {instances} i
SET day = t.d,
    sent_today = CASE WHEN i.day = t.d THEN i.sent_today ELSE 0 END + u.sent,
    failed_today = CASE WHEN i.day = t.d THEN i.failed_today ELSE 0 END + u.failed,
    last_sent_at = CASE WHEN u.sent > 0 THEN now() ELSE i.last_sent_at END,
    consecutive_failures = coalesce(u.streak, i.consecutive_failures),
    probe = coalesce(u.probe, i.probe),
    paused_until = CASE WHEN u.pause_s IS NOT NULL THEN now() + make_interval(secs => u.pause_s)
                        ELSE i.paused_until END,
    pause_reason = CASE WHEN u.pause_s IS NOT NULL THEN u.reason
                        WHEN u.release THEN NULL
                        ELSE i.pause_reason END,
    -- greatest(): another worker that took the instance over after our lease expired keeps its own gap
    next_send_at = CASE WHEN u.release THEN greatest(i.next_send_at, now() + make_interval(secs => u.gap_s))
                        ELSE i.next_send_at END,
    locked_by = CASE WHEN u.release AND i.locked_by = %(worker)s THEN NULL ELSE i.locked_by END,
    locked_until = CASE WHEN u.release AND i.locked_by = %(worker)s THEN NULL ELSE i.locked_until END,
    updated_at = now()
FROM u, today t
WHERE i.tenant_id = %(tenant_id)s AND i.name = u.name;

-- name: queue_halt_campaigns
-- The sender refused our credentials: every running campaign of the tenant pauses with the reason,
-- until an operator fixes the key and resumes it.
UPDATE {campaigns} c
SET status = 'paused', status_reason = %(reason)s, updated_at = now()
WHERE c.tenant_id = %(tenant_id)s AND c.status = 'processing' AND c.transport = 'jobs'
RETURNING c.id, c.name, c.status, c.total_messages AS total, c.sent_count AS sent, c.failed_count AS failed,
          c.first_claimed_at, c.completed_at, c.status_reason AS reason;

-- name: queue_campaigns_first_claim
-- Campaigns whose first message is being sent now (once across all workers): the campaign start event.
UPDATE {campaigns}
SET first_claimed_at = now()
WHERE id = ANY(%(ids)b::uuid[]) AND first_claimed_at IS NULL
RETURNING id, name, total_messages, first_claimed_at;

-- name: queue_heartbeat_jobs
-- Renews exactly what the worker still holds in memory (in flight, or an outcome not yet stored), never
-- rows it has forgotten. Rows being completed right now are skipped, not waited for: no deadlock.
UPDATE {jobs}
SET locked_until = now() + make_interval(secs => %(lease_s)s)
WHERE id IN (
    SELECT id FROM {jobs}
    WHERE id = ANY(%(ids)s::bigint[]) AND status = 'processing' AND locked_by = %(worker)s
    FOR UPDATE SKIP LOCKED
);

-- name: queue_heartbeat_instances
UPDATE {instances}
SET locked_until = now() + make_interval(secs => %(lease_s)s)
WHERE (tenant_id, name) IN (
    SELECT i.tenant_id, i.name FROM {instances} i
    JOIN unnest(%(tenants)s::uuid[], %(names)s::text[]) AS h(tenant_id, name)
        ON i.tenant_id = h.tenant_id AND i.name = h.name
    WHERE i.locked_by = %(worker)s
    FOR UPDATE OF i SKIP LOCKED
);

-- name: queue_reset_expired_jobs
-- Jobs whose worker died (lease expired) go back to pending at no cost in attempts: whether the send was
-- tried is unknown. A job that keeps killing its workers is taken over by the caller after
-- max_expiries, to fail through the normal completion path so the counters stay exact. A job of a
-- cancelled campaign is cancelled instead. Right after a server restart every holder gets one lease of
-- grace to come back and renew: their leases lapsed only because nobody could reach the database.
WITH expired AS (
    SELECT id, campaign_id FROM {jobs}
    WHERE tenant_id = ANY(%(tenants)s::uuid[]) AND status = 'processing'
      AND greatest(locked_until, pg_postmaster_start_time() + make_interval(secs => %(lease_s)s)) < now()
    FOR UPDATE SKIP LOCKED
),
reset AS (
    UPDATE {jobs} j
    SET status = CASE WHEN j.lease_expiries + 1 >= %(max_expiries)s THEN 'processing'
                      WHEN c.status = 'cancelled' THEN 'cancelled'
                      ELSE 'pending' END,
        lease_expiries = j.lease_expiries + 1,
        locked_by = CASE WHEN j.lease_expiries + 1 >= %(max_expiries)s THEN %(worker)s END,
        locked_until = CASE WHEN j.lease_expiries + 1 >= %(max_expiries)s
                            THEN now() + make_interval(secs => %(lease_s)s) END,
        finished_at = CASE WHEN c.status = 'cancelled' THEN now() END,
        run_at = CASE WHEN j.lease_expiries + 1 >= %(max_expiries)s THEN j.run_at ELSE now() END,
        updated_at = now()
    FROM expired e
    LEFT JOIN {campaigns} c ON c.id = e.campaign_id
    WHERE j.id = e.id
    RETURNING j.id, j.tenant_id, j.instance, j.payload, j.attempts + 1 AS attempts, j.max_attempts,
              j.campaign_id, j.message_id, j.started_at, j.status
),
requeued AS (
    UPDATE {message_logs} m
    SET status = CASE WHEN r.status = 'cancelled' THEN 'cancelled' ELSE 'queued' END, updated_at = now()
    FROM reset r
    WHERE m.id = r.message_id AND r.status IN ('pending', 'cancelled') AND m.status = 'sending'
)
SELECT id, tenant_id, instance, payload, attempts, max_attempts, campaign_id, message_id, started_at, status
FROM reset;

-- name: queue_reset_expired_instances
UPDATE {instances}
SET locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE (tenant_id, name) IN (
    SELECT tenant_id, name FROM {instances}
    WHERE tenant_id = ANY(%(tenants)s::uuid[])
      AND greatest(locked_until, pg_postmaster_start_time() + make_interval(secs => %(lease_s)s)) < now()
    FOR UPDATE SKIP LOCKED
);

-- name: queue_ensure_instances
-- A paced job is claimed through its instance row; create any that `campaign send` did not. The names are
-- read by skipping through jobs_runnable_instance (one index probe per instance, not one row per job).
WITH RECURSIVE names AS (
    (SELECT j.instance FROM {jobs} j
     WHERE j.tenant_id = %(tenant_id)s AND j.status = 'pending' AND j.instance IS NOT NULL
     ORDER BY j.instance LIMIT 1)
    UNION ALL
    SELECT (SELECT j.instance FROM {jobs} j
            WHERE j.tenant_id = %(tenant_id)s AND j.status = 'pending' AND j.instance > n.instance
            ORDER BY j.instance LIMIT 1)
    FROM names n
    WHERE n.instance IS NOT NULL
)
INSERT INTO {instances} (tenant_id, name, day)
SELECT %(tenant_id)s, instance, (now() AT TIME ZONE 'America/Sao_Paulo')::date
FROM names
WHERE instance IS NOT NULL
ON CONFLICT (tenant_id, name) DO NOTHING;

-- name: queue_next_due
-- Seconds until the first instance with due work may send again (its gap or pause ends); NULL if none.
SELECT extract(epoch FROM min(greatest(i.next_send_at, coalesce(i.paused_until, '-infinity'))) - now())
FROM {instances} i
WHERE i.tenant_id = ANY(%(tenants)s::uuid[])
  AND greatest(i.next_send_at, coalesce(i.paused_until, '-infinity')) > now()
  AND EXISTS (
      SELECT 1 FROM {jobs} j
      WHERE j.tenant_id = i.tenant_id AND j.instance = i.name AND j.status = 'pending'
        AND j.run_at <= greatest(i.next_send_at, coalesce(i.paused_until, '-infinity'))
  );

-- name: queue_has_work_soon
-- For `worker --once`: is anything runnable within the horizon? Pacing gaps do not count against it
-- (draining a campaign means waiting for them), paused instances and campaigns and spent daily caps do.
SELECT EXISTS (
    SELECT 1
    FROM {jobs} j
    LEFT JOIN {campaigns} c ON c.id = j.campaign_id
    LEFT JOIN {instances} i ON i.tenant_id = j.tenant_id AND i.name = j.instance
    WHERE j.tenant_id = ANY(%(tenants)s::uuid[]) AND j.status = 'pending'
      AND j.run_at <= now() + make_interval(secs => %(horizon_s)s)
      AND j.payload ->> 'task_type' = ANY(%(task_types)s)
      AND (j.campaign_id IS NULL OR c.status = 'processing')
      AND (j.instance IS NULL OR i.name IS NOT NULL)
      -- an instance resting for a moment (a dropped connection, Evolution restarting) is waited for
      AND (i.paused_until IS NULL OR i.paused_until <= now() + make_interval(secs => %(horizon_s)s))
      AND (c.daily_cap IS NULL OR i.name IS NULL
           OR i.day <> (now() AT TIME ZONE 'America/Sao_Paulo')::date OR i.sent_today < c.daily_cap)
) OR EXISTS (
    -- a dead worker's jobs, soon to be taken over
    SELECT 1
    FROM {jobs} j
    WHERE j.tenant_id = ANY(%(tenants)s::uuid[]) AND j.status = 'processing'
      AND j.locked_until <= now() + make_interval(secs => %(horizon_s)s)
);

-- name: queue_listen
-- New jobs wake the claim loop; campaigns that stop running stop their claimed runs.
LISTEN dispara_jobs; LISTEN dispara_campaign_status

-- name: queue_left
-- What is still queued when `worker --once` or `redrive` stops, grouped by why it did not go out.
SELECT reason, count(*) AS jobs, min(until) AS until
FROM (
    SELECT CASE
               WHEN c.id IS NOT NULL AND c.status <> 'processing' THEN 'campaign ' || c.status
               WHEN i.paused_until > now() THEN 'instance ' || i.name || ' paused: ' || coalesce(i.pause_reason, '?')
               WHEN c.daily_cap IS NOT NULL AND i.day = (now() AT TIME ZONE 'America/Sao_Paulo')::date
                    AND i.sent_today >= c.daily_cap THEN 'daily cap reached on ' || i.name
               WHEN j.run_at > now() THEN 'waiting to retry'
               ELSE 'due'
           END AS reason,
           CASE
               WHEN c.id IS NOT NULL AND c.status <> 'processing' THEN c.scheduled_for
               WHEN i.paused_until > now() THEN i.paused_until
               WHEN j.run_at > now() THEN j.run_at
           END AS until
    FROM {jobs} j
    LEFT JOIN {campaigns} c ON c.id = j.campaign_id
    LEFT JOIN {instances} i ON i.tenant_id = j.tenant_id AND i.name = j.instance
    WHERE j.tenant_id = ANY(%(tenants)s::uuid[]) AND j.status = 'pending'
) pending
GROUP BY reason
ORDER BY jobs DESC, reason
LIMIT 5;
