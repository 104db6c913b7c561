DROP TRIGGER IF EXISTS notify_job_dispatcher ON {jobs};
DROP FUNCTION IF EXISTS dispara_notify_job_dispatcher();
DROP FUNCTION IF EXISTS dispara_dispatch_if_due(text);
DROP FUNCTION IF EXISTS dispara_wake_dispatcher(text);
DROP FUNCTION IF EXISTS dispara_dispatch_key();
DROP SCHEMA IF EXISTS dispara_private CASCADE;
