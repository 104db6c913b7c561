-- Audio jobs: delivering their result on WhatsApp without overlapping a campaign send on the instance.

-- name: audio_instance_lease
-- Take the instance's lease (the one campaign runs take, see queue_claim) if nobody holds it.
-- Campaign pacing (next_send_at, daily caps) does not apply to an audio delivery; the lease does.
-- Returns a row only when the caller now holds the lease (taken, or its own extended).
INSERT INTO {instances} (tenant_id, name, day, locked_by, locked_until)
VALUES (%(tenant_id)s, %(name)s, (now() AT TIME ZONE 'America/Sao_Paulo')::date, %(holder)s,
        now() + make_interval(secs => %(lease_s)s))
ON CONFLICT (tenant_id, name) DO UPDATE
SET locked_by = EXCLUDED.locked_by, locked_until = EXCLUDED.locked_until, updated_at = now()
WHERE {instances}.locked_until IS NULL OR {instances}.locked_until < now()
   OR {instances}.locked_by = EXCLUDED.locked_by  -- our own lease: extended
RETURNING name;

-- name: audio_instance_release
UPDATE {instances}
SET locked_by = NULL, locked_until = NULL, updated_at = now()
WHERE tenant_id = %(tenant_id)s AND name = %(name)s AND locked_by = %(holder)s;

-- name: audio_result_write
-- The identifiers are filled in with psycopg.sql.Identifier, and only for targets in audio.result_targets.
UPDATE {{table}} SET {{column}} = %(text)s WHERE id = %(row_id)s;
