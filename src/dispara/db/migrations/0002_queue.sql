-- dispara schema, version 2: what the queue worker needs beyond version 1.

-- An operator may cancel a pending job; it must never be re-armed or claimed again, unlike a failed one.
ALTER TABLE {jobs} DROP CONSTRAINT jobs_status_check;
ALTER TABLE {jobs} ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled'));

-- Why a job failed, so `redrive` re-arms transient failures and never retries a permanent one
-- (a number that is not on WhatsApp stays failed).
ALTER TABLE {jobs} ADD COLUMN error_kind text
    CHECK (error_kind IN ('transient', 'permanent', 'not_on_whatsapp'));

-- Failed messages in a row: a campaign whose every send fails (revoked key, banned number) pauses itself.
ALTER TABLE {campaigns} ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0;
-- When a worker first took one of its messages; also makes the campaign-level "start" webhook fire once.
ALTER TABLE {campaigns} ADD COLUMN first_claimed_at timestamptz;

-- Unpaced jobs (no instance) are claimed by their own index: through jobs_runnable the claim would
-- walk past every pending campaign message to find them.
CREATE INDEX jobs_runnable_unpaced ON {jobs} (tenant_id, priority DESC, run_at, id)
    WHERE status = 'pending' AND instance IS NULL;
-- `redrive` looks for failed jobs that still have attempts left.
CREATE INDEX jobs_failed_retryable ON {jobs} (tenant_id, id)
    WHERE status = 'failed' AND attempts < max_attempts;
