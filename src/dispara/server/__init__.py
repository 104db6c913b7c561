"""`dispara serve`: the HTTP side of dispara (QStash deliveries, publish routes, /dispatch, /healthz)."""
