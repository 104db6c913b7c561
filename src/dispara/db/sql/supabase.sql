-- name: supabase_detect
-- What this database offers for the Supabase layer, in one round trip.
SELECT to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') IS NOT NULL AS has_http_post,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_net') AS pg_net_available,
       to_regprocedure('cron.schedule(text, text, text)') IS NOT NULL AS has_cron,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron') AS pg_cron_available,
       -- Only a superuser may read shared_preload_libraries (Supabase's postgres is not one): pg_settings
       -- hides it from the others, and unknown counts as preloaded, as it is on Supabase.
       coalesce('pg_cron' = ANY (string_to_array(replace(
           (SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'), ' ', ''), ',')), true)
           AS pg_cron_preloaded,
       coalesce(current_setting('cron.database_name', true), 'postgres') = current_database()
           AS cron_database,
       to_regclass('vault.decrypted_secrets') IS NOT NULL AS has_vault,
       (SELECT count(*) = 3 FROM pg_roles WHERE rolname IN ('anon', 'authenticated', 'service_role'))
           AS has_client_roles,
       current_schema() AS schema;

-- name: supabase_vault_secret_id
SELECT id FROM vault.secrets WHERE name = 'dispara_dispatch_key';

-- name: supabase_vault_secret_create
SELECT vault.create_secret(%(key)s, 'dispara_dispatch_key', 'bearer key of dispara serve /dispatch');

-- name: supabase_vault_secret_update
SELECT vault.update_secret(%(id)s, %(key)s);

-- name: supabase_private_secret_set
INSERT INTO dispara_private.secrets (name, value) VALUES ('dispara_dispatch_key', %(key)s)
ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now();

-- name: supabase_installed
-- Which parts of the Supabase layer this database has (for `db status`).
SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'notify_job_dispatcher') AS trigger,
       EXISTS (SELECT 1 FROM pg_policy WHERE polname = 'dispara_own_tenant') AS rls,
       to_regclass('dispara_private.secrets') IS NOT NULL AS private_key,
       to_regclass('cron.job') IS NOT NULL AS has_cron,
       to_regclass('vault.secrets') IS NOT NULL AS has_vault;

-- name: supabase_cron_job
-- The minute job and its last run, if it has run.
SELECT d.status, d.start_time, d.return_message
FROM cron.job j
LEFT JOIN LATERAL (
    SELECT status, start_time, return_message FROM cron.job_run_details r
    WHERE r.jobid = j.jobid ORDER BY r.runid DESC LIMIT 1
) d ON true
WHERE j.jobname = %(name)s AND j.active;

-- name: supabase_vault_key_exists
SELECT 1 FROM vault.secrets WHERE name = 'dispara_dispatch_key';
