-- A user sees its own tenant's row and changes none: tenants are created by dispara (or the app's owner).
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
{grants}DROP POLICY IF EXISTS dispara_own_tenant ON {table};
CREATE POLICY dispara_own_tenant ON {table} FOR SELECT TO authenticated
    USING (id = (SELECT dispara_jwt_tenant()));
