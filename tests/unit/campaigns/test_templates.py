"""Templates: placeholders, defaults, literal braces, syntax errors, field checks, variant choice."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from dispara.campaigns.templates import (
    MissingFieldError,
    TemplateSyntaxError,
    check_fields,
    choose_variant,
    parse,
)
from dispara.errors import InputError


def test_placeholders_take_the_contacts_fields() -> None:
    template = parse("Olá {nome}, bem-vindo à {empresa}!")
    assert template.fields == ("nome", "empresa")
    assert template.render({"nome": "João", "empresa": "Padaria Pão Quente"}) == (
        "Olá João, bem-vindo à Padaria Pão Quente!"
    )


def test_placeholder_names_match_like_headers() -> None:
    template = parse("{Nome} {NÚMERO} { Nome Completo }")
    assert template.fields == ("nome", "numero", "nome_completo")
    assert (
        template.render({"nome": "Ana", "numero": "12", "nome_completo": "Ana Souza"}) == "Ana 12 Ana Souza"
    )


def test_defaults_apply_to_empty_and_missing_values() -> None:
    template = parse("Oi {nome|cliente}, da {empresa | sua empresa}{sufixo|}!")
    assert template.render({"nome": "", "empresa": "ACME"}) == "Oi cliente, da ACME!"
    assert template.render({}) == "Oi cliente, da sua empresa!"
    assert template.render({"nome": "Bia", "sufixo": " :)"}) == "Oi Bia, da sua empresa :)!"


def test_same_field_with_and_without_default() -> None:
    template = parse("{nome|amigo} / {nome}")
    assert template.render({"nome": "Rui"}) == "Rui / Rui"
    with pytest.raises(MissingFieldError):
        template.render({"nome": ""})


def test_double_braces_are_literal() -> None:
    assert parse('JSON: {{"a": 1}} e {{:-)}}').render({}) == 'JSON: {"a": 1} e {:-)}'
    assert parse("{{{nome}}}").render({"nome": "Ana"}) == "{Ana}"
    assert parse("{{ {nome} }}").render({"nome": "Ana"}) == "{ Ana }"


def test_mustache_style_placeholders_are_refused() -> None:
    # Valid syntax for the literal "{nome}", but certainly meant as a placeholder.
    with pytest.raises(TemplateSyntaxError) as caught:
        parse("Olá {{nome}}!")
    assert str(caught.value) == (
        "{{nome}} at character 5 would be sent as literal braces; "
        "placeholders take single braces, like {nome}"
    )


def test_missing_field_without_default() -> None:
    template = parse("Olá {nome}, da {Empresa}")
    with pytest.raises(MissingFieldError) as caught:
        template.render({"nome": "Ana", "empresa": ""})
    assert caught.value.field == "empresa"
    assert str(caught.value) == 'missing field "empresa"'
    with pytest.raises(MissingFieldError):
        template.render({"nome": "Ana"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Olá {nome", "'{' at character 5 is never closed (write {{ for a brace)"),
        ("Olá {nome {x}}", "'{' at character 5 is never closed (write {{ for a brace)"),
        ("Olá nome}", "'}' at character 9 closes nothing (write }} for a brace)"),
        ("Olá {}", "empty placeholder at character 5"),
        ("Olá { |padrão}", "empty placeholder at character 5"),
    ],
)
def test_unbalanced_braces(text: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_text_without_placeholders_renders_as_is() -> None:
    template = parse("Responda SAIR para sair.")
    assert template.fields == ()
    assert template.render({}) == "Responda SAIR para sair."


def test_check_fields_names_template_and_placeholder() -> None:
    ok = parse("Oi {nome}", label="templates[0].text")
    typo = parse("Oi {Emprsa|amigo}", label="templates[1].variants[0]")
    check_fields([ok], ["Nome", "Telefone"])
    with pytest.raises(InputError) as caught:
        check_fields([ok, typo], ["nome", "empresa", "telefone"], source="campaigns/bf.yaml")
    assert str(caught.value) == (
        "campaigns/bf.yaml: templates[1].variants[0]: placeholder {Emprsa|amigo} matches no column "
        "of the contacts (columns: empresa, nome, telefone)"
    )


def test_variant_choice_is_stable_across_processes_and_releases() -> None:
    # Fixed expectations: a change of hash would re-shuffle which contact gets which text.
    assert [choose_variant(f"55119999900{i:02d}", 0, 3) for i in range(10)] == [2, 0, 1, 1, 1, 1, 2, 1, 1, 2]
    assert [choose_variant("5511999990001", index, 5) for index in range(4)] == [4, 3, 0, 3]
    assert choose_variant("5511999990001", 0, 1) == 0
    code = "from dispara.campaigns.templates import choose_variant as c; print(c('5511999990001', 0, 5))"
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == "4"


def test_variants_are_spread_evenly() -> None:
    counts = Counter(choose_variant(f"55{11 + i % 80}9{i:08d}", 0, 3) for i in range(30_000))
    assert set(counts) == {0, 1, 2}
    assert all(9_400 < count < 10_600 for count in counts.values())
