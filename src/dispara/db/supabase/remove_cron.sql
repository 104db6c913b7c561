SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'dispara-dispatch';
