-- Jobs that are not campaign messages: enqueued one at a time, claimed and followed by id.

-- name: jobs_enqueue
-- The statement trigger on jobs NOTIFYs dispara_jobs, which wakes the workers.
INSERT INTO {jobs} (tenant_id, payload, max_attempts, run_at)
VALUES (%(tenant_id)s, %(payload)s::jsonb, coalesce(%(max_attempts)s, 3), coalesce(%(run_at)s, now()))
RETURNING id;

-- name: jobs_claim_by_id
-- One unpaced job, leased to the caller if it is due and nobody holds it (`--wait` runs it itself): pending,
-- or left processing by a worker whose lease expired (a lapsed lease costs no attempt, as in
-- queue_reset_expired_jobs; a poison job is redrive's). `attempts` is the attempt this claim makes.
UPDATE {jobs} j
SET status = 'processing',
    locked_by = %(worker)s,
    locked_until = now() + make_interval(secs => %(lease_s)s),
    lease_expiries = j.lease_expiries + CASE WHEN j.status = 'processing' THEN 1 ELSE 0 END,
    started_at = now(),
    updated_at = now()
WHERE j.id = ANY(ARRAY(
    SELECT id FROM {jobs}
    WHERE id = %(id)s AND tenant_id = %(tenant_id)s AND instance IS NULL
      AND ((status = 'pending' AND run_at <= now())
           OR (status = 'processing' AND locked_until < now() AND lease_expiries + 1 < %(max_expiries)s))
    FOR UPDATE SKIP LOCKED
))
RETURNING j.id, j.instance, j.payload, j.attempts + 1 AS attempts, j.max_attempts, j.campaign_id,
          j.message_id, j.started_at;

-- name: jobs_state
-- Where a followed job stands; `due_in` is seconds until a pending job may run (negative: due now),
-- `lease_left` seconds until a processing job's lease runs out.
SELECT status, result, last_error, error_kind, attempts, max_attempts,
       extract(epoch FROM run_at - now()) AS due_in,
       extract(epoch FROM locked_until - now()) AS lease_left
FROM {jobs}
WHERE id = %(id)s AND tenant_id = %(tenant_id)s;

-- name: jobs_listen_done
LISTEN dispara_job_done;
