"""End-to-end ingest benchmark: `python bench/ingest.py N` (default 1,000,000).

Generates a CSV of N contacts (clean Brazilian mobiles, Portuguese names) and one text template, then times
`dispara campaign send --yes` in a subprocess on a fresh embedded database (or DATABASE_URL) and prints
messages/s and the peak RSS of the dispara process. Then, in the same run and database, the COPY limit: the
same message rows and job rows, dumped beforehand in COPY's text format, streamed back with two plain COPYs
(a second campaign, one transaction), and the ratio of the send to it.
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import postgres_cpu

NAMES = ("Ana", "João", "Maria", "José", "Francisca", "Antônio", "Adriana", "Carlos", "Juliana", "Márcio")
COMPANIES = ("Padaria Pão Quente", "Açaí da Praia", "Oficina São Jorge", "Loja Bela Vista")
AREA_CODES = (11, 21, 31, 41, 51, 61, 71, 81, 85, 91)

CAMPAIGN = """\
name: bench-ingest
contacts: contacts.csv
instances: [vendas-1, vendas-2, vendas-3, vendas-4]
delay: {min: 3, max: 8}
templates:
  - type: text
    text: "Olá {nome}, bem-vindo à {empresa}!"
"""


def write_inputs(folder: Path, n: int) -> Path:
    rng = random.Random(42)
    with (folder / "contacts.csv").open("w", encoding="utf-8", newline="") as out:
        out.write("nome,empresa,telefone\n")
        for i in range(n):
            ddd = AREA_CODES[i % len(AREA_CODES)]
            number = f"({ddd}) 9{i // 10000 % 10000:04d}-{i % 10000:04d}"
            out.write(f"{rng.choice(NAMES)},{rng.choice(COMPANIES)},{number}\n")
    path = folder / "campaign.yaml"
    path.write_text(CAMPAIGN, encoding="utf-8")
    return path


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="dispara-bench-") as tmp:
        folder = Path(tmp)
        campaign = write_inputs(folder, n)
        env = dict(os.environ, DISPARA_DATA_DIR=str(folder / "data"))
        dispara = [sys.executable, "-m", "dispara"]
        subprocess.run([*dispara, "db", "migrate", "--yes"], env=env, check=True, capture_output=True)
        dsn = subprocess.run([*dispara, "db", "url"], env=env, capture_output=True, text=True, check=True)
        server_cpu, client_cpu = postgres_cpu(dsn.stdout.strip()), _children_cpu()
        started = time.perf_counter()
        proc = subprocess.run(
            [*dispara, "campaign", "send", str(campaign), "--yes"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        client_cpu = _children_cpu() - client_cpu
        server_cpu = _since(server_cpu, postgres_cpu(dsn.stdout.strip()))
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode != 0:
            sys.exit(f"campaign send failed ({proc.returncode}): {proc.stderr.strip()}")
        try:
            limit, limit_cpu = copy_limit(dsn.stdout.strip(), folder)
        finally:
            if "DATABASE_URL" not in os.environ:
                subprocess.run([*dispara, "db", "stop"], env=env, check=False, capture_output=True)
    rate = n / elapsed
    print(f"contacts {n:,}  messages {n:,}  wall {elapsed:.1f}s  {rate:,.0f} messages/s", end="")
    print(f"  peak RSS {peak_mib:.0f} MiB  CPU: dispara {client_cpu:.1f}s, PostgreSQL {server_cpu:.1f}s")
    print(f"COPY limit {limit:.1f}s (PostgreSQL CPU {limit_cpu:.1f}s)  ratio {elapsed / limit:.2f}x")
    print(f"load average {os.getloadavg()[0]:.1f}")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _since(before: float | None, after: float | None) -> float:
    return after - before if before is not None and after is not None else float("nan")


# The campaign just sent, copied under a new id (the offset keeps the new rows' ids clear of the old ones).
CAMPAIGN_COPY = """
INSERT INTO campaigns (tenant_id, name, status, total_messages, instances, delay_min, delay_max, transport,
                       retries, idempotency_key, document, contact_fields)
SELECT tenant_id, name || ' (COPY probe)', status, total_messages, instances, delay_min, delay_max,
       transport, retries, 'probe:' || idempotency_key, document, contact_fields
FROM campaigns RETURNING id, (SELECT max(id) FROM message_logs), (SELECT max(id) FROM jobs)
"""
MESSAGES_OUT = """
COPY (SELECT id + {offset}, tenant_id, '{campaign}'::uuid, seq, phone_number, message_content, message_type,
             media_url, file_name, instance_name, status, queued_at, contact
      FROM message_logs ORDER BY id) TO STDOUT
"""
MESSAGES_IN = """
COPY message_logs (id, tenant_id, campaign_id, seq, phone_number, message_content, message_type, media_url,
                   file_name, instance_name, status, queued_at, contact) FROM STDIN
"""
JOBS_OUT = """
COPY (SELECT id + {job_offset}, tenant_id,
             jsonb_set(jsonb_set(payload, '{{data,message_id}}', to_jsonb(message_id + {offset})),
                       '{{data,campaign_id}}', to_jsonb('{campaign}'::text)),
             run_at, max_attempts, instance, '{campaign}'::uuid, message_id + {offset}
      FROM jobs ORDER BY id) TO STDOUT
"""
JOBS_IN = (
    "COPY jobs (id, tenant_id, payload, run_at, max_attempts, instance, campaign_id, message_id) FROM STDIN"
)


def copy_limit(dsn: str, folder: Path) -> tuple[float, float]:
    """Seconds to COPY the sent campaign's message and job rows, pre-rendered, into the same tables, and
    the server's CPU seconds meanwhile."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        campaign, offset, job_offset = conn.execute(CAMPAIGN_COPY).fetchone()  # type: ignore[misc]
        names = {"offset": offset, "job_offset": job_offset, "campaign": campaign}
        dumps = [
            (MESSAGES_OUT, MESSAGES_IN, folder / "messages.copy"),
            (JOBS_OUT, JOBS_IN, folder / "jobs.copy"),
        ]
        for out, _, path in dumps:
            with path.open("wb") as f, conn.cursor().copy(out.format(**names)) as copy:  # type: ignore[arg-type]
                for block in copy:
                    f.write(block)
        conn.commit()
        conn.execute("CHECKPOINT")
        cpu, started = postgres_cpu(dsn), time.perf_counter()
        with conn.transaction():
            for _, into, path in dumps:
                with path.open("rb") as f, conn.cursor().copy(into) as copy:  # type: ignore[arg-type]
                    for block in iter(lambda: f.read(1 << 20), b""):
                        copy.write(block)
        return time.perf_counter() - started, _since(cpu, postgres_cpu(dsn))


if __name__ == "__main__":
    main()
