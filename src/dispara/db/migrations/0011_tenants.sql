-- dispara schema, version 11: one definition of "this number has opted out", and when each instance was
-- last claimed, so that a worker serving every tenant can take turns between them.

-- A one-row table function, not a boolean one: used in FROM, the planner inlines it (a scalar SQL
-- function holding a subquery is called row by row instead), so it costs what the EXISTS it replaces did.
CREATE FUNCTION dispara_opted_out(p_tenant_id uuid, p_phone text) RETURNS TABLE (opted boolean)
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM {optouts} x WHERE x.tenant_id = p_tenant_id AND x.phone = p_phone)
$$;

ALTER TABLE {instances} ADD COLUMN claimed_at timestamptz;
