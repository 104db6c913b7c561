-- dispara's own bookkeeping: no client role reads it.
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON {table} FROM anon, authenticated;
