"""End-to-end ingest benchmark: `python bench/ingest.py N` (default 1,000,000).

Generates a CSV of N contacts (clean Brazilian mobiles, Portuguese names) and one text template, then times
`dispara campaign send --yes` in a subprocess on a fresh embedded database (or DATABASE_URL) and prints
messages/s and the peak RSS of the dispara process. Then, in the same run and database, the COPY limit: the
same message rows and job rows, dumped beforehand in COPY's text format, streamed back with two plain COPYs
(a second campaign, one transaction), and the ratio of the send to it. `--mapped` instead times the send on
renamed tables (config `tables:`) too, alternating with dispara's own names, and prints the ratio.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import MAPPED, mapped_schema, postgres_cpu

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


def one(n: int, mapped: bool) -> float:
    """`campaign send` of n contacts into a fresh database; messages/s."""
    with tempfile.TemporaryDirectory(prefix="dispara-bench-") as tmp:
        folder = Path(tmp)
        campaign = write_inputs(folder, n)
        config = folder / "dispara.yaml"
        config.write_text(json.dumps({"tables": MAPPED if mapped else {}}), encoding="utf-8")
        env = dict(os.environ, DISPARA_DATA_DIR=str(folder / "data"))
        dispara = [sys.executable, "-m", "dispara", "--config", str(config)]
        # Both kinds start the server the same way, so neither gets a head start on its start-up work.
        url = subprocess.run([*dispara, "db", "url"], env=env, check=True, capture_output=True, text=True)
        if mapped:
            mapped_schema(url.stdout.strip())
        subprocess.run([*dispara, "db", "migrate", "--yes"], env=env, check=True, capture_output=True)
        dsn = url.stdout.strip()
        server_cpu, cpu_before = postgres_cpu(dsn), resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.run(
            [*dispara, "campaign", "send", str(campaign), "--yes"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_mib = usage.ru_maxrss / 1024
        cpu = usage.ru_utime + usage.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
        server_cpu = _since(server_cpu, postgres_cpu(dsn))
        if proc.returncode != 0:
            sys.exit(f"campaign send failed ({proc.returncode}): {proc.stderr.strip()}")
        try:
            limit = None if mapped else copy_limit(dsn, folder)
        finally:
            if "DATABASE_URL" not in os.environ:
                subprocess.run([*dispara, "db", "stop"], env=env, check=False, capture_output=True)
    rate = n / elapsed
    names = "  (mapped table names)" if mapped else ""
    print(f"contacts {n:,}  messages {n:,}  wall {elapsed:.1f}s  {rate:,.0f} messages/s", end="")
    print(f"  CPU: dispara {cpu:.1f}s, PostgreSQL {server_cpu:.1f}s  peak RSS {peak_mib:.0f} MiB{names}")
    if limit is not None:
        seconds, limit_cpu = limit
        print(f"COPY limit {seconds:.1f}s (PostgreSQL CPU {limit_cpu:.1f}s)  ratio {elapsed / seconds:.2f}x")
        print(f"load average {os.getloadavg()[0]:.1f}")
    return rate


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
      FROM jobs WHERE message_id IS NOT NULL ORDER BY id) TO STDOUT
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


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 1_000_000
    if "--mapped" not in sys.argv:
        one(n, mapped=False)
        return
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(2):  # alternated, so a change in the machine's load hits both alike
        for mapped in (False, True):
            rates[mapped].append(one(n, mapped))
    plain, renamed = (max(rates[k]) for k in (False, True))
    print(
        f"best messages/s: dispara's names {plain:,.0f}, mapped {renamed:,.0f} ({renamed / plain - 1:+.1%})"
    )


if __name__ == "__main__":
    main()
