-- The counters as the schema defines them: the caller's own rights, no tenant check.
CREATE OR REPLACE FUNCTION increment_campaign_sent_count(p_campaign_id uuid) RETURNS void
LANGUAGE sql AS $$
    UPDATE {campaigns} SET sent_count = sent_count + 1, updated_at = now() WHERE id = p_campaign_id;
$$;
CREATE OR REPLACE FUNCTION increment_campaign_failed_count(p_campaign_id uuid) RETURNS void
LANGUAGE sql AS $$
    UPDATE {campaigns} SET failed_count = failed_count + 1, updated_at = now() WHERE id = p_campaign_id;
$$;
GRANT EXECUTE ON FUNCTION increment_campaign_sent_count(uuid), increment_campaign_failed_count(uuid) TO PUBLIC;
DROP FUNCTION IF EXISTS dispara_check_campaign_tenant(uuid);
DROP FUNCTION IF EXISTS dispara_jwt_role();
DROP FUNCTION IF EXISTS dispara_jwt_tenant();
