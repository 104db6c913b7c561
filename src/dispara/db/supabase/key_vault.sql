-- The bearer key /dispatch wants, read from Supabase Vault (stored there as dispara_dispatch_key).
CREATE OR REPLACE FUNCTION dispara_dispatch_key() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'dispara_dispatch_key';
$$;
REVOKE ALL ON FUNCTION dispara_dispatch_key() FROM PUBLIC;
