-- dispara schema, version 7: test sends (`campaign send --test-to`) are campaigns marked as such, and a
-- campaign keeps its contacts' column order (message_logs.contact is jsonb, which does not) for exports.
ALTER TABLE {campaigns} ADD COLUMN test boolean NOT NULL DEFAULT false;
ALTER TABLE {campaigns} ADD COLUMN contact_fields text[];
