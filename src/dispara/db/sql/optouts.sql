-- Opt-outs: numbers a tenant must never message again. Phones are stored normalised (digits with
-- country code), exactly as campaign contacts are, so `optouts_all` (campaigns.sql) matches them.

-- name: optout_add
INSERT INTO {optouts} (tenant_id, phone, reason)
SELECT %(tenant_id)s, phone, %(reason)s
FROM unnest(%(phones)s::text[]) AS phone
ON CONFLICT (tenant_id, phone) DO NOTHING
RETURNING phone;

-- name: optout_remove
DELETE FROM {optouts}
WHERE tenant_id = %(tenant_id)s AND phone = ANY(%(phones)s::text[])
RETURNING phone;

-- name: optout_list
SELECT phone, reason, created_at
FROM {optouts}
WHERE tenant_id = %(tenant_id)s
ORDER BY created_at, phone;

-- name: optout_count
SELECT count(*) FROM {optouts} WHERE tenant_id = %(tenant_id)s;

-- name: optout_import_table
-- Dropped explicitly after the import, and at commit in any case.
CREATE TEMP TABLE optout_import (line integer NOT NULL, phone text NOT NULL, reason text)
ON COMMIT DROP;

-- name: optout_import_copy
COPY optout_import (line, phone, reason) FROM STDIN;

-- name: optout_import_apply
-- One set-based insert for the whole file. A number repeated in the file keeps its first line's reason;
-- a number already opted out keeps its original reason and date.
WITH firsts AS (
    SELECT DISTINCT ON (phone) phone, reason
    FROM optout_import
    ORDER BY phone, line
), added AS (
    INSERT INTO {optouts} (tenant_id, phone, reason)
    SELECT %(tenant_id)s, phone, reason FROM firsts
    ON CONFLICT (tenant_id, phone) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM added) AS added, (SELECT count(*) FROM firsts) AS distinct_phones;

-- name: optout_import_drop
DROP TABLE optout_import;
