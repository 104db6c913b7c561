-- name: metrics_queue_depth
-- Pending jobs per instance ('' for unpaced ones), each half read from its own partial index.
SELECT instance, count(*) FROM {jobs}
WHERE tenant_id = %(tenant_id)s AND status = 'pending' AND instance IS NOT NULL
GROUP BY instance
UNION ALL
SELECT '', count(*) FROM {jobs}
WHERE tenant_id = %(tenant_id)s AND status = 'pending' AND instance IS NULL;

-- name: metrics_paused_instances
SELECT name FROM {instances} WHERE tenant_id = %(tenant_id)s AND paused_until > now() ORDER BY name;
