"""Micro-benchmark of the campaign pipeline: `python bench/prepare.py N` (default 1,000,000).

Writes N contacts (mixed phone formats, ~2% bad, ~1% duplicates) to a temporary folder, then times
`prepare` over them with two templates (one with variants) and prints rows/s and peak RSS.
"""

from __future__ import annotations

import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from dispara.campaigns.contacts import RejectedWriter
from dispara.campaigns.model import load_campaign
from dispara.campaigns.prepare import prepare

NAMES = ("Ana", "João", "Maria", "José", "Francisca", "Antônio", "Adriana", "Carlos", "Juliana", "Márcio")
COMPANIES = ("Padaria Pão Quente", "Açaí da Praia", "Oficina São Jorge", "Loja Bela Vista", "")
CITIES = ("São Paulo", "Rio de Janeiro", "Belo Horizonte", "Salvador", "Curitiba", "Recife")
AREA_CODES = (11, 21, 31, 41, 51, 61, 71, 81, 85, 91)

CAMPAIGN = """\
name: bench
contacts: contacts.csv
instances: [vendas-1, vendas-2, vendas-3]
templates:
  - type: text
    text: "Olá {nome}, bem-vindo à {empresa|nossa loja}!"
    variants:
      - "Oi {nome}! A {empresa|nossa loja} tem novidades."
      - "{nome}, tudo bem? Temos ofertas em {cidade}."
  - type: text
    text: "Responda SAIR para não receber mais mensagens."
"""


def phone(rng: random.Random, i: int) -> str:
    if i % 100 == 7:
        return f"{rng.randint(1000, 99999)}"  # too short
    if i % 100 == 13:
        return "11999990001"  # a duplicate of the same number, again and again
    ddd, number = rng.choice(AREA_CODES), rng.randint(10_000_000, 99_999_999)
    style = i % 5
    if style == 0:
        return f"+55 ({ddd}) 9{number // 10_000:04d}-{number % 10_000:04d}"
    if style == 1:
        return f"{ddd}9{number}"
    if style == 2:
        return f"55{ddd}9{number}"
    if style == 3:
        return f"({ddd}) 9{number // 10_000:04d}-{number % 10_000:04d}"
    return f"55 {ddd} 9{number // 10_000:04d} {number % 10_000:04d}"


def write_contacts(path: Path, count: int) -> None:
    rng = random.Random(42)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("Nome;Empresa;Cidade;Telefone\r\n")
        for i in range(count):
            out.write(f"{rng.choice(NAMES)};{rng.choice(COMPANIES)};{rng.choice(CITIES)};{phone(rng, i)}\r\n")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        write_contacts(root / "contacts.csv", count)
        (root / "campaign.yaml").write_text(CAMPAIGN, encoding="utf-8")
        print(f"generated {count:,} rows in {time.perf_counter() - started:.1f}s")

        started = time.perf_counter()
        campaign = load_campaign(root / "campaign.yaml")
        rejected = RejectedWriter(campaign.contacts)
        preparation = prepare(campaign, optouts=frozenset({"5511988887777"}), rejected=rejected)
        messages = sum(1 for _ in preparation)
        elapsed = time.perf_counter() - started

    report = preparation.report
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(
        f"rows {report.rows_read:,}  contacts {report.contacts:,}  invalid {report.invalid:,}  "
        f"duplicates {report.duplicates:,}  messages {messages:,}  rejected file rows {rejected.count:,}"
    )
    print(f"{elapsed:.2f}s  {report.rows_read / elapsed:,.0f} rows/s  peak RSS {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
