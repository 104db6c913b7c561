-- dispara schema, version 11: one definition of "this number has opted out", and when each instance was
-- last claimed, so that a worker serving every tenant can take turns between them.

-- Inlined by the planner (one SELECT, STABLE): as cheap as the EXISTS it replaces wherever it is used.
CREATE FUNCTION dispara_opted_out(p_tenant_id uuid, p_phone text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM {optouts} x WHERE x.tenant_id = p_tenant_id AND x.phone = p_phone)
$$;

ALTER TABLE {instances} ADD COLUMN claimed_at timestamptz;
