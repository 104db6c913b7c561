-- name: doctor_tenant_id
-- `dispara doctor` reads (never creates) the tenant and the instances its campaigns use.
SELECT id FROM {tenants} WHERE name = %(name)s;

-- name: doctor_instances
SELECT name FROM (
    SELECT unnest(instances) AS name
    FROM {campaigns}
    WHERE tenant_id = %(tenant_id)s AND created_at > now() - make_interval(days => %(days)s)
    UNION
    SELECT name FROM {instances} WHERE tenant_id = %(tenant_id)s
) AS used
ORDER BY name;
