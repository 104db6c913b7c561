"""The pipeline: counts, dedup, opt-outs, limit, instance rotation, message order, the rejected file."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from dispara.campaigns.contacts import RejectedWriter
from dispara.campaigns.model import load_campaign
from dispara.campaigns.prepare import Message, Report, prepare
from dispara.errors import InputError
from tests.unit.campaigns.helpers import WriteCampaign

ROOT = Path(__file__).resolve().parents[3]

THREE_TEMPLATES = """\
name: x
contacts: contacts.csv
instances: [vendas-1, vendas-2, vendas-3]
templates:
  - type: text
    text: "Olá {nome}"
  - type: image
    media: https://cdn.example.com/promo.jpg
    caption: "Oferta para {cidade|você}"
  - type: text
    text: "Responda SAIR para sair"
"""

TWO_TEMPLATES = """\
name: x
contacts: contacts.csv
instances: [a, b]
templates:
  - type: text
    text: "Olá {nome}, da {empresa}"
  - type: text
    text: "Tchau {nome}"
"""


def contacts_csv(count: int) -> str:
    rows = "".join(f"Pessoa {i},Cidade {i},11 9{i:04d}-{i:04d}\n" for i in range(count))
    return "nome,cidade,telefone\n" + rows


def run(path: Path, **options: object) -> tuple[list[Message], Report]:
    preparation = prepare(load_campaign(path), optouts=options.pop("optouts", frozenset()), **options)  # type: ignore[arg-type]
    messages = list(preparation)
    return messages, preparation.report


def test_each_contact_gets_every_template_in_order(write_campaign: WriteCampaign) -> None:
    messages, report = run(write_campaign(THREE_TEMPLATES, contacts_csv(100)))
    assert len(messages) == 300
    assert [m.seq for m in messages] == list(range(300))
    assert [(m.contact_index, m.template_index) for m in messages] == [
        (c, t) for c in range(100) for t in range(3)
    ]
    first, image, last = messages[:3]
    assert first.phone == image.phone == last.phone == "5511900000000"
    assert first.content == "Olá Pessoa 0"
    assert first.line == 2 and first.contact == {
        "nome": "Pessoa 0",
        "cidade": "Cidade 0",
        "telefone": "11 90000-0000",
    }
    assert (image.message_type, image.content) == ("image", "Oferta para Cidade 0")
    assert (image.media_url, image.file_name) == ("https://cdn.example.com/promo.jpg", "promo.jpg")
    assert (last.message_type, last.media_url, last.file_name) == ("text", None, None)
    assert report == Report(rows_read=100, contacts=100, messages=300, finished=True)
    assert report.valid == 100


def test_instances_rotate_over_accepted_contacts(write_campaign: WriteCampaign) -> None:
    csv = (
        "nome,telefone\nA,11999990001\nbad,123\nB,11999990002\n"
        "A again,11999990001\nC,11999990003\nD,11999990004\n"
    )
    yaml = THREE_TEMPLATES.replace("{cidade|você}", "promo")
    messages, _ = run(write_campaign(yaml, csv))
    by_contact = {m.contact_index: (m.contact["nome"], m.instance) for m in messages}
    assert by_contact == {
        0: ("A", "vendas-1"),
        1: ("B", "vendas-2"),
        2: ("C", "vendas-3"),
        3: ("D", "vendas-1"),
    }
    # All the messages of one contact leave through the same instance.
    assert all(len({m.instance for m in messages if m.contact_index == c}) == 1 for c in range(4))


def test_counts_of_invalid_duplicate_and_opted_out_rows(write_campaign: WriteCampaign) -> None:
    csv = (
        "nome,empresa,telefone\n"
        "Ana,ACME,+55 (11) 99999-0001\n"  # accepted
        "Bia,ACME,1234\n"  # invalid phone
        "Ana de novo,ACME,5511999990001\n"  # duplicate of Ana
        "Caio,ACME,11999990002\n"  # opted out
        "Caio de novo,ACME,11 99999-0002\n"  # duplicate of an opted-out phone
        "Duda,,11999990003\n"  # missing field "empresa"
        "Duda completa,ACME,11999990003\n"  # the same phone, now complete: accepted
        "Eva,ACME,\n"  # empty phone
    )
    messages, report = run(write_campaign(TWO_TEMPLATES, csv), optouts={"5511999990002"})
    assert report.rows_read == 8
    assert (report.invalid, report.duplicates, report.opted_out, report.contacts) == (3, 2, 1, 2)
    assert report.rows_read == report.invalid + report.duplicates + report.opted_out + report.contacts
    assert report.valid == 5
    assert report.messages == len(messages) == 4
    assert [m.contact["nome"] for m in messages[::2]] == ["Ana", "Duda completa"]
    assert report.reasons == Counter(
        {
            "telefone inválido: curto demais": 1,
            "telefone inválido: vazio": 1,
            'falta o campo "empresa"': 1,
            "telefone repetido": 2,
            "descadastrado (opt-out)": 1,
        }
    )


def test_a_missing_field_rejects_the_whole_contact(write_campaign: WriteCampaign) -> None:
    yaml = TWO_TEMPLATES.replace("Olá {nome}, da {empresa}", "Olá {nome}").replace(
        "Tchau {nome}", "De {empresa}"
    )
    messages, report = run(write_campaign(yaml, "nome,empresa,telefone\nAna,,11999990001\n"))
    assert messages == []  # the first template renders, but the contact is not sent half its messages
    assert report.reasons == Counter({'falta o campo "empresa"': 1})


def test_optouts_may_be_a_callable(write_campaign: WriteCampaign) -> None:
    asked: list[str] = []

    def opted_out(phone: str) -> bool:
        asked.append(phone)
        return phone.endswith("2")

    _, report = run(
        write_campaign(TWO_TEMPLATES, "nome,empresa,telefone\nA,x,11999990001\nB,x,11999990002\n"),
        optouts=opted_out,
    )
    assert asked == ["5511999990001", "5511999990002"]
    assert (report.contacts, report.opted_out) == (1, 1)


def test_limit_keeps_the_first_accepted_contacts_and_stops_reading(write_campaign: WriteCampaign) -> None:
    csv = (
        "nome,empresa,telefone\nA,x,123\nB,x,11999990001\nC,x,11999990001\nD,x,11999990002\nE,x,11999990003\n"
    )
    path = write_campaign(TWO_TEMPLATES, csv)
    messages, report = run(path, limit=2)
    assert [m.contact["nome"] for m in messages] == ["B", "B", "D", "D"]
    assert (report.rows_read, report.contacts, report.limit_reached, report.finished) == (4, 2, True, True)
    messages, report = run(path, limit=0)
    assert (messages, report.rows_read, report.limit_reached) == ([], 0, True)
    with pytest.raises(InputError):
        run(path, limit=-1)


def test_rejected_file_lists_refused_rows_with_line_and_reason(write_campaign: WriteCampaign) -> None:
    csv = (
        "Nome;Empresa;Telefone\nAna;ACME;11999990001\nBia;ACME;1234\n"
        "Ana 2;ACME;11999990001\nCaio;;11999990002\n"
    )
    path = write_campaign(TWO_TEMPLATES, csv)
    campaign = load_campaign(path)
    preparation = prepare(campaign, optouts=(), rejected=RejectedWriter(campaign.contacts))
    assert preparation.rejected_path is None
    assert len(list(preparation)) == 2
    rejected = Path("campaigns/contacts.rejected.csv").absolute()
    assert preparation.rejected_path == rejected
    assert rejected.read_bytes().decode("utf-8-sig").splitlines() == [
        "Nome;Empresa;Telefone;linha;motivo",
        "Bia;ACME;1234;3;telefone inválido: curto demais",
        "Ana 2;ACME;11999990001;4;telefone repetido",
        'Caio;;11999990002;5;"falta o campo ""empresa"""',
    ]


def test_rejected_file_is_in_english_when_the_campaign_locale_is_en(write_campaign: WriteCampaign) -> None:
    csv = "Nome;Empresa;Telefone\nAna;ACME;11999990001\nBia;ACME;1234\nAna 2;ACME;11999990001\n"
    path = write_campaign("locale: en\n" + TWO_TEMPLATES, csv)
    campaign = load_campaign(path)
    preparation = prepare(campaign, optouts=(), rejected=RejectedWriter(campaign.contacts))
    list(preparation)
    assert preparation.report.reasons == {"invalid phone: too short": 1, "duplicate phone": 1}
    assert Path("campaigns/contacts.rejected.csv").read_bytes().decode("utf-8-sig").splitlines() == [
        "Nome;Empresa;Telefone;line;reason",
        "Bia;ACME;1234;3;invalid phone: too short",
        "Ana 2;ACME;11999990001;4;duplicate phone",
    ]


def test_separate_ddd_column_and_cells_with_several_numbers(write_campaign: WriteCampaign) -> None:
    csv = (
        "Nome;Empresa;DDD;Celular\n"
        "Ana;ACME;11;99999-0001\n"  # joined with its DDD
        "Bia;ACME;11;(21) 99999-0002\n"  # has its own area code: the DDD column is not prepended
        "Caio;ACME;;+55 31 3333-4444 ::: +55 31 99999-0003\n"  # Google Contacts: the mobile one
        "Duda;ACME;41;3333-4444 / 98888-0004\n"
    )
    campaign = load_campaign(write_campaign(TWO_TEMPLATES, csv))
    phones = [m.phone for m in prepare(campaign, optouts=())][::2]
    assert phones == ["5511999990001", "5521999990002", "5531999990003", "5541988880004"]


def test_nothing_rejected_means_no_rejected_file(write_campaign: WriteCampaign) -> None:
    campaign = load_campaign(write_campaign())
    writer = RejectedWriter(campaign.contacts)
    assert len(list(prepare(campaign, optouts=(), rejected=writer))) == 1
    assert not writer.path.exists()


def test_a_bad_row_mid_file_aborts_and_discards_the_rejected_file(write_campaign: WriteCampaign) -> None:
    csv = "nome;empresa;telefone\nBia;x;1234\nAna;x;11999990001\nSilva; Ana;x;11999990002\n"
    campaign = load_campaign(write_campaign(TWO_TEMPLATES, csv))
    writer = RejectedWriter(campaign.contacts)
    preparation = prepare(campaign, optouts=(), rejected=writer)
    with pytest.raises(InputError, match=r"line 4: 4 fields but the header has 3"):
        list(preparation)
    assert not writer.path.exists()
    assert not preparation.report.finished


def test_placeholders_are_checked_against_the_header_before_anything_is_read(
    write_campaign: WriteCampaign,
) -> None:
    yaml = TWO_TEMPLATES.replace("Tchau {nome}", "Tchau {apelido|amigo}")
    with pytest.raises(InputError) as caught:
        prepare(load_campaign(write_campaign(yaml)), optouts=())
    assert str(caught.value) == (
        "campaigns/bf.yaml: templates[1].text: placeholder {apelido|amigo} matches no column of the contacts "
        "(columns: empresa, nome, telefone)"
    )


def test_csv_errors_name_the_contacts_file(write_campaign: WriteCampaign) -> None:
    with pytest.raises(InputError) as caught:
        prepare(load_campaign(write_campaign(contacts="nome,email\nAna,a@x.io\n")), optouts=())
    assert str(caught.value).startswith("campaigns/contacts.csv: no phone column")


def test_variants_are_the_same_on_every_run(write_campaign: WriteCampaign) -> None:
    yaml = TWO_TEMPLATES.replace(
        '    text: "Olá {nome}, da {empresa}"\n',
        '    text: "A {nome}"\n    variants: ["B {nome}", "C {nome}"]\n',
    )
    csv = "nome,empresa,telefone\n" + "".join(f"P{i},x,1199999{i:04d}\n" for i in range(60))
    path = write_campaign(yaml, csv)
    first, _ = run(path)
    again, _ = run(path)
    assert [m.content for m in first] == [m.content for m in again]
    chosen = [m for m in first if m.template_index == 0]
    assert {m.variant for m in chosen} == {0, 1, 2}
    assert all(m.content == f"{'ABC'[m.variant]} {m.contact['nome']}" for m in chosen)
    assert {m.variant for m in first if m.template_index == 1} == {0}


def test_a_preparation_is_iterated_once_and_its_report_stays(write_campaign: WriteCampaign) -> None:
    preparation = prepare(load_campaign(write_campaign()), optouts=())
    assert (preparation.encoding, preparation.delimiter, preparation.phone_field) == (
        "utf-8",
        ",",
        "telefone",
    )
    assert preparation.fields == ("nome", "empresa", "telefone")
    assert len(list(preparation)) == 1
    assert preparation.report.finished
    with pytest.raises(RuntimeError):
        iter(preparation)


def test_stopping_early_leaves_counts_so_far(write_campaign: WriteCampaign) -> None:
    with prepare(load_campaign(write_campaign(THREE_TEMPLATES, contacts_csv(10))), optouts=()) as preparation:
        for message in preparation:
            if message.seq == 4:
                break
    assert (preparation.report.contacts, preparation.report.finished) == (1, False)


def test_the_shipped_example_runs_out_of_the_box(tmp_path: Path) -> None:
    for name in ("example.yaml", "example-contacts.csv"):
        shutil.copy(ROOT / "campaigns" / name, tmp_path / name)
    campaign = load_campaign(tmp_path / "example.yaml")
    writer = RejectedWriter(campaign.contacts)
    messages = list(prepare(campaign, optouts=(), rejected=writer))
    report_rows = writer.path.read_text(encoding="utf-8-sig").splitlines()[1:]
    assert campaign.instances == ("vendas-1", "vendas-2")
    assert len(messages) == 2 * 18
    assert [row.rsplit(",", 1)[-1] for row in report_rows] == [
        '"falta o campo ""empresa"""',
        "telefone inválido: curto demais",
        "telefone repetido",
    ]
    assert messages[0].content == "Olá Ana Souza, bem-vindo à Padaria Pão Quente!"
