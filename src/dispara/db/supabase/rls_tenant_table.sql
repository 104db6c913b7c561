ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
{grants}DROP POLICY IF EXISTS dispara_own_tenant ON {table};
CREATE POLICY dispara_own_tenant ON {table} TO authenticated
    USING (tenant_id = (SELECT dispara_jwt_tenant()))
    WITH CHECK (tenant_id = (SELECT dispara_jwt_tenant()));
