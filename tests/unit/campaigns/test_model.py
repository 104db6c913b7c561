"""The campaign YAML: defaults, one-line errors naming file and key, YAML pitfalls, the resolved document."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest

from dispara.campaigns.model import Campaign, load_campaign
from dispara.errors import ExitCode, InputError
from tests.unit.campaigns.helpers import MINIMAL, WriteCampaign


def error_of(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_campaign(path)
    assert caught.value.exit_code == ExitCode.BAD_INPUT
    message = str(caught.value)
    assert "\n" not in message
    return message


def with_templates(templates: str, extra: str = "") -> str:
    return f"name: x\ncontacts: contacts.csv\ninstances: [vendas-1]\n{extra}templates:\n{templates}"


def test_minimal_campaign_gets_the_documented_defaults(write_campaign: WriteCampaign) -> None:
    campaign = load_campaign(write_campaign())
    assert campaign.name == "Black Friday"
    assert campaign.default_country == "BR"
    assert (campaign.delay.min, campaign.delay.max) == (3.0, 8.0)
    assert campaign.transport == "jobs"
    assert campaign.retries == 2
    assert campaign.schedule is None
    assert campaign.id is None
    assert campaign.source == "campaigns/bf.yaml"
    assert campaign.contacts == (Path.cwd() / "campaigns" / "contacts.csv").resolve()


def test_missing_name(write_campaign: WriteCampaign) -> None:
    path = write_campaign(MINIMAL.replace("name: Black Friday\n", ""))
    assert error_of(path) == "campaigns/bf.yaml: name: required"
    path = write_campaign(MINIMAL.replace("name: Black Friday\n", "name:\n"))
    assert error_of(path) == "campaigns/bf.yaml: name: has no value"


def test_media_missing_for_image(write_campaign: WriteCampaign) -> None:
    path = write_campaign(
        with_templates('  - type: text\n    text: "Oi"\n  - type: image\n    caption: "Promo {nome}"\n')
    )
    assert error_of(path) == "campaigns/bf.yaml: templates[1].media: required for type image"


def test_delay_min_greater_than_max(write_campaign: WriteCampaign) -> None:
    path = write_campaign(MINIMAL + "delay: {min: 5, max: 2}\n")
    assert error_of(path) == "campaigns/bf.yaml: delay.min: 5 must not be greater than delay.max 2"


def test_delay_max_below_the_default_min_says_so(write_campaign: WriteCampaign) -> None:
    path = write_campaign(MINIMAL + "delay: {max: 2}\n")
    assert (
        error_of(path) == "campaigns/bf.yaml: delay.min: 3 (the default) must not be greater than delay.max 2"
    )


def test_negative_delay(write_campaign: WriteCampaign) -> None:
    path = write_campaign(MINIMAL + "delay: {min: -1, max: 2}\n")
    assert error_of(path) == "campaigns/bf.yaml: delay.min: must be at least 0"


def test_unknown_key(write_campaign: WriteCampaign) -> None:
    path = write_campaign(MINIMAL + "foo: 1\n")
    assert error_of(path) == "campaigns/bf.yaml: foo: unknown key"


def test_unknown_nested_key_suggests_the_right_one(write_campaign: WriteCampaign) -> None:
    path = write_campaign(MINIMAL + "delay: {mni: 1}\n")
    assert error_of(path) == "campaigns/bf.yaml: delay.mni: unknown key (did you mean 'min'?)"


def test_unknown_key_in_a_template(write_campaign: WriteCampaign) -> None:
    path = write_campaign(with_templates('  - type: text\n    text: "Oi"\n    legenda: "x"\n'))
    assert error_of(path) == "campaigns/bf.yaml: templates[0].legenda: unknown key"


def test_broken_yaml_gives_the_line(write_campaign: WriteCampaign) -> None:
    path = write_campaign("name: x\ncontacts: contacts.csv\ninstances: [a]\ndelay: min: 1\n")
    assert error_of(path) == "campaigns/bf.yaml: line 4: mapping values are not allowed here"
    path = write_campaign("name: x\ncontacts: contacts.csv\ninstances: [a]\n  templates: []\n")
    assert error_of(path) == (
        "campaigns/bf.yaml: line 4: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping started on line 1)"
    )


def test_unclosed_quote_points_at_where_it_starts(write_campaign: WriteCampaign) -> None:
    path = write_campaign(with_templates('  - type: text\n    text: "Olá\n'))
    assert error_of(path) == (
        "campaigns/bf.yaml: line 7: found unexpected end of stream "
        "(while scanning a quoted scalar started on line 6)"
    )


def test_duplicate_key_is_an_error(write_campaign: WriteCampaign) -> None:
    path = write_campaign(MINIMAL + "name: again\n")
    assert error_of(path) == "campaigns/bf.yaml: line 7: duplicate key 'name'"


def test_bad_transport(write_campaign: WriteCampaign) -> None:
    path = write_campaign(MINIMAL + "transport: kafka\n")
    assert error_of(path) == "campaigns/bf.yaml: transport: must be 'jobs' or 'qstash'"


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert error_of(Path("campaigns/nope.yaml")) == "campaigns/nope.yaml: file not found"


def test_empty_and_non_mapping_files(write_campaign: WriteCampaign) -> None:
    assert error_of(write_campaign("# nothing yet\n")) == "campaigns/bf.yaml: empty campaign file"
    assert error_of(write_campaign("- a\n- b\n")).startswith("campaigns/bf.yaml: must be a mapping of keys")


def test_not_utf8(write_campaign: WriteCampaign) -> None:
    path = write_campaign()
    path.write_bytes("name: Promoção\n".encode("cp1252"))
    assert error_of(path) == "campaigns/bf.yaml: line 1: not UTF-8 text; save the file as UTF-8"


def test_several_problems_report_the_first_and_count_the_rest(write_campaign: WriteCampaign) -> None:
    path = write_campaign("name: x\n")
    assert error_of(path) == "campaigns/bf.yaml: contacts: required (and 2 more problems)"


def test_retries_and_instances(write_campaign: WriteCampaign) -> None:
    assert (
        error_of(write_campaign(MINIMAL + "retries: -1\n"))
        == "campaigns/bf.yaml: retries: must be at least 0"
    )
    assert error_of(write_campaign(MINIMAL + "retries: 1.5\n")) == (
        "campaigns/bf.yaml: retries: must be a whole number"
    )
    no_instances = MINIMAL.replace("instances: [vendas-1]", "instances: []")
    assert error_of(write_campaign(no_instances)) == "campaigns/bf.yaml: instances: must not be empty"
    twice = MINIMAL.replace("instances: [vendas-1]", "instances: [vendas-1, vendas-2, vendas-1]")
    assert error_of(write_campaign(twice)) == "campaigns/bf.yaml: instances[2]: 'vendas-1' is listed twice"


def test_wrong_shapes(write_campaign: WriteCampaign) -> None:
    assert (
        error_of(write_campaign(MINIMAL + "delay: 5\n"))
        == "campaigns/bf.yaml: delay: must be a mapping of keys"
    )
    one_instance = MINIMAL.replace("instances: [vendas-1]", "instances: vendas-1")
    assert error_of(write_campaign(one_instance)) == "campaigns/bf.yaml: instances: must be a list"


def test_contacts_are_relative_to_the_yaml_folder(write_campaign: WriteCampaign) -> None:
    path = write_campaign()
    campaign = load_campaign(path.absolute())
    assert campaign.contacts == path.absolute().parent / "contacts.csv"
    missing = write_campaign(MINIMAL.replace("contacts.csv", "outro.csv"))
    expected = (Path.cwd() / "campaigns" / "outro.csv").resolve()
    assert error_of(missing) == f"campaigns/bf.yaml: contacts: file not found: {expected}"


def test_default_country(write_campaign: WriteCampaign) -> None:
    assert load_campaign(write_campaign(MINIMAL + "default_country: pt\n")).default_country == "PT"
    assert error_of(write_campaign(MINIMAL + "default_country: XX\n")) == (
        "campaigns/bf.yaml: default_country: 'XX' is not a country code (ISO 3166 alpha-2, like BR)"
    )


def test_yaml_12_scalars_times_and_words_stay_text(write_campaign: WriteCampaign) -> None:
    schedule = "schedule:\n  window: {start: 8:30, end: 18:00, days: [seg, ter, Sáb]}\n"
    campaign = load_campaign(write_campaign(MINIMAL.replace("Black Friday", "no") + schedule))
    assert campaign.name == "no"  # YAML 1.1 would make it False
    assert campaign.schedule is not None and campaign.schedule.window is not None
    window = campaign.schedule.window
    assert (window.start, window.end) == (time(8, 30), time(18, 0))  # YAML 1.1: 18:00 == 1080
    assert window.days == ("mon", "tue", "sat")
    assert window.weekdays == frozenset({0, 1, 5})
    assert window.timezone == "America/Sao_Paulo"


def test_schedule_naive_at_is_in_the_window_timezone(write_campaign: WriteCampaign) -> None:
    window = "  window: {start: '08:00', end: '20:00', timezone: America/Manaus}\n"
    campaign = load_campaign(write_campaign(MINIMAL + f"schedule:\n  at: 2025-11-28 09:00\n{window}"))
    assert campaign.schedule is not None and campaign.schedule.at is not None
    assert campaign.schedule.at.utcoffset() == timedelta(hours=-4)
    plain = load_campaign(write_campaign(MINIMAL + "schedule:\n  at: 2025-11-28T09:00\n  daily_cap: 500\n"))
    assert plain.schedule is not None and plain.schedule.at is not None
    assert plain.schedule.at.utcoffset() == timedelta(hours=-3)  # America/Sao_Paulo
    assert plain.schedule.daily_cap == 500
    aware = load_campaign(write_campaign(MINIMAL + "schedule:\n  at: 2025-11-28T12:00:00Z\n"))
    assert aware.schedule is not None
    assert aware.schedule.at == datetime.fromisoformat("2025-11-28T12:00:00+00:00")


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("  at: amanhã\n", "schedule.at: must be a date and time like 2025-11-28 09:00 (ISO 8601)"),
        (
            "  window: {start: '8h', end: '18:00'}\n",
            "schedule.window.start: must be a time as HH:MM (24-hour), like 08:30",
        ),
        ("  window: {start: '08:00', end: '08:00'}\n", "schedule.window.end: must differ from window.start"),
        (
            "  window: {start: '08:00', end: '18:00', days: [seg, funday]}\n",
            "schedule.window.days[1]: 'funday' is not a day",
        ),
        (
            "  window: {start: '08:00', end: '18:00', timezone: Brasil/SP}\n",
            "schedule.window.timezone: unknown time zone",
        ),
        ("  daily_cap: 0\n", "schedule.daily_cap: must be more than 0"),
    ],
)
def test_schedule_errors(write_campaign: WriteCampaign, schedule: str, message: str) -> None:
    assert error_of(write_campaign(MINIMAL + "schedule:\n" + schedule)).startswith(
        f"campaigns/bf.yaml: {message}"
    )


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("  - type: text\n", "templates[0].text: required for type text"),
        ("  - text: oi\n", "templates[0].type: required"),
        (
            "  - type: sticker\n    text: oi\n",
            "templates[0].type: must be 'text', 'image', 'video', 'document' or 'audio'",
        ),
        (
            "  - type: text\n    text: oi\n    media: https://x.io/a.jpg\n",
            "templates[0].media: not allowed for type text",
        ),
        (
            "  - type: image\n    media: https://x.io/a.jpg\n    text: oi\n",
            "templates[0].text: not allowed for type image",
        ),
        (
            "  - type: audio\n    media: https://x.io/a.ogg\n    caption: oi\n",
            "templates[0].caption: not allowed for type audio",
        ),
        (
            "  - type: image\n    media: ftp://x.io/a.jpg\n",
            "templates[0].media: must be an http(s) URL or a file path",
        ),
        ("  - type: text\n    text: 'Olá {nome'\n", "templates[0].text: '{' at character 5 is never closed"),
        (
            "  - type: text\n    text: oi\n    variants: ['a }']\n",
            "templates[0].variants[0]: '}' at character 3 closes nothing",
        ),
        ("  - type: text\n    text: oi\n    variants: ['']\n", "templates[0].variants[0]: must not be empty"),
    ],
)
def test_template_errors(write_campaign: WriteCampaign, template: str, message: str) -> None:
    assert error_of(write_campaign(with_templates(template))).startswith(f"campaigns/bf.yaml: {message}")


def test_no_templates(write_campaign: WriteCampaign) -> None:
    assert (
        error_of(write_campaign(with_templates(" []\n"))) == "campaigns/bf.yaml: templates: must not be empty"
    )


def test_media_path_is_resolved_and_must_exist(write_campaign: WriteCampaign) -> None:
    path = write_campaign(with_templates("  - type: document\n    media: catalogo.pdf\n"))
    expected = (Path.cwd() / "campaigns" / "catalogo.pdf").resolve()
    assert error_of(path) == f"campaigns/bf.yaml: templates[0].media: file not found: {expected}"
    expected.write_bytes(b"%PDF")
    (spec,) = load_campaign(path).message_templates
    assert spec.media_url == str(expected)
    assert spec.file_name == "catalogo.pdf"
    assert spec.choices == (None,)


def test_media_templates_compile_captions_and_name_files(write_campaign: WriteCampaign) -> None:
    templates = (
        "  - type: image\n    media: https://cdn.example.com/promo/black%20friday.jpg?v=2\n"
        "    caption: 'Oi {nome}'\n    variants: ['Olá {nome}']\n"
        "  - type: document\n    media: https://cdn.example.com/x.pdf\n    file_name: Catálogo.pdf\n"
    )
    image, document = load_campaign(write_campaign(with_templates(templates))).message_templates
    assert image.message_type == "image"
    assert [t.text for t in image.parsed] == ["Oi {nome}", "Olá {nome}"]
    assert image.file_name == "black friday.jpg"
    assert [t.label for t in image.parsed] == ["templates[0].caption", "templates[0].variants[0]"]
    assert document.file_name == "Catálogo.pdf"
    assert document.choices == (None,)


def test_resolved_document_is_complete_json_and_stable(write_campaign: WriteCampaign) -> None:
    path = write_campaign(
        MINIMAL + "schedule:\n  at: 2025-11-28 09:00\n  window: {start: '08:00', end: '20:00'}\n"
    )
    document = load_campaign(path).resolved_document()
    assert document == load_campaign(path.absolute()).resolved_document()
    json.dumps(document)
    assert document["contacts"] == str((Path.cwd() / "campaigns" / "contacts.csv").resolve())
    assert document["delay"] == {"min": 3.0, "max": 8.0}
    assert document["schedule"]["at"] == "2025-11-28T09:00:00-03:00"
    assert document["schedule"]["window"]["start"] == "08:00"
    assert document["templates"][0]["type"] == "text"
    assert document["transport"] == "jobs" and document["retries"] == 2


def test_numbers_are_accepted_as_text_where_text_is_expected(write_campaign: WriteCampaign) -> None:
    campaign = load_campaign(write_campaign(MINIMAL + "id: 2025\n"))
    assert campaign.id == "2025"


def test_campaign_can_be_built_without_a_file(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("telefone\n11999990001\n")
    campaign = Campaign.model_validate(
        {
            "name": "x",
            "contacts": "c.csv",
            "instances": ["a"],
            "templates": [{"type": "text", "text": "oi"}],
        },
        context={"base_dir": tmp_path},
    )
    assert campaign.contacts == (tmp_path / "c.csv").resolve()
    assert campaign.source == ""


def test_a_leading_zero_is_decimal_not_octal(write_campaign: WriteCampaign) -> None:
    # The same loader reads dispara.yaml (tests/unit/test_config.py): YAML 1.1 would read 010 as 8.
    assert load_campaign(write_campaign(MINIMAL + "retries: 010\n")).retries == 10
