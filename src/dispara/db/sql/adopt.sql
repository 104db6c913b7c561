-- Catalog reads that compare an existing table with the one dispara's migrations would create.

-- name: adopt_columns
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid),
       a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %(rel)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;

-- name: adopt_constraints
SELECT c.conname, c.contype::text, pg_get_constraintdef(c.oid), c.confrelid::oid::bigint,
       ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i),
       ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i),
       c.confdeltype::text
FROM pg_constraint c
WHERE c.conrelid = %(rel)s::regclass AND c.contype IN ('c', 'f', 'u', 'p')
ORDER BY c.conname;

-- name: adopt_indexes
-- Indexes of their own, not those behind a primary key or unique constraint.
SELECT i.relname::text, pg_get_indexdef(x.indexrelid), x.indisunique
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = %(rel)s::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.conrelid = x.indrelid)
ORDER BY i.relname;

-- name: adopt_oid
SELECT to_regclass(%(rel)s)::oid::bigint;

-- name: adopt_rename_constraints
-- A renamed table's own checks and foreign keys keep dispara's names, which later migrations refer to.
SELECT c.conname::text
FROM pg_constraint c
WHERE c.conrelid = %(rel)s::regclass AND c.contype IN ('c', 'f') AND starts_with(c.conname, %(prefix)s);
