"""Phone normalisation: the forms operators paste, Excel artefacts, readable reasons, and a fast path
proven identical to phonenumbers."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from dispara.campaigns.phones import PhoneError, _fast_br, _parse, _undo_excel, normalize_phone, pick_phone


@pytest.mark.parametrize(
    "raw",
    [
        "+55 (11) 99999-0001",
        "11999990001",
        "011 99999-0001",
        "55 11 99999 0001",
        "5511999990001",  # country code without + while the default country is BR
        "+5511999990001",
        "(11) 99999-0001",
        "11.99999.0001",
        "  11 99999-0001  ",
        "015 11 99999-0001",  # long-distance carrier code
        "11999990001.0",  # Excel number column
        "11999990001,00",
        "5.511999990001E+12",  # scientific notation that kept every digit
        "5,511999990001e+12",
    ],
)
def test_accepted_forms_of_one_mobile(raw: str) -> None:
    assert normalize_phone(raw) == "5511999990001"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("(11) 3333-4444", "551133334444"),  # landlines may have WhatsApp Business
        ("55 55 99999 0001", "5555999990001"),  # area code 55 (Rio Grande do Sul) after country code 55
        ("55999990001", "5555999990001"),  # area code 55 without the country code
        ("+1 650 253 0000", "16502530000"),
        ("+351 912 345 678", "351912345678"),
        ("0800 123 4567", "558001234567"),
    ],
)
def test_other_valid_numbers(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


def test_default_country_applies_to_numbers_without_plus() -> None:
    assert normalize_phone("912 345 678", "PT") == "351912345678"
    assert normalize_phone("+55 11 99999-0001", "PT") == "5511999990001"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "not a phone number"),
        ("11 99999-0001 ramal 2", "not a phone number"),
        ("-", "not a phone number"),
        ("1234", "too short"),
        ("123456789012345678901", "too long"),
        ("999990001", "invalid number for BR (missing area code/DDD?)"),
        ("11 8999-0001", "invalid number for BR (mobile number without the leading 9?)"),
        ("20 99999-0001", "invalid number for BR"),  # no area code 20
        ("0099 99999-0001", "unknown country code"),
        ("+999 1234 5678", "unknown country code"),
        ("+1 123 456 7890", "invalid number for US"),
        ("5.5119999e+12", "digits lost to Excel scientific notation; format the column as text"),
        ("1.55e+1", "not a phone number"),
    ],
)
def test_invalid_numbers_say_why(raw: str, reason: str) -> None:
    with pytest.raises(PhoneError) as caught:
        normalize_phone(raw)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def _outcome(call: object, *args: str) -> tuple[str, str]:
    assert callable(call)
    try:
        return "ok", call(*args)
    except PhoneError as exc:
        return "error", exc.reason


def _generated(count: int) -> list[str]:
    """Clean and dirty, valid and invalid numbers around the shapes the fast path handles."""
    rng = random.Random(20251128)
    prefixes = ["", "", "", "+55", "+55 ", "55", "55 ", "0", "90", "015", "0055", "5555", "+1", "+351 ", "+"]
    shapes = ["{}", "{} {}", "({}) {}", "{}-{}", "{}.{}"]
    numbers = []
    for _ in range(count):
        area = f"{rng.randint(0, 99):02d}"
        subscriber = "".join(rng.choice("0123456789") for _ in range(rng.choice([7, 8, 8, 9, 9, 9, 10])))
        if rng.random() < 0.5:  # weight towards real mobile shapes so the fast path is exercised a lot
            subscriber = "9" + subscriber[1:9].ljust(8, "0")
        shape = rng.choice(shapes)
        body = shape.format(area, subscriber) if shape.count("{}") == 2 else shape.format(area + subscriber)
        numbers.append(rng.choice(prefixes) + body)
    return numbers


def test_fast_path_gives_exactly_what_phonenumbers_gives() -> None:
    numbers = _generated(20_000)
    answered = 0
    for raw in numbers:
        text = _undo_excel(raw.strip())
        fast = _fast_br(text)
        slow = _outcome(_parse, text, "BR")
        if fast is not None:
            answered += 1
            assert ("ok", fast) == slow, raw
        assert _outcome(normalize_phone, raw) == slow, raw
    # The comparison means something only if the fast path took a good share of the numbers.
    assert answered > len(numbers) // 6


def test_fast_path_answers_for_every_mobile_and_landline() -> None:
    fixed_or_mobile = {
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    }
    for area in range(10, 100):
        for subscriber in ("999990001", "33334444", "73334444", "88887777"):
            for text in (f"{area}{subscriber}", f"+55 {area} {subscriber}", f"55{area}{subscriber}"):
                expected = _outcome(_parse, text, "BR")
                fast = _fast_br(text)
                assert fast is None or ("ok", fast) == expected, text
                kind = phonenumbers.number_type(phonenumbers.parse(text, "BR"))
                if expected[0] == "ok" and kind in fixed_or_mobile:
                    assert fast == expected[1], f"fast path missed a valid number: {text}"


# Every Brazilian area code (DDD) in use.
AREA_CODES = [
    *range(11, 20), 21, 22, 24, 27, 28, *range(31, 36), 37, 38, *range(41, 50), 51, 53, 54, 55,
    *range(61, 70), 71, 73, 74, 75, 77, 79, *range(81, 90), *range(91, 100),
]  # fmt: skip


def test_clean_brazilian_numbers_never_reach_phonenumbers(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fast path is what makes a million rows take seconds (phonenumbers.parse costs ~25 us each).
    def refuse(*args: object) -> None:
        raise AssertionError("slow path taken")

    monkeypatch.setattr(phonenumbers, "parse", refuse)
    for raw in ("+55 (11) 99999-0001", "11999990001", "55 11 99999 0001", "(21) 3333-4444", "11999990001.0"):
        assert normalize_phone(raw).startswith("55")
    for area in AREA_CODES:
        assert normalize_phone(f"+55 ({area}) 98765-4321") == f"55{area}987654321"
        assert normalize_phone(f"{area} 3456-7890") == f"55{area}34567890"


@pytest.mark.parametrize(
    "raw",
    [
        "(0xx11) 99999-0001",
        "0xx11 99999-0001",
        "0XX11 99999-0001",
        "0 11 99999-0001",
        "0055 11 99999-0001",
        "00 55 (11) 99999 0001",
        "+55 (11) 99999-0001",
        "0 21 11 99999-0001",  # trunk 0 + carrier 21
        "015 11 99999-0001",  # carrier 15
    ],
)
def test_brazilian_forms_are_the_numbers_they_are(raw: str) -> None:
    assert normalize_phone(raw) == "5511999990001"


def test_reasons_do_not_mislead() -> None:
    with pytest.raises(PhoneError) as caught:
        normalize_phone("0055 11 9999")
    assert "US" not in caught.value.reason  # 0055 is Brazil's +55, never a US number
    with pytest.raises(PhoneError) as caught:
        normalize_phone("11 999-0001")  # area code 11 and a 7-digit local part
    assert caught.value.reason == "invalid number for BR (only 7 digits after area code 11)"
    assert caught.value.text("pt-BR") == "número inválido para BR (só 7 dígitos depois do DDD 11)"
    with pytest.raises(PhoneError) as caught:
        normalize_phone("11 8999-0001")
    assert "leading 9" in caught.value.reason


@pytest.mark.parametrize(
    ("raw", "ddd", "expected"),
    [
        ("+55 11 3333-4444 ::: +55 11 99999-0001", None, "5511999990001"),  # Google Contacts
        ("11 3333-4444 / 11 99999-0001", None, "5511999990001"),
        ("11 3333-4444", None, "551133334444"),
        ("abc ; 11 3333-4444", None, "551133334444"),  # no mobile: the first valid number
        ("99999-0001", "11", "5511999990001"),
        ("99999-0001", "(021)", "5521999990001"),
        ("(31) 99999-0001", "11", "5531999990001"),  # its own area code wins
        ("3333-4444 ou 98888-0002", "41", "5541988880002"),
    ],
)
def test_pick_phone_takes_the_first_mobile_and_joins_a_separate_ddd(
    raw: str, ddd: str | None, expected: str
) -> None:
    assert pick_phone(raw, "BR", ddd) == expected


def test_pick_phone_with_no_valid_number_gives_the_first_error() -> None:
    with pytest.raises(PhoneError) as caught:
        pick_phone("123 / abc")
    assert caught.value.reason == "too short"


def test_every_reason_exists_in_every_language() -> None:
    from dispara.campaigns.reasons import LOCALES

    keys = {locale: set(table) for locale, table in LOCALES.items()}
    assert len({frozenset(k) for k in keys.values()}) == 1, keys
