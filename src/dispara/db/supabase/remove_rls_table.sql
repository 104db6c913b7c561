DROP POLICY IF EXISTS dispara_own_tenant ON {table};
ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
REVOKE ALL ON {table} FROM anon, authenticated;
