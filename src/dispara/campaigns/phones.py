"""Phone numbers as Evolution wants them: country code and national number as digits, no `+`.

Already-clean Brazilian numbers take a fast path built from phonenumbers' own metadata; anything
else goes through `phonenumbers.parse`, and a test proves both paths agree.
"""

from __future__ import annotations

import re
from typing import Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, ValidationResult

from dispara.campaigns.reasons import describe

__all__ = ["PhoneError", "is_mobile", "normalize_phone", "pick_phone"]


class PhoneError(ValueError):
    """Not a usable phone number: a code of `reasons`, its parameters, and the English text as `reason`."""

    def __init__(self, code: str, **params: object) -> None:
        self.code = code
        self.params = params
        self.reason = describe(code, "en", **params)
        super().__init__(self.reason)

    def text(self, locale: str) -> str:
        return describe(self.code, locale, **self.params)


# What Excel does to a phone column typed as a number: `11999990001.0`, `5,511999990001E+12`.
_DECIMAL_ZERO: Final = re.compile(r"(\d{8,})[.,]0+")
_SCIENTIFIC: Final = re.compile(r"(\d)(?:[.,](\d*))?[eE]\+?(\d{1,2})")

# Only separators people type; anything rarer is left to phonenumbers.
_SEPARATORS: Final = str.maketrans("", "", " ()-.\u00a0")


def _br_fast_patterns() -> dict[int, re.Pattern[str]]:
    """Per national-number length, one pattern meaning "valid BR fixed-line or mobile number".

    Built from the metadata phonenumbers itself validates with: its general description, and the
    fixed-line and mobile descriptions whose possible lengths include that length.
    """
    metadata = PhoneMetadata.metadata_for_region("BR")
    if metadata is None:  # never with a real phonenumbers; then the fast path simply never answers
        return {}
    general = metadata.general_desc
    patterns: dict[int, re.Pattern[str]] = {}
    for length in (10, 11):
        kinds = [
            f"(?:{desc.national_number_pattern})"
            for desc in (metadata.fixed_line, metadata.mobile)
            if desc is not None and desc.national_number_pattern and length in desc.possible_length
        ]
        if general is None or not general.national_number_pattern or length not in general.possible_length:
            continue
        if kinds:
            patterns[length] = re.compile(
                rf"(?=(?:{general.national_number_pattern})\Z)(?:{'|'.join(kinds)})"
            )
    return patterns


_BR_VALID: Final = _br_fast_patterns()

_PARSE_REASONS: Final = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown_country",
    NumberParseException.NOT_A_NUMBER: "not_a_number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too_short",
    NumberParseException.TOO_SHORT_NSN: "too_short",
    NumberParseException.TOO_LONG: "too_long",
}

# `0xx11`, the old way of writing "0 + carrier + area code" (xx stands for the carrier digits).
_OXX: Final = re.compile(r"\(?\s*0\s*[xX]{2}\s*")
# `0055 11 ...`: Brazilian operators write the international prefix 00 before the country code 55;
# phonenumbers reads 0055 as Brazil's IDD with carrier 55, and the rest as a foreign number.
_DOUBLE_ZERO_55: Final = re.compile(r"\s*0\s*0\s*5\s*5(?=[\s(]*[1-9])")
# Several numbers in one cell: Google Contacts joins them with " ::: "; people use / ; | or "ou".
_SEVERAL: Final = re.compile(r"\s*(?::::|[/|;\n]|,\s|\s(?:ou|e|or)\s)\s*", re.IGNORECASE)
_DDD: Final = frozenset(
    {*range(11, 20), 21, 22, 24, 27, 28, *range(31, 36), 37, 38, *range(41, 50), 51, 53, 54, 55,
     *range(61, 70), 71, 73, 74, 75, 77, 79, *range(81, 90), *range(91, 100)}
)  # fmt: skip


def pick_phone(raw: str, default_country: str = "BR", area_code: str | None = None) -> str:
    """`normalize_phone` for a cell that may hold several numbers: the first valid mobile, else the first
    valid number; the first number's error when none is valid.

    `area_code` (a separate DDD column) is put in front of a Brazilian number written without one.
    """
    if area_code:
        raw = _with_area_code(raw, area_code, default_country)
    try:
        # Several numbers never read as one valid number (too many digits): the common case pays nothing.
        return normalize_phone(raw, default_country)
    except PhoneError:
        if _SEVERAL.search(raw) is None:
            raise
    first_error: PhoneError | None = None
    first_valid: str | None = None
    for part in _SEVERAL.split(raw):
        if not part.strip():
            continue
        try:
            phone = normalize_phone(_with_area_code(part, area_code, default_country), default_country)
        except PhoneError as exc:
            first_error = first_error or exc
            continue
        if is_mobile(phone):
            return phone
        first_valid = first_valid or phone
    if first_valid is not None:
        return first_valid
    raise first_error or PhoneError("empty")


def is_mobile(phone: str) -> bool:
    """Whether a normalised number is a mobile (Brazil: 9 after the area code; elsewhere phonenumbers)."""
    if phone.startswith("55"):
        return len(phone) == 13 and phone[4] == "9"
    try:
        kind = phonenumbers.number_type(phonenumbers.parse(f"+{phone}"))
    except NumberParseException:
        return False
    return kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def _with_area_code(raw: str, area_code: str | None, country: str) -> str:
    if not area_code:
        return raw
    digits = "".join(char for char in raw if char.isdigit())
    ddd = "".join(char for char in area_code if char.isdigit()).lstrip("0")
    # 7 digits: a number too short by one, which is then reported as such after its area code.
    if country != "BR" or "+" in raw or len(digits) not in (7, 8, 9) or len(ddd) != 2:
        return raw
    return f"{ddd} {raw.strip()}"


def normalize_phone(raw: str, default_country: str = "BR") -> str:
    """`'+55 (11) 99999-0001'` -> `'5511999990001'`; raise `PhoneError` when it is not a valid number.

    Numbers without `+` are read as numbers of `default_country` (with or without its country code);
    other countries need `+` or their international prefix. Landlines are accepted: they can have
    WhatsApp Business. Brazilian forms such as `(0xx11)`, `0055 11` and carrier prefixes are understood.
    """
    text = _undo_excel(raw.strip())
    if default_country == "BR":
        fast = _fast_br(text)
        if fast is not None:
            return fast
    return _parse(text, default_country)


def _undo_excel(text: str) -> str:
    if not text:
        raise PhoneError("empty")
    if ("." in text or "," in text) and (match := _DECIMAL_ZERO.fullmatch(text)):
        return match[1]
    if "e" in text or "E" in text:
        match = _SCIENTIFIC.fullmatch(text)
        if match is None:
            return text
        digits, exponent = match[1] + (match[2] or ""), int(match[3])
        # `5.5119999e+12` no longer holds the last digits: guessing them would message a stranger.
        if len(digits) < exponent + 1:
            raise PhoneError("excel_digits_lost")
        if digits[exponent + 1 :].strip("0"):
            raise PhoneError("not_a_number")
        return digits[: exponent + 1]
    return text


def _fast_br(text: str) -> str | None:
    """The answer for a clean Brazilian mobile or landline, or None when phonenumbers must decide.

    It only answers when phonenumbers would keep the same national number (no carrier code, no
    national prefix `0`/`90` to strip) and would call it a valid fixed-line or mobile number.
    """
    digits = text if text.isdigit() else text.translate(_SEPARATORS)
    if digits[:1] == "+" or len(digits) >= 12:
        if digits[:1] == "+":
            digits = digits[1:]
        if not digits.startswith("55"):
            return None
        national = digits[2:]
    else:
        national = digits
    pattern = _BR_VALID.get(len(national))
    if pattern is None or not (national.isascii() and national.isdigit()):
        return None
    if national[0] == "0" or national.startswith("90"):
        return None
    return "55" + national if pattern.fullmatch(national) else None


def _brazilian_forms(text: str) -> str:
    """`(0xx11) 9...` -> `(011) 9...`; `0055 11 9...` -> `+55 11 9...`."""
    if "x" in text or "X" in text:
        text = _OXX.sub("0", text, count=1)
        if text.startswith("0") and ")" in text[:5]:
            text = text.replace(")", " ", 1)
    if text[:1] in "0 " and (match := _DOUBLE_ZERO_55.match(text)):
        text = "+55" + text[match.end() :]
    return text


def _parse(text: str, region: str) -> str:
    if region == "BR":
        text = _brazilian_forms(text)
    # phonenumbers reads letters as a keypad (`0800-FLORES`); in a contacts sheet they mean a wrong column.
    if any(char.isalpha() for char in text):
        raise PhoneError("not_a_number")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise PhoneError(_PARSE_REASONS.get(exc.error_type, "not_a_number")) from None
    if number.extension:
        raise PhoneError("has_extension")
    national = phonenumbers.national_significant_number(number)
    if not phonenumbers.is_valid_number(number):
        raise _invalid(number, national)
    return f"{number.country_code}{national}"


def _invalid(number: phonenumbers.PhoneNumber, national: str) -> PhoneError:
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == ValidationResult.TOO_SHORT:
        return PhoneError("too_short")
    if possible == ValidationResult.TOO_LONG:
        return PhoneError("too_long")
    if possible == ValidationResult.INVALID_COUNTRY_CODE or region == "ZZ":
        return PhoneError("unknown_country")
    if possible == ValidationResult.INVALID_LENGTH:
        return PhoneError("wrong_length", region=region)
    if region == "BR" and len(national) in (8, 9):
        # `11 999-0001` has its area code and a 7-digit local part; `99999-0001` lacks the area code.
        if len(national) == 9 and national[0] != "9" and int(national[:2]) in _DDD:
            return PhoneError("short_local", region=region, digits=7, ddd=national[:2])
        return PhoneError("missing_ddd", region=region)
    if region == "BR" and len(national) == 10 and national[2] in "6789":
        return PhoneError("missing_nine", region=region)
    return PhoneError("invalid", region=region)
