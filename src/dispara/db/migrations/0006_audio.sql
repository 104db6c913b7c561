-- dispara schema, version 6: audio jobs. Waiting for one job (`dispara audio ... --wait`) is a LISTEN.

-- One notification per finished job that belongs to no campaign, its id as payload. Campaign jobs are
-- left out by the trigger's WHEN, evaluated without calling any function: a campaign of a million
-- messages pays nothing for it.
CREATE FUNCTION dispara_notify_job_done() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dispara_job_done', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_done
    AFTER UPDATE OF status ON {jobs}
    FOR EACH ROW
    WHEN (NEW.campaign_id IS NULL
          AND NEW.status IN ('completed', 'failed', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION dispara_notify_job_done();
