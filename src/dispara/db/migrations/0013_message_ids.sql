-- dispara schema, version 13: a message id is whatever type the message_logs key has: bigint in dispara's
-- own table, often a uuid (gen_random_uuid()) in a web app's existing one. Queries cast message ids to
-- this domain, and the columns that refer to a message take the key's type.
DO $$
DECLARE
    id_type text := (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                     WHERE attrelid = '{message_logs}'::regclass AND attname = 'id');
BEGIN
    EXECUTE format('CREATE DOMAIN dispara_message_id AS %s', id_type);
    IF id_type <> 'bigint' THEN
        -- Only reached when the table was adopted: no job or reply can refer to one of its messages yet.
        EXECUTE format('ALTER TABLE %s ALTER COLUMN message_id TYPE %s USING NULL',
                       '{jobs}'::regclass, id_type);
        EXECUTE format('ALTER TABLE %s ALTER COLUMN message_id TYPE %s USING NULL',
                       '{evolution_replies}'::regclass, id_type);
    END IF;
END
$$;
