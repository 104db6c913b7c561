-- The caller's tenant, from the JWT PostgREST puts in request.jwt.claims; NULL without one.
CREATE OR REPLACE FUNCTION dispara_jwt_tenant() RETURNS uuid
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT nullif(nullif(current_setting('request.jwt.claims', true), '')::jsonb #>> {claim_path}, '')::uuid;
$$;

CREATE OR REPLACE FUNCTION dispara_jwt_role() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role';
$$;
GRANT EXECUTE ON FUNCTION dispara_jwt_tenant() TO authenticated;

-- Seed 003's counters, callable through PostgREST: they run as the owner, so they check the tenant
-- themselves; service_role may move any campaign's counters.
CREATE OR REPLACE FUNCTION dispara_check_campaign_tenant(p_campaign_id uuid) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = {schema}, pg_catalog, pg_temp AS $$
BEGIN
    IF dispara_jwt_role() IS DISTINCT FROM 'service_role' AND NOT EXISTS (
        SELECT 1 FROM {campaigns} WHERE id = p_campaign_id AND tenant_id = dispara_jwt_tenant()
    ) THEN
        RAISE EXCEPTION 'campaign % is not one of your tenant''s', p_campaign_id USING ERRCODE = '42501';
    END IF;
END;
$$;
REVOKE ALL ON FUNCTION dispara_check_campaign_tenant(uuid) FROM PUBLIC;

CREATE OR REPLACE FUNCTION increment_campaign_sent_count(p_campaign_id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog, pg_temp AS $$
BEGIN
    PERFORM dispara_check_campaign_tenant(p_campaign_id);
    UPDATE {campaigns} SET sent_count = sent_count + 1, updated_at = now() WHERE id = p_campaign_id;
END;
$$;

CREATE OR REPLACE FUNCTION increment_campaign_failed_count(p_campaign_id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_catalog, pg_temp AS $$
BEGIN
    PERFORM dispara_check_campaign_tenant(p_campaign_id);
    UPDATE {campaigns} SET failed_count = failed_count + 1, updated_at = now() WHERE id = p_campaign_id;
END;
$$;
REVOKE ALL ON FUNCTION increment_campaign_sent_count(uuid), increment_campaign_failed_count(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION increment_campaign_sent_count(uuid), increment_campaign_failed_count(uuid)
    TO authenticated, service_role;
