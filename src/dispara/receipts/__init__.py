"""What Evolution's webhooks report after a send: receipts, replies and opt-outs, instance connection."""
