-- name: tenant_get_or_create
WITH inserted AS (
    INSERT INTO {tenants} (name) VALUES (%(name)s) ON CONFLICT (name) DO NOTHING RETURNING id
)
SELECT id FROM inserted
UNION ALL
SELECT id FROM {tenants} WHERE name = %(name)s
LIMIT 1;

-- name: tenant_find
-- By name, or by id (the web app's tenants are often named by their id).
SELECT id FROM {tenants} WHERE name = %(name)s OR id = %(id)s
ORDER BY name = %(name)s DESC
LIMIT 1;

-- name: tenant_names
SELECT name FROM {tenants} ORDER BY name LIMIT 50;

-- name: tenant_ids
-- Every tenant, for a worker that serves them all.
SELECT id FROM {tenants} ORDER BY id;
