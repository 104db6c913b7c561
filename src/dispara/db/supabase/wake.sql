-- The one place that calls net.http_post: a POST to dispara serve's /dispatch with the bearer key.
-- pg_net queues the request inside the transaction and sends it after commit, so a rolled-back
-- insert wakes nobody and a committed one is visible to the drain it causes.
CREATE OR REPLACE FUNCTION dispara_wake_dispatcher(reason text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog, pg_temp AS $$
BEGIN
    RETURN net.http_post(
        url := {url},
        body := jsonb_build_object('reason', reason),
        params := '{{}}'::jsonb,
        headers := jsonb_build_object(
            'Content-Type', 'application/json',
            'Authorization', 'Bearer ' || dispara_dispatch_key()
        ),
        timeout_milliseconds := {timeout_ms}
    );
END;
$$;
REVOKE ALL ON FUNCTION dispara_wake_dispatcher(text) FROM PUBLIC;

-- Wakes the dispatcher only when a job is due (pending and run_at passed) or a lease has expired (a drain
-- that died mid-way): three index probes, so an idle queue costs next to nothing each minute.
CREATE OR REPLACE FUNCTION dispara_dispatch_if_due(reason text DEFAULT 'cron') RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM {jobs} WHERE status = 'pending' AND instance IS NOT NULL AND run_at <= now())
       OR EXISTS (SELECT 1 FROM {jobs} WHERE status = 'pending' AND instance IS NULL AND run_at <= now())
       OR EXISTS (SELECT 1 FROM {jobs} WHERE status = 'processing' AND locked_until < now()) THEN
        RETURN dispara_wake_dispatcher(reason);
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION dispara_dispatch_if_due(text) FROM PUBLIC;

-- Statement level: one POST per INSERT, not per row (campaign send inserts 20,000 jobs a statement). It
-- posts only when a job is due (the same test as the minute re-drive), so a scheduled campaign posts
-- nothing when written;
-- no transition table, so a big INSERT stores no copy of its rows for the trigger.
CREATE OR REPLACE FUNCTION dispara_notify_job_dispatcher() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog, pg_temp AS $$
BEGIN
    PERFORM dispara_dispatch_if_due('insert');
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION dispara_notify_job_dispatcher() FROM PUBLIC;

DROP TRIGGER IF EXISTS notify_job_dispatcher ON {jobs};
CREATE TRIGGER notify_job_dispatcher
    AFTER INSERT ON {jobs}
    FOR EACH STATEMENT EXECUTE FUNCTION dispara_notify_job_dispatcher();
