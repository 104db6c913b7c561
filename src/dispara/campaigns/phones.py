"""Phone numbers as Evolution wants them: country code and national number as digits, no `+`.

Already-clean Brazilian numbers take a fast path built from phonenumbers' own metadata; anything
else goes through `phonenumbers.parse`, and a test proves both paths agree.
"""

from __future__ import annotations

import re
from typing import Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneMetadata, ValidationResult

__all__ = ["PhoneError", "normalize_phone"]


class PhoneError(ValueError):
    """A value that is not a usable phone number; `reason` is short and readable by an operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


def normalize_phone(raw: str, default_country: str = "BR") -> str:
    """`'+55 (11) 99999-0001'` -> `'5511999990001'`; raise `PhoneError` when it is not a valid number.

    Numbers without `+` are read as numbers of `default_country` (with or without its country code);
    other countries need `+` or their international prefix. Landlines are accepted: they can have
    WhatsApp Business.
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
            raise PhoneError("digits lost to Excel scientific notation; format the column as text")
        if digits[exponent + 1 :].strip("0"):
            raise PhoneError("not a phone number")
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


def _parse(text: str, region: str) -> str:
    # phonenumbers reads letters as a keypad (`0800-FLORES`); in a contacts sheet they mean a wrong column.
    if any(char.isalpha() for char in text):
        raise PhoneError("not a phone number")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise PhoneError(_PARSE_REASONS.get(exc.error_type, "not a phone number")) from None
    if number.extension:
        raise PhoneError("has an extension")
    national = phonenumbers.national_significant_number(number)
    if not phonenumbers.is_valid_number(number):
        raise PhoneError(_invalid_reason(number, national))
    return f"{number.country_code}{national}"


def _invalid_reason(number: phonenumbers.PhoneNumber, national: str) -> str:
    region = phonenumbers.region_code_for_country_code(number.country_code or 0)
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == ValidationResult.TOO_SHORT:
        return "too short"
    if possible == ValidationResult.TOO_LONG:
        return "too long"
    if possible == ValidationResult.INVALID_COUNTRY_CODE or region == "ZZ":
        return "unknown country code"
    if possible == ValidationResult.INVALID_LENGTH:
        return f"wrong length for {region}"
    reason = f"invalid number for {region}"
    if region == "BR" and len(national) in (8, 9):
        return f"{reason} (missing area code/DDD?)"
    if region == "BR" and len(national) == 10 and national[2] in "6789":
        return f"{reason} (mobile number without the leading 9?)"
    return reason
