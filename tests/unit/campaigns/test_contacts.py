"""Contacts CSV: encodings, delimiters, header matching, line numbers, file errors, the rejected file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispara.campaigns.contacts import SAMPLE_BYTES, ContactReader, RejectedWriter, rejected_path
from dispara.errors import InputError


def read(path: Path, **options: object) -> tuple[ContactReader, list[tuple[int, dict[str, str]]]]:
    with ContactReader(path, **options) as reader:  # type: ignore[arg-type]
        return reader, [(row.line, row.contact) for row in reader]


def error_of(path: Path, **options: object) -> str:
    with pytest.raises(InputError) as caught:
        read(path, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_latin1_excel_export_with_semicolons(tmp_path: Path) -> None:
    path = tmp_path / "contatos.csv"
    path.write_bytes(
        "Nome;Cidade;Telefone\r\nJoão;São Paulo;11999990001\r\nConceição;Maceió;82999990002\r\n".encode(
            "cp1252"
        )
    )
    reader, rows = read(path)
    assert (reader.encoding, reader.delimiter) == ("cp1252", ";")
    assert rows == [
        (2, {"nome": "João", "cidade": "São Paulo", "telefone": "11999990001"}),
        (3, {"nome": "Conceição", "cidade": "Maceió", "telefone": "82999990002"}),
    ]


def test_cp1252_bytes_latin1_lacks_and_bytes_cp1252_lacks(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"nome;telefone\r\n\x93Z\xe9\x94 \x81;11999990001\r\n")
    _, rows = read(path)
    assert rows[0][1]["nome"] == "\u201cZé\u201d \x81"


def test_utf8_with_bom(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("\ufefftelefone,nome\n11999990001,Zé\n".encode())
    reader, rows = read(path)
    assert reader.encoding == "utf-8-sig"
    assert reader.phone_field == "telefone"  # the BOM is not part of the first header
    assert rows == [(2, {"telefone": "11999990001", "nome": "Zé"})]


def test_tab_separated(tmp_path: Path) -> None:
    path = tmp_path / "c.tsv"
    path.write_text("nome\ttelefone\tobs\nAna\t11999990001\tcliente, antiga; VIP\n", encoding="utf-8")
    reader, rows = read(path)
    assert reader.delimiter == "\t"
    assert rows[0][1]["obs"] == "cliente, antiga; VIP"


def test_utf16_unicode_text_from_excel(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_bytes("nome\tcelular\r\nJoão\t11999990001\r\n".encode("utf-16"))
    reader, rows = read(path)
    assert (reader.encoding, reader.delimiter, reader.phone_field) == ("utf-16", "\t", "celular")
    assert rows == [(2, {"nome": "João", "celular": "11999990001"})]


def test_headers_match_without_case_accents_or_spaces(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(" Nome Completo ,E-mail, TELEFONE ,Número\nAna,a@x.io,11999990001,42\n", encoding="utf-8")
    reader, rows = read(path)
    assert reader.header == ["Nome Completo", "E-mail", "TELEFONE", "Número"]
    assert reader.fields == ("nome_completo", "e-mail", "telefone", "numero")
    assert reader.phone_field == "telefone"  # "Número" (often the house number) is only a fallback
    assert rows[0][1] == {
        "nome_completo": "Ana",
        "e-mail": "a@x.io",
        "telefone": "11999990001",
        "numero": "42",
    }


@pytest.mark.parametrize("header", ["Número", "WhatsApp", "celular", "Phone", "fone", "Tel"])
def test_each_phone_column_name_is_recognised(tmp_path: Path, header: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(f"nome,{header}\nAna,11999990001\n", encoding="utf-8")
    reader, _ = read(path)
    assert reader.header[reader.fields.index(reader.phone_field)] == header


def test_missing_phone_column_lists_what_was_found_and_sought(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("nome,email\nAna,a@x.io\n", encoding="utf-8")
    assert error_of(path) == (
        f"{path}: no phone column (columns: nome, email; none reads as a phone, WhatsApp or mobile column); "
        "name it with columns.phone in the campaign file"
    )


def test_of_two_phone_columns_the_mobile_one_is_taken_and_the_choice_is_said(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("nome,Celular,Telefone\nAna,1133334444,11999990001\nBia,,11988880002\n", encoding="utf-8")
    reader, rows = read(path)
    assert reader.phone_field == "telefone"  # its values are mobiles, whatever the headers say
    assert reader.notes == [
        "phone column: 'Telefone' (also plausible: 'Celular'); "
        "choose another with columns.phone in the campaign file"
    ]
    reader, rows = read(path, phone_column="CELULAR")
    assert reader.phone_field == "celular"
    assert reader.notes == []
    assert rows[0][1]["celular"] == "1133334444"


def test_columns_phone_not_in_header(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("nome,telefone\nAna,11999990001\n", encoding="utf-8")
    assert error_of(path, phone_column="Celular 2") == (
        f"{path}: column 'Celular 2' named in columns.phone is not in the header (columns: nome, telefone)"
    )


def test_rename_columns(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("Nome Completo,Fone Celular\nAna Souza,11999990001\n", encoding="utf-8")
    reader, rows = read(
        path, phone_column="fone celular", rename={"nome completo": "Nome", "Fone Celular": "tel"}
    )
    assert reader.fields == ("nome", "tel")
    assert reader.phone_field == "tel"
    assert rows == [(2, {"nome": "Ana Souza", "tel": "11999990001"})]
    assert error_of(path, phone_column="fone celular", rename={"Apelido": "nome"}) == (
        f"{path}: column 'Apelido' named in columns.rename is not in the header "
        "(columns: Nome Completo, Fone Celular)"
    )
    assert error_of(path, phone_column="fone celular", rename={"Nome Completo": "fone celular"}) == (
        f"{path}: after columns.rename two columns are called 'fone_celular'"
    )


def test_duplicate_header_names(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("Nome,telefone,nome \nAna,11999990001,Bia\n", encoding="utf-8")
    assert error_of(path) == f"{path}: columns 'Nome' and 'nome' have the same name"


def test_unnamed_columns_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("nome,,telefone\nAna,lixo,11999990001\n", encoding="utf-8")
    reader, rows = read(path)
    assert reader.fields == ("nome", "telefone")
    assert rows == [(2, {"nome": "Ana", "telefone": "11999990001"})]


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b"\xef\xbb\xbf", b";;;\r\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(content)
    assert error_of(path) == f"{path}: empty file (expected a header line such as nome;telefone)"


def test_header_only_is_zero_contacts(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("nome;telefone\n", encoding="utf-8")
    assert read(path)[1] == []


def test_a_file_without_header_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("Ana;11 99999-0001\nBia;11 99999-0002\n", encoding="utf-8")
    assert error_of(path) == (
        f"{path}: line 1 looks like data ('11 99999-0001'); the first line must be a header naming the "
        "columns, such as nome;telefone"
    )


def test_row_with_more_fields_than_the_header(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("nome;telefone\nAna;11999990001\nSilva; João;11999990002\n", encoding="utf-8")
    assert error_of(path) == f"{path}: line 3: 3 fields but the header has 2 (a value with an unquoted ';'?)"


def test_trailing_empty_cells_and_short_rows_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("nome;telefone;cidade\nAna;11999990001;Natal;;\nBia;11999990002\n", encoding="utf-8")
    _, rows = read(path)
    assert rows == [
        (2, {"nome": "Ana", "telefone": "11999990001", "cidade": "Natal"}),
        (3, {"nome": "Bia", "telefone": "11999990002", "cidade": ""}),
    ]


def test_line_numbers_count_blank_lines_and_quoted_newlines(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        '\nnome,telefone,obs\n\nAna,11999990001,"duas\nlinhas"\n,,\nBia,11999990002,x\n', encoding="utf-8"
    )
    reader, rows = read(path)
    assert reader.header_line == 2
    assert [(line, contact["nome"]) for line, contact in rows] == [(4, "Ana"), (7, "Bia")]
    assert rows[0][1]["obs"] == "duas\nlinhas"


def test_excel_sep_line_and_crlf_and_cr_only(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("sep=;\r\nnome;telefone\r\nAna, a grande;11999990001\r\n", encoding="utf-8")
    reader, rows = read(path)
    assert reader.delimiter == ";"
    assert rows == [(3, {"nome": "Ana, a grande", "telefone": "11999990001"})]
    mac = tmp_path / "mac.csv"
    mac.write_bytes("nome,telefone\rJoão,11999990001\rBia,11999990002\r".encode("cp1252"))
    _, rows = read(mac)
    assert rows == [
        (2, {"nome": "João", "telefone": "11999990001"}),
        (3, {"nome": "Bia", "telefone": "11999990002"}),
    ]


def test_delimiter_ties_are_broken_by_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("nome;telefone,x\nAna;11999990001\nBia;11999990002\n", encoding="utf-8")
    with ContactReader(path, phone_column="nome") as reader:
        assert reader.delimiter == ";"  # the rows repeat the header's one ';' and have no ','
    path.write_text("nome,telefone;x\nAna,11999990001\nBia,11999990002\n", encoding="utf-8")
    with ContactReader(path, phone_column="nome") as reader:
        assert reader.delimiter == ","


def test_cp1252_lines_after_a_utf8_start_are_decoded_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    filler = "".join(f"Zé {i},1199999{i:04d}\n" for i in range(SAMPLE_BYTES // 10))
    path.write_bytes(("nome,telefone\n" + filler).encode() + "Conceição,11999990001\n".encode("cp1252"))
    with ContactReader(path) as reader:
        rows = list(reader)
    assert rows[0].contact["nome"] == "Zé 0"
    assert rows[-1].contact["nome"] == "Conceição"
    assert reader.mixed_lines == 1


def test_utf8_lines_in_a_cp1252_file_do_not_turn_to_mojibake(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(
        "nome;telefone\r\nJoão;11999990001\r\n".encode("cp1252")
        + "Conceição;11999990002\r\n".encode()
        + "Mônica;11999990003\r\n".encode("cp1252")
    )
    with ContactReader(path) as reader:
        names = [row.contact["nome"] for row in reader]
    assert reader.encoding == "cp1252"
    assert names == ["João", "Conceição", "Mônica"]
    assert reader.mixed_lines == 1


def test_mixed_line_endings_are_read(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"nome,telefone\r\nAna,11999990001\rBia,11999990002\nCid,11999990003\r\n")
    _, rows = read(path)
    assert [(line, c["nome"]) for line, c in rows] == [(2, "Ana"), (3, "Bia"), (4, "Cid")]


def test_an_ascii_start_falls_back_to_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    filler = "".join(f"Ze {i},1199999{i:04d}\n" for i in range(SAMPLE_BYTES // 10))
    path.write_bytes(("nome,telefone\n" + filler).encode() + "Conceição,11999990001\n".encode("cp1252"))
    with ContactReader(path) as reader:
        assert reader.encoding == "utf-8"
        last = list(reader)[-1]
        assert reader.encoding == "cp1252"
    assert last.contact["nome"] == "Conceição"


def test_unreadable_inputs(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.csv") == f"{tmp_path / 'nope.csv'}: file not found"
    assert error_of(tmp_path) == f"{tmp_path}: is a directory, not a CSV file"
    xlsx = tmp_path / "c.xlsx"
    xlsx.write_bytes(b"PK\x03\x04rest-of-a-zip")
    assert error_of(xlsx) == f"{xlsx}: is an Excel workbook, not a CSV; save it as CSV first"
    binary = tmp_path / "c.bin"
    binary.write_bytes(b"nome,telefone\n\x00\x01\x02")
    assert error_of(binary) == f"{binary}: contains NUL bytes, so it is not a text CSV"


def test_unclosed_quote_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('nome,telefone\nAna,11999990001\n"Bia,11999990002\n', encoding="utf-8")
    assert error_of(path, display="contatos.csv") == (
        'contatos.csv: line 3: a quote (") opened here is never closed'
    )
    path.write_text('nome,telefone\n"Ana,11999990001\nBia,11999990002\nCid,11999990003\n', encoding="utf-8")
    assert error_of(path, display="c.csv") == 'c.csv: line 2: a quote (") opened here is never closed'


def test_stray_quote_inside_a_value_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('nome,telefone\nAna,11999990001\n"Bia" Souza,11999990002\n', encoding="utf-8")
    assert error_of(path, display="c.csv") == (
        'c.csv: line 3: a quote inside a value must be doubled ("") or the whole value quoted'
    )


def test_rows_keep_their_original_values_for_the_rejected_file(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("nome,telefone\n  Ana  ,11999990001\n", encoding="utf-8")
    with ContactReader(path) as reader:
        (row,) = list(reader)
    assert row.values == ["  Ana  ", "11999990001"]
    assert row.contact["nome"] == "Ana"


def test_rejected_writer_is_lazy_mirrors_the_input_and_can_be_discarded(tmp_path: Path) -> None:
    source = tmp_path / "contacts.csv"
    assert rejected_path(source) == tmp_path / "contacts.rejected.csv"
    writer = RejectedWriter(source)
    writer.set_columns(["Nome", "Telefone"], ";")
    writer.close()
    assert not writer.path.exists()

    with RejectedWriter(source) as writer:
        writer.set_columns(["Nome", "Telefone"], ";")
        assert not writer.path.exists()
        writer.write(3, ["Ana", "123"], "invalid phone: too short")
        writer.write(5, ["Bia; a grande"], 'missing field "empresa"')
    assert writer.count == 2
    assert writer.path.read_bytes().decode("utf-8-sig").splitlines() == [
        "Nome;Telefone;line;reason",
        "Ana;123;3;invalid phone: too short",
        '"Bia; a grande";;5;"missing field ""empresa"""',
    ]
    writer.discard()
    assert not writer.path.exists()


def test_rejected_file_of_an_earlier_run_goes_when_nothing_is_rejected(tmp_path: Path) -> None:
    stale = rejected_path(tmp_path / "contacts.csv")
    stale.write_text("old\n", encoding="utf-8")
    with RejectedWriter(tmp_path / "contacts.csv"):
        pass
    assert not stale.exists()


@pytest.mark.parametrize(
    ("header", "phone_header"),
    [
        # Google Contacts
        ("Name,Given Name,Phone 1 - Type,Phone 1 - Value,E-mail 1 - Value", "Phone 1 - Value"),
        # Outlook
        ("First Name,Last Name,Business Fax,Home Phone,Mobile Phone", "Mobile Phone"),
        # WhatsApp Business and CRM exports
        ("Contact Name,WhatsApp Number,Label", "WhatsApp Number"),
        ("id;Cliente;Telefone (WhatsApp);Cidade", "Telefone (WhatsApp)"),
        ("Nome;WhatsApp do cliente;Observação", "WhatsApp do cliente"),
        ("Nome;Nº do Celular;CEP", "Nº do Celular"),
        ("Nome;Tel. Cel.;Ramal", "Tel. Cel."),
        ("Nome;Fone 1;Fone 2", "Fone 1"),
        ("NOME;TELEFONE1;E-MAIL", "TELEFONE1"),
        ("Nome;Número;Rua", "Número"),
        ("Nome;Cel;Tipo de telefone", "Cel"),
        ("Nome;Zap;Email", "Zap"),
    ],
)
def test_phone_column_found_by_meaning(tmp_path: Path, header: str, phone_header: str) -> None:
    path = tmp_path / "c.csv"
    delimiter = ";" if ";" in header else ","
    width = len(header.split(delimiter))
    cells = ["x"] * width
    cells[header.split(delimiter).index(phone_header)] = "11999990001"
    path.write_text(f"{header}\n{delimiter.join(cells)}\n", encoding="utf-8")
    reader, _ = read(path)
    assert reader.header[reader.fields.index(reader.phone_field)] == phone_header


def test_numbered_phone_columns_prefer_the_one_holding_mobiles(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "Nome;Telefone 1;Telefone 2\nAna;1133334444;11999990001\nBia;;11988880002\n", encoding="utf-8"
    )
    reader, _ = read(path)
    assert reader.phone_field == "telefone_2"
    assert "also plausible: 'Telefone 1'" in reader.notes[0]


def test_separate_ddd_column_is_detected_or_named(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("Nome;DDD;Celular\nAna;11;99999-0001\n", encoding="utf-8")
    reader, _ = read(path)
    assert (reader.phone_field, reader.ddd_field) == ("celular", "ddd")
    assert reader.notes == ["area code (DDD) column: 'DDD', joined to phones written without one"]
    path.write_text("Nome;Cod;Celular\nAna;11;99999-0001\n", encoding="utf-8")
    reader, _ = read(path, ddd_column="cod")
    assert reader.ddd_field == "cod"
    assert "columns.ddd is not in the header" in error_of(path, ddd_column="Prefixo")
