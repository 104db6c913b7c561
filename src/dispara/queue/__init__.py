"""The jobs-table queue: leased claims with per-instance pacing, exactly-once batched completion, the worker.

Entry points: `dispara.queue.worker.run_worker`, `dispara.queue.redrive.redrive`, `dispara.queue.admin`.
"""
