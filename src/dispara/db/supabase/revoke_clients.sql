-- Supabase's default privileges grant EXECUTE on every new function in public to anon and authenticated
-- directly, not through PUBLIC: take back what only the trigger, the minute job and dispara call, so the
-- public API key cannot start drains through /rest/v1/rpc. (Each runs where its function exists.)
DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['dispara_wake_dispatcher(text)', 'dispara_dispatch_if_due(text)',
                             'dispara_notify_job_dispatcher()', 'dispara_dispatch_key()',
                             'dispara_check_campaign_tenant(uuid)'] LOOP
        IF to_regprocedure(f) IS NOT NULL THEN
            EXECUTE 'REVOKE ALL ON FUNCTION ' || to_regprocedure(f)::text || ' FROM anon, authenticated';
        END IF;
    END LOOP;
    FOREACH f IN ARRAY ARRAY['increment_campaign_sent_count(uuid)', 'increment_campaign_failed_count(uuid)',
                             'dispara_jwt_tenant()', 'dispara_jwt_role()'] LOOP
        IF to_regprocedure(f) IS NOT NULL THEN
            EXECUTE 'REVOKE ALL ON FUNCTION ' || to_regprocedure(f)::text || ' FROM anon';
        END IF;
    END LOOP;
END
$$;
