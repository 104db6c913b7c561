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

-- Statement level: a campaign of a million messages is one INSERT, hence one POST. Jobs that are not
-- due yet (a scheduled campaign) post nothing; the minute re-drive wakes the dispatcher when they are.
CREATE OR REPLACE FUNCTION dispara_notify_job_dispatcher() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM inserted WHERE status = 'pending' AND run_at <= now()) THEN
        PERFORM dispara_wake_dispatcher('insert');
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION dispara_notify_job_dispatcher() FROM PUBLIC;

DROP TRIGGER IF EXISTS notify_job_dispatcher ON {jobs};
CREATE TRIGGER notify_job_dispatcher
    AFTER INSERT ON {jobs}
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION dispara_notify_job_dispatcher();

-- The minute re-drive: wakes the dispatcher only when a job is due (pending and run_at passed) or a
-- lease has expired (a drain that died mid-way), so an idle queue costs three index probes a minute.
CREATE OR REPLACE FUNCTION dispara_dispatch_if_due() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog, pg_temp AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM {jobs} WHERE status = 'pending' AND instance IS NOT NULL AND run_at <= now())
       OR EXISTS (SELECT 1 FROM {jobs} WHERE status = 'pending' AND instance IS NULL AND run_at <= now())
       OR EXISTS (SELECT 1 FROM {jobs} WHERE status = 'processing' AND locked_until < now()) THEN
        RETURN dispara_wake_dispatcher('cron');
    END IF;
    RETURN NULL;
END;
$$;
REVOKE ALL ON FUNCTION dispara_dispatch_if_due() FROM PUBLIC;
