-- name: setting_upsert
INSERT INTO {settings} (tenant_id, key, value) VALUES (%(tenant_id)s, %(key)s, %(value)s)
ON CONFLICT (tenant_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now();

-- name: setting_get
SELECT value FROM {settings} WHERE tenant_id = %(tenant_id)s AND key = %(key)s;

-- name: setting_list
SELECT key, value FROM {settings} WHERE tenant_id = %(tenant_id)s ORDER BY key;

-- name: setting_delete
DELETE FROM {settings} WHERE tenant_id = %(tenant_id)s AND key = %(key)s;
