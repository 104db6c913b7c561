"""End-to-end ingest benchmark: `python bench/ingest.py N` (default 1,000,000).

Generates a CSV of N contacts (clean Brazilian mobiles, Portuguese names) and one text template, then times
`dispara campaign send --yes` in a subprocess on a fresh embedded database (or DATABASE_URL) and prints
messages/s and the peak RSS of the dispara process.
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
        started = time.perf_counter()
        proc = subprocess.run(
            [*dispara, "campaign", "send", str(campaign), "--yes"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode != 0:
            sys.exit(f"campaign send failed ({proc.returncode}): {proc.stderr.strip()}")
        if "DATABASE_URL" not in os.environ:
            subprocess.run([*dispara, "db", "stop"], env=env, check=False, capture_output=True)
    rate = n / elapsed
    print(f"contacts {n:,}  messages {n:,}  wall {elapsed:.1f}s  {rate:,.0f} messages/s", end="")
    print(f"  peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
