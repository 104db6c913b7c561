"""`dispara campaign send` against a real database: rows written exactly as the CSV and templates imply."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from dispara.campaigns import store
from tests.helpers import Result, run_cli

ROOT = Path(__file__).resolve().parents[2]

CAMPAIGN = """\
name: Teste
contacts: contatos.csv
instances: [inst-a, inst-b]
delay: {{min: 1, max: 2}}
retries: 3
templates:
  - type: text
    text: "Olá {{nome}}, bem-vindo à {{empresa|nossa loja}}!"
  - type: image
    media: https://cdn.example.com/promo.jpg
    caption: "Promo para {{nome}}"
{extra}
"""


def write_campaign(folder: Path, csv_bytes: bytes, extra: str = "") -> Path:
    (folder / "contatos.csv").write_bytes(csv_bytes)
    path = folder / "campanha.yaml"
    path.write_text(CAMPAIGN.format(extra=extra), encoding="utf-8")
    return path


def counts(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM campaigns), (SELECT count(*) FROM message_logs),"
            " (SELECT count(*) FROM jobs)"
        ).fetchone()
    assert row is not None
    return row


def send(capsys: pytest.CaptureFixture[str], path: Path, *flags: str) -> Result:
    return run_cli(capsys, "campaign", "send", str(path), *flags)


def test_example_campaign_rows_are_exactly_what_the_csv_implies(
    env_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = send(capsys, ROOT / "campaigns" / "example.yaml", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["created"] is True
    assert report["report"] == {
        "rows_read": 21, "invalid": 2, "duplicates": 1, "opted_out": 0, "contacts": 18, "messages": 36
    }  # fmt: skip
    with psycopg.connect(env_db) as conn:
        campaign = conn.execute(
            "SELECT status, total_messages, instances, delay_min, delay_max, retries FROM campaigns"
        ).fetchone()
        logs = conn.execute(
            "SELECT seq, phone_number, instance_name, status, queued_at IS NOT NULL, message_content "
            "FROM message_logs ORDER BY seq"
        ).fetchall()
        jobs = conn.execute(
            "SELECT payload, instance, max_attempts, status, message_id FROM jobs ORDER BY id"
        ).fetchall()
    assert campaign == ("processing", 36, ["vendas-1", "vendas-2"], 0.0, 1.0, 2)
    assert len(logs) == 36
    assert all(status == "queued" and queued for _, _, _, status, queued, _ in logs)
    # each contact's two messages are consecutive, on one instance; contacts alternate instances
    phones = [phone for _, phone, *_ in logs]
    assert phones[0::2] == phones[1::2]
    assert [inst for _, _, inst, *_ in logs[0::2]] == ["vendas-1", "vendas-2"] * 9
    assert logs[0][5] in {
        "Olá Ana Souza, bem-vindo à Padaria Pão Quente!",
        "Oi Ana Souza! Que bom ter a Padaria Pão Quente com a gente.",
        "Ana Souza, a Padaria Pão Quente agora faz parte da nossa rede. Seja bem-vindo!",
    }
    assert (
        logs[1][5]
        == "Esta semana temos ofertas para São Paulo. Responda SAIR para não receber mais mensagens."
    )
    assert len(jobs) == 36
    payload, instance, max_attempts, status, message_id = jobs[0]
    assert payload["run_location"] == "supabase"
    assert payload["task_type"] == "send-message"
    assert payload["data"]["message_id"] == message_id
    assert (instance, max_attempts, status) == ("vendas-1", 3, "pending")


def test_latin1_with_semicolons_and_media_template(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv = "Nome;Empresa;Celular\nJoão;Açougue Boi;11 98888-0001\nCecília;;(21) 98888-0002\n".encode("cp1252")
    result = send(capsys, write_campaign(tmp_path, csv))
    assert result.code == 0, result.err
    with psycopg.connect(env_db) as conn:
        rows = conn.execute(
            "SELECT phone_number, message_type, message_content, media_url, file_name, instance_name "
            "FROM message_logs ORDER BY seq"
        ).fetchall()
        max_attempts = conn.execute("SELECT DISTINCT max_attempts FROM jobs").fetchall()
    assert rows == [
        ("5511988880001", "text", "Olá João, bem-vindo à Açougue Boi!", None, None, "inst-a"),
        (
            "5511988880001",
            "image",
            "Promo para João",
            "https://cdn.example.com/promo.jpg",
            "promo.jpg",
            "inst-a",
        ),
        ("5521988880002", "text", "Olá Cecília, bem-vindo à nossa loja!", None, None, "inst-b"),
        (
            "5521988880002",
            "image",
            "Promo para Cecília",
            "https://cdn.example.com/promo.jpg",
            "promo.jpg",
            "inst-b",
        ),
    ]
    assert max_attempts == [(4,)]


def test_utf8_bom_is_read(env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    csv = "\ufefftelefone,nome,empresa\n11988880001,Zé,Bar do Zé\n".encode()
    assert send(capsys, write_campaign(tmp_path, csv)).code == 0
    assert counts(env_db) == (1, 2, 2)


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        (b"nome,empresa\nAna,X\n", "phone"),
        (b"", "empty"),
        (b"telefone,nome,empresa\n11988880001,Ana,X\n11988880002,Bia,X,extra\n", "line 3"),
    ],
    ids=["missing-phone-column", "empty-file", "extra-field-on-line-3"],
)
def test_bad_csv_is_one_line_exit_4_and_writes_nothing(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, csv: bytes, message: str
) -> None:
    result = send(capsys, write_campaign(tmp_path, csv))
    assert result.code == 4
    assert message in result.err
    assert result.err.startswith("dispara: error: ") and result.err.count("\n") == 1
    assert counts(env_db) == (0, 0, 0)


def test_invalid_duplicate_and_missing_field_rows_are_reported_and_skipped(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    csv = (
        b"telefone,nome,empresa\n"
        b"11988880001,Ana,X\n"
        b"123,Bia,X\n"
        b"(11) 98888-0001,Ana de novo,X\n"
        b"11988880003,,X\n"
        b"11988880004,Dani,X\n"
    )
    result = send(capsys, write_campaign(tmp_path, csv), "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)["report"]
    assert (report["invalid"], report["duplicates"], report["contacts"], report["messages"]) == (2, 1, 2, 4)
    rejected = (tmp_path / "contatos.rejected.csv").read_text(encoding="utf-8-sig").splitlines()
    assert len(rejected) == 4  # header + invalid phone + duplicate + missing field
    assert any(line.startswith("123,") and "curto demais" in line for line in rejected)
    assert any('falta o campo ""nome""' in line for line in rejected)
    assert counts(env_db) == (1, 4, 4)


def test_opted_out_numbers_are_excluded(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with psycopg.connect(env_db) as conn:
        tenant = conn.execute("INSERT INTO tenants (name) VALUES ('default') RETURNING id").fetchone()
        assert tenant is not None
        conn.execute("INSERT INTO optouts (tenant_id, phone) VALUES (%s, '5511988880002')", (tenant[0],))
    csv = b"telefone,nome,empresa\n11988880001,Ana,X\n11988880002,Bia,X\n"
    report = json.loads(send(capsys, write_campaign(tmp_path, csv), "--json").out)["report"]
    assert (report["opted_out"], report["contacts"]) == (1, 1)
    with psycopg.connect(env_db) as conn:
        phones = {r[0] for r in conn.execute("SELECT phone_number FROM message_logs")}
    assert phones == {"5511988880001"}


def test_resend_is_a_no_op_and_new_forces_a_second_campaign(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, b"telefone,nome,empresa\n11988880001,Ana,X\n")
    assert send(capsys, path).code == 0
    again = send(capsys, path)
    assert again.code == 0
    assert "campaign already exists" in again.out
    assert counts(env_db) == (1, 2, 2)
    assert send(capsys, path, "--new").code == 0
    assert counts(env_db) == (2, 4, 4)


def test_same_id_is_the_same_campaign_even_with_other_contacts(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, b"telefone,nome,empresa\n11988880001,Ana,X\n", extra="id: bf-2026")
    assert send(capsys, path).code == 0
    (tmp_path / "contatos.csv").write_bytes(b"telefone,nome,empresa\n11988880009,Zeca,Y\n")
    assert json.loads(send(capsys, path, "--json").out)["existing"] is True
    assert counts(env_db) == (1, 2, 2)


def test_dry_run_writes_nothing_and_previews(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(
        tmp_path, b"telefone,nome,empresa\n11988880001,Ana,X\n11988880002,Bia,Y\n11988880003,Cy,Z\n"
    )
    result = send(capsys, path, "--dry-run", "--json")
    assert result.code == 0
    out = json.loads(result.out)
    assert (out["dry_run"], out["created"], out["report"]["messages"]) == (True, False, 6)
    assert [p["content"] for p in out["preview"]][:2] == ["Olá Ana, bem-vindo à X!", "Promo para Ana"]
    assert len(out["preview"]) == 5
    assert counts(env_db) == (0, 0, 0)


def test_limit_takes_the_first_contacts(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(
        tmp_path, b"telefone,nome,empresa\n11988880001,Ana,X\n11988880002,Bia,Y\n11988880003,Cy,Z\n"
    )
    assert send(capsys, path, "--limit", "2").code == 0
    with psycopg.connect(env_db) as conn:
        phones = [r[0] for r in conn.execute("SELECT DISTINCT phone_number FROM message_logs ORDER BY 1")]
    assert phones == ["5511988880001", "5511988880002"]


def test_over_1000_messages_needs_yes_when_not_interactive(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    rows = "".join(f"1198888{i:04d},N{i},E\n" for i in range(501))
    path = write_campaign(tmp_path, ("telefone,nome,empresa\n" + rows).encode())
    refused = send(capsys, path)
    assert refused.code == 4
    assert "1,002 messages to create: pass --yes to confirm" in refused.err
    assert counts(env_db) == (0, 0, 0)
    assert send(capsys, path, "--yes").code == 0
    assert counts(env_db) == (1, 1002, 1002)


def test_future_schedule_marks_campaign_scheduled_and_delays_jobs(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    extra = "schedule:\n  at: 2099-01-02T09:00:00-03:00\n  window: {start: '10:00', end: '18:00'}"
    path = write_campaign(tmp_path, b"telefone,nome,empresa\n11988880001,Ana,X\n", extra=extra)
    assert send(capsys, path).code == 0, capsys.readouterr()
    with psycopg.connect(env_db) as conn:
        row = conn.execute("SELECT status, is_scheduled, scheduled_for FROM campaigns").fetchone()
        run_at = conn.execute("SELECT DISTINCT run_at FROM jobs").fetchall()
    assert row is not None
    status, is_scheduled, scheduled_for = row
    assert (status, is_scheduled) == ("scheduled", True)
    assert scheduled_for.isoformat() == "2099-01-02T13:00:00+00:00"  # 09:00 is before the window: 10:00 -03
    assert run_at == [(scheduled_for,)]


def test_qstash_transport_without_its_settings_is_a_configuration_error(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, b"telefone,nome,empresa\n11988880001,Ana,X\n", extra="transport: qstash")
    result = send(capsys, path)
    assert result.code == 3
    assert "transport: qstash needs DISPARA_PUBLIC_URL (server.public_url) and QSTASH_TOKEN" in result.err
    assert counts(env_db) == (0, 0, 0)


def test_broken_yaml_and_unknown_placeholder(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write_campaign(tmp_path, b"telefone,nome,empresa\n11988880001,Ana,X\n")
    path.write_text(path.read_text(encoding="utf-8").replace("{nome}", "{nmoe}"), encoding="utf-8")
    result = send(capsys, path)
    assert result.code == 4
    assert "nmoe" in result.err
    path.write_text("name: [unclosed\n", encoding="utf-8")
    broken = send(capsys, path)
    assert (broken.code, broken.err.count("\n")) == (4, 1)
    assert "line" in broken.err
    assert counts(env_db) == (0, 0, 0)


def test_a_campaign_written_in_several_chunks_gets_one_job_per_message_in_order(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = tmp_path / "first"
    first.mkdir()
    assert send(capsys, write_campaign(first, b"telefone,nome,empresa\n11977770001,Zeca,Y\n")).code == 0
    monkeypatch.setattr(store, "CHUNK", 7)
    rows = "".join(f"1198888{i:04d},N{i},E\n" for i in range(20))
    assert send(capsys, write_campaign(tmp_path, ("telefone,nome,empresa\n" + rows).encode())).code == 0
    assert counts(env_db) == (2, 42, 42)
    with psycopg.connect(env_db) as conn:
        pairs = conn.execute(
            "SELECT m.seq, j.payload, j.message_id, m.campaign_id = j.campaign_id FROM jobs j "
            "JOIN message_logs m ON m.id = j.message_id WHERE m.phone_number <> '5511977770001' ORDER BY j.id"
        ).fetchall()
    assert [seq for seq, *_ in pairs] == list(range(40))
    assert all(payload["data"]["message_id"] == message_id and same for _, payload, message_id, same in pairs)


def test_a_bad_row_after_the_first_chunks_leaves_nothing_written(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "CHUNK", 2)
    rows = "".join(f"1198888{i:04d},N{i},E\n" for i in range(8)) + "11988889999,Bia,X,extra\n"
    result = send(capsys, write_campaign(tmp_path, ("telefone,nome,empresa\n" + rows).encode()))
    assert result.code == 4
    assert "line 10" in result.err
    assert counts(env_db) == (0, 0, 0)


def test_ids_that_do_not_follow_the_copy_still_give_every_message_one_job(
    env_db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An app's table may hand out ids of its own: here they count down, so each chunk's ids lie below
    # the highest id seen before it and an id range finds none of them.
    with psycopg.connect(env_db) as conn:
        conn.execute(
            "ALTER TABLE message_logs ALTER COLUMN id SET INCREMENT BY -1 SET MINVALUE 1 "
            "SET MAXVALUE 1000000 RESTART WITH 1000000"
        )
    monkeypatch.setattr(store, "CHUNK", 7)
    rows = "".join(f"1198888{i:04d},N{i},E\n" for i in range(20))
    assert send(capsys, write_campaign(tmp_path, ("telefone,nome,empresa\n" + rows).encode())).code == 0
    with psycopg.connect(env_db) as conn:
        per_message = conn.execute(
            "SELECT count(j.id) FROM message_logs m LEFT JOIN jobs j ON j.message_id = m.id GROUP BY m.id"
        ).fetchall()
    assert per_message and {n for (n,) in per_message} == {1}
