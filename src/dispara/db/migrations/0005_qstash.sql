-- dispara schema, version 5: messages delivered through QStash instead of the jobs queue.
-- qstash_round counts the times a message was handed back (held while its campaign was paused, or its
-- instance unavailable at the last attempt) and is part of the deduplication id, so a republish is a new
-- QStash message while a repeated publish of the same round is deduplicated. not_before is the release
-- time it was published with: the pace of the next publish on the instance starts after it.

ALTER TABLE {message_logs}
    ADD COLUMN qstash_round integer NOT NULL DEFAULT 0,
    ADD COLUMN qstash_message_id text,
    ADD COLUMN not_before timestamptz;
