"""`dispara optout` against a real database: normalisation, all-or-nothing, tenants, CSV import, send."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from dispara import optouts
from tests.helpers import Result, run_cli


def rows(dsn: str) -> list[tuple[str, str, str | None]]:
    """(tenant name, phone, reason) of every opt-out."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT t.name, o.phone, o.reason FROM optouts o JOIN tenants t ON t.id = o.tenant_id "
            "ORDER BY t.name, o.phone"
        ).fetchall()


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    return run_cli(capsys, *args)


def test_add_list_remove_with_normalisation(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(
        capsys, "optout", "add", "+55 (11) 99999-0001", "11999990001", "21 98888-0002", "--reason", "SAIR"
    )
    assert result.code == 0, result.err
    assert "5511999990001\topted out" in result.out
    assert "2 added, 0 already opted out" in result.out
    assert rows(env_db) == [("default", "5511999990001", "SAIR"), ("default", "5521988880002", "SAIR")]

    # Again, in another spelling: already there, and the first reason is kept.
    result = cli(capsys, "optout", "add", "5511999990001", "--reason", "outro")
    assert result.code == 0, result.err
    assert "5511999990001\talready opted out" in result.out
    assert rows(env_db)[0] == ("default", "5511999990001", "SAIR")

    result = cli(capsys, "optout", "list")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["5511999990001", "5521988880002"]
    assert all(line.endswith("\tSAIR") for line in lines)

    result = cli(capsys, "optout", "list", "--json")
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert [(item["phone"], item["reason"]) for item in listed] == [
        ("5511999990001", "SAIR"),
        ("5521988880002", "SAIR"),
    ]
    assert all(item["created_at"][:4].isdigit() for item in listed)

    result = cli(capsys, "optout", "remove", "(11) 99999-0001", "+55 31 97777-0003")
    assert result.code == 0, result.err
    assert "5511999990001\tremoved" in result.out
    assert "5531977770003\twas not opted out" in result.out
    assert rows(env_db) == [("default", "5521988880002", "SAIR")]


def test_empty_list(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "optout", "list")
    assert (result.code, result.out) == (0, "no opt-outs for tenant default\n")
    result = cli(capsys, "optout", "list", "--json")
    assert (result.code, json.loads(result.out)) == (0, [])


def test_an_invalid_number_writes_nothing_and_exits_4(
    env_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = cli(capsys, "optout", "add", "11999990001", "123", "abc", "--reason", "x")
    assert result.code == 4
    assert "invalid number '123': too short" in result.err
    assert "invalid number 'abc': not a phone number" in result.err
    assert "2 of 3 numbers are invalid: nothing written" in result.err
    assert rows(env_db) == []

    cli(capsys, "optout", "add", "11999990001")
    result = cli(capsys, "optout", "remove", "11999990001", "999")
    assert result.code == 4
    assert "invalid number '999'" in result.err
    assert rows(env_db) == [("default", "5511999990001", None)]


def test_country_option(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "optout", "add", "912 345 678", "--country", "pt")
    assert result.code == 0, result.err
    assert rows(env_db) == [("default", "351912345678", None)]


def test_tenants_are_isolated(env_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "optout", "add", "11999990001").code == 0
    assert cli(capsys, "--tenant", "loja-2", "optout", "add", "11999990002").code == 0
    result = cli(capsys, "--tenant", "loja-2", "optout", "list")
    assert [line.split("\t")[0] for line in result.out.splitlines()] == ["5511999990002"]
    result = cli(capsys, "optout", "remove", "11999990002")
    assert "5511999990002\twas not opted out" in result.out
    assert rows(env_db) == [("default", "5511999990001", None), ("loja-2", "5511999990002", None)]


def test_import_latin1_semicolons_with_reason_column(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cli(capsys, "optout", "add", "11999990003", "--reason", "antes")
    csv_path = tmp_path / "sair.csv"
    csv_path.write_bytes(
        (
            "Nome;Celular;Motivo\n"
            "João;(11) 99999-0001;não quer mais\n"
            "Cecília;+55 11 99999-0002;\n"
            "José;11999990003;repetido no banco\n"
            "Ana;123;errado\n"
            "João de novo;11 99999-0001;segunda vez\n"
        ).encode("cp1252")
    )
    result = cli(capsys, "optout", "import", str(csv_path), "--reason", "respondeu SAIR")
    assert result.code == 0, result.err
    assert "phone column 'celular', reason column motivo" in result.out
    for label, value in (("rows read", 5), ("added", 2), ("already opted out", 1), ("invalid", 1)):
        assert any(line.split() == [*label.split(), str(value)] for line in result.out.splitlines()), label
    assert rows(env_db) == [
        ("default", "5511999990001", "não quer mais"),  # the first of the file's two rows wins
        ("default", "5511999990002", "respondeu SAIR"),  # empty reason cell: --reason
        ("default", "5511999990003", "antes"),  # already there: untouched
    ]
    rejected = tmp_path / "sair.rejected.csv"
    assert f"refused rows and reasons: {rejected}" in result.out
    assert rejected.read_text(encoding="utf-8-sig").splitlines() == [
        "Nome;Celular;Motivo;line;reason",
        "Ana;123;errado;5;invalid phone: too short",
    ]


def test_import_of_a_broken_file_writes_nothing(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv_path = tmp_path / "quebrado.csv"
    good = "".join(f"Cliente {i};119999{i:05d}\n" for i in range(1, 300))
    csv_path.write_text(f"nome;telefone\n{good}Ana;abc\nBeto;11 98888-0001;extra;campos\n", encoding="utf-8")
    result = cli(capsys, "optout", "import", str(csv_path))
    assert result.code == 4
    assert "quebrado.csv: line 302: 4 fields but the header has 2" in result.err
    assert rows(env_db) == []
    assert not (tmp_path / "quebrado.rejected.csv").exists()


def test_import_without_a_phone_column(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv_path = tmp_path / "x.csv"
    csv_path.write_text("nome,codigo\nAna,11999990001\n", encoding="utf-8")
    result = cli(capsys, "optout", "import", str(csv_path))
    assert result.code == 4
    assert "no phone column" in result.err
    result = cli(capsys, "optout", "import", str(csv_path), "--phone-column", "Codigo")
    assert result.code == 0, result.err
    assert rows(env_db) == [("default", "5511999990001", None)]


def test_import_counts_every_row_once(
    env_db: str, conn: psycopg.Connection[tuple[object, ...]], tmp_path: Path
) -> None:
    from dispara.tenants import tenant_id

    csv_path = tmp_path / "many.csv"
    lines = [f"119{i:08d}" for i in range(20_000)]
    csv_path.write_text("phone\n" + "\n".join(lines + lines[:500] + ["0", ""]) + "\n", encoding="utf-8")
    tenant = tenant_id(conn, "default")
    report = optouts.import_csv(conn, tenant, csv_path)
    conn.commit()
    invalid = report.invalid
    assert report.rows_read == 20_501
    assert report.added + report.already_present + report.duplicates + invalid == report.rows_read
    assert (report.duplicates, invalid) == (500, 1)
    assert optouts.count(conn, tenant) == report.added


CAMPAIGN = """\
name: Opt-out test
contacts: contatos.csv
instances: [inst-a]
templates:
  - type: text
    text: "Olá {nome}!"
"""


def test_campaign_send_leaves_opted_out_numbers_out(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli(capsys, "optout", "add", "+55 (11) 99999-0002").code == 0
    (tmp_path / "contatos.csv").write_text(
        "nome;celular\nAna;11 99999-0001\nBeto;5511999990002\nCaio;(11) 99999-0003\n", encoding="utf-8"
    )
    (tmp_path / "campanha.yaml").write_text(CAMPAIGN, encoding="utf-8")
    result = cli(capsys, "campaign", "send", str(tmp_path / "campanha.yaml"), "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)["report"]
    assert (report["opted_out"], report["contacts"]) == (1, 2)
    with psycopg.connect(env_db) as conn:
        phones = [r[0] for r in conn.execute("SELECT phone_number FROM message_logs ORDER BY seq")]
    assert phones == ["5511999990001", "5511999990003"]
