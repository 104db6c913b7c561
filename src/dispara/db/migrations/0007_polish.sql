-- dispara schema, version 7: test sends (`campaign send --test-to`) are campaigns marked as such.
ALTER TABLE campaigns ADD COLUMN test boolean NOT NULL DEFAULT false;
