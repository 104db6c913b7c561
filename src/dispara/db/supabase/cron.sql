-- Every minute, the re-drive (see dispara_dispatch_if_due) runs in the database it was scheduled from.
SELECT cron.schedule('dispara-dispatch', '* * * * *', {command});
