-- dispara schema, version 9: one definition of what retrying failed messages does to their campaign,
-- shared by the jobs and the QStash transports.

-- `n` failed messages of the campaign were just queued again: the failed counter drops by exactly them,
-- a finished campaign runs again, and its failure streak starts over. Returns `n`.
CREATE FUNCTION dispara_failed_requeued(p_campaign_id uuid, n bigint) RETURNS bigint
LANGUAGE sql AS $$
    UPDATE {campaigns} c
    SET failed_count = greatest(0, c.failed_count - n),
        status = CASE WHEN c.status IN ('completed', 'failed') THEN 'processing' ELSE c.status END,
        completed_at = CASE WHEN c.status IN ('completed', 'failed') THEN NULL ELSE c.completed_at END,
        consecutive_failures = 0,
        updated_at = now()
    WHERE c.id = p_campaign_id AND c.status <> 'cancelled' AND n > 0;
    SELECT n;
$$;
