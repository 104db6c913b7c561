-- dispara schema, version 3: campaigns announce their progress, so `dispara watch` redraws on change.
-- Postgres folds identical notifications of one transaction into one, so a batch of completions
-- in one transaction wakes watchers once.

CREATE FUNCTION dispara_notify_campaign() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dispara_campaign', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER campaigns_notify_progress
    AFTER UPDATE ON {campaigns}
    FOR EACH ROW
    WHEN (OLD.sent_count IS DISTINCT FROM NEW.sent_count
          OR OLD.failed_count IS DISTINCT FROM NEW.failed_count
          OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION dispara_notify_campaign();
