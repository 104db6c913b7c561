"""How a campaign's messages travel to the sender: the jobs queue (`queue/`) or QStash (`qstash`)."""
