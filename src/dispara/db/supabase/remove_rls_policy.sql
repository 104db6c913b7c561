-- The web app's own table: only dispara's policy goes; its grants and row-level security are the app's.
DROP POLICY IF EXISTS dispara_own_tenant ON {table};
