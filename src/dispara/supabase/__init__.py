"""Running dispara inside a Supabase project: pg_net/pg_cron wake-ups, row-level security, the poolers."""
