-- name: migrations_table
CREATE TABLE IF NOT EXISTS {dispara_migrations} (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_current
SELECT coalesce(max(version), 0) FROM {dispara_migrations};

-- name: migrations_applied
SELECT version, name, checksum FROM {dispara_migrations} ORDER BY version;

-- name: migrations_record
INSERT INTO {dispara_migrations} (version, name, checksum) VALUES (%s, %s, %s);
