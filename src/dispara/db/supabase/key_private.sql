-- No Vault here: the bearer key lives in a schema no client role is granted, so neither the API
-- nor a logged-in user can read it; only the owner's functions below do.
CREATE SCHEMA IF NOT EXISTS dispara_private;
REVOKE ALL ON SCHEMA dispara_private FROM PUBLIC;
CREATE TABLE IF NOT EXISTS dispara_private.secrets (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON dispara_private.secrets FROM PUBLIC;
ALTER TABLE dispara_private.secrets ENABLE ROW LEVEL SECURITY;

CREATE OR REPLACE FUNCTION dispara_dispatch_key() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT value FROM dispara_private.secrets WHERE name = 'dispara_dispatch_key';
$$;
REVOKE ALL ON FUNCTION dispara_dispatch_key() FROM PUBLIC;
