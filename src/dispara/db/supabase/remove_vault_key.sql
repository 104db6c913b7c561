DELETE FROM vault.secrets WHERE name = 'dispara_dispatch_key';
